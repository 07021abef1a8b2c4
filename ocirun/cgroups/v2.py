"""The cgroup v2 (unified) hierarchy (config-linux.md "Control groups", kernel cgroup-v2.rst).

Used on a pure v2 host and, on a hybrid host, for the controller-less cgroup2
mount at ``<root>/unified``, where it still gives process tracking, the
freezer (``cgroup.freeze``, kernel >= 5.2) and ``cgroup.kill`` (>= 5.14).

* freezing: write ``1`` to ``cgroup.freeze``; the freeze is complete when
  ``cgroup.events`` shows ``frozen 1``.
* ``cgroup.kill``: SIGKILL to every process of the subtree in one write, with
  no race against forks (the reason to prefer it over a pid walk).

Resource limits are not written here yet (see ``CgroupManager.apply``).
"""

from __future__ import annotations

import errno
import os

from ocirun.cgroups.paths import Hierarchy, read_text, write_text
from ocirun.errors import CgroupError

FREEZE_TIMEOUT = 2.0


class Hierarchy2(Hierarchy):
    """The container's directory in the unified hierarchy."""

    __slots__ = ()
    version = 2

    def _events_frozen(self) -> bool | None:
        """``frozen`` from cgroup.events (None when the cgroup is gone)."""
        try:
            text = read_text(self.path + "/cgroup.events")
        except CgroupError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "frozen":
                return value.strip() == "1"
        return False

    def can_freeze(self) -> bool:
        return os.path.isfile(self.path + "/cgroup.freeze")

    def is_frozen(self) -> bool:
        # Either asked to freeze (cgroup.freeze) or frozen through an ancestor
        # (cgroup.events reports the effective state).
        try:
            if read_text(self.path + "/cgroup.freeze").strip() == "1":
                return True
        except CgroupError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return bool(self._events_frozen())

    def set_frozen(self, frozen: bool) -> None:
        freeze_file = self.path + "/cgroup.freeze"
        write_text(freeze_file, "1" if frozen else "0")
        if not frozen:
            return
        self.wait_frozen(self._events_frozen, lambda: write_text(freeze_file, "0"), FREEZE_TIMEOUT)

    def kill(self) -> bool:
        """SIGKILL the whole subtree via cgroup.kill; False when the kernel lacks it."""
        try:
            write_text(self.path + "/cgroup.kill", "1")
        except CgroupError as e:
            if e.errno == errno.ENOENT and os.path.isdir(self.path):
                return False  # kernel < 5.14
            if e.errno == errno.ENOENT:
                return True  # the cgroup is gone, so are its processes
            raise
        return True
