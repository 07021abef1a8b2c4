"""Terminals: a pty inside the container, its master handed to the caller.

config.md "POSIX process" ``terminal`` and ``consoleSize``; runtime-linux.md
"/dev/console"; the runc console-socket protocol (RUNC-CLI.md §5).

Container side (the init after pivot_root, or an exec'd process once it has
entered the container's mount namespace):

* :func:`open_pty` opens ``/dev/ptmx`` as the container sees it (so the pty
  belongs to the container's own devpts instance, never the host's), unlocks
  it, takes the slave through ``TIOCGPTPEER`` (no path lookup of
  ``/dev/pts/N`` that a container could race), applies ``consoleSize``;
* :func:`bind_console` binds the slave onto ``/dev/console`` (the init only);
* :func:`attach_stdio` makes the slave fds 0, 1, 2 and the controlling
  terminal (``setsid`` then ``TIOCSCTTY``).

The master travels to the runtime as a ``console_master`` side message on
the sync channel; the container never holds the console socket (a host fd).

Runtime side:

* :class:`ConsoleSocket`: connects to ``--console-socket`` before anything is
  built, and sends the master with one ``sendmsg`` (payload ``/dev/ptmx``,
  one ``SCM_RIGHTS`` fd), as containerd's shim and conmon expect;
* :class:`TtyProxy`: ``run``/``exec -t`` in the foreground without a socket:
  the caller's terminal in raw mode, bytes copied both ways, window-size
  changes (SIGWINCH) copied to the pty, the terminal restored on exit.

Only C modules here (``_socket``, ``fcntl``, ``termios``): nothing of
``socket.py`` on the create path.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import sys
import termios

from ocirun.errors import OciRunError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.syscalls.api import Syscalls

# asm-generic/ioctls.h (the same on x86_64 and arm64)
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSCTTY = termios.TIOCSCTTY
TIOCGWINSZ = termios.TIOCGWINSZ
TIOCSWINSZ = termios.TIOCSWINSZ

# What runc puts in the console message's payload (the receiver ignores it).
MASTER_NAME = b"/dev/ptmx"

DETACH_NO_SOCKET = "cannot allocate tty if runc will detach without setting console socket"
SOCKET_NO_TTY = "cannot use console socket if runc will not detach or allocate tty"


def check_terminal_flags(terminal: bool, detach: bool, console_socket: str | None) -> None:
    """runc's rule (utils_linux.go ``checkTerminal``), in runc's words: a
    detached terminal needs a socket; a socket needs a detached terminal."""
    if detach and terminal and not console_socket:
        raise OciRunError(DETACH_NO_SOCKET)
    if console_socket and (not detach or not terminal):
        raise OciRunError(SOCKET_NO_TTY)


# --------------------------------------------------------------------------
# container side


def _winsize(rows: int, cols: int) -> bytes:
    return rows.to_bytes(2, sys.byteorder) + cols.to_bytes(2, sys.byteorder) + bytes(4)


def open_pty(console_size: tuple[int, int] | None) -> tuple[int, int, str]:
    """(master, slave, slave path) of a new pty of the devpts behind ``/dev/ptmx``."""
    try:
        master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise SyscallError(f"process.terminal: open `/dev/ptmx` in the container: {e.strerror} "
                           "(is a devpts mounted on /dev/pts?)", errno=e.errno,
                           stage="console") from e
    try:
        fcntl.ioctl(master, TIOCSPTLCK, bytes(4))  # unlockpt(3)
        n = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, bytes(4)), sys.byteorder)
        path = f"/dev/pts/{n}"
        try:
            slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError:  # before Linux 4.13: by name
            slave = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if console_size is not None and console_size[0] and console_size[1]:
            fcntl.ioctl(master, TIOCSWINSZ, _winsize(*console_size))
    except OSError as e:
        os.close(master)
        raise SyscallError(f"process.terminal: set up the pty: {e.strerror}", errno=e.errno,
                           stage="console") from e
    return master, slave, path


def bind_console(slave_path: str, sys_: Syscalls) -> None:
    """runtime-linux.md: /dev/console is the container's terminal (a bind
    mount of the pty slave over a file made for it)."""
    from ocirun.syscalls.api import MS_BIND
    try:
        try:
            os.unlink("/dev/console")
        except FileNotFoundError:
            pass
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW,
                         0o600))
        sys_.mount(slave_path, "/dev/console", "bind", MS_BIND, None)
    except OSError as e:
        raise SyscallError(f"process.terminal: bind `{slave_path}` onto /dev/console: "
                           f"{e.strerror}", errno=e.errno, stage="console") from e


def attach_stdio(slave: int, uid: int, new_session: bool) -> None:
    """The slave as fds 0-2 and controlling terminal, owned by the process's
    user (so it can still reopen /dev/tty after dropping root)."""
    try:
        if new_session:
            os.setsid()
        fcntl.ioctl(slave, TIOCSCTTY, 0)
        os.fchown(slave, uid, -1)
        for fd in (0, 1, 2):
            os.dup2(slave, fd, inheritable=True)
        if slave > 2:
            os.close(slave)
    except OSError as e:
        raise SyscallError(f"process.terminal: make the pty the controlling terminal: "
                           f"{e.strerror}", errno=e.errno, stage="console") from e


# --------------------------------------------------------------------------
# runtime side


class ConsoleSocket:
    """``--console-socket PATH``: connected early, the master sent once."""

    __slots__ = ("path", "sock")

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.sock: _socket.socket | None = None

    def connect(self) -> None:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
        try:
            s.connect(self.path)
        except OSError as e:
            s.close()
            raise OciRunError(f"--console-socket `{self.path}`: connect: {e.strerror or e}",
                              errno=e.errno) from e
        self.sock = s

    def send_master(self, master: int) -> None:
        """One message: payload ``/dev/ptmx``, exactly one fd (go-runc's recvFd)."""
        assert self.sock is not None
        try:
            self.sock.sendmsg([MASTER_NAME], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                               master.to_bytes(4, sys.byteorder, signed=True))])
        except OSError as e:
            raise OciRunError(f"--console-socket `{self.path}`: send the pty master: "
                              f"{e.strerror or e}", errno=e.errno) from e
        finally:
            os.close(master)
        self.close()

    def on_fds(self, msg: dict[str, object]) -> None:
        """Launch.on_fds: the ``console_master`` side message."""
        self.send_master(_master_of(msg))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _master_of(msg: dict[str, object]) -> int:
    """The pty master a ``console_master`` side message carries; any other
    message with fds is a protocol error (its fds closed)."""
    fds: list[int] = msg["fds"]  # type: ignore[assignment]
    if msg.get("type") != "console_master" or len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise OciRunError(f"sync protocol: unexpected `{msg.get('type')}`")
    return fds[0]


