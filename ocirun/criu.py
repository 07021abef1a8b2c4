"""CRIU driven over its RPC (``criu swrk``), as runc does: checkpoint/restore.

``criu swrk FD`` serves requests on a SOCK_SEQPACKET socket: one protobuf
``criu_req`` per datagram, answered by ``criu_resp`` datagrams.  With
``notify_scripts`` CRIU stops at each stage (``setup-namespaces``,
``post-restore``, ...) with a NOTIFY response and waits for a NOTIFY request
back; the runtime does its part of the work there (hooks, state).

The messages are CRIU's ``images/rpc.proto`` (proto2).  Only the fields the
runtime uses are spelled out below, by field number, and encoded with the
small protobuf codec here: the wire format is varints and length-prefixed
bytes, a protobuf runtime (and generated code matched to it) would be a
heavier dependency than the ~80 lines it replaces.

Files the options name by fd (images dir, work dir, inherited fds) are
passed to the criu process at the same numbers.
"""

from __future__ import annotations

import os

from ocirun.errors import OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

# criu_req_type
DUMP, RESTORE, CHECK, PRE_DUMP, NOTIFY, VERSION = 1, 2, 3, 4, 6, 10
# criu_cg_mode, by runc's --manage-cgroups-mode names
CG_MODES = {"ignore": 0, "none": 1, "props": 2, "soft": 3, "full": 4, "strict": 5}
# --empty-ns names -> CLONE_NEW* bits (runc: only network makes sense)
EMPTY_NS = {"network": 0x40000000}

_V, _S, _M = "v", "s", "m"  # varint, string, embedded message
# criu_opts: name -> (field number, kind, repeated)
OPTS: dict[str, tuple[int, str, bool]] = {
    "images_dir_fd": (1, _V, False), "pid": (2, _V, False), "leave_running": (3, _V, False),
    "ext_unix_sk": (4, _V, False), "tcp_established": (5, _V, False),
    "evasive_devices": (6, _V, False), "shell_job": (7, _V, False), "file_locks": (8, _V, False),
    "log_level": (9, _V, False), "log_file": (10, _S, False), "ps": (11, _M, False),
    "notify_scripts": (12, _V, False), "root": (13, _S, False), "parent_img": (14, _S, False),
    "track_mem": (15, _V, False), "auto_dedup": (16, _V, False), "work_dir_fd": (17, _V, False),
    "link_remap": (18, _V, False), "ext_mnt": (23, _M, True), "manage_cgroups": (24, _V, False),
    "cg_root": (25, _M, True), "rst_sibling": (26, _V, False), "inherit_fd": (27, _M, True),
    "manage_cgroups_mode": (34, _V, False), "external": (37, _S, True),
    "empty_ns": (38, _V, False), "freeze_cgroup": (44, _S, False), "lazy_pages": (48, _V, False),
    "status_fd": (49, _V, False), "orphan_pts_master": (50, _V, False),
    "lsm_profile": (53, _S, False), "lsm_mount_context": (56, _S, False),
}


# --------------------------------------------------------------------------
# protobuf wire format (the subset proto2 messages of rpc.proto use)


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int32/int64 are sent as 64-bit two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num: int, kind: str, value: Any) -> bytes:
    if kind == _V:
        return _varint(num << 3) + _varint(int(value))
    data = value.encode() if isinstance(value, str) else bytes(value)
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def message(*pairs: tuple[int, str, Any]) -> bytes:
    return b"".join(field(n, k, v) for n, k, v in pairs if v is not None)


def decode(data: bytes) -> dict[int, list[Any]]:
    """Field number -> values (ints for varints, bytes for length-delimited)."""
    out: dict[int, list[Any]] = {}
    i, end = 0, len(data)

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            if i >= end:
                raise OciRunError("criu: truncated protobuf message")
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7

    while i < end:
        key = varint()
        num, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value = varint()
        elif wire == 2:
            n = varint()
            value, i = data[i:i + n], i + n
        elif wire == 5:
            value, i = int.from_bytes(data[i:i + 4], "little"), i + 4
        elif wire == 1:
            value, i = int.from_bytes(data[i:i + 8], "little"), i + 8
        else:
            raise OciRunError(f"criu: protobuf wire type {wire} not understood")
        out.setdefault(num, []).append(value)
    return out


