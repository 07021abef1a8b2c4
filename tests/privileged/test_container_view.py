"""What a container sees from inside: config.md ``process``, ``hostname``, ``mounts``, ``root``;
config-linux.md ``namespaces``, ``devices``, ``maskedPaths``, ``readonlyPaths``;
runtime-linux.md ``/dev`` symlinks; RUNC-CLI.md ``run`` exit status (issue 2, point 11).

Each test runs a real container with ``run`` (terminal false, so the container writes to
the runtime's own stdout) and parses what it printed.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

# Capability numbers from linux/capability.h; a table of our own so the tests do not
# trust the runtime's.
CAP_NUMBERS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
    "CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
    "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
with open("/proc/sys/kernel/cap_last_cap") as _f:
    CAP_LAST = int(_f.read())
with open("/proc/self/status") as _f:
    HOST_BND = int(next(ln for ln in _f if ln.startswith("CapBnd:")).split()[1], 16)
# Every capability the kernel knows and our own bounding set still holds: the test harness
# may run us without some (CAP_SYS_RESOURCE here), and nobody can grant what it lacks.
ALL_CAPS = [n for n, v in CAP_NUMBERS.items() if v <= CAP_LAST and HOST_BND >> v & 1]
MISSING_CAPS = [n for n, v in CAP_NUMBERS.items() if v <= CAP_LAST and not HOST_BND >> v & 1]

STATUS_SCRIPT = "grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs):' /proc/self/status"


def mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n]
    return m


def parse_status(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = " ".join(v.split())
    return out


def parse_mountinfo(text: str) -> dict[str, dict[str, Any]]:
    """Mount point -> {fstype, opts (per-mount), super (per-superblock)}; the last mount on a
    point wins, as the kernel's lookup does."""
    mounts: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 10 or "-" not in f:
            continue
        sep = f.index("-")
        mounts[f[4]] = {
            "root": f[3],
            "opts": set(f[5].split(",")),
            "fstype": f[sep + 1],
            "super": set(f[sep + 3].split(",")),
        }
    return mounts


def set_caps(**sets: list[str]) -> Any:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["capabilities"] = {k: list(v) for k, v in sets.items()}

    return mutate


# -- pid 1, hostname -----------------------------------------------------------------------

def test_user_process_is_pid_1(lab: Any) -> None:
    out = lab.sh("echo $$; cut -d' ' -f1 /proc/self/stat; cut -d' ' -f4 /proc/1/stat")
    pid, stat_pid, ppid = out.split()
    assert pid == "1"
    assert stat_pid != "1"  # `cut` itself, a child of pid 1
    assert ppid == "0"


def test_hostname(lab: Any) -> None:
    out = lab.sh("hostname; cat /proc/sys/kernel/hostname", lambda c: c.update(hostname="box-42"))
    assert out.split() == ["box-42", "box-42"]


@pytest.mark.runc_differs  # runc 1.1.5 predates `domainname` (spec v1.1.0) and ignores it
def test_domainname(lab: Any) -> None:
    out = lab.sh("cat /proc/sys/kernel/domainname", lambda c: c.update(domainname="example.test"))
    assert out.strip() == "example.test"


def test_default_hostname(lab: Any) -> None:
    assert lab.sh("hostname").strip() == "ocitest"


# -- /proc/self/status: ids, capabilities, no_new_privs -------------------------------------