class MasterHolder:
    """Keeps the master for a foreground :class:`TtyProxy` (no socket)."""

    __slots__ = ("master",)

    def __init__(self) -> None:
        self.master = -1

    def on_fds(self, msg: dict[str, object]) -> None:
        master = _master_of(msg)
        self.close()
        self.master = master

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def copy_window_size(src: int, dst: int) -> None:
    try:
        fcntl.ioctl(dst, TIOCSWINSZ, fcntl.ioctl(src, TIOCGWINSZ, bytes(8)))
    except OSError:
        pass


class TtyProxy:
    """The caller's terminal wired to the container's pty, until the process exits.

    No threads (ARCHITECTURE rule 6): one poll loop over stdin, the master
    and a pidfd of the process.  Raw mode only when stdin is a terminal; the
    saved modes come back on every way out.
    """

    __slots__ = ("master", "saved", "stdin", "stdout")

    def __init__(self, master: int, stdin: int = 0, stdout: int = 1) -> None:
        self.master = master
        self.stdin = stdin
        self.stdout = stdout
        self.saved: list[Any] | None = None

    def set_raw(self) -> None:
        if not os.isatty(self.stdin):
            return
        try:
            self.saved = termios.tcgetattr(self.stdin)
        except termios.error:
            return
        mode = termios.tcgetattr(self.stdin)
        # cfmakeraw(3)
        mode[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                     | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON)
        mode[1] &= ~termios.OPOST
        mode[2] &= ~(termios.CSIZE | termios.PARENB)
        mode[2] |= termios.CS8
        mode[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                     | termios.IEXTEN)
        mode[6][termios.VMIN] = 1
        mode[6][termios.VTIME] = 0
        termios.tcsetattr(self.stdin, termios.TCSANOW, mode)
        copy_window_size(self.stdin, self.master)

    def restore(self) -> None:
        if self.saved is not None:
            try:
                termios.tcsetattr(self.stdin, termios.TCSAFLUSH, self.saved)
            except termios.error:
                pass
            self.saved = None

    def resize(self, _sig: int = 0, _frame: object = None) -> None:
        if os.isatty(self.stdin):
            copy_window_size(self.stdin, self.master)

    def run(self, pid: int) -> None:
        """Copy until ``pid`` has exited and the pty has nothing more to say."""
        import _signal
        import select
        old = _signal.signal(_signal.SIGWINCH, self.resize)
        pidfd = os.pidfd_open(pid)
        try:
            p = select.poll()
            p.register(self.master, select.POLLIN)
            p.register(pidfd, select.POLLIN)
            stdin_open = True
            try:
                p.register(self.stdin, select.POLLIN)
            except (OSError, ValueError):
                stdin_open = False
            exited = False
            while True:
                events = p.poll(50 if exited else None)
                if not events and exited:
                    return
                for fd, ev in events:
                    if fd == pidfd:
                        exited = True
                        p.unregister(pidfd)
                    elif fd == self.master:
                        if not self._pump(self.master, self.stdout):
                            return
                    elif fd == self.stdin and stdin_open \
                            and not self._pump(self.stdin, self.master):
                        stdin_open = False
                        p.unregister(self.stdin)
        finally:
            os.close(pidfd)
            _signal.signal(_signal.SIGWINCH, old)

    @staticmethod
    def _pump(src: int, dst: int) -> bool:
        try:
            data = os.read(src, 65536)
        except OSError:  # EIO: every slave fd is closed
            return False
        if not data:
            return False
        view = memoryview(data)
        while view:
            try:
                n = os.write(dst, view)
            except OSError:
                return True  # the reader is gone; keep draining the other way
            view = view[n:]
        return True
