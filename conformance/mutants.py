"""Mutant runtimes: the suite's proof that its tests can fail.

Each mutant is a wrapper around a real runtime (runc in the self-test) that
changes ONE thing before handing over: it drops or alters one part of
config.json at ``create``/``run``, refuses a whole feature the way a runtime
that lacks it would, or leaves something behind.  ``KILLERS`` names, for each
mutant, conformance tests that pass on the real runtime and must FAIL on the
mutant; tests/unit/test_conformance_mutants.py checks exactly that.

Used as a runtime:

    python -m conformance --runtime "python3 conformance/mutants.py drop-hooks /usr/sbin/runc" \\
        --expected /dev/null --id hook-prestart-runs

This file is run by path as a runtime (its cwd is then a bundle), so it uses
the standard library only and imports nothing from the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable

Config = dict


class Refuse(Exception):
    """The mutant plays a runtime that does not implement a feature."""


def _proc(cfg: Config) -> dict:
    return cfg.setdefault("process", {})


def _linux(cfg: Config) -> dict:
    return cfg.setdefault("linux", {})


def _drop(path: str) -> Callable[[Config], None]:
    """Remove the member at a dotted path (``process.capabilities.ambient``)."""
    *parents, last = path.split(".")

    def mut(cfg: Config) -> None:
        d = cfg
        for p in parents:
            d = d.get(p) if isinstance(d, dict) else None
            if d is None:
                return
        if isinstance(d, dict):
            d.pop(last, None)
    return mut


def _refuse(path: str) -> Callable[[Config], None]:
    """Refuse create when the member at ``path`` is present (a runtime
    without the feature, rejecting valid and invalid configs alike)."""
    parts = path.split(".")

    def mut(cfg: Config) -> None:
        d = cfg
        for p in parts:
            if not isinstance(d, dict) or p not in d:
                return
            d = d[p]
        raise Refuse(f"{path}: not supported by this (mutant) runtime")
    return mut


def _caps_set(dst: str, src: str) -> Callable[[Config], None]:
    def mut(cfg: Config) -> None:
        caps = _proc(cfg).get("capabilities")
        if isinstance(caps, dict) and src in caps:
            caps[dst] = list(caps[src])
    return mut


def _extra_mounts(cfg: Config) -> list[dict]:
    return [m for m in cfg.get("mounts", []) if str(m.get("destination", "")).startswith(("/mnt/", "mnt/"))]


def drop_extra_mounts(cfg: Config) -> None:
    """Every mount a test adds (they all live under /mnt) is not made."""
    extra = _extra_mounts(cfg)
    cfg["mounts"] = [m for m in cfg.get("mounts", []) if m not in extra]


def drop_mount_options(cfg: Config) -> None:
    """Mount options other than bind/rbind are ignored."""
    for m in _extra_mounts(cfg):
        if "options" in m:
            m["options"] = [o for o in m["options"] if o in ("bind", "rbind")]


def change_cwd(cfg: Config) -> None:
    _proc(cfg)["cwd"] = "/"


def user_root(cfg: Config) -> None:
    """process.user is ignored: everything runs as root."""
    _proc(cfg)["user"] = {"uid": 0, "gid": 0}


def root_writable(cfg: Config) -> None:
    cfg.setdefault("root", {})["readonly"] = False


def drop_pid_namespace(cfg: Config) -> None:
    ns = _linux(cfg).get("namespaces", [])
    _linux(cfg)["namespaces"] = [n for n in ns if n.get("type") != "pid"]


def poststart_early(cfg: Config) -> None:
    """poststart hooks run during create (as createRuntime hooks), before the
    program was ever started."""
    hooks = cfg.get("hooks", {})
    early = hooks.pop("poststart", [])
    if early:
        hooks["createRuntime"] = hooks.get("createRuntime", []) + early


def drop_env(cfg: Config) -> None:
    """process.env is replaced by a bare PATH (keeps the suite's leak mark)."""
    env = _proc(cfg).get("env", [])
    _proc(cfg)["env"] = ["PATH=/bin:/usr/bin:/sbin"] + [e for e in env if e.startswith("OCI_CONFORMANCE_MARK=")]


MUTATIONS: dict[str, Callable[[Config], None]] = {
    "drop-capabilities": _drop("process.capabilities"),
    "permitted-as-bounding": _caps_set("permitted", "bounding"),
    "effective-as-permitted": _caps_set("effective", "permitted"),
    "drop-ambient": _drop("process.capabilities.ambient"),
    "drop-cgroups-path": _drop("linux.cgroupsPath"),
    "drop-memory-limits": _drop("linux.resources.memory"),
    "drop-pids-limit": _drop("linux.resources.pids"),
    "drop-device-rules": _drop("linux.resources.devices"),
    "drop-extra-mounts": drop_extra_mounts,
    "drop-mount-options": drop_mount_options,
    "drop-hooks": _drop("hooks"),
    "poststart-early": poststart_early,
    "drop-seccomp": _drop("linux.seccomp"),
    "change-cwd": change_cwd,
    "user-root": user_root,
    "drop-rlimits": _drop("process.rlimits"),
    "drop-umask": _drop("process.user.umask"),
    "drop-additional-gids": _drop("process.user.additionalGids"),
    "drop-id-mappings": lambda cfg: (_drop("linux.uidMappings")(cfg), _drop("linux.gidMappings")(cfg)),
    "drop-env": drop_env,
    "drop-oom-score-adj": _drop("process.oomScoreAdj"),
    "drop-no-new-privileges": _drop("process.noNewPrivileges"),
    "drop-rootfs-propagation": _drop("linux.rootfsPropagation"),
    "drop-pid-namespace": drop_pid_namespace,
    "drop-masked-paths": _drop("linux.maskedPaths"),
    "drop-readonly-paths": _drop("linux.readonlyPaths"),
    "drop-devices": _drop("linux.devices"),
    "drop-sysctl": _drop("linux.sysctl"),
    "drop-hostname": _drop("hostname"),
    "drop-annotations": _drop("annotations"),
    "root-writable": root_writable,
    "refuse-seccomp": _refuse("linux.seccomp"),
    "refuse-personality": _refuse("linux.personality"),
    "refuse-sysctl": _refuse("linux.sysctl"),
    "refuse-rlimits": _refuse("process.rlimits"),
    "refuse-rootfs-propagation": _refuse("linux.rootfsPropagation"),
    "refuse-cgroup-cpu": _refuse("linux.resources.cpu"),
    "refuse-netdevices": _refuse("linux.netDevices"),
    "refuse-hook-timeout": lambda cfg: [_refuse("timeout")(h) for hs in cfg.get("hooks", {}).values() for h in hs],
}

# Behaviours that are not a config change: handled by the wrapper itself.
#   leak-process:      every create leaves a stray process carrying the test's environment
#   leak-cgroup:       a failed create leaves its cgroup directory behind
#   poststart-at-start: poststart hooks run by start before startContainer, while
#                      the container process is still the runtime's init
#   leak-mount:        a failed create leaves a mount in the bundle directory
#   keep-state:        delete reports success but leaves the container
BEHAVIOURS = ("leak-process", "leak-cgroup", "leak-mount", "keep-state", "poststart-at-start")

# The opposite of a mutant: a wrapper that ADDS a feature the real runtime
# lacks, done the way the spec describes, so that the suite's tests for it are
# shown to be passable (tests that can only fail prove nothing either).
#   netdevices:        linux.netDevices (v1.3.0) on top of runc 1.1.5, with ip(8)
ORACLES = ("netdevices",)
ORACLE_TESTS = {"netdevices": ("net-device-not-returned", "net-device-name-clash", "net-device-name-template",
                               "netdev-moved-renamed", "netdev-missing-error")}

# The runtime a mutant wraps when it is not runc: runc 1.1.5 itself runs
# poststart during create (expected/runc.txt), so the poststart mutants wrap
# ocirun, which runs poststart after the program as runtime.md step 9 says;
# runc 1.1.5 ignores netDevices, so refusing them is shown on ocirun too.
BASE: dict[str, str] = {"poststart-early": "ocirun", "poststart-at-start": "ocirun", "refuse-netdevices": "ocirun"}

# Conformance tests that pass on the real runtime and must fail on the mutant.
KILLERS: dict[str, tuple[str, ...]] = {
    "drop-capabilities": ("process-caps-bounding", "process-caps-inheritable", "process-caps-nonroot-none"),
    "permitted-as-bounding": ("process-caps-permitted",),
    "effective-as-permitted": ("process-caps-effective",),
    "drop-ambient": ("process-caps-ambient", "process-caps-nonroot-ambient"),
    "drop-cgroups-path": ("cg-path-absolute", "cg-pids-limit", "cg-memory-limit", "cg-resources-before-start",
                          "delete-removes-cgroup"),
    "drop-memory-limits": ("cg-memory-limit", "cg-memory-oom-effect"),
    "drop-pids-limit": ("cg-pids-limit", "cg-pids-effect", "cg-resources-before-start"),
    "drop-device-rules": ("dev-usable", "cg-devices-v1-rules"),
    "drop-extra-mounts": ("mount-tmpfs", "mount-bind-dir", "mount-propagation-private", "mount-opt-strictatime",
                          "hook-createRuntime-sees-mounts", "create-error-no-leftover"),
    "drop-mount-options": ("mount-propagation-private", "mount-opt-strictatime", "mount-opt-ro", "mount-bind-ro",
                           "mount-propagation-shared", "mount-propagation-rslave", "mount-propagation-slave",
                           "mount-opt-dirsync"),
    "drop-hooks": ("hook-prestart-runs", "hook-array-order", "hook-prestart-pid-ns-created",
                   "hook-createRuntime-sees-mounts", "hook-createRuntime-fail"),
    "drop-seccomp": ("seccomp-errno-action", "seccomp-kill-action", "seccomp-kill-process-action",
                     "seccomp-trap-action", "seccomp-mode-filter", "seccomp-invalid-action", "seccomp-listener-state"),
    "poststart-early": ("hook-order-start", "hook-poststart-runs"),
    "poststart-at-start": ("hook-order-start",),
    "change-cwd": ("process-cwd",),
    "user-root": ("process-user-uid-gid", "process-additional-gids"),
    "drop-rlimits": ("process-rlimits", "process-rlimit-unknown-type"),
    "drop-umask": ("process-umask", "process-umask-file"),
    "drop-additional-gids": ("process-additional-gids",),
    "drop-id-mappings": ("userns-uid-map", "userns-process-host-uid"),
    "drop-env": ("process-env",),
    "drop-oom-score-adj": ("process-oom-score-adj",),
    "drop-no-new-privileges": ("process-no-new-privs-true",),
    "drop-rootfs-propagation": ("rootfs-propagation-private", "rootfs-propagation-invalid"),
    "drop-pid-namespace": ("ns-pid-new", "ns-pid-init-is-1", "hook-prestart-pid-ns-created"),
    "drop-masked-paths": ("masked-paths-file", "masked-paths-dir"),
    "drop-readonly-paths": ("readonly-paths",),
    "drop-devices": ("dev-char", "dev-fifo"),
    "drop-sysctl": ("sysctl", "sysctl-invalid"),
    "drop-hostname": ("hostname",),
    "drop-annotations": ("state-annotations", "annotations-value-not-string"),
    "root-writable": ("root-readonly",),
    "refuse-seccomp": ("seccomp-invalid-action", "seccomp-invalid-operator"),
    "refuse-personality": ("personality-linux",),
    "refuse-sysctl": ("sysctl-invalid",),
    "refuse-rlimits": ("process-rlimit-unknown-type", "process-rlimits"),
    "refuse-rootfs-propagation": ("rootfs-propagation-invalid",),
    "refuse-cgroup-cpu": ("cg-invalid-value-error",),
    "refuse-netdevices": ("netdev-missing-error", "netdev-moved-renamed"),
    "refuse-hook-timeout": ("hook-timeout-zero",),
    "leak-process": ("state-id", "create-error-no-leftover", "kill-created"),
    "leak-cgroup": ("create-error-no-leftover", "cg-invalid-value-error"),
    "leak-mount": ("create-error-no-leftover", "mount-invalid-type"),
    "keep-state": ("delete-stopped", "delete-id-reuse"),
}

GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def split_command(args: list[str]) -> tuple[str, list[str]]:
    """(subcommand, its arguments) from a runc-style command line."""
    i = 0
    while i < len(args):
        a = args[i]
        if a in GLOBAL_WITH_VALUE:
            i += 2
            continue
        if a.startswith("-"):
            i += 1
            continue
        return a, args[i + 1:]
    return "", []


def bundle_dir(sub_args: list[str]) -> str:
    for i, a in enumerate(sub_args):
        if a in ("--bundle", "-b") and i + 1 < len(sub_args):
            return sub_args[i + 1]
        if a.startswith("--bundle="):
            return a.split("=", 1)[1]
    return os.getcwd()


def container_id(sub_args: list[str]) -> str:
    skip = False
    last = ""
    for a in sub_args:
        if skip:
            skip = False
            continue
        if a in ("--bundle", "-b", "--console-socket", "--pid-file", "--preserve-fds"):
            skip = True
            continue
        if not a.startswith("-"):
            last = a
            break
    return last


def _leak_process() -> None:
    """A daemon that outlives everything, with the caller's environment."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.execvp("sleep", ["sleep", "120"])
        os._exit(0)
    os.wait()


def _cgroup_dirs(cg: str) -> list[str]:
    base = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(base, "cgroup.controllers")):
        return [os.path.join(base, cg.lstrip("/"))]
    return [os.path.join(base, c, cg.lstrip("/")) for c in sorted(os.listdir(base))
            if os.path.exists(os.path.join(base, c, "cgroup.procs"))]


def _global(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
    return None


def _ip(*args: str, pid: int = 0) -> subprocess.CompletedProcess:
    pre = ["nsenter", "-t", str(pid), "-n"] if pid else []
    return subprocess.run([*pre, "ip", *args], capture_output=True, text=True)


def _netdevices_create(real: str, rest: list[str], sub_args: list[str], cfg_path: str) -> int:
    """runc create without netDevices, then move each device into the
    container's network namespace: rename (a %d template is left to the
    kernel), keep the MTU (the kernel does) and the permanent global IPv4
    addresses (re-added), bring it up; refuse a name the namespace has."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    devs = cfg.get("linux", {}).pop("netDevices", None) or {}
    for dev in devs:
        if _ip("link", "show", dev).returncode != 0:
            print(f"netDevices: no link {dev} in the runtime's network namespace", file=sys.stderr)
            return 1
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    rc = subprocess.run([real, *rest]).returncode
    if rc != 0 or not devs:
        return rc
    root = _global(rest, "--root")
    cid = container_id(sub_args)
    base = [real, *(["--root", root] if root else [])]
    st = json.loads(subprocess.run([*base, "state", cid], capture_output=True, text=True).stdout or "{}")
    pid = int(st.get("pid", 0))
    for dev, spec in devs.items():
        new = spec.get("name") or dev
        if "%" not in new and _ip("link", "show", new, pid=pid).returncode == 0:
            print(f"netDevices: {new} already exists in the container's network namespace", file=sys.stderr)
            subprocess.run([*base, "delete", "--force", cid], capture_output=True)
            return 1
        mac = _ip("-o", "link", "show", dev).stdout.split("link/ether ")[-1].split()[0]
        addrs = [ln.split()[3] for ln in _ip("-o", "-4", "addr", "show", "dev", dev, "scope", "global").stdout.splitlines()
                 if "dynamic" not in ln]
        r = _ip("link", "set", "dev", dev, "netns", str(pid), "name", new)
        if r.returncode != 0:
            print(f"netDevices: moving {dev}: {r.stderr.strip()}", file=sys.stderr)
            subprocess.run([*base, "delete", "--force", cid], capture_output=True)
            return 1
        name = next(ln.split(":")[1].strip().split("@")[0] for ln in _ip("-o", "link", "show", pid=pid).stdout.splitlines()
                    if f"link/ether {mac}" in ln)
        for a in addrs:
            _ip("addr", "add", a, "dev", name, pid=pid)
        _ip("link", "set", name, "up", pid=pid)
    return 0


