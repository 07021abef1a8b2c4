"""Terminals (issue 10 point 2): the console-socket protocol as containerd's
shim and conmon receive it, for create (the init) and exec; and run/exec -t
in the foreground driven through a real pty."""

from __future__ import annotations

import array
import fcntl
import os
import pty
import select
import signal
import socket
import struct
import termios
import time
from collections.abc import Iterator
from typing import Any

import pytest


def terminal(cfg: dict[str, Any], args: list[str] | None = None) -> None:
    cfg["process"]["terminal"] = True
    cfg["process"]["consoleSize"] = {"height": 30, "width": 100}
    if args:
        cfg["process"]["args"] = args


class ConsoleListener:
    """The caller's end: an AF_UNIX stream socket, as go-runc's NewTempConsoleSocket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.sock.settimeout(20)

    def receive(self) -> tuple[bytes, int]:
        """go-runc's recvFd: data < 4096 bytes, control exactly CMSG_SPACE(4)."""
        conn, _ = self.sock.accept()
        with conn:
            data, anc, flags, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
            assert not flags & socket.MSG_CTRUNC, "more than one fd sent"
            assert len(anc) == 1
            level, kind, blob = anc[0]
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds = array.array("i")
            fds.frombytes(blob)
            assert len(fds) == 1
            assert conn.recv(1) == b""  # then the runtime closes the connection
        return data, fds[0]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(lab: Any) -> Iterator[ConsoleListener]:
    sock_dir = os.path.join(lab.workdir, "cs")
    os.makedirs(sock_dir)
    cl = ConsoleListener(os.path.join(sock_dir, "pty.sock"))
    yield cl
    cl.close()


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {needle!r}: {out!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def winsize(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8)))
    return rows, cols


CHECK = (b"tty; stty size; stat -c 'console=%t:%T' /dev/console; stat -L -c 'stdin=%t:%T' "
         b"/proc/self/fd/0; echo fds-begin; ls -1 /proc/$$/fd; echo fds-end; echo done-$((6*7))\n")


def check_console_output(out: bytes, with_console: bool) -> None:
    text = out.decode(errors="replace").replace("\r", "")
    assert "/dev/pts/0" in text
    assert "30 100" in text  # consoleSize
    if with_console:
        console = next(x for x in text.splitlines() if x.startswith("console="))
        stdin = next(x for x in text.splitlines() if x.startswith("stdin="))
        assert console.split("=")[1] == stdin.split("=")[1]  # /dev/console is the pty
    assert "done-42" in text


def test_create_sends_the_master_over_the_console_socket(lab: Any, listener: ConsoleListener) -> None:
    b = lab.bundle(None, lambda c: terminal(c, ["sh"]))
    cid = lab.new_id()
    pid_file = os.path.join(lab.workdir, "init.pid")
    lab.create(b, cid, "--console-socket", listener.path, "--pid-file", pid_file).ok()
    data, master = listener.receive()
    try:
        assert data == b"/dev/ptmx"
        # the pty is the container's own devpts instance, not the host's
        assert os.readlink(f"/proc/self/fd/{master}") == "/dev/pts/ptmx"
        assert os.fstat(master).st_dev != os.stat("/dev/pts/ptmx").st_dev
        assert winsize(master) == (30, 100)
        assert os.path.exists(pid_file)
        lab.cli("start", cid).ok()
        os.write(master, CHECK)
        out = read_until(master, b"done-42\r\n")
        check_console_output(out, with_console=True)
        text = out.decode().replace("\r", "")
        fds = text[text.rindex("fds-begin\n"):text.rindex("fds-end")]
        # the shell's: the pty as 0-2, and 10, which an interactive ash
        # opens on /dev/tty for job control; nothing of the runtime's
        assert set(fds.split()[1:]) == {"0", "1", "2", "10"}, out
        os.write(master, b"exit 3\n")
        lab.wait_status(cid, "stopped")
    finally:
        os.close(master)


