"""Every fork of the runtime goes through :func:`spawn`.

The child runs ``fn``; any exception becomes an ``error`` message on the
channel naming the step, and the child always leaves with ``os._exit`` so
that no parent clean-up (atexit, buffered files) runs twice.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from ocirun.process.channel import Channel
    from ocirun.syscalls.api import Syscalls


def report(chan: Channel, e: BaseException, stage: str) -> None:
    from ocirun import errors
    if isinstance(e, errors.OciRunError):
        msg = e.to_message()
        if not msg.get("stage"):
            msg["stage"] = stage
    elif isinstance(e, OSError):
        where = f" `{e.filename}`" if e.filename else ""
        msg = {"code": "syscall", "errno": e.errno, "stage": stage,
               "msg": f"{stage}:{where} {e.strerror or e}"}
    else:
        msg = {"code": "error", "errno": None, "stage": stage,
               "msg": f"{stage}: internal error: {type(e).__name__}: {e}"}
    try:
        chan.send("error", (), **{k: v for k, v in msg.items() if k != "type"})
    except Exception:
        pass


def _default_signals() -> None:
    """Python-level handlers of the runtime (``run`` forwards signals) mean
    nothing in a child: give those signals their default disposition back,
    so the child reacts to them as a plain process would (exec resets them
    too, but the init waits for ``start`` before it execs)."""
    import _signal
    for sig in range(1, _signal.NSIG):
        try:
            if callable(_signal.getsignal(sig)):
                _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def spawn(fn: Callable[[], None], chan: Channel, close_fds: tuple[int, ...], stage: str,
          sys: Syscalls | None) -> int:
    """Fork; the child closes ``close_fds`` and runs ``fn``.  Returns the pid.
    ``sys`` None: os.fork itself (the early nursery, before the seam loads)."""
    pid = sys.fork() if sys is not None else os.fork()
    if pid:
        return pid
    _child(fn, chan, close_fds, stage)


def spawn_in_cgroup(fn: Callable[[], None], chan: Channel, close_fds: tuple[int, ...],
                    stage: str, sys: Syscalls, cgroup_fd: int) -> tuple[int, bool]:
    """:func:`spawn`, the child born in the cgroup v2 directory ``cgroup_fd``
    (clone3 with CLONE_INTO_CGROUP); (pid, True).  Where the kernel or the
    cgroup refuses (no clone3 before Linux 5.7), a plain fork: (pid, False),
    the caller moves it.
    Callers in a user namespace do not use it: a cgroup permission failure
    comes after the pid is allocated, and pid 1 of a new pid namespace
    allocated and freed leaves that namespace unable to fork at all."""
    try:
        pid = sys.clone_into_cgroup(cgroup_fd)
        born = True
    except OSError as e:
        try:
            pid = sys.fork()
        except OSError as f:
            # Most likely the case above that slipped through: a new pid
            # namespace whose first pid clone3 took and gave back.  Name the
            # first failure, not only the ENOMEM it left behind.
            raise OSError(f.errno, f"{f.strerror} (after clone3 into the container's "
                                   f"cgroup failed: {e.strerror})") from e
        born = False
    if pid:
        return pid, born
    _child(fn, chan, close_fds, stage)


def _child(fn: Callable[[], None], chan: Channel | None, close_fds: tuple[int, ...],
           stage: str) -> NoReturn:
    """The forked child: never returns.  Without a channel the exit status is
    all it reports."""
    code = 1
    try:
        _default_signals()
        for fd in close_fds:
            os.close(fd)
        fn()
        code = 0
    except BaseException as e:  # the child must never unwind into the parent's code
        if chan is not None:
            report(chan, e, stage)
    finally:
        os._exit(code)


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and reap it (it may already be gone, or be
    another's child: then only the kill)."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def spawn_helper(fn: Callable[[], None], close_fds: tuple[int, ...], sys: Syscalls) -> int:
    """Fork a short-lived helper that has no channel: it reports by exit
    status (and by what it writes to pipes it shares with the caller)."""
    pid = sys.fork()
    if pid:
        return pid
    _child(fn, None, close_fds, "helper")