CAP_CASES = {
    # The runc template: ambient is listed but not inheritable, and the kernel only keeps an
    # ambient capability that is both permitted and inheritable.
    "template": (
        None,
        {"CapBnd": mask(
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
         "CapEff": mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
         "CapPrm": mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]),
         "CapInh": 0, "CapAmb": 0},
    ),
    "all": (
        set_caps(bounding=ALL_CAPS, effective=ALL_CAPS, permitted=ALL_CAPS,
                 inheritable=ALL_CAPS, ambient=ALL_CAPS),
        {k: mask(ALL_CAPS) for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")},
    ),
    "none": (
        set_caps(bounding=[], effective=[], permitted=[], inheritable=[], ambient=[]),
        {k: 0 for k in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb")},
    ),
    # For uid 0, execve(2) makes effective = permitted whatever was configured, and with
    # no_new_privs the permitted set cannot grow past what the runtime set before exec.
    "split": (
        set_caps(bounding=["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"], effective=["CAP_KILL", "CAP_SETUID"],
                 permitted=["CAP_KILL", "CAP_SETUID"], inheritable=["CAP_CHOWN"], ambient=[]),
        {"CapBnd": mask(["CAP_CHOWN", "CAP_KILL", "CAP_SETUID"]), "CapEff": mask(["CAP_KILL", "CAP_SETUID"]),
         "CapPrm": mask(["CAP_KILL", "CAP_SETUID"]), "CapInh": mask(["CAP_CHOWN"]), "CapAmb": 0},
    ),
}


@pytest.mark.parametrize("case", sorted(CAP_CASES))
def test_capability_sets_as_root(lab: Any, case: str) -> None:
    mutate, want = CAP_CASES[case]
    st = parse_status(lab.sh(STATUS_SCRIPT, mutate))
    got = {k: int(st[k], 16) for k in want}
    assert got == want, {k: (hex(got[k]), hex(want[k])) for k in want if got[k] != want[k]}
    assert st["Uid"] == "0 0 0 0" and st["Gid"] == "0 0 0 0"


@pytest.mark.runc_differs  # runc 1.1.5 fails with "unable to apply caps"
@pytest.mark.skipif(not MISSING_CAPS, reason="our bounding set holds every capability")
def test_capability_that_cannot_be_granted_is_a_warning(lab: Any) -> None:
    # config.md (v1.1.0+): unknown or ungrantable capabilities MUST be warned about and
    # SHOULD NOT make the runtime fail.
    every = ALL_CAPS + MISSING_CAPS
    r = lab.run_args(["sh", "-c", STATUS_SCRIPT], set_caps(bounding=every, effective=every, permitted=every))
    assert r.returncode == 0, r
    assert int(parse_status(r.stdout)["CapBnd"], 16) == mask(ALL_CAPS)


def test_ambient_capability_survives_for_unprivileged_user(lab: Any) -> None:
    nbs = ["CAP_NET_BIND_SERVICE"]

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
        cfg["process"]["capabilities"] = {
            "bounding": nbs + ["CAP_KILL"], "effective": nbs, "permitted": nbs,
            "inheritable": nbs, "ambient": nbs,
        }

    st = parse_status(lab.sh(STATUS_SCRIPT, mutate))
    assert st["Uid"] == "1000 1000 1000 1000"
    assert int(st["CapEff"], 16) == mask(nbs)
    assert int(st["CapPrm"], 16) == mask(nbs)
    assert int(st["CapInh"], 16) == mask(nbs)
    assert int(st["CapAmb"], 16) == mask(nbs)
    assert int(st["CapBnd"], 16) == mask(nbs + ["CAP_KILL"])


def test_unprivileged_user_without_ambient_has_no_effective_caps(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}

    st = parse_status(lab.sh(STATUS_SCRIPT, mutate))
    assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
    assert int(st["CapBnd"], 16) == mask(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"])


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(lab: Any, nnp: bool) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["noNewPrivileges"] = nnp

    st = parse_status(lab.sh(STATUS_SCRIPT, mutate))
    assert st["NoNewPrivs"] == ("1" if nnp else "0")


def test_uid_gid_and_additional_gids(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [10, 20, 1000]}

    out = lab.sh(STATUS_SCRIPT + "; id -u; id -g", mutate)
    st = parse_status(out)
    assert st["Uid"] == "1000 1000 1000 1000"
    assert st["Gid"] == "1001 1001 1001 1001"
    assert sorted(st["Groups"].split(), key=int) == ["10", "20", "1000"]
    assert out.split()[-2:] == ["1000", "1001"]


def test_root_has_no_supplementary_groups_unless_configured(lab: Any) -> None:
    st = parse_status(lab.sh(STATUS_SCRIPT))
    assert st["Groups"] == ""


# -- mounts ----------------------------------------------------------------------------------

def test_mountinfo_flags(lab: Any, tmp_path: Any) -> None:
    src = tmp_path / "bindsrc"
    src.mkdir()
    (src / "hello").write_text("hi\n")

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["mounts"] += [
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "nodev", "noexec", "mode=1777", "size=1m"]},
            {"destination": "/mnt", "type": "none", "source": str(src), "options": ["bind", "ro"]},
        ]

    out = lab.sh("cat /mnt/hello; cat /proc/self/mountinfo", mutate)
    assert out.startswith("hi\n")
    m = parse_mountinfo(out)
    assert "ro" in m["/"]["opts"]
    for point in ("/dev/shm", "/dev/mqueue", "/sys", "/tmp"):
        assert {"nosuid", "nodev", "noexec"} <= m[point]["opts"], (point, m[point])
    assert "ro" in m["/sys"]["opts"]
    assert {"nosuid", "noexec"} <= m["/dev/pts"]["opts"]
    assert "nosuid" in m["/dev"]["opts"]
    assert m["/proc"]["fstype"] == "proc"
    assert m["/dev"]["fstype"] == "tmpfs" and "mode=755" in m["/dev"]["super"]
    assert m["/dev/pts"]["fstype"] == "devpts"
    assert {"gid=5", "mode=620", "ptmxmode=666"} <= m["/dev/pts"]["super"]
    assert m["/tmp"]["fstype"] == "tmpfs" and "size=1024k" in m["/tmp"]["super"]
    assert "ro" in m["/mnt"]["opts"]
    assert "ro" in m["/sys/fs/cgroup"]["opts"] or all(
        "ro" in v["opts"] for k, v in m.items() if k.startswith("/sys/fs/cgroup/")
    )


