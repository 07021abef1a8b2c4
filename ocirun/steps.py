"""Per-step timing of the lifecycle: ``--trace FILE`` and ``--debug``.

Every numbered step of specs/sync-protocol.md (parent P*, intermediate I*,
init N*, tenant T*, process step S*) and the command-level steps of create,
start and delete are bracketed with :func:`begin` / :func:`end`.  With
tracing off both are a global check and a return: the hot path pays nothing
measurable.

With ``--trace FILE`` (or ``OCIRUN_TRACE=FILE`` in the environment, which a
containerd shim or podman can set) each step appends one JSON line:

    {"step": "N3", "name": "rootfs", "proc": "init", "pid": 4242,
     "start_ns": ..., "dur_ms": 2.41, "cpu_ms": 1.02, "runq_ms": 0.05,
     "blocked_ms": 1.34, "kernel": "mount, mknod"}

``start_ns`` is CLOCK_MONOTONIC (corrected for a time namespace's offset, so
every process of a launch shares one time line).  ``cpu_ms`` is the thread's
CPU time, ``runq_ms`` its wait for a CPU (/proc/thread-self/schedstat);
``blocked_ms`` is the rest of the step: sleeping in the kernel (an RCU grace
period, a FIFO, a child).  ``kernel`` names the calls the step is made of.
The file is opened once, O_APPEND, and inherited by the children (kept open
through their fd clean-up, close-on-exec so the user's program never gets
it); lines are single writes well under PIPE_BUF, so they never interleave.

With ``--debug`` each step is also logged (``step N3 rootfs: 2.41 ms``), as
runc's ``--debug`` logs its stages; children send those lines to the runtime
over the sync channel, which logs them.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)
import time

_NO = -1


class _State:
    __slots__ = ("debug", "fd", "offset_ns", "proc", "sink")

    def __init__(self) -> None:
        self.fd = _NO
        self.debug = False
        self.proc = "runtime"
        self.offset_ns = 0
        self.sink: object = None  # callable(msg) for --debug lines, or None


_st = _State()

# What each step is made of, for the reader of a trace (the kernel calls or
# waits that dominate it).
KERNEL: dict[str, str] = {
    "C1": "read, json scan", "C2": "stat, open (rootfs, passwd)", "C3": "mkdir, mkfifo, open",
    "C4": "mkdir, write (cgroupfs), sendmsg (fork)", "C5": "write, rename",
    "P1": "prctl", "P2": "fork, write (uid_map)", "P3": "waitpid, write (cgroup.procs where needed)",
    "P4": "posix_spawn, wait (hooks)", "P5": "recvmsg (waiting for the init)",
    "I0": "read, mmap (imports), pwrite (/proc/self/mem)", "I1": "prctl", "I2": "setns", "I3": "unshare, recvmsg", "I4": "unshare, write",
    "I5": "clone3",
    "N1": "close_range", "N2": "setsid", "N3": "mount, mknod, symlink, write (v1 tasks), recvmsg",
    "N4": "sendmsg, recvmsg", "N5": "posix_spawn, write (sysctl), sethostname",
    "N6": "pivot_root, umount2, mount", "N7": "setrlimit, capset, setresuid, stat",
    "N8": "open (exec FIFO: blocks until start)", "N9": "posix_spawn (hooks), execve",
    "T1": "close_range", "T2": "recvmsg", "T3": "setrlimit, capset, setresuid, stat",
    "S1": "keyctl", "S2": "personality", "S3": "setrlimit, write", "S4": "prctl",
    "S5": "chdir", "S6": "setgroups, setresgid, setresuid", "S7": "prctl, capset",
    "S8": "chdir", "S9": "stat, access",
    "R1": "open, poll (FIFO + pidfd until exec)", "R2": "posix_spawn, wait (poststart)",
    "D1": "kill, poll (pidfd)", "D2": "rmdir (cgroupfs), unlink",
}


def configure(path: str | None, debug: bool, sink: object = None) -> None:
    """In the runtime process: open the trace file (append) and/or turn on
    --debug step lines.  Raises OSError when the file cannot be opened."""
    if path:
        _st.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
    _st.debug = debug
    _st.sink = sink


def active() -> bool:
    return _st.fd != _NO or _st.debug


def trace_fd() -> int:
    """The fd a child must keep open through its fd clean-up (-1: none)."""
    return _st.fd


def in_child(proc: str, sink: object = None, offset_ns: int = 0) -> None:
    """Name the process a child's records come from; ``sink`` takes its
    --debug lines (the channel to the runtime)."""
    _st.proc = proc
    _st.sink = sink
    _st.offset_ns = offset_ns


def _schedstat() -> tuple[int, int]:
    """(CPU time, run-queue wait) of this thread, in ns.  CPU time from
    CLOCK_THREAD_CPUTIME_ID, which is exact; schedstat's own run time is only
    brought up to date at scheduler events."""
    runq = 0
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            runq = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return time.thread_time_ns(), runq


def begin() -> tuple[int, int, int]:
    """A step starts: (monotonic ns, cpu ns, run-queue ns), or zeros when off."""
    if _st.fd == _NO and not _st.debug:
        return (0, 0, 0)
    cpu, runq = _schedstat()
    return (time.monotonic_ns(), cpu, runq)


def end(step: str, name: str, t0: tuple[int, int, int]) -> None:
    """A step ends: write its record and/or its --debug line."""
    if not t0[0]:
        return
    now = time.monotonic_ns()
    cpu, runq = _schedstat()
    dur = (now - t0[0]) / 1e6
    cpu_ms = (cpu - t0[1]) / 1e6
    runq_ms = (runq - t0[2]) / 1e6
    if _st.fd != _NO:
        from ocirun import jsonio
        line = jsonio.dumps({
            "step": step, "name": name, "proc": _st.proc, "pid": os.getpid(),
            "start_ns": t0[0] - _st.offset_ns, "dur_ms": round(dur, 3),
            "cpu_ms": round(cpu_ms, 3), "runq_ms": round(runq_ms, 3),
            "blocked_ms": round(max(dur - cpu_ms - runq_ms, 0.0), 3),
            "kernel": KERNEL.get(step, "")}) + "\n"
        try:
            os.write(_st.fd, line.encode())
        except OSError:
            pass
    if _st.debug and _st.sink is not None:
        try:
            _st.sink(f"step {step} {name} ({_st.proc}): {dur:.2f} ms")  # type: ignore[operator]
        except Exception:  # noqa: BLE001 - a log line must never break a step
            pass
