"""Log lines in runc's two formats, written with ``write(2)``.

``--log-format json`` lines are ``{"level","msg","time"}`` in that order, one
per line, time in RFC 3339: containerd decodes the file as a JSON stream and
keeps the last ``error`` entry; podman unmarshals the whole file as one
object, so outside ``--debug`` only errors reach a JSON log (RUNC-CLI.md §4).
Without ``--log`` text lines go to stderr.  (``logging`` costs ~14 ms to
import; this is all the runtime needs.)
"""

from __future__ import annotations

import posix
import time

from ocirun import jsonio

_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3}


class _Config:
    __slots__ = ("debug", "fd", "json", "to_stderr")

    def __init__(self) -> None:
        self.fd = 2
        self.json = False
        self.debug = False
        self.to_stderr = True


_cfg = _Config()


def configure(path: str | None, fmt: str, debug: bool) -> None:
    """Open ``--log`` (append, sync) and choose the format.  Raises OSError."""
    _cfg.json = fmt == "json"
    _cfg.debug = debug
    if path:
        _cfg.fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT | posix.O_APPEND | posix.O_SYNC
                             | posix.O_CLOEXEC, 0o644)
        _cfg.to_stderr = False


def close() -> None:
    """Back to the defaults (stderr, text), closing ``--log``."""
    if _cfg.fd != 2:
        try:
            posix.close(_cfg.fd)
        except OSError:
            pass
    _cfg.__init__()  # type: ignore[misc]


def _timestamp() -> str:
    t = time.time()
    lt = time.localtime(t)
    off = lt.tm_gmtoff
    if off == 0:
        zone = "Z"
    else:
        sign = "+" if off > 0 else "-"
        off = abs(off)
        zone = f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", lt) + zone


def _emit(level: str, msg: str) -> None:
    if _cfg.to_stderr and level == "error":
        return  # error() prints the one plain line itself
    if _cfg.json:
        if not _cfg.debug and level != "error":
            return
        line = jsonio.dumps({"level": level, "msg": msg, "time": _timestamp()}) + "\n"
    else:
        if level == "debug" and not _cfg.debug:
            return
        if _cfg.to_stderr:
            line = f"ocirun: {level}: {msg}\n"
        else:
            line = f'time="{_timestamp()}" level={level} msg={jsonio.dumps(msg)}\n'
    if line:
        try:
            posix.write(_cfg.fd, line.encode())
        except OSError:
            pass


def debug(msg: str) -> None:
    if _cfg.debug:
        _emit("debug", msg)


def info(msg: str) -> None:
    _emit("info", msg)


def warning(msg: str) -> None:
    _emit("warning", msg)


def error(msg: str) -> None:
    """The fatal error of a command: the log entry, and ``ocirun: msg`` on stderr."""
    _emit("error", msg)
    try:
        posix.write(2, f"ocirun: {msg}\n".encode())
    except OSError:
        pass


def is_debug() -> bool:
    return _cfg.debug
