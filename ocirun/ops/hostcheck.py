"""``ocirun check``: what this host can do for a config (read-only probes).

A config can be valid and still fail here: a namespace the kernel lacks, a
capability outside the runtime's bounding set or unknown to the kernel, a
cgroup controller or layout that is missing, a seccomp architecture that is
not this machine's, an LSM that is off, a hook program or the container's
program that is not there.  Each probe reads /proc, /sys or the bundle and
returns findings; nothing is created, mounted or joined.  ``proc`` and
``sys_root`` are parameters so tests can point them at fixtures.
"""

from __future__ import annotations

import os

from ocirun.config.explain import ERROR, MUST, NOTE, PORTABILITY, SHOULD, WARNING, Finding
from ocirun.errors import OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# linux.resources key -> the controller it needs: (cgroup v1 name, cgroup v2 name or "").
CONTROLLERS: dict[str, tuple[str, str]] = {
    "memory": ("memory", "memory"),
    "cpu": ("cpu", "cpu"),
    "pids": ("pids", "pids"),
    "blockIO": ("blkio", "io"),
    "hugepageLimits": ("hugetlb", "hugetlb"),
    "network": ("net_cls", ""),
    "rdma": ("rdma", "rdma"),
}
# uname -m -> the seccomp architectures whose processes can run here.
NATIVE_ARCHES: dict[str, tuple[str, ...]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}


