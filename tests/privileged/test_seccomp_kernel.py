"""Compiled programs loaded for real (ocirun.seccomp.load through the cffi seam) into a
forked child, and their effect observed: the errno a denied call returns, a killed or
trapped process dying of SIGSYS, a logged call going through, argument filters, flags,
and a NOTIFY listener handed to a seccomp agent with send_listener().
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocirun import seccomp
from ocirun.syscalls import api
from ocirun.syscalls.linux import LinuxSyscalls

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 profiles")

AGENT = Path(__file__).resolve().parents[1] / "seccomp_agent.py"
SYS = LinuxSyscalls()

# what a Python child needs after loading to report and exit
RUNTIME_CALLS = ["write", "exit_group", "exit", "brk", "mmap", "munmap", "mprotect", "madvise",
                 "rt_sigprocmask", "rt_sigaction", "futex", "close", "getpid", "gettid"]


def prog_of(*rules: dict[str, Any], default: str = "SCMP_ACT_ALLOW", **extra: Any) -> seccomp.SeccompProgram:
    cfg = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
           "syscalls": list(rules), **extra}
    return seccomp.compile_program(cfg, cache_dir=None)


def in_child(prog: seccomp.SeccompProgram, body: Callable[[], str], nnp: bool = True) -> tuple[int, str]:
    """Fork; the child loads ``prog`` and runs ``body``; (wait status, what body returned)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if nnp:
                SYS.prctl(api.PR_SET_NO_NEW_PRIVS, 1)
            seccomp.load(prog, SYS)
            out = body()
            os.write(w, out.encode())
            os._exit(0)
        except BaseException as e:
            try:
                os.write(w, f"child error: {e!r}".encode())
            finally:
                os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return status, data.decode()


def errno_of(fn: Callable[[], object]) -> Callable[[], str]:
    def run() -> str:
        try:
            fn()
        except OSError as e:
            return f"errno={e.errno}"
        return "errno=0"
    return run


def getpriority_pgrp() -> object:
    return os.getpriority(os.PRIO_PGRP, 0)


def test_errno_is_returned() -> None:
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV})
    status, out = in_child(prog, errno_of(getpriority_pgrp))
    assert (os.waitstatus_to_exitcode(status), out) == (0, f"errno={errno.EXDEV}")


def test_default_errno_applies_to_unlisted_calls() -> None:
    prog = prog_of({"names": RUNTIME_CALLS, "action": "SCMP_ACT_ALLOW"},
                   default="SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOTTY)
    status, out = in_child(prog, errno_of(getpriority_pgrp))
    assert (os.waitstatus_to_exitcode(status), out) == (0, f"errno={errno.ENOTTY}")


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS",
                                    "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_the_process_with_sigsys(action: str) -> None:
    prog = prog_of({"names": ["getpriority"], "action": action})
    status, out = in_child(prog, errno_of(getpriority_pgrp))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS, (status, out)
    assert out == ""


def test_log_lets_the_call_through() -> None:
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_LOG"})
    assert in_child(prog, errno_of(getpriority_pgrp))[1] == "errno=0"


def test_trace_without_a_tracer_fails_with_enosys() -> None:
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_TRACE", "errnoRet": 5})
    assert in_child(prog, errno_of(getpriority_pgrp))[1] == f"errno={errno.ENOSYS}"


def test_argument_filters() -> None:
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EDOM,
                    "args": [{"index": 0, "op": "SCMP_CMP_EQ", "value": os.PRIO_PGRP}]},
                   {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ERANGE,
                    "args": [{"index": 0, "op": "SCMP_CMP_MASKED_EQ", "value": 0xFF, "valueTwo": 8}]})

    def body() -> str:
        return " ".join([errno_of(getpriority_pgrp)(),
                         errno_of(lambda: os.getpriority(os.PRIO_PROCESS, 0))(),
                         errno_of(lambda: SYS.personality(0x0108))(),
                         errno_of(lambda: SYS.personality(0xFFFFFFFF))()])
    assert in_child(prog, body)[1] == f"errno={errno.EDOM} errno=0 errno={errno.ERANGE} errno=0"


def _status_field(name: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def test_flags_load_and_the_mode_is_filter() -> None:
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"},
                   flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                          "SECCOMP_FILTER_FLAG_TSYNC"])
    assert prog.flags == api.SECCOMP_FILTER_FLAG_LOG | api.SECCOMP_FILTER_FLAG_SPEC_ALLOW
    out = in_child(prog, lambda: f"{_status_field('Seccomp')} {_status_field('Seccomp_filters')}")[1]
    assert out == "2 1"


