"""``ocirun exec`` through its command line (issue 10 points 1 and 3): every
runc flag, the exit status, signals, runc's refusals, fds, and the two attack
patterns on a runtime that joins a running container."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCANNER_SRC = os.path.join(HERE, "..", "fixtures", "procscan.c")


@pytest.fixture
def running(lab: Any) -> str:
    b = lab.bundle(["sleep", "1000"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    return cid


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_exit_status_and_stdio(lab: Any, running: str) -> None:
    r = lab.cli("exec", running, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7, r
    assert r.stdout == "out\n" and "err\n" in r.stderr


def test_killed_process_reports_128_plus_signal(lab: Any, running: str) -> None:
    r = lab.cli("exec", running, "sh", "-c", "kill -KILL $$")
    assert r.returncode == 137, r


def test_flags_shape_the_process(lab: Any, running: str) -> None:
    script = "id; pwd; echo FOO=$FOO; grep NoNewPrivs /proc/self/status"
    r = lab.cli("exec", "--user", "1000:1000", "--additional-gids", "44", "-g", "45",
                "--cwd", "/home/user", "-e", "FOO=bar", "--env", "PATH=/bin",
                "--no-new-privs", running, "sh", "-c", script)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uid=1000(user) gid=1000(user)")
    assert "44" in lines[0] and "45" in lines[0]
    assert lines[1] == "/home/user"
    assert lines[2] == "FOO=bar"
    assert lines[3].split() == ["NoNewPrivs:", "1"]


def test_cap_flag_adds_capabilities(lab: Any, running: str) -> None:
    r = lab.cli("exec", "--cap", "CAP_SYS_PTRACE", "-c", "CAP_SYS_NICE", running,
                "grep", "-E", "^Cap(Bnd|Eff|Prm)", "/proc/self/status")
    assert r.returncode == 0, r
    f = status_fields(r.stdout)
    want = (1 << 19) | (1 << 23) | (1 << 29) | (1 << 5) | (1 << 10)
    for k in ("CapBnd", "CapEff", "CapPrm"):
        assert int(f[k], 16) == want, (k, r.stdout)


def test_default_process_is_the_containers(lab: Any, running: str) -> None:
    # Without flags: config.json's user, env, capabilities and rlimits.
    r = lab.cli("exec", running, "sh", "-c", "id -u; echo $OCITEST; ulimit -n; "
                "grep CapBnd /proc/self/status")
    assert r.returncode == 0, r
    uid, token, nofile, capbnd = r.stdout.splitlines()
    assert uid == "0" and token == lab.token and nofile == "1024"
    assert int(capbnd.split()[1], 16) == (1 << 29) | (1 << 5) | (1 << 10)  # runc's three


def test_process_file_detach_and_pid_file(lab: Any, running: str) -> None:
    # What containerd's shim sends: exec --process F --detach --pid-file P ID.
    init = lab.state(running)["pid"]
    proc = {"args": ["sleep", "300"], "cwd": "/", "env": ["PATH=/bin", f"OCITEST={lab.token}"],
            "user": {"uid": 1000, "gid": 1000}, "terminal": False}
    pf = os.path.join(lab.workdir, "p.json")
    with open(pf, "w") as f:
        json.dump(proc, f)
    pid_file = os.path.join(lab.workdir, "exec.pid")
    r = lab.cli("exec", "--process", pf, "--detach", "--pid-file", pid_file, running)
    assert r.returncode == 0, r
    with open(pid_file) as f:
        raw = f.read()
    assert raw.isdigit()  # digits only, no newline
    pid = int(raw)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[:2] == [b"sleep", b"300"]
        for ns in ("pid", "mnt", "net", "uts", "ipc"):
            assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}")
        st = os.stat(f"/proc/{pid}")
        assert st.st_uid == 1000
    finally:
        os.kill(pid, signal.SIGKILL)


def test_bad_process_file_is_refused(lab: Any, running: str) -> None:
    pf = os.path.join(lab.workdir, "bad.json")
    with open(pf, "w") as f:
        json.dump({"args": ["true"], "cwd": "relative"}, f)
    r = lab.cli("exec", "--process", pf, running)
    assert r.returncode == 255 and "cwd" in r.stderr and "absolute" in r.stderr, r


def test_runtime_failures_exit_255(lab: Any, running: str) -> None:
    r = lab.cli("exec", running, "/nonexistent")
    assert r.returncode == 255
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in r.stderr
    r = lab.cli("exec", running, "nosuchcmd")
    assert r.returncode == 255 and "executable file not found in $PATH" in r.stderr, r
    r = lab.cli("exec", lab.token + "-nosuch", "true")
    assert r.returncode == 255 and "does not exist" in r.stderr, r


def test_exec_into_stopped_container(lab: Any, running: str) -> None:
    lab.cli("kill", running, "KILL").ok()
    lab.wait_status(running, "stopped")
    r = lab.cli("exec", running, "true")
    assert r.returncode == 255 and "cannot exec in a stopped container" in r.stderr, r


def _freezer(lab: Any, cid: str) -> str | None:
    pid = lab.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "freezer" in ctrls.split(","):
                return f"/sys/fs/cgroup/freezer{path}/freezer.state"
            if ctrls == "" and os.path.exists(f"/sys/fs/cgroup{path}/cgroup.freeze"):
                return f"/sys/fs/cgroup{path}/cgroup.freeze"
    return None


def _freeze(path: str, on: bool) -> None:
    with open(path, "w") as f:
        if path.endswith("freezer.state"):
            f.write("FROZEN" if on else "THAWED")
        else:
            f.write("1" if on else "0")


def test_exec_into_paused_container(lab: Any, running: str) -> None:
    path = _freezer(lab, running)
    if path is None:
        pytest.skip("no freezer for the container's cgroup on this host")
    _freeze(path, True)
    try:
        lab.wait_status(running, "paused")
        r = lab.cli("exec", running, "true")
        assert r.returncode == 255, r
        assert "cannot exec in a paused container (use --ignore-paused to override)" in r.stderr
        # --ignore-paused: the process joins the frozen cgroup and runs once thawed
        p = lab.popen("exec", "--ignore-paused", running, "sh", "-c", "echo thawed",
                      stdout=subprocess.PIPE)
        time.sleep(0.5)
        assert p.poll() is None  # frozen with the container
    finally:
        _freeze(path, False)
    out, _ = p.communicate(timeout=20)
    assert p.returncode == 0 and out == b"thawed\n"


def test_signals_are_forwarded(lab: Any, running: str) -> None:
    out_p = os.path.join(lab.workdir, "sig.out")
    with open(out_p, "wb") as out:
        p = lab.popen("exec", running, "sh", "-c",
                      "trap 'echo got-TERM; exit 9' TERM; trap 'echo got-USR1' USR1; "
                      "echo ready; while :; do sleep 0.05; done", stdout=out)
    def output() -> bytes:
        with open(out_p, "rb") as f:
            return f.read()
    deadline = time.monotonic() + 20
    while b"ready" not in output():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.02)
    p.send_signal(signal.SIGUSR1)
    while b"got-USR1" not in output():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 9
    assert b"got-TERM" in output()


def test_runtime_keeps_its_command_line_after_forking_into_the_container(
        lab: Any, running: str) -> None:
    """As root exec forks its process straight into the container (no
    intermediate): it wipes its argv and environment around that fork, so
    the fork holds neither, and puts its own back (the host's ps still shows
    the command that runs)."""
    out_p = os.path.join(lab.workdir, "argv.out")
    with open(out_p, "wb") as out:
        p = lab.popen("exec", running, "sh", "-c", "echo ready; exec sleep 1000", stdout=out)
    try:
        deadline = time.monotonic() + 20
        while True:
            with open(out_p, "rb") as f:
                if b"ready" in f.read():
                    break
            assert time.monotonic() < deadline and p.poll() is None
            time.sleep(0.02)
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"exec" in argv and running.encode() in argv, argv
        # the process's parent is the runtime, outside the container's pid
        # namespace: the container sees no parent (PPid 0)
        r = lab.cli("exec", running, "sh", "-c", "grep PPid /proc/$$/status")
        assert r.returncode == 0, r
        assert "PPid:\t0" in r.stdout, r.stdout
    finally:
        p.kill()
        p.wait(timeout=20)


def _own_fds_script() -> str:
    # The shell's own fds, listed by another process (ls), so the listing's
    # own directory fd is not among them
    return ("ls -1 /proc/$$/fd; "
            "echo LISTEN=$LISTEN_FDS:$LISTEN_PID:$$")


def _run_with_fds(lab: Any, argv: list[str], fds: dict[int, int],
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run the runtime with ``fds`` (target -> our fd) at exact numbers, as a
    caller such as systemd or go-runc's ExtraFiles hands them over."""
    def place() -> None:
        for target, fd in fds.items():
            os.dup2(fd, target, inheritable=True)
    return subprocess.run(argv, env=env or lab.env, pass_fds=tuple(fds), preexec_fn=place,
                          capture_output=True, timeout=30, stdin=subprocess.DEVNULL, check=False)


