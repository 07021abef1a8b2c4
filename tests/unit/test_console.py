"""console.py without root: runc's terminal rules, the console-socket message
as go-runc's recvFd takes it, and the foreground proxy on a real pty pair."""

from __future__ import annotations

import array
import os
import socket
import termios

import pytest

from ocirun import console
from ocirun.errors import OciRunError


@pytest.mark.parametrize("terminal,detach,sock,err", [
    (True, True, None, console.DETACH_NO_SOCKET),
    (False, True, "/s", console.SOCKET_NO_TTY),
    (True, False, "/s", console.SOCKET_NO_TTY),
    (True, True, "/s", None),
    (True, False, None, None),
    (False, False, None, None),
])
def test_runcs_terminal_rules(terminal: bool, detach: bool, sock: str | None,
                              err: str | None) -> None:
    if err is None:
        console.check_terminal_flags(terminal, detach, sock)
    else:
        with pytest.raises(OciRunError, match=err):
            console.check_terminal_flags(terminal, detach, sock)


def test_master_goes_over_the_socket_in_one_message(tmp_path) -> None:
    path = str(tmp_path / "pty.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    r, w = os.pipe()
    try:
        cs = console.ConsoleSocket(path)
        cs.connect()  # completes against the backlog: nobody has accepted yet
        cs.send_master(w)  # closes our copy
        conn, _ = listener.accept()
        data, anc, flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        assert data == b"/dev/ptmx" and not flags & socket.MSG_CTRUNC
        assert [(lvl, kind) for lvl, kind, _ in anc] == [(socket.SOL_SOCKET, socket.SCM_RIGHTS)]
        fds = array.array("i")
        fds.frombytes(anc[0][2])
        assert len(fds) == 1
        os.write(fds[0], b"x")  # the pipe's write end, passed through
        assert os.read(r, 1) == b"x"
        os.close(fds[0])
        assert conn.recv(1) == b""  # and the connection is closed
        conn.close()
        with pytest.raises(OSError):
            os.fstat(w)
    finally:
        listener.close()
        os.close(r)


def test_connect_error_names_the_socket(tmp_path) -> None:
    cs = console.ConsoleSocket(str(tmp_path / "nosuch.sock"))
    with pytest.raises(OciRunError, match=r"--console-socket .*nosuch.sock.*connect"):
        cs.connect()


def test_proxy_raw_mode_and_restore() -> None:
    caller_master, caller_slave = os.openpty()  # the caller's terminal
    pty_master, pty_slave = os.openpty()  # stands in for the container's pty
    try:
        before = termios.tcgetattr(caller_slave)
        proxy = console.TtyProxy(pty_master, stdin=caller_slave, stdout=caller_slave)
        proxy.set_raw()
        raw = termios.tcgetattr(caller_slave)
        assert not raw[3] & (termios.ICANON | termios.ECHO)
        # a window-size change of the caller's terminal is copied to the pty
        import fcntl
        import struct
        fcntl.ioctl(caller_slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 77, 0, 0))
        proxy.resize()
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(pty_slave, termios.TIOCGWINSZ,
                                                            bytes(8)))
        assert (rows, cols) == (33, 77)
        proxy.restore()
        assert termios.tcgetattr(caller_slave) == before
    finally:
        for fd in (caller_master, caller_slave, pty_master, pty_slave):
            os.close(fd)
