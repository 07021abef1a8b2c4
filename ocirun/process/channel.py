"""The sync channel between the runtime and its children.

Two CLOEXEC pipes carry one JSON object per line (messages are far below
PIPE_BUF, so each write is atomic).  Pipes rather than a SEQPACKET socketpair:
no message here carries an fd, and ``import socket`` costs ~6 ms on every
create.  EOF on the child-to-parent pipe means every child holding it has
died.  ``specs/sync-protocol.md`` is the normative table.
"""

from __future__ import annotations

import os

from ocirun import errors, jsonio, log


class Channel:
    __slots__ = ("_buf", "peer", "rfd", "wfd")

    def __init__(self, rfd: int, wfd: int, peer: str = "child") -> None:
        self.rfd = rfd
        self.wfd = wfd
        self._buf = b""
        self.peer = peer

    def send(self, mtype: str, **payload: object) -> None:
        payload["type"] = mtype
        data = (jsonio.dumps(payload) + "\n").encode()
        try:
            os.write(self.wfd, data)
        except BrokenPipeError:
            raise errors.ChildDiedError(f"{self.peer} exited before it got `{mtype}`") from None

    def recv(self) -> dict[str, object] | None:
        """The next message, or None at EOF."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg = jsonio.loads(line)
        if not isinstance(msg, dict):
            raise errors.OciRunError(f"sync protocol: unexpected message {line[:80]!r}")
        return msg

    def expect(self, *types: str) -> dict[str, object]:
        """Wait for one of ``types``; a child's ``error`` is re-raised here."""
        while True:
            msg = self.recv()
            if msg is None:
                raise errors.ChildDiedError(
                    f"{self.peer} exited while the runtime waited for `{'/'.join(types)}`")
            t = msg.get("type")
            if t == "log":
                level = str(msg.get("level", "info"))
                getattr(log, level if level in ("debug", "info", "warning") else "info")(
                    str(msg.get("msg", "")))
                continue
            if t == "error":
                raise errors.from_message(msg)
            if t in types:
                return msg
            raise errors.OciRunError(f"sync protocol: got `{t}` while waiting for `{'/'.join(types)}`")

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def pair() -> tuple[Channel, Channel, tuple[int, int]]:
    """(parent side, child side, the parent's fds the child must close)."""
    p2c_r, p2c_w = os.pipe2(os.O_CLOEXEC)
    c2p_r, c2p_w = os.pipe2(os.O_CLOEXEC)
    return Channel(c2p_r, p2c_w), Channel(p2c_r, c2p_w, peer="runtime"), (c2p_r, p2c_w)
