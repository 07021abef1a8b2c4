"""The sync channel between the runtime and its children.

A ``SOCK_SEQPACKET`` unix socketpair: one JSON object per datagram (so no
framing and no interleaving), and file descriptors ride along a message with
``SCM_RIGHTS`` (the seccomp listener, a terminal's master, exec's fds).  It is
made through the C module ``_socket``: the Python layer (``import socket``)
costs ~6 ms on every create and brings ``enum`` and ``selectors`` with it.

EOF (an empty datagram) means every child holding the other end has died.
When a send to a dead peer fails (EPIPE), the peer may already have written
why it died: that message is read and raised instead of a bare "child died".
``specs/sync-protocol.md`` is the normative table.
"""

from __future__ import annotations

import _socket
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)
import sys

from ocirun import errors, jsonio, log

# One datagram; plans never cross the channel (the children inherit them), so
# messages stay small.
MAX_MESSAGE = 65536
MAX_FDS = 253  # SCM_MAX_FD: the nursery's launch carries every bind source's fd
_FD_SIZE = 4  # sizeof(int)


class Channel:
    __slots__ = ("_pending", "peer", "sock")

    def __init__(self, sock: _socket.socket, peer: str = "child") -> None:
        self.sock = sock
        self.peer = peer
        self._pending: list[tuple[dict[str, object], list[int]]] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, mtype: str, fds: tuple[int, ...] | list[int] = (), **payload: object) -> None:
        """Send one message; ``fds`` are duplicated into the peer (SCM_RIGHTS)."""
        payload["type"] = mtype
        data = jsonio.dumps(payload).encode()
        if len(data) > MAX_MESSAGE:
            raise errors.OciRunError(f"sync protocol: message `{mtype}` is too large ({len(data)} bytes)")
        anc = []
        if fds:
            anc.append((_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                        b"".join(int(fd).to_bytes(_FD_SIZE, sys.byteorder, signed=True)
                                 for fd in fds)))
        try:
            self.sock.sendmsg([data], anc)
        except (BrokenPipeError, ConnectionResetError):
            # The peer is gone.  It may have said why before dying: prefer that.
            self._raise_pending_error()
            raise errors.ChildDiedError(f"{self.peer} exited before it got `{mtype}`") from None

    def raise_pending_error(self) -> None:
        """Raise the ``error`` the peer already sent, if it did (no waiting)."""
        self._raise_pending_error()

    def _raise_pending_error(self) -> None:
        try:
            while True:
                got = self._recv_raw(_socket.MSG_DONTWAIT)
                if got is None:
                    return
                msg, fds = got
                if msg.get("type") == "error":
                    _close_all(fds)
                    raise errors.from_message(msg)
                self._pending.append((msg, fds))
        except BlockingIOError:
            return

    def _recv_raw(self, flags: int = 0) -> tuple[dict[str, object], list[int]] | None:
        for _ in range(2):
            try:
                data, anc, _mflags, _addr = self.sock.recvmsg(
                    MAX_MESSAGE, _socket.CMSG_SPACE(MAX_FDS * _FD_SIZE),
                    flags | _socket.MSG_CMSG_CLOEXEC)
                break
            except ConnectionResetError:
                # The peer died with our last message unread: the kernel
                # reports ECONNRESET once (and clears it) before the messages
                # the peer had sent, its error among them.  Read on.
                continue
        else:
            return None
        fds: list[int] = []
        for level, kind, blob in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(blob) - len(blob) % _FD_SIZE
                fds.extend(memoryview(blob)[:usable].cast("i"))
        if not data:
            _close_all(fds)
            return None
        try:
            msg = jsonio.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            _close_all(fds)
            raise errors.OciRunError(f"sync protocol: unexpected message {data[:80]!r}")
        return msg, fds

    def recv(self) -> tuple[dict[str, object], list[int]] | None:
        """The next message and the fds that came with it, or None at EOF."""
        if self._pending:
            return self._pending.pop(0)
        return self._recv_raw()

    def recv_within(self, seconds: float) -> tuple[dict[str, object], list[int]] | None:
        """:meth:`recv`, waiting at most ``seconds``: None at EOF, after that
        long, or on a closed channel."""
        if self._pending:
            return self._pending.pop(0)
        try:
            self.sock.settimeout(max(seconds, 0.0))
            try:
                return self._recv_raw()
            finally:
                self.sock.settimeout(None)
        except OSError:  # the timeout (TimeoutError), or a closed socket
            return None

    def expect(self, *types: str) -> dict[str, object]:
        """Wait for one of ``types``; a child's ``error`` is re-raised here.

        Fds that came with the message are in ``msg["fds"]`` (a list of ints,
        owned by the caller from then on).
        """
        while True:
            got = self.recv()
            if got is None:
                raise errors.ChildDiedError(
                    f"{self.peer} exited while the runtime waited for `{'/'.join(types)}`")
            msg, fds = got
            t = msg.get("type")
            if t == "log":
                _close_all(fds)
                level = str(msg.get("level", "info"))
                getattr(log, level if level in ("debug", "info", "warning") else "info")(
                    str(msg.get("msg", "")))
                continue
            if t == "error":
                _close_all(fds)
                raise errors.from_message(msg)
            if t in types:
                msg["fds"] = fds
                return msg
            _close_all(fds)
            raise errors.OciRunError(f"sync protocol: got `{t}` while waiting for `{'/'.join(types)}`")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        for _, fds in self._pending:
            _close_all(fds)
        self._pending.clear()


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def pair() -> tuple[Channel, Channel, tuple[int, ...]]:
    """(parent side, child side, the parent's fds the child must close)."""
    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC, 0)
    return Channel(a), Channel(b, peer="runtime"), (a.fileno(),)