# The wrapper changing nothing: the self-test's baseline runs the killers
# through it, so that a kill is the mutation's doing, not the wrapper's.
IDENTITY = "identity"

STASH = ".mutant-poststart.json"


def _poststart_at_start(name: str, real: str, rest: list[str], sub: str, sub_args: list[str], cfg_path: str) -> None:
    """At create, take the poststart hooks out of config.json (into the bundle);
    at start, run them first, before the real start."""
    if sub == "create" and os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
        hooks = cfg.get("hooks", {}).pop("poststart", [])
        with open(os.path.join(os.path.dirname(cfg_path), STASH), "w") as f:
            json.dump(hooks, f)
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
    elif sub == "start":
        root = _global(rest, "--root")
        base = [real, *(["--root", root] if root else [])]
        out = subprocess.run([*base, "state", container_id(sub_args)], capture_output=True, text=True).stdout
        st = json.loads(out or "{}")
        try:
            with open(os.path.join(st.get("bundle", "/nonexistent"), STASH)) as f:
                hooks = json.load(f)
        except (OSError, ValueError):
            hooks = []
        for h in hooks:
            env = dict(e.split("=", 1) for e in h.get("env", []) if "=" in e)
            subprocess.run(h.get("args") or [h["path"]], executable=h["path"], env=env, input=out, text=True,
                           timeout=h.get("timeout", 30))