def test_without_nnp_loading_needs_cap_sys_admin() -> None:
    # as root the runtime may load before dropping capabilities (no_new_privs off)
    prog = prog_of({"names": ["getpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 3})
    assert in_child(prog, errno_of(getpriority_pgrp), nnp=False)[1] == "errno=3"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            SYS.capset(0, 0, 0)
            try:
                seccomp.load(prog, SYS)
                os.write(w, b"loaded")
            except Exception as e:
                os.write(w, str(e).encode())
        finally:
            os._exit(0)
    os.close(w)
    out = os.read(r, 4096).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert out == ("linux.seccomp: load the filter: Permission denied "
                   "(the kernel wants no_new_privs or CAP_SYS_ADMIN)")


def test_notify_listener_reaches_an_agent(tmp_path: Path) -> None:
    """The listener fd goes child -> runtime (SCM_RIGHTS) -> agent (send_listener); the
    agent answers one mkdir with a chosen errno and lets another through."""
    sock = str(tmp_path / "agent.sock")
    result = tmp_path / "agent.json"
    agent = subprocess.Popen([sys.executable, str(AGENT), sock, str(result), f"denied={errno.EDQUOT}"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "listening"
        prog = prog_of({"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"},
                       listenerPath=sock, listenerMetadata="test-metadata")
        assert prog.notify and prog.flags & api.SECCOMP_FILTER_FLAG_NEW_LISTENER
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                SYS.prctl(api.PR_SET_NO_NEW_PRIVS, 1)
                fd = seccomp.load(prog, SYS)
                assert fd is not None
                socket.send_fds(theirs, [b"fd"], [fd])
                os.close(fd)  # the container keeps no handle on its own listener
                theirs.recv(1)  # the agent has it now
                out = []
                for name in ("denied", "allowed"):
                    try:
                        os.mkdir(str(tmp_path / name))
                        out.append(f"{name}=0")
                    except OSError as e:
                        out.append(f"{name}={e.errno}")
                theirs.send(" ".join(out).encode())
                code = 0
            finally:
                os._exit(code)
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
        state = {"ociVersion": "1.3.0", "id": "notify-test", "status": "creating", "pid": pid,
                 "bundle": str(tmp_path), "annotations": {}}
        seccomp.send_listener(sock, fds[0], state, prog.listener_metadata)
        os.close(fds[0])
        ours.send(b"g")
        report = ours.recv(4096).decode()
        _, status = os.waitpid(pid, 0)
        ours.close()
        assert os.waitstatus_to_exitcode(status) == 0
        assert report == f"denied={errno.EDQUOT} allowed=0"
        assert (tmp_path / "allowed").is_dir() and not (tmp_path / "denied").exists()
        agent.wait(timeout=30)
        got = json.loads(result.read_text())
        assert got["state"] == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": pid,
                                "metadata": "test-metadata", "state": state}
        assert got["fds"] == 1
        assert [c[1:] for c in got["calls"]] == [[str(tmp_path / "denied"), f"errno {errno.EDQUOT}"],
                                                 [str(tmp_path / "allowed"), "continue"]]
    finally:
        if agent.poll() is None:
            agent.kill()
        agent.wait()


# --------------------------------------------------------------------------- the process step

def _step_calls(nnp: bool, notify: bool = False) -> tuple[list[str], list[str]]:
    """Run process/setup.prepare_process in a forked child with a recording seam;
    (the seam calls in order, what hand_over saw)."""
    from ocirun.plantypes import ProcessPlan
    from ocirun.process import setup
    from ocirun.syscalls.recording import RecordingSyscalls
    rules = [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" if notify else "SCMP_ACT_ERRNO"}]
    prog = prog_of(*rules, **({"listenerPath": "/run/a.sock"} if notify else {}))
    from ocirun.capabilities import compute_caps
    caps, _ = compute_caps({k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")})
    plan = ProcessPlan(args=("/bin/true",), env=("PATH=/bin",), cwd="/", no_new_privileges=nnp,
                       seccomp=prog, caps=caps)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            rec = RecordingSyscalls()
            seen: list[str] = []
            if notify:
                rec.seccomp_result = os.open("/dev/null", os.O_RDONLY)

                def hand_over(fd: int) -> None:
                    seen.append(f"fd {fd} open={os.path.exists(f'/proc/self/fd/{fd}')}")
            else:
                hand_over = None  # type: ignore[assignment]
            setup.prepare_process(plan, rec, hand_over)
            if notify:
                seen.append(f"closed after={not os.path.exists(f'/proc/self/fd/{rec.seccomp_result}')}")
            os.write(w, json.dumps([rec.names(), seen]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    names, seen = json.loads(data)
    return names, seen


def test_step_loads_last_with_no_new_privs() -> None:
    names, _ = _step_calls(nnp=True)
    assert names[-1] == "seccomp_set_filter"
    assert names.index("capset") < names.index("seccomp_set_filter")


def test_step_loads_before_ids_and_capabilities_without_no_new_privs() -> None:
    names, _ = _step_calls(nnp=False)
    assert names.count("seccomp_set_filter") == 1
    assert names.index("seccomp_set_filter") < names.index("capset")


def test_step_hands_the_listener_over_and_closes_it() -> None:
    _, seen = _step_calls(nnp=True, notify=True)
    assert len(seen) == 2 and seen[0].endswith("open=True") and seen[1] == "closed after=True"
