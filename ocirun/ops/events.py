"""``events``: a container's resource usage and OOM notifications as JSON
lines, in runc's shapes (runc's command; the spec has none).

``--stats`` prints one ``{"type":"stats","id":ID,"data":{...}}`` line and
exits.  Otherwise a line every ``--interval`` (default 5s) and an
``{"type":"oom","id":ID}`` line for each OOM kill, until the container's
cgroup is removed (v1) or empties (v2), as runc does.  The wait is one
poll(2) on the OOM notification fds with the time left to the next stats
line: no threads, no busy loop.
"""

from __future__ import annotations

import os
import time

from ocirun import jsonio
from ocirun.errors import OciRunError, StateError, UsageError
from ocirun.state import STOPPED, ContainerState, StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration subset runc's ``--interval`` takes: ``5s``, ``1m30s``, ``250ms``."""
    s = text.strip()
    if s in ("0", ""):
        return 0.0
    total = 0.0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        num, unit = s[i:j], s[j:k]
        if not num or unit not in _UNITS:
            raise UsageError(f'invalid value "{text}" for flag -interval: parse error')
        try:
            total += float(num) * _UNITS[unit]
        except ValueError:
            raise UsageError(f'invalid value "{text}" for flag -interval: parse error') from None
        i = k
    return total


def _line(kind: str, cid: str, data: object = None) -> bytes:
    ev: dict[str, object] = {"type": kind, "id": cid}
    if data is not None:
        ev["data"] = data
    return (jsonio.dumps(ev) + "\n").encode()


def _running(store: StateStore, cid: str) -> ContainerState:
    st = store.load(cid)
    if st.status() == STOPPED:
        raise StateError(f"container with id {cid} is not running")
    if not st.cgroup_paths:
        raise OciRunError(f"container {cid} has no cgroup to read")
    return st


def stats_line(store: StateStore, cid: str) -> bytes:
    from ocirun.cgroups import load_manager
    st = _running(store, cid)
    return _line("stats", cid, load_manager(st.cgroup_paths).stats())


def watch(store: StateStore, cid: str, interval: float,
          write: Callable[[bytes], object] | None = None) -> None:
    """Stats every ``interval`` seconds and OOM events until the container ends."""
    if interval <= 0:
        raise UsageError("duration interval must be greater than 0")
    from ocirun.cgroups import load_manager
    out = write or (lambda b: os.write(1, b))
    st = _running(store, cid)
    mgr = load_manager(st.cgroup_paths)
    watcher = mgr.oom_watcher()
    import gc
    gc.enable()  # the launcher turned it off for the start-up; this loop may run for days
    try:
        due = time.monotonic() + interval
        while True:
            n = watcher.wait(due - time.monotonic())
            for _ in range(n or 0):
                out(_line("oom", cid))
            if n is None:
                return
            if time.monotonic() >= due:
                due += interval
                # stats() never fails (missing files read as 0); a write to a
                # closed pipe ends the command with EPIPE like any writer
                out(_line("stats", cid, mgr.stats()))
    finally:
        watcher.close()