def _obj(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def namespaces(spec: dict[str, Any], proc: str = "/proc") -> list[Finding]:
    from ocirun.procfs import NS_LINK_NAMES
    out: list[Finding] = []
    for i, entry in enumerate(_list(_obj(spec.get("linux")).get("namespaces"))):
        kind = _obj(entry).get("type")
        if not isinstance(kind, str) or kind not in NS_LINK_NAMES or _obj(entry).get("path"):
            continue
        where = f"$.linux.namespaces[{i}].type"
        link = f"{proc}/self/ns/{NS_LINK_NAMES[kind]}"
        if not os.path.lexists(link):
            out.append(Finding(where, f"this kernel has no {kind} namespace (no {link})", severity=ERROR,
                               level=MUST, source="host",
                               fix=f"remove it from linux.namespaces, or use a kernel built with {kind} "
                                   "namespaces"))
        elif kind == "user" and (_read(f"{proc}/sys/user/max_user_namespaces") or "").strip() == "0":
            out.append(Finding(where, "user namespaces are disabled on this host "
                                      "(/proc/sys/user/max_user_namespaces is 0)",
                               severity=ERROR, level=MUST, source="host",
                               fix="raise user.max_user_namespaces (sysctl), or remove the user namespace"))
    return out


def capabilities(spec: dict[str, Any], proc: str = "/proc") -> list[Finding]:
    from ocirun.capabilities import KNOWN_CAPABILITIES, SET_NAMES, own_bounding_set
    text = _read(f"{proc}/sys/kernel/cap_last_cap")
    last = int(text) if text and text.strip().isdigit() else max(KNOWN_CAPABILITIES.values())
    bounding = own_bounding_set(f"{proc}/self/status")
    caps = _obj(_obj(spec.get("process")).get("capabilities"))
    out: list[Finding] = []
    reported: set[str] = set()
    for set_name in SET_NAMES:
        for i, name in enumerate(_list(caps.get(set_name))):
            number = KNOWN_CAPABILITIES.get(name) if isinstance(name, str) else None
            if number is None or name in reported:
                continue  # unknown names: the meaning checks' warning
            where = f"$.process.capabilities.{set_name}[{i}]"
            if number > last:
                reported.add(name)
                out.append(Finding(where, f"{name} is newer than this kernel (its last capability is "
                                          f"number {last}): it is left out, with a warning",
                                   severity=WARNING, level=SHOULD, source="host",
                                   fix="remove it, or run on a kernel that has it"))
            elif bounding is not None and not bounding >> number & 1:
                reported.add(name)
                out.append(Finding(where, f"{name} is not in ocirun's bounding set here, so it cannot "
                                          "be granted: ocirun leaves it out with a warning, runc 1.1.5 "
                                          "fails (EPERM)",
                                   severity=WARNING, level=SHOULD, source="host",
                                   fix="remove it, or run the runtime with that capability"))
    return out


def cgroups(spec: dict[str, Any], sys_root: str = "/sys/fs/cgroup",
            mountinfo: str = "/proc/self/mountinfo") -> list[Finding]:
    from ocirun.cgroups import detect
    from ocirun.cgroups.paths import check_cgroups_path
    linux = _obj(spec.get("linux"))
    out: list[Finding] = []
    path = linux.get("cgroupsPath")
    try:
        check_cgroups_path(path if isinstance(path, str) else None, "check")
    except OciRunError as e:
        out.append(Finding("$.linux.cgroupsPath", e.msg, severity=ERROR, level=MUST, source="host",
                           fix="use a path such as /mycontainers/c1 (or relative to ocirun's own cgroup)"))
    try:
        mounts = detect.read_cgroup_mounts(sys_root, mountinfo)
        mode = detect.mode_of(mounts, sys_root)
    except OciRunError as e:
        return out + [Finding("$.linux", e.msg, severity=ERROR, level=MUST, source="host",
                              fix="mount cgroup2 (or the v1 controllers) under /sys/fs/cgroup")]
    v2_ctrls: set[str] = set()
    v1_ctrls: set[str] = set()
    for m in mounts:
        if m.version == 2:
            v2_ctrls |= set((_read(os.path.join(m.mountpoint, "cgroup.controllers")) or "").split())
        else:
            v1_ctrls |= set(m.options)
    resources = _obj(linux.get("resources"))
    for key, (v1, v2) in CONTROLLERS.items():
        if not resources.get(key):
            continue
        have = v2 in v2_ctrls if mode == "unified" else v1 in v1_ctrls or (bool(v2) and v2 in v2_ctrls)
        if not have:
            want = v2 if mode == "unified" else v1
            what = f"the {want} controller" if want else "a controller (cgroup v2 has none for it)"
            out.append(Finding(f"$.linux.resources.{key}", f"this host ({mode} cgroups) lacks {what}",
                               severity=ERROR, level=MUST, source="host",
                               fix="remove the limit, or enable the controller on the host"))
    if resources.get("unified") and mode == "legacy":
        out.append(Finding("$.linux.resources.unified", "this host has no cgroup v2 hierarchy",
                           severity=ERROR, level=MUST, source="host",
                           fix="use the v1 fields (memory, cpu, ...), or run on a cgroup v2 host"))
    rules = [r for r in _list(resources.get("devices")) if isinstance(r, dict)]
    if rules and mode == "unified":
        out.append(Finding("$.linux.resources.devices", "device rules on cgroup v2 need an eBPF program, "
                                                        "which ocirun cannot load yet",
                           severity=ERROR, level=PORTABILITY, source="host",
                           fix="remove linux.resources.devices (the default devices stay available), "
                               "or use runc or crun on this host"))
    if mode == "hybrid" and v2_ctrls:
        out.append(Finding("$.linux", f"hybrid cgroup host whose cgroup2 mount holds controllers "
                                      f"({', '.join(sorted(v2_ctrls))}): crun 1.8.1 refuses to run "
                                      "anything here; runc 1.1.5 and ocirun do",
                           severity=NOTE, level=PORTABILITY, source="runtimes",
                           section="config-linux.md#control-groups",
                           fix="nothing to change in the config; crun needs a pure v1 or v2 host"))
    return out


def seccomp(spec: dict[str, Any], proc: str = "/proc") -> list[Finding]:
    sc = _obj(spec.get("linux")).get("seccomp")
    if not isinstance(sc, dict):
        return []
    out: list[Finding] = []
    status = _read(f"{proc}/self/status") or ""
    if "\nSeccomp:" not in "\n" + status:
        out.append(Finding("$.linux.seccomp", "this kernel has no seccomp support", severity=ERROR,
                           level=MUST, source="host",
                           fix="remove linux.seccomp, or use a kernel built with CONFIG_SECCOMP_FILTER"))
    machine = os.uname().machine
    native = NATIVE_ARCHES.get(machine, ())
    for i, arch in enumerate(_list(sc.get("architectures"))):
        if native and arch not in native:
            out.append(Finding(f"$.linux.seccomp.architectures[{i}]",
                               f"{arch} is not an architecture this {machine} host runs: its rules never "
                               "apply here", severity=NOTE, level=PORTABILITY, source="host",
                               fix="keep it if the same config serves other machines"))
    return out


def lsm(spec: dict[str, Any], sys_root: str = "/sys") -> list[Finding]:
    process = _obj(spec.get("process"))
    linux = _obj(spec.get("linux"))
    out: list[Finding] = []
    apparmor = (_read(f"{sys_root}/module/apparmor/parameters/enabled") or "").strip() == "Y"
    selinux = os.path.exists(f"{sys_root}/fs/selinux/enforce")
    if process.get("apparmorProfile") and not apparmor:
        out.append(Finding("$.process.apparmorProfile", "AppArmor is off on this host: ocirun "
                           "refuses the profile (runc 1.1.5 fails on it too)",
                           severity=ERROR, level=PORTABILITY, source="host",
                           fix="remove apparmorProfile here, or enable AppArmor"))
    for where, value in (("$.process.selinuxLabel", process.get("selinuxLabel")),
                         ("$.linux.mountLabel", linux.get("mountLabel"))):
        if value and not selinux:
            out.append(Finding(where, "SELinux is off on this host: ocirun refuses the label "
                                      "(runc 1.1.5 fails on it too)",
                               severity=ERROR, level=PORTABILITY, source="host",
                               fix="remove the label here, or enable SELinux"))
    return out


def hooks(spec: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for kind, entries in _obj(spec.get("hooks")).items():
        for i, hook in enumerate(_list(entries)):
            path = _obj(hook).get("path")
            if not isinstance(path, str) or not path.startswith("/"):
                continue  # the meaning checks report it
            if not os.path.isfile(path) or not os.access(path, os.X_OK):
                why = "is not an executable file" if os.path.exists(path) else "does not exist"
                out.append(Finding(f"$.hooks.{kind}[{i}].path", f"`{path}` {why} on this host (hooks run "
                                                               "in the runtime's namespaces)",
                                   severity=ERROR, level=MUST, source="host",
                                   fix="install the hook program there, or correct the path"))
    return out


def program(spec: dict[str, Any], bundle: str) -> list[Finding]:
    """process.args[0] is found in the rootfs as the init will look for it (execvp's
    lookup along the last PATH= of process.env).  Not judged when a mount may bring it."""
    from ocirun.pathres import resolve_in_root
    process = _obj(spec.get("process"))
    args = _list(process.get("args"))
    root = _obj(spec.get("root")).get("path")
    if not args or not isinstance(args[0], str) or not args[0] or not isinstance(root, str):
        return []
    rootfs = os.path.join(bundle, root)
    name = args[0]
    if "/" in name:
        candidates = [os.path.join(str(process.get("cwd") or "/"), name)]
    else:
        env_path = next((e[5:] for e in reversed(_list(process.get("env")))
                         if isinstance(e, str) and e.startswith("PATH=")), "")
        candidates = [os.path.join(d, name) for d in env_path.split(":") if d.startswith("/")]
    dests = [str(_obj(m).get("destination") or "").rstrip("/") for m in _list(spec.get("mounts"))]
    for c in candidates:
        if any(d and (c + "/").startswith(d + "/") for d in dests):
            return []  # a mount may provide it: only the container can tell
        try:
            host = resolve_in_root(rootfs, c)
        except OSError:
            continue
        if os.path.isfile(host) and os.access(host, os.X_OK):
            return []
    where = "the rootfs" if "/" in name else "the rootfs along PATH of process.env"
    return [Finding("$.process.args[0]", f"{name!r} is not an executable file in {where} "
                                         f"(`{rootfs}`)",
                    severity=ERROR, level=MUST, source="bundle",
                    fix="put the program into the rootfs, or correct args[0] (or PATH in process.env)")]


def host_findings(spec: dict[str, Any], bundle: str) -> list[Finding]:
    return (namespaces(spec) + capabilities(spec) + cgroups(spec) + seccomp(spec) + lsm(spec)
            + hooks(spec) + program(spec, bundle))
