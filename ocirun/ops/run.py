"""``run``: create + start, then (in the foreground) wait and clean up.

In the foreground the runtime stays the init's parent (it is a child
subreaper since create), forwards the signals it receives to the init, reaps
orphans re-parented to it, deletes the container (unless ``--keep``) and
exits with the container's status: the exit code, or 128+signal.

The forwarding handlers go in before ``create`` begins: a signal that
arrives while the container is being built must neither kill the runtime
(which would leave a half-made container behind, its init parked forever at
the exec FIFO) nor be lost.  Until the user's program runs, signals are
queued; they are delivered once ``start`` has exec'd it (a parked init is
pid 1 of its namespace without handlers, so the kernel would drop them).
"""

from __future__ import annotations

import _signal
import posix as os  # the lean exec path never imports os (posixpaths.py)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.ops.create import CreateOptions
    from ocirun.state import StateStore
    from ocirun.syscalls.api import Syscalls

FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
             "SIGCONT", "SIGPWR", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGXFSZ", "SIGWINCH")


class Forwarder:
    """Signal handlers that queue until a target pid is known, then forward."""

    __slots__ = ("pending", "pid", "saved")

    def __init__(self) -> None:
        self.pid = 0
        self.pending: list[int] = []
        self.saved: dict[int, object] = {}

    def handle(self, sig: int, _frame: object) -> None:
        if self.pid:
            _send(self.pid, sig)
        else:
            self.pending.append(sig)

    def install(self) -> None:
        for name in FORWARDED:
            sig = getattr(_signal, name, None)
            if sig is not None:
                self.saved[sig] = _signal.signal(sig, self.handle)

    def target(self, pid: int) -> None:
        """Forward from now on, starting with what arrived before."""
        self.pid = pid
        while self.pending:
            _send(pid, self.pending.pop(0))

    def restore(self) -> None:
        for sig, old in self.saved.items():
            _signal.signal(sig, old)
        self.saved.clear()


def _send(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def run(store: StateStore, cid: str, opts: CreateOptions, *, detach: bool = False,
        keep: bool = False, fwd: Forwarder | None = None, sys: Syscalls | None = None) -> int:
    """``fwd``: handlers the caller installed as early as it could (before the
    imports this needs), else installed here."""
    if fwd is None:
        fwd = Forwarder()
        fwd.install()
    from ocirun.ops.create import create
    from ocirun.ops.delete import delete
    from ocirun.ops.start import start
    holder = None
    if not detach:
        # In the foreground a terminal is the caller's own (a TtyProxy); a
        # console socket is for detached runs only (runc's rule).
        from ocirun.console import SOCKET_NO_TTY, MasterHolder
        if opts.console_socket:
            from ocirun.errors import OciRunError
            raise OciRunError(SOCKET_NO_TTY)
        holder = opts.console_master = MasterHolder()
    try:
        st = create(store, cid, opts, sys)
        try:
            start(store, cid)
        except BaseException:
            delete(store, cid, force=True)
            raise
        if detach:
            # A queued signal was meant for the container: deliver it before
            # leaving it to run on its own.
            fwd.target(st.pid)
            return 0
        fwd.target(st.pid)
        import gc
        gc.enable()  # the launcher turned it off for the start-up; this wait may be long
        if holder is not None and holder.master >= 0:
            proxy_terminal(holder.master, st.pid)
        status = wait_init(st.pid)
    finally:
        if holder is not None:
            holder.close()
        fwd.restore()
    if not keep:
        delete(store, cid, force=True)
    return status


def proxy_terminal(master: int, pid: int) -> None:
    """The caller's terminal wired to the pty until ``pid`` exits."""
    from ocirun.console import TtyProxy
    proxy = TtyProxy(master)
    proxy.set_raw()
    try:
        proxy.run(pid)
    finally:
        proxy.restore()


def wait_init(pid: int) -> int:
    """Reap children until the init exits; its status as a shell reports it."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255  # cannot happen: the init is our child
        if got == pid:
            break
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