def test_writable_root_when_not_readonly(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["root"]["readonly"] = False

    out = lab.sh("echo data > /tmp/f && cat /tmp/f && awk '$5 == \"/\"' /proc/self/mountinfo",
                 mutate, private_rootfs=True)
    lines = out.splitlines()
    assert lines[0] == "data"
    assert "rw" in lines[1].split()[5].split(",")


def test_readonly_root_refuses_writes(lab: Any) -> None:
    r = lab.run_args(["sh", "-c", "touch /newfile"])
    assert r.returncode != 0
    assert "Read-only file system" in r.stderr


def test_readonly_paths(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["mounts"].append({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                              "options": ["nosuid", "nodev", "mode=755"]})
        cfg["linux"]["readonlyPaths"] += ["/mnt", "/does/not/exist"]

    script = ("touch /mnt/x; echo rc=$?; echo 1 > /proc/sys/kernel/hostname;"
              " echo rc=$?; cat /proc/self/mountinfo")
    r = lab.run_args(["sh", "-c", script], mutate)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0] != "rc=0" and lines[1] != "rc=0"
    assert "Read-only file system" in r.stderr
    m = parse_mountinfo(r.stdout)
    assert "ro" in m["/mnt"]["opts"] and "ro" in m["/proc/sys"]["opts"]
    # Read-only paths keep the flags of the mount they sit on.
    assert {"nosuid", "nodev"} <= m["/mnt"]["opts"]


def test_masked_paths(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["maskedPaths"] += ["/proc/cpuinfo", "/proc/driver", "/no/such/path"]

    out = lab.sh(
        "echo keys=$(wc -c < /proc/keys); echo cpuinfo=$(wc -c < /proc/cpuinfo);"
        " echo driver=$(ls -A /proc/driver | wc -l); echo firmware=$(ls -A /sys/firmware | wc -l);"
        " touch /proc/driver/x 2>/dev/null; echo touch=$?", mutate)
    got = dict(line.split("=", 1) for line in out.split())
    assert got["keys"] == "0" and got["cpuinfo"] == "0"
    assert got["driver"] == "0" and got["firmware"] == "0"
    assert got["touch"] != "0"  # a masked directory is read-only


# -- process attributes ----------------------------------------------------------------------

def test_rlimits(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["rlimits"] = [
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
            {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        ]

    out = lab.sh("ulimit -n; ulimit -Hn; cat /proc/self/limits", mutate)
    lines = out.splitlines()
    assert lines[:2] == ["512", "1024"]
    limits = {ln[:26].strip(): ln[26:].split()[:2] for ln in lines[3:]}
    assert limits["Max open files"] == ["512", "1024"]
    assert limits["Max processes"] == ["300", "400"]
    assert limits["Max core file size"] == ["0", "0"]


@pytest.mark.runc_differs  # runc 1.1.5 ignores process.user.umask and always sets 0022
@pytest.mark.parametrize("umask", [0o027, 0o077, 0o002])
def test_umask(lab: Any, umask: int) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"]["umask"] = umask

    assert lab.sh("umask", mutate).strip() == f"{umask:04o}"


def _passwd_home(uid: int) -> str:
    from bundle import PASSWD

    for line in PASSWD.splitlines():
        f = line.split(":")
        if int(f[2]) == uid:
            return f[5]
    raise KeyError(uid)


@pytest.mark.parametrize("uid", [0, 1000])
def test_env_is_exactly_the_configured_one(lab: Any, uid: int) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": uid, "gid": uid}
        cfg["process"]["env"] += ["WITH_EQ=a=b", "SPACED=x y  z", "EMPTY="]

    b = lab.bundle(["env"], mutate)
    r = lab.run(b)
    assert r.returncode == 0, r
    got = r.stdout.splitlines()
    want = b.config["process"]["env"]
    extra = sorted(set(got) - set(want))
    assert sorted(set(want) - set(got)) == []
    # runc adds HOME from the container's /etc/passwd when the config has none.
    assert extra in ([], [f"HOME={_passwd_home(uid)}"])
    assert len(got) == len(set(got))


def test_env_home_is_not_overridden(lab: Any) -> None:
    b = lab.bundle(["env"], lambda c: c["process"]["env"].append("HOME=/elsewhere"))
    got = lab.run(b).ok().stdout.splitlines()
    assert [e for e in got if e.startswith("HOME=")] == ["HOME=/elsewhere"]


@pytest.mark.parametrize("cwd", ["/", "/tmp", "/proc/self"])
def test_cwd(lab: Any, cwd: str) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["cwd"] = cwd

    out = lab.run_args(["pwd"], mutate).ok().stdout.strip()
    assert out == ("/proc/1" if cwd == "/proc/self" else cwd) or out == cwd


# -- /dev --------------------------------------------------------------------------------------

DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}
DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


def test_dev_nodes_and_symlinks(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["devices"] = [
            {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
             "fileMode": 0o640, "uid": 1000, "gid": 1000},
        ]

    names = " ".join(f"/dev/{n}" for n in [*DEFAULT_DEVICES, "mynull"])
    links = " ".join(f"/dev/{n}" for n in DEV_SYMLINKS)
    out = lab.sh(
        f"for f in {names}; do stat -c '%n %F %t %T %a %u %g' $f; done;"
        f" for l in {links}; do echo \"$l -> $(readlink $l)\"; done;"
        " for d in /dev/pts /dev/shm /dev/mqueue; do stat -c '%n %F' $d; done",
        mutate,
    )
    seen = {}
    for line in out.splitlines():
        if " -> " in line:
            name, target = line.split(" -> ")
            seen[name] = target
        else:
            parts = line.split()
            seen[parts[0]] = parts[1:]
    for name, (major, minor) in DEFAULT_DEVICES.items():
        f = seen[f"/dev/{name}"]
        assert " ".join(f[:3]) == "character special file", (name, f)
        assert (int(f[3], 16), int(f[4], 16)) == (major, minor), (name, f)
        assert f[5] == "666", (name, f)
    my = seen["/dev/mynull"]
    assert (int(my[3], 16), int(my[4], 16)) == (1, 3) and my[5:] == ["640", "1000", "1000"]
    for name, target in DEV_SYMLINKS.items():
        assert seen[f"/dev/{name}"] == target
    for d in ("/dev/pts", "/dev/shm", "/dev/mqueue"):
        assert seen[d] == ["directory"]


# -- namespaces --------------------------------------------------------------------------------

NS_FILES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
            "cgroup": "cgroup", "user": "user"}


@pytest.mark.parametrize("with_cgroup_ns", [False, True])
def test_namespaces_differ_from_host(lab: Any, with_cgroup_ns: bool) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        if with_cgroup_ns:
            cfg["linux"]["namespaces"].append({"type": "cgroup"})

    files = " ".join(NS_FILES.values())
    out = lab.sh(f"for n in {files}; do echo $n $(readlink /proc/self/ns/$n); done", mutate)
    inside = dict(line.split() for line in out.splitlines())
    requested = {"pid", "network", "ipc", "uts", "mount"} | ({"cgroup"} if with_cgroup_ns else set())
    for kind, f in NS_FILES.items():
        host = os.readlink(f"/proc/self/ns/{f}")
        if kind in requested:
            assert inside[f] != host, f"{kind} namespace is the host's"
        else:
            assert inside[f] == host, f"{kind} namespace was not requested but is new"


# -- exit status -------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 3, 42])
def test_run_exit_status_is_the_containers(lab: Any, code: int) -> None:
    r = lab.run_args(["sh", "-c", f"exit {code}"])
    assert r.returncode == code, r


def test_run_exit_status_of_killed_container(lab: Any) -> None:
    b = lab.bundle(["sleep", "1000"])
    cid = lab.new_id()
    with open(os.path.join(lab.workdir, "killed.out"), "wb") as out:
        p = lab.popen("run", "--bundle", b.path, cid, stdout=out, stderr=subprocess.STDOUT)
    lab.wait_status(cid, "running")
    lab.cli("kill", cid, "KILL").ok()
    assert p.wait(timeout=20) == 128 + 9
    # The foreground run deletes its container once it has exited.
    assert "does not exist" in lab.cli("state", cid).stderr


def test_only_stdio_fds_reach_the_container(lab: Any) -> None:
    # runtime-linux.md#file-descriptors: by default only 0, 1 and 2.
    # `; true` keeps sh as pid 1: without it sh would exec ls, whose own directory fd shows.
    assert lab.sh("ls /proc/1/fd; true").split() == ["0", "1", "2"]