def test_preserve_fds_and_socket_activation(lab: Any, running: str) -> None:
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    os.write(w1, b"one")
    os.write(w2, b"two")
    os.close(w1)
    os.close(w2)
    stray = os.open("/etc/hostname", os.O_RDONLY)  # fd 5 of the runtime: must not pass
    try:
        script = _own_fds_script() + "; cat <&3; cat <&4"
        p = _run_with_fds(lab, lab.argv("exec", "--preserve-fds", "1", running, "sh", "-c", script),
                          {3: r1, 4: r2, 5: stray}, env={**lab.env, "LISTEN_FDS": "1"})
    finally:
        for fd in (r1, r2, stray):
            os.close(fd)
    assert p.returncode == 0, p
    lines = p.stdout.decode().splitlines()
    fds = sorted(int(x) for x in lines if x.isdigit())
    assert fds == [0, 1, 2, 3, 4]
    listen = next(line for line in lines if line.startswith("LISTEN="))
    n, pid, me = listen[len("LISTEN="):].split(":")
    assert n == "1" and pid == me  # LISTEN_PID names the exec'd process, not pid 1
    assert lines[-1] == "onetwo"


def test_nothing_else_leaks_in(lab: Any, running: str) -> None:
    stray = os.open("/etc/hostname", os.O_RDONLY)
    try:
        p = _run_with_fds(lab, lab.argv("exec", running, "sh", "-c", _own_fds_script()),
                          {3: stray, 7: stray})
    finally:
        os.close(stray)
    assert p.returncode == 0, p
    fds = sorted(int(x) for x in p.stdout.decode().split() if x.isdigit())
    assert fds == [0, 1, 2]


