"""Attacks from inside a container, each of which must fail (issue 8 item 5).

The attacker is ``tests/fixtures/attack.c`` (static, copied into the
rootfs) or busybox.  Where a refusal could come from something other than
the defence under test, a control run shows the attempt succeeding once the
defence is lifted (the capability granted, no_new_privs off), so a pass
means the defence held.  Attacks covered elsewhere, not repeated here:
CVE-2019-5736 against ``exec``'s process and ``#!/proc/self/exe``, and a
leaked fd as ``cwd`` (test_exec.py); only stdio reaching the container
(test_container_view.py); a seccomp-denied call's errno and a killing rule
(test_seccomp_containers.py).  SECURITY.md maps each defence to its test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import bundle as bundle_mod
import pytest
import secenv
from bundle import DEFAULT_CAPS


@pytest.fixture(scope="session")
def attack(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = secenv.build_static("attack", str(tmp_path_factory.mktemp("attack")))
    if out is None:
        pytest.skip("cannot build a static binary here (apt-get install gcc libc6-dev)")
    return out


def results(out: str) -> dict[str, str]:
    """``what: outcome`` lines of the attack helper."""
    found = {}
    for line in out.splitlines():
        what, sep, outcome = line.partition(": ")
        if sep:
            found[what] = outcome
    return found


def with_caps(*names: str, nnp: bool = True) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        caps = DEFAULT_CAPS + list(names)
        cfg["process"]["capabilities"] = {k: list(caps) for k in
                                          ("bounding", "effective", "permitted")}
        cfg["process"]["noNewPrivileges"] = nnp
    return mutate


def armed(lab: Any, attack: str, args: list[str],
          mutate: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """A bundle with a private rootfs holding the attacker at /bin/attack."""
    b = lab.bundle(args, mutate, private_rootfs=True)
    shutil.copy(attack, os.path.join(b.rootfs, "bin", "attack"))
    return b


# -- the runtime's own process in the container ------------------------------------------


def _all_caps_but_ptrace(cfg: dict[str, Any]) -> None:
    from ocirun.capabilities import KNOWN_CAPABILITIES
    caps = [c for c in KNOWN_CAPABILITIES if c != "CAP_SYS_PTRACE"]
    cfg["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective",
                                                               "permitted")}
    cfg["process"]["noNewPrivileges"] = False


@pytest.mark.parametrize("caps", ["default", "all-but-ptrace"])
def test_parked_init_is_out_of_reach_before_start(lab: Any, attack: str, caps: str) -> None:
    """Between create and start, the container's pid 1 is the runtime itself
    (the host's Python, holding the exec FIFO).  A process joining the
    created container gets nothing of it: no exe (CVE-2019-5736), root, cwd,
    fds, environ or memory, and no ptrace, even with every capability but
    CAP_SYS_PTRACE: it made itself non-dumpable before entering anything."""
    b = armed(lab, attack, ["sleep", "1000"], _all_caps_but_ptrace if caps != "default" else None)
    cid = lab.new_id()
    lab.env["OCIRUN_TEST_SECRET"] = "s3cr3t-of-the-caller"
    try:
        lab.create(b, cid).ok()
    finally:
        del lab.env["OCIRUN_TEST_SECRET"]
    init = lab.state(cid)["pid"]
    r = lab.cli("exec", cid, "/bin/attack", "proc", "1")
    assert r.returncode == 0, r
    seen = results(r.stdout)
    for what in ("readlink exe", "readlink root", "readlink cwd", "readlink fds", "open exe",
                 "open mem", "open exe O_PATH", "open exe for writing"):
        assert seen.get(what) in ("EACCES", "EPERM"), (what, r.stdout)
    # environ opens for CAP_SYS_ADMIN or CAP_PERFMON even so: it holds nothing
    # of the caller, nor does the command line anyone may read
    r = lab.cli("exec", cid, "sh", "-c", "cat /proc/1/cmdline; echo; cat /proc/1/environ; true")
    assert r.returncode == 0, r
    assert "s3cr3t" not in r.stdout and "PATH=" not in r.stdout, r.stdout
    assert r.stdout.split("\0")[0] == "ocirun init", r.stdout
    assert b.path not in r.stdout and lab.root not in r.stdout, r.stdout
    r = lab.cli("exec", cid, "/bin/attack", "ptrace", "1")
    assert results(r.stdout)["ptrace"] == "EPERM", r
    with open(f"/proc/{init}/cmdline", "rb") as f:
        assert f.read().startswith(b"ocirun init")  # still the runtime, parked at the FIFO


def _all_caps(userns: bool) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        from ocirun.capabilities import KNOWN_CAPABILITIES
        cfg["process"]["capabilities"] = {k: list(KNOWN_CAPABILITIES)
                                          for k in ("bounding", "effective", "permitted")}
        cfg["process"]["noNewPrivileges"] = False
        if userns:
            cfg["linux"]["namespaces"].append({"type": "user"})
            m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            cfg["linux"]["uidMappings"] = m
            cfg["linux"]["gidMappings"] = m
    return mutate


@pytest.mark.parametrize("userns", [True, False], ids=["user-namespace", "host-user-namespace"])
def test_cap_sys_ptrace_reaches_the_parked_init_only_without_a_user_namespace(
        lab: Any, attack: str, userns: bool) -> None:
    """SECURITY.md's known limit, pinned both ways.  With a user namespace,
    every capability in it, CAP_SYS_PTRACE included, still does not reach the
    parked init: the kernel wants CAP_SYS_PTRACE in the user namespace the
    runtime's memory was made in (the host's) to pass non-dumpability.
    Without one, CAP_SYS_PTRACE of the host's namespace does reach it (its
    exe is the host's interpreter), and only ETXTBSY keeps it from being
    opened for writing while the runtime runs."""
    top = secenv.wide_dir("ocirun-attack-ptrace-")  # the mapped root must reach the rootfs
    cid = lab.new_id()
    try:
        rootfs = bundle_mod.build_rootfs(os.path.join(top, "rootfs"))
        shutil.copy(attack, os.path.join(rootfs, "bin", "attack"))

        def mutate(cfg: dict[str, Any]) -> None:
            cfg["process"]["env"].append(f"OCITEST={lab.token}")
            _all_caps(userns)(cfg)
        bundle_mod.write_bundle(top, rootfs, ["sleep", "1000"], mutate)
        lab.cli("create", "--bundle", top, cid).ok()
        r = lab.cli("exec", cid, "sh", "-c", "grep CapEff /proc/self/status; "
                    "/bin/attack proc 1; /bin/attack ptrace 1")
        assert r.returncode == 0, r
        eff = int(r.stdout.split("CapEff:")[1].split()[0], 16)
        assert eff & (1 << 19), r.stdout  # the attacker does hold CAP_SYS_PTRACE
        seen = results(r.stdout)
        if userns:
            for what in ("readlink exe", "readlink root", "readlink fds", "open exe", "open mem",
                         "open exe O_PATH", "open exe for writing", "ptrace"):
                assert seen.get(what) in ("EACCES", "EPERM"), (what, r.stdout)
        else:
            exe = seen["readlink exe"]  # the host's interpreter, not a file of the container
            assert exe.startswith("ok /") and "busybox" not in exe, r.stdout
            assert seen["open exe for writing"] == "ETXTBSY", r.stdout
    finally:
        lab.cli("delete", "--force", cid)
        shutil.rmtree(top, ignore_errors=True)


def test_after_start_pid_1_holds_nothing_of_the_host(lab: Any, attack: str) -> None:
    """After start, pid 1 is the container's program: tracing it (its own
    process, same uid: the kernel allows it, the control that the attempts
    before start were refused by non-dumpability) reaches only the
    container's binary and stdio."""
    b = armed(lab, attack, ["sleep", "1000"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    r = lab.cli("exec", cid, "/bin/attack", "ptrace", "1")
    assert results(r.stdout)["ptrace"] == "ok", r
    r = lab.cli("exec", cid, "/bin/attack", "proc", "1")
    seen = results(r.stdout)
    assert seen["readlink exe"] == "ok /bin/busybox", r.stdout
    assert seen["readlink root"] == "ok /", r.stdout
    r = lab.cli("exec", cid, "ls", "/proc/1/fd")
    assert r.stdout.split() == ["0", "1", "2"], r


# -- mount destinations and symlinks ----------------------------------------------------


@pytest.fixture
def host_target() -> Iterator[str]:
    """A host directory an attacker would like a mount on."""
    d = secenv.wide_dir("ocirun-attack-target-")
    with open(os.path.join(d, "precious"), "w") as f:
        f.write("host data\n")
    yield d
    subprocess.run(["umount", "-R", "-l", d], stderr=subprocess.DEVNULL, check=False)
    shutil.rmtree(d, ignore_errors=True)


def _hook_report(report: str) -> dict[str, Any]:
    """A createContainer hook: it runs in the container's mount namespace
    before pivot_root, where host paths still resolve, and records every
    mount there (what the container would get)."""
    return {"path": "/bin/sh", "args": ["sh", "-c", f"cat /proc/self/mountinfo >> {report}"]}


@pytest.mark.parametrize("link", ["absolute", "relative"])
def test_symlink_destination_stays_in_the_rootfs(lab: Any, host_target: str, tmp_path: Any,
                                                  link: str) -> None:
    """A destination whose path goes through a symlink of the image pointing
    out of the rootfs lands inside the rootfs."""
    report = str(tmp_path / "mounts")
    target = host_target if link == "absolute" else "../../../../../../../../.." + host_target

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["root"]["readonly"] = False
        cfg["mounts"].append({"destination": "/evil/x", "type": "tmpfs", "source": "ocirun-evil",
                              "options": ["size=1m"]})
        cfg["hooks"] = {"createContainer": [_hook_report(report)]}

    b = lab.bundle(["sh", "-c", "grep ocirun-evil /proc/self/mountinfo"], mutate,
                   private_rootfs=True)
    os.symlink(target, os.path.join(b.rootfs, "evil"))
    r = lab.run(b)
    assert r.returncode == 0, r
    with open(report) as f:
        mounts = [line.split()[4] for line in f if "ocirun-evil" in line]
    assert mounts == [os.path.realpath(b.rootfs) + host_target + "/x"], mounts
    assert os.listdir(host_target) == ["precious"]


def test_destination_raced_into_a_symlink_stays_in_the_rootfs(make_lab: Any,
                                                               runtime_cmd: list[str],
                                                               attack: str, host_target: str,
                                                               tmp_path: Any) -> None:
    """CVE-2021-30465's race: container A shares a volume with container B
    and swaps a directory there for a symlink to a host path, over and over,
    while B is created with a mount on that directory.  Whatever A does, B's
    mount must never land outside B's rootfs."""
    lab = make_lab(runtime_cmd)
    vol = secenv.wide_dir("ocirun-attack-vol-")
    try:
        os.mkdir(os.path.join(vol, "target"))
        os.symlink(host_target, os.path.join(vol, "link"))

        def share(cfg: dict[str, Any]) -> None:
            cfg["mounts"].append({"destination": "/vol", "type": "bind", "source": vol,
                                  "options": ["rbind", "rw"]})

        a = armed(lab, attack, ["/bin/attack", "swap", "/vol", "60"], share)
        racer = lab.new_id()
        r = lab.run(a, racer, "--detach").ok()
        deadline = time.monotonic() + 20
        while "swapping" not in r.stdout_now():
            assert time.monotonic() < deadline, r.stdout_now()
            time.sleep(0.05)
        report = str(tmp_path / "mounts")

        def victim(cfg: dict[str, Any]) -> None:
            share(cfg)
            cfg["mounts"].append({"destination": "/vol/target", "type": "tmpfs",
                                  "source": "ocirun-race", "options": ["size=1m"]})
            cfg["hooks"] = {"createContainer": [_hook_report(report)]}

        b = lab.bundle(["true"], victim)
        tries = failed = 0
        end = time.monotonic() + 25
        while time.monotonic() < end and tries < 60:
            cid = lab.new_id()
            c = lab.create(b, cid)
            tries += 1
            if c.returncode != 0:
                failed += 1  # refused (a symlink appeared): fine, nothing was mounted
            lab.cli("delete", "--force", cid)
        with open(report) if os.path.exists(report) else open(os.devnull) as f:
            points = [line.split()[4] for line in f if "ocirun-race" in line]
        escaped = [p for p in points if p.startswith(host_target)]
        assert not escaped, f"{len(escaped)} of {tries} creates mounted on the host path"
        assert os.listdir(host_target) == ["precious"]
        assert len(points) + failed >= tries, (points, failed, tries)
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", vol], check=False)


# -- host fds leaked into the runtime (CVE-2024-21626's pattern) -------------------------

LEAKED = tuple(range(3, 10))  # every fd a leak could sit at; the script uses 5
FD_SCRIPT = ("ls -1 /proc/$$/fd; echo END; cat /proc/$$/fd/5/precious 2>&1; "
             "ls /proc/self/fd/5/ 2>&1; pwd; true")


def _with_leaked_dir(lab: Any, host_dir: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The runtime run with a directory fd of the host at each of fds 3-9,
    inheritable: what a careless caller leaks, or what a runtime itself held
    (runc's fd of /sys/fs/cgroup in CVE-2024-21626)."""
    fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)

    def place() -> None:
        for n in LEAKED:
            os.dup2(fd, n, inheritable=True)
    try:
        return subprocess.run(argv, env=lab.env, pass_fds=LEAKED, preexec_fn=place,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60, cwd=lab.workdir, check=False)
    finally:
        os.close(fd)


def _leak_target(lab: Any, how: str, cwd: str | None, preserve: bool,
                 host_dir: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``run`` of a container, or ``exec`` into a running one, with the host
    directory leaked at fds 3-9 (passed on purpose with --preserve-fds when
    ``preserve``) and the process's cwd set to ``cwd``."""
    flags = ["--preserve-fds", str(len(LEAKED))] if preserve else []
    cid = lab.new_id()
    if how == "exec":
        lab.run(lab.bundle(["sleep", "1000"]), cid, "--detach").ok()
        cwd_flag = ["--cwd", cwd] if cwd else []
        argv = lab.argv("exec", *flags, *cwd_flag, cid, "sh", "-c", FD_SCRIPT)
    else:
        def mutate(cfg: dict[str, Any]) -> None:
            if cwd:
                cfg["process"]["cwd"] = cwd
        b = lab.bundle(["sh", "-c", FD_SCRIPT], mutate)
        argv = lab.argv("run", "--bundle", b.path, *flags, cid)
    return _with_leaked_dir(lab, host_dir, argv), cid


@pytest.mark.parametrize("how", ["run", "exec"])
def test_leaked_host_fd_is_closed_before_the_container_sees_it(lab: Any, host_target: str,
                                                                how: str) -> None:
    """A host directory fd the runtime inherited without --preserve-fds is
    closed first thing in the init / exec's process (N1, T1): a cwd of
    /proc/self/fd/5 finds no fd 5 (ENOENT at chdir, before the check that
    the cwd lies in the root would be needed), and the container's process
    holds only stdio: /proc/self/fd/5 reaches nothing of the host."""
    r, cid = _leak_target(lab, how, "/proc/self/fd/5", False, host_target)
    assert r.returncode != 0, r
    assert "chdir to cwd ('/proc/self/fd/5')" in r.stderr, r
    assert "outside the container's root" not in r.stderr, r  # N1/T1 held on their own
    assert "host data" not in r.stdout, r
    if how == "run":
        assert lab.leftovers(cid) == []
    r, _ = _leak_target(lab, how, None, False, host_target)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[:lines.index("END")] == ["0", "1", "2"], r.stdout
    assert "host data" not in r.stdout and "precious" not in lines, r.stdout  # nor ls of it
    assert lines[-1] == "/", r.stdout


@pytest.mark.parametrize("how", ["run", "exec"])
def test_cwd_through_a_preserved_host_fd_is_refused(lab: Any, host_target: str,
                                                     how: str) -> None:
    """Fds passed on purpose (--preserve-fds) do reach the container (the
    control: the host file reads through /proc/self/fd/5), but a cwd through
    one would start the process outside its root: the cwd is checked to lie
    below the root after chdir (runc's second defence against CVE-2024-21626)."""
    r, _ = _leak_target(lab, how, None, True, host_target)
    assert r.returncode == 0, r
    assert "host data" in r.stdout, r  # the leak is real: only the checks stand in its way
    r, cid = _leak_target(lab, how, "/proc/self/fd/5", True, host_target)
    assert r.returncode != 0, r
    assert "chdir to cwd ('/proc/self/fd/5') set in config.json: the directory is outside " \
           "the container's root" in r.stderr, r
    assert "host data" not in r.stdout and "precious" not in r.stdout.splitlines(), r
    if how == "run":
        assert lab.leftovers(cid) == []


# -- masked and read-only paths ------------------------------------------------------------

READ_MASKED = ("for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do "
               "echo \"$p $(head -c 64 $p 2>/dev/null | wc -c)\"; done; "
               "echo \"/sys/firmware $(ls /sys/firmware | wc -l)\"; "
               "echo 1 > /proc/sysrq-trigger 2>/dev/null && echo WROTE-sysrq; "
               "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo WROTE-drop_caches; ")
ATTEMPTS = ("umount /proc/kcore; umount -l /proc/sys; mount -o remount,rw /proc/sys; "
            "mount -o remount,bind,rw /proc/sysrq-trigger; umount /sys/firmware; "
            "mount -t proc proc /mnt; mount --bind /proc /mnt; ")


def _masked_view(out: str) -> dict[str, int]:
    return {p: int(n) for p, n in (line.split() for line in out.splitlines()
                                   if line.startswith(("/proc/", "/sys/")))}


def test_masked_and_readonly_paths_hold_after_remount_attempts(lab: Any) -> None:
    """Masked files read empty, read-only ones refuse writes; unmounting or
    remounting them, or mounting another proc, is refused (no CAP_SYS_ADMIN),
    and afterwards everything is as it was."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 0, "gid": 0}

    out = lab.sh(READ_MASKED + "echo ---; " + ATTEMPTS + "echo ---; " + READ_MASKED + "true",
                 mutate)
    before, _, after = out.split("---\n")
    assert _masked_view(before) == _masked_view(after), out
    assert all(n == 0 for n in _masked_view(after).values()), out
    assert "WROTE" not in out, out


def test_masks_lifted_in_a_user_namespace_still_hide_the_host(lab: Any, tmp_path: Any) -> None:
    """With a user namespace and CAP_SYS_ADMIN in it, the container may undo
    masks the init made (they are its own mounts, as with runc); what they
    cover still needs privileges of the host's user namespace: kcore stays
    unreadable and host-wide sysctls unwritable."""
    top = secenv.wide_dir("ocirun-attack-userns-")
    try:
        def mutate(cfg: dict[str, Any]) -> None:
            cfg["process"]["env"].append(f"OCITEST={lab.token}")
            with_caps("CAP_SYS_ADMIN")(cfg)
            cfg["linux"]["namespaces"].append({"type": "user"})
            m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            cfg["linux"]["uidMappings"] = m
            cfg["linux"]["gidMappings"] = m

        bundle_mod.build_rootfs(os.path.join(top, "rootfs"))
        script = ("umount /proc/kcore && echo LIFTED-kcore; "
                  "head -c 1 /proc/kcore >/dev/null 2>&1 && echo READ-kcore; "
                  "umount -l /proc/sys && echo LIFTED-sys; "
                  "echo 1 > /proc/sys/vm/drop_caches 2>/dev/null && echo WROTE-drop_caches; "
                  "echo 1 > /proc/sys/kernel/panic 2>/dev/null && echo WROTE-panic; true")
        bundle_mod.write_bundle(top, os.path.join(top, "rootfs"), ["sh", "-c", script], mutate)
        r = lab.cli("run", "--bundle", top, lab.new_id())
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert r.returncode == 0, r
    assert "READ-kcore" not in r.stdout and "WROTE" not in r.stdout, r.stdout


# -- privileges ----------------------------------------------------------------------------------


@pytest.mark.parametrize("nnp", [True, False])
def test_setuid_binary_under_no_new_privs(lab: Any, attack: str, nnp: bool) -> None:
    """A setuid-root binary run by user 1000: no_new_privs keeps it 1000
    (the control, without no_new_privs, becomes root)."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
        cfg["process"]["noNewPrivileges"] = nnp

    b = armed(lab, attack, ["/bin/attack", "ids"], mutate)
    os.chown(os.path.join(b.rootfs, "bin", "attack"), 0, 0)
    os.chmod(os.path.join(b.rootfs, "bin", "attack"), 0o4755)
    r = lab.run(b)
    assert r.returncode == 0, r
    euid = r.stdout.split("euid=")[1].split()[0]
    assert euid == ("1000" if nnp else "0"), r.stdout


# (capability, script, what it prints when allowed) -- each as root in the
# container, with the runc template's three capabilities only
DROPPED = {
    "CAP_SYS_ADMIN": ("mount -t tmpfs t /mnt 2>&1 && echo ALLOWED", "ALLOWED"),
    "CAP_NET_RAW": ("/bin/attack rawsock", "socket AF_INET SOCK_RAW: ok"),
    "CAP_CHOWN": ("touch /dev/shm/f && chown 1000 /dev/shm/f 2>&1 && echo ALLOWED", "ALLOWED"),
    "CAP_DAC_READ_SEARCH": ("/bin/attack handle", "open_by_handle_at own /: ok"),
    "CAP_MKNOD": ("/bin/attack mknod /dev/shm/mem", "mknod: ok"),
    "CAP_SYS_MODULE": ("/bin/attack module; grep CapEff /proc/self/status", "finit_module: ok"),
}


@pytest.mark.parametrize("cap", sorted(DROPPED))
def test_dropped_capability_is_really_gone(lab: Any, attack: str, cap: str) -> None:
    """Each attempt fails without the capability; the control run with the
    capability granted shows the refusal came from its absence."""
    script, allowed = DROPPED[cap]
    r = lab.run(armed(lab, attack, ["sh", "-c", script + "; true"], with_caps()))
    assert r.returncode == 0, r
    assert allowed not in r.stdout, r.stdout
    if cap == "CAP_SYS_MODULE":
        eff = int(r.stdout.split("CapEff:")[1].split()[0], 16)
        assert not eff & (1 << 16), r.stdout
        outcome = results(r.stdout)["finit_module"]
        assert outcome in ("EPERM", "ENOSYS"), r.stdout  # ENOSYS: no module support at all
        return
    control = lab.run(armed(lab, attack, ["sh", "-c", script + "; true"], with_caps(cap)))
    assert allowed in control.stdout, control


def test_exec_process_gets_the_same_bounds(lab: Any, attack: str) -> None:
    """A process joining the container (exec) is bounded like the init: no
    raw sockets, no mount, no ptrace of the container's pid 1 beyond its own."""
    b = armed(lab, attack, ["sleep", "1000"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    r = lab.cli("exec", cid, "sh", "-c", "/bin/attack rawsock; mount -t tmpfs t /mnt 2>&1 || "
                "echo MOUNT-DENIED; grep CapBnd /proc/self/status")
    seen = results(r.stdout)
    assert seen["socket AF_INET SOCK_RAW"] == "EPERM", r.stdout
    assert "MOUNT-DENIED" in r.stdout
    bnd = int(r.stdout.split("CapBnd:")[1].split()[0], 16)
    assert bnd == sum(1 << n for n in (29, 5, 10)), r.stdout  # AUDIT_WRITE, KILL, NET_BIND


def test_state_reports_the_created_init_untouched(lab: Any, attack: str) -> None:
    """The attempts above leave the runtime's parked init working: start still runs."""
    b = armed(lab, attack, ["sh", "-c", "echo STARTED"])
    cid = lab.new_id()
    lab.create(b, cid).ok()
    lab.cli("exec", cid, "/bin/attack", "ptrace", "1")
    lab.cli("exec", cid, "/bin/attack", "proc", "1")
    s = lab.cli("start", cid)
    assert s.returncode == 0, s
    deadline = time.monotonic() + 10
    while lab.status(cid) != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    out = lab.cli("state", cid)
    assert json.loads(out.stdout)["status"] == "stopped"