def test_exec_detached_tty_over_the_console_socket(lab: Any, listener: ConsoleListener) -> None:
    b = lab.bundle(["sleep", "1000"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    pid_file = os.path.join(lab.workdir, "exec.pid")
    r = lab.cli("exec", "-d", "-t", "--console-socket", listener.path, "--pid-file", pid_file,
                cid, "sh")
    assert r.returncode == 0, r
    data, master = listener.receive()
    try:
        assert data == b"/dev/ptmx"
        os.write(master, b"stty cols 100 rows 30; " + CHECK)
        out = read_until(master, b"done-42\r\n")
        check_console_output(out, with_console=False)
        with open(pid_file) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        assert fields[3] == fields[2]  # session leader (sid == pid): a new session
        os.write(master, b"exit\n")
    finally:
        os.close(master)


def test_exec_process_json_with_terminal(lab: Any, listener: ConsoleListener) -> None:
    # containerd's shim: exec --process F --console-socket S --detach --pid-file P ID
    import json
    b = lab.bundle(["sleep", "1000"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    pf = os.path.join(lab.workdir, "p.json")
    with open(pf, "w") as f:
        json.dump({"args": ["sh"], "cwd": "/", "terminal": True, "env": ["PATH=/bin"],
                   "consoleSize": {"height": 30, "width": 100}}, f)
    r = lab.cli("exec", "--process", pf, "--console-socket", listener.path, "--detach",
                "--pid-file", os.path.join(lab.workdir, "x.pid"), cid)
    assert r.returncode == 0, r
    _, master = listener.receive()
    try:
        assert winsize(master) == (30, 100)
        os.write(master, CHECK)
        check_console_output(read_until(master, b"done-42\r\n"), with_console=False)
        os.write(master, b"exit\n")
    finally:
        os.close(master)


def test_terminal_flag_errors_in_runcs_words(lab: Any, listener: ConsoleListener) -> None:
    b = lab.bundle(None, lambda c: terminal(c, ["sh"]))
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert r.returncode == 1
    assert "cannot allocate tty if runc will detach without setting console socket" in r.stderr
    assert not os.path.exists(os.path.join(lab.root, cid))
    plain = lab.bundle(["true"])
    r = lab.create(plain, cid, "--console-socket", listener.path)
    assert r.returncode == 1
    assert "cannot use console socket if runc will not detach or allocate tty" in r.stderr
    assert not os.path.exists(os.path.join(lab.root, cid))
    r = lab.create(b, cid, "--console-socket", os.path.join(lab.workdir, "nosuch.sock"))
    assert r.returncode == 1 and "--console-socket" in r.stderr and "connect" in r.stderr, r
    assert not os.path.exists(os.path.join(lab.root, cid))


# -- the caller's own terminal ---------------------------------------------------------


class PtyRun:
    """A runtime command started on a real pty, as a person at a terminal runs it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.out = b""

    def set_size(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def expect(self, needle: bytes) -> bytes:
        got = read_until(self.fd, needle)
        self.out += got
        return got

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self) -> int:
        deadline = time.monotonic() + 30
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline
            try:  # keep the pty drained so the runtime never blocks writing
                r, _, _ = select.select([self.fd], [], [], 0.05)
                if r:
                    self.out += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.05)

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def _lflag(fd: int) -> int:
    return termios.tcgetattr(fd)[3]


@pytest.mark.parametrize("how", ["run", "exec"])
def test_foreground_tty_through_a_real_pty(lab: Any, how: str) -> None:
    if how == "run":
        b = lab.bundle(None, lambda c: terminal(c, ["sh"]))
        argv = lab.argv("run", "--bundle", b.path, lab.new_id())
    else:
        b = lab.bundle(["sleep", "1000"])
        cid = lab.new_id()
        lab.run(b, cid, "--detach").ok()
        argv = lab.argv("exec", "-t", cid, "sh")
    term = PtyRun(argv, lab.env)
    try:
        term.set_size(40, 132)
        cooked = _lflag(term.fd)
        assert cooked & termios.ICANON and cooked & termios.ECHO
        term.send(b"stty size; tty; echo mark-$((2+3))\n")
        got = term.expect(b"mark-5")
        assert b"40 132" in got and b"/dev/pts/0" in got
        # the caller's terminal is raw while the container has it
        raw = _lflag(term.fd)
        assert not raw & termios.ICANON and not raw & termios.ECHO
        # a window-size change reaches the container's pty (SIGWINCH)
        term.set_size(50, 90)
        os.kill(term.pid, signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while True:
            term.send(b"stty size\n")
            if b"50 90" in term.expect(b"\n") + read_until(term.fd, b"# "):
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        term.send(b"exit 5\n")
        assert term.wait() == 5
        # and the caller's terminal is as it was
        after = _lflag(term.fd)
        assert after & termios.ICANON and after & termios.ECHO
    finally:
        term.close()
