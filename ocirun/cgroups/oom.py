"""OOM notifications of a container's cgroup, for ``events``.

* cgroup v1 (kernel cgroup-v1/memory.rst "Memory thresholds"/"OOM
  control"): an eventfd registered through ``cgroup.event_control`` with
  ``memory.oom_control``; it counts OOM events, and the kernel also signals
  it when the cgroup is removed.
* cgroup v2 (cgroup-v2.rst "memory.events"): the ``oom_kill`` counter of
  ``memory.events``; kernfs wakes poll(2) with POLLPRI when a counter
  changes.  ``cgroup.events`` is watched the same way, so the watcher also
  learns when the cgroup empties (``populated 0``).

:meth:`OomWatcher.wait` blocks for at most the given time and returns the
number of new OOM kills (v1: OOM events), or None once the cgroup is gone
(v1) or empty (v2): the end of the container, where runc's ``events`` stops.
"""

from __future__ import annotations

import errno
import os
import select
import time

from ocirun.errors import CgroupError, oserror_text


class OomWatcher:
    __slots__ = ("done", "fds", "kind", "last", "path", "poller")

    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path
        self.fds: list[int] = []
        self.poller = select.poll()
        self.last = 0
        self.done = False

    def close(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []

    def wait(self, timeout: float) -> int | None:
        if self.done:
            return None
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            left = deadline - time.monotonic()
            ready = self.poller.poll(max(0, int(left * 1000)))
            n = self._check(bool(ready))
            if n is None:
                self.done = True
                return None
            if n or time.monotonic() >= deadline:
                return n

    def _check(self, woke: bool) -> int | None:
        if self.kind == "v1":
            if not woke:
                return 0
            try:
                count = int.from_bytes(os.read(self.fds[0], 8), "little")
            except BlockingIOError:
                return 0
            # removal of the cgroup also signals the eventfd
            if not os.path.exists(os.path.join(self.path, "cgroup.event_control")):
                return None
            return count
        kills = _counter(self.path + "/memory.events", ("oom_kill",))
        if kills is None:
            return None
        new = max(0, kills - self.last)
        self.last = kills
        populated = _counter(self.path + "/cgroup.events", ("populated",))
        if not new and not populated:
            return None
        for fd in self.fds:  # re-arm: kernfs reports a change once per read
            os.pread(fd, 4096, 0)
        return new


def _counter(path: str, keys: tuple[str, ...]) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read().decode()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k in keys:
            return int(v)
    return 0


def watch_v1(memory_dir: str) -> OomWatcher:
    w = OomWatcher("v1", memory_dir)
    try:
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        w.fds.append(efd)
        ofd = os.open(memory_dir + "/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        w.fds.append(ofd)
        ctl = os.open(memory_dir + "/cgroup.event_control", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(ctl, f"{efd} {ofd}".encode())
        finally:
            os.close(ctl)
    except OSError as e:
        w.close()
        raise CgroupError(f"watch OOM events of `{memory_dir}`: {oserror_text(e)}",
                          errno=e.errno) from e
    w.poller.register(efd, select.POLLIN)
    return w


def watch_v2(path: str) -> OomWatcher:
    w = OomWatcher("v2", path)
    for name in ("memory.events", "cgroup.events"):
        try:
            fd = os.open(f"{path}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            w.close()
            if e.errno == errno.ENOENT and name == "memory.events":
                raise CgroupError(f"watch OOM events: `{path}` has no memory controller "
                                  "(memory.events is missing)", errno=e.errno) from e
            raise CgroupError(f"watch OOM events: open `{path}/{name}`: {oserror_text(e)}",
                              errno=e.errno) from e
        os.pread(fd, 4096, 0)  # arm the notification
        w.fds.append(fd)
        w.poller.register(fd, select.POLLPRI | select.POLLERR)
    w.last = _counter(path + "/memory.events", ("oom_kill",)) or 0
    return w