def test_missing_preserved_fd_is_an_error(lab: Any, running: str) -> None:
    r = lab.cli("exec", "--preserve-fds", "5", running, "true")
    assert r.returncode == 255 and "--preserve-fds" in r.stderr and "not open" in r.stderr, r


def test_cgroup_flag_runs_in_a_sub_cgroup(lab: Any, running: str) -> None:
    pid = lab.state(running)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        pids_path = next(line.split(":", 2)[2].strip() for line in f
                         if "pids" in line.split(":")[1].split(","))
    sub = f"/sys/fs/cgroup/pids{pids_path}/sub"
    os.mkdir(sub)
    try:
        r = lab.cli("exec", "--cgroup", "pids:sub", running, "cat", "/proc/self/cgroup")
        assert r.returncode == 0, r
        line = next(x for x in r.stdout.splitlines() if "pids" in x.split(":")[1])
        assert line.endswith("/sub"), r.stdout
        r = lab.cli("exec", "--cgroup", "pids:nosuch", running, "true")
        assert r.returncode == 255 and "does not exist" in r.stderr, r
    finally:
        os.rmdir(sub)


# -- the attack patterns ----------------------------------------------------------------


@pytest.fixture(scope="session")
def procscan(tmp_path_factory: pytest.TempPathFactory) -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to build the /proc scanner (apt-get install gcc libc6-dev)")
    out = str(tmp_path_factory.mktemp("procscan") / "procscan")
    r = subprocess.run([gcc, "-static", "-O2", "-o", out, SCANNER_SRC], capture_output=True,
                       text=True, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot build a static binary here: {r.stderr[-300:]}")
    return out


def _all_caps_but_ptrace(cfg: dict[str, Any]) -> None:
    from ocirun.capabilities import KNOWN_CAPABILITIES
    caps = [c for c in KNOWN_CAPABILITIES if c != "CAP_SYS_PTRACE"]
    cfg["process"]["capabilities"] = {k: list(caps) for k in ("bounding", "effective",
                                                               "permitted")}
    cfg["process"]["noNewPrivileges"] = False


def test_cve_2019_5736_runtime_exe_is_out_of_reach(lab: Any, procscan: str) -> None:
    """A container process hunts /proc/<pid>/exe of every process that appears
    while execs join the container.  The hunter has every capability the
    exec'd processes get (so the kernel's capability-subset rule does not
    protect them) except CAP_SYS_PTRACE; each exec looks its program up
    through a PATH of thousands of missing directories, which keeps the
    runtime's process in the container, capabilities already dropped, for
    tens of milliseconds before execve.  Only non-dumpability protects it
    there: the hunter must be refused, and see nothing of the host."""
    b = lab.bundle(["/bin/procscan", "6", "100000000", "/bin/busybox", "/bin/procscan"],
                   _all_caps_but_ptrace, private_rootfs=True)
    shutil.copy(procscan, os.path.join(b.rootfs, "bin", "procscan"))
    cid = lab.new_id()
    r = lab.run(b, cid, "--detach").ok()
    deadline = time.monotonic() + 90
    while "scanning" not in r.stdout_now():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    slow_path = "PATH=" + "/nonexistent:" * 8000 + "/bin"
    n = 0
    while lab.status(cid) == "running" and time.monotonic() < deadline:
        e = lab.cli("exec", "-e", slow_path, cid, "true")
        # the last one may die with the container when the scanner is done
        assert e.returncode == 0 or lab.status(cid) == "stopped", e
        n += 1
    out = r.stdout_now()
    summary = [line for line in out.splitlines() if line.startswith("denied=")]
    assert summary, out
    fields = dict(kv.split("=") for kv in summary[-1].split())
    assert "LEAK" not in out, out
    assert int(fields["leaks"]) == 0
    # The scanner did catch the runtime in the act (so the check meant something).
    assert int(fields["denied"]) > 0, f"after {n} execs: {out}"


@pytest.mark.parametrize("via", ["/proc/self/exe", "/bin/selfexe"])
@pytest.mark.parametrize("how", ["exec", "run"])
def test_cve_2019_5736_own_binary_is_never_exec_d(lab: Any, via: str, how: str) -> None:
    """The original attack: the container's program is ``#!/proc/self/exe``
    (here also through a symlink), so the runtime would exec its own
    interpreter inside the container.  Refused before execve."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["root"]["readonly"] = False
    b = lab.bundle(["sleep", "1000"], mutate, private_rootfs=True)
    with open(os.path.join(b.rootfs, "bin", "evil"), "w") as f:
        f.write(f"#!{via}\n")
    os.chmod(os.path.join(b.rootfs, "bin", "evil"), 0o755)
    os.symlink("/proc/self/exe", os.path.join(b.rootfs, "bin", "selfexe"))
    if how == "exec":
        cid = lab.new_id()
        lab.run(b, cid, "--detach").ok()
        r = lab.cli("exec", cid, "/bin/evil")
        assert r.returncode == 255, r
    else:
        b2 = lab.bundle(["/bin/evil"], lambda c: c["root"].__setitem__("path", b.rootfs))
        r = lab.run(b2)
        assert r.returncode != 0, r
    assert "CVE-2019-5736" in r.stderr, r


@pytest.mark.parametrize("how", ["exec", "create"])
def test_leaked_fd_cwd_pattern_is_blocked(lab: Any, running: str, how: str) -> None:
    """CVE-2024-21626's pattern: a cwd of /proc/self/fd/N reaches a host
    directory if the runtime leaks a directory fd into the container. No
    such fd exists, so every such cwd must fail."""
    for n in range(3, 16):
        cwd = f"/proc/self/fd/{n}"
        if how == "exec":
            r = lab.cli("exec", "--cwd", cwd, running, "sh", "-c", "pwd; ls ..")
            assert r.returncode == 255, (n, r)
        else:
            b = lab.bundle(["sh", "-c", "pwd; ls .."],
                           mutate=lambda c, cwd=cwd: c["process"].__setitem__("cwd", cwd))
            r = lab.run(b)
            assert r.returncode != 0, (n, r)
            assert not os.path.exists(os.path.join(lab.root, r.argv[-1]))
        assert "chdir to cwd" in r.stderr, (n, r)