def _int32(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


def encode_opts(opts: dict[str, Any]) -> bytes:
    parts = []
    for name, value in opts.items():
        if value is None or value is False or value == []:
            continue
        num, kind, repeated = OPTS[name]
        for v in (value if repeated else [value]):
            parts.append(field(num, kind, v))
    return b"".join(parts)


def kv(key: str, val: str) -> bytes:
    """ext_mount_map {key, val} / cgroup_root {ctrl, path}."""
    return message((1, _S, key), (2, _S, val))


def inherit(key: str, fd: int) -> bytes:
    return message((1, _S, key), (2, _V, fd))


def page_server(address: str, port: int) -> bytes:
    return message((1, _S, address), (2, _V, port))


def request(kind: int, opts: dict[str, Any] | None = None, *, notify_success: bool | None = None,
            keep_open: bool | None = None) -> bytes:
    return message((1, _V, kind), (2, _M, encode_opts(opts) if opts is not None else None),
                   (3, _V, notify_success), (4, _V, keep_open))


class Response:
    """A decoded ``criu_resp``."""

    __slots__ = ("errmsg", "errno", "kind", "notify_pid", "restored_pid", "script", "success",
                 "version")

    def __init__(self, data: bytes) -> None:
        f = decode(data)
        self.kind = f.get(1, [0])[0]
        self.success = bool(f.get(2, [0])[0])
        self.restored_pid = 0
        if 4 in f:
            self.restored_pid = _int32(decode(f[4][0]).get(1, [0])[0])
        self.script = ""
        self.notify_pid = 0
        if 5 in f:
            n = decode(f[5][0])
            self.script = n.get(1, [b""])[0].decode()
            self.notify_pid = _int32(n.get(2, [0])[0])
        self.errno = _int32(f.get(7, [0])[0])
        self.errmsg = f.get(9, [b""])[0].decode(errors="replace")
        self.version: tuple[int, int, int] | None = None
        if 10 in f:
            v = decode(f[10][0])
            self.version = (v.get(1, [0])[0], v.get(2, [0])[0], v.get(4, [0])[0])


# --------------------------------------------------------------------------
# criu swrk


class Swrk:
    """One ``criu swrk`` process and its socket."""

    def __init__(self, criu: str, pass_fds: tuple[int, ...] = ()) -> None:
        import socket
        import subprocess
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # stdio is inherited: restore re-attaches the container's pipes to it
            self.proc = subprocess.Popen([criu, "swrk", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(), *pass_fds))
        except OSError as e:
            self.sock.close()
            raise OciRunError(f"run `{criu} swrk`: {e.strerror} (is CRIU installed? "
                              "apt-get install criu; or give --criu PATH)",
                              errno=e.errno) from e
        finally:
            theirs.close()
        self.pid = self.proc.pid

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def recv(self) -> tuple[Response, list[int]]:
        import array
        import socket
        fds = array.array("i")
        data, anc, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * 16))
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % 4])
        if not data:
            code = self.proc.wait()
            raise OciRunError(f"criu swrk exited ({code}) without an answer: see the CRIU log")
        return Response(data), list(fds)

    def call(self, req: bytes, notify: Callable[[Response, list[int]], None] | None = None
             ) -> Response:
        """Send ``req``; answer every NOTIFY through ``notify``; return the final response."""
        self.send(req)
        while True:
            resp, fds = self.recv()
            if resp.kind != NOTIFY:
                for fd in fds:
                    os.close(fd)
                return resp
            ok = True
            try:
                if notify is not None:
                    notify(resp, fds)
                else:
                    for fd in fds:
                        os.close(fd)
            except BaseException:
                ok = False
                self.send(request(NOTIFY, notify_success=False))
                raise
            finally:
                if ok:
                    self.send(request(NOTIFY, notify_success=True))

    def close(self) -> int:
        self.sock.close()
        return self.proc.wait()


def version(criu: str = "criu") -> tuple[int, int, int]:
    """CRIU's version over RPC (runc checks it the same way)."""
    w = Swrk(criu)
    try:
        resp = w.call(request(VERSION))
    finally:
        w.close()
    if not resp.success or resp.version is None:
        raise OciRunError("criu: VERSION request failed")
    return resp.version


def failure(what: str, resp: Response, log: str) -> OciRunError:
    detail = f": {resp.errmsg}" if resp.errmsg else ""
    err = f" ({os.strerror(resp.errno)})" if resp.errno > 0 else ""
    return OciRunError(f"criu {what} failed{detail}{err}; see the log `{log}`",
                       errno=resp.errno if resp.errno > 0 else None)


def log_tail(path: str, lines: int = 5) -> str:
    """The last error lines of a CRIU log, for the error message."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            errs = [ln.rstrip() for ln in f if "Error" in ln]
    except OSError:
        return ""
    return " | ".join(errs[-lines:])


def features_annotations(criu: str = "criu") -> dict[str, str]:
    """runc's features annotation, as it is here: a criu binary to drive."""
    import shutil
    return {"org.opencontainers.runc.checkpoint.enabled": "true" if shutil.which(criu)
            else "false"}