def killers_table() -> str:
    """The mutants and the tests that kill each, as a Markdown table
    (``python3 conformance/mutants.py --killers``; conformance/README.md holds
    a copy that tests/unit/test_conformance_mutants.py keeps current)."""
    lines = ["| mutant | wraps | killed by |", "|---|---|---|"]
    for name, ids in KILLERS.items():
        lines.append(f"| `{name}` | {BASE.get(name, 'runc')} | {', '.join(f'`{t}`' for t in ids)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--killers"]:
        sys.stdout.write(killers_table())
        return 0
    if len(argv) < 2 or argv[0] not in (*MUTATIONS, *BEHAVIOURS, *ORACLES, IDENTITY):
        print(f"usage: mutants.py MUTANT RUNTIME [ARGS...] | mutants.py --killers; mutants: {', '.join(KILLERS)}, {IDENTITY}; "
              f"oracles: {', '.join(ORACLES)}", file=sys.stderr)
        return 2
    name, real, rest = argv[0], argv[1], argv[2:]
    sub, sub_args = split_command(rest)
    cfg_path = os.path.join(bundle_dir(sub_args), "config.json")
    if name == "netdevices" and sub == "create" and os.path.exists(cfg_path):
        return _netdevices_create(real, rest, sub_args, cfg_path)
    if sub in ("create", "run") and name in MUTATIONS and os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
        try:
            MUTATIONS[name](cfg)
        except Refuse as e:
            print(f"mutant {name}: {e}", file=sys.stderr)
            return 1
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
    if name == "poststart-at-start":
        _poststart_at_start(name, real, rest, sub, sub_args, cfg_path)
    if name == "leak-process" and sub in ("create", "run"):
        _leak_process()
    if name == "leak-cgroup" and sub == "create":
        rc = subprocess.run([real, *rest]).returncode
        try:
            with open(cfg_path) as f:
                cg = json.load(f).get("linux", {}).get("cgroupsPath")
        except (OSError, ValueError):
            cg = None
        if rc != 0 and cg:
            for d in _cgroup_dirs(cg):
                os.makedirs(d, exist_ok=True)
        return rc
    if name == "leak-mount" and sub == "create":
        rc = subprocess.run([real, *rest]).returncode
        if rc != 0:
            leak = os.path.join(bundle_dir(sub_args), "leaked-mount")
            os.makedirs(leak, exist_ok=True)
            subprocess.run(["mount", "-t", "tmpfs", "leak", leak], check=False)
        return rc
    if name == "keep-state" and sub == "delete" and "--force" not in sub_args and "-f" not in sub_args:
        return 0  # claims success, deletes nothing
    os.execvp(real, [real, *rest])
    return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
