"""cgroup v1 hierarchies (config-linux.md "Control groups", kernel cgroup-v1 docs).

What differs from v2 for creation and membership:

* ``cpuset``: a new cpuset cgroup starts with empty ``cpuset.cpus`` and
  ``cpuset.mems`` (unless the parent has ``cgroup.clone_children``), and the
  kernel refuses to add a task to it (ENOSPC).  The values are copied from the
  parent, top-down, for every level of the chain that is still empty.
* freezing goes through ``freezer.state`` (``FROZEN`` / ``THAWED``; the kernel
  reports ``FREEZING`` until every task has stopped).

Resource limits are not written here yet (see ``CgroupManager.apply``).
"""

from __future__ import annotations

import errno

from ocirun.cgroups.paths import Hierarchy, read_text, write_text
from ocirun.errors import CgroupError

# How long freeze() waits for FREEZING to become FROZEN before giving up.
FREEZE_TIMEOUT = 2.0


class Hierarchy1(Hierarchy):
    """The container's directory in one v1 hierarchy (possibly co-mounted controllers)."""

    __slots__ = ()
    version = 1

    def prepare(self) -> None:
        if "cpuset" in self.keys and self.mount is not None:
            self._fill_cpuset()

    def _fill_cpuset(self) -> None:
        # Walk from the first level below the mount point down to the leaf so
        # every level inherits a non-empty value from the one above.
        assert self.mount is not None
        mount = self.mount.rstrip("/")
        rel = self.path[len(mount):].strip("/")
        parent = mount
        for name in rel.split("/"):
            child = parent + "/" + name
            for f in ("cpuset.cpus", "cpuset.mems"):
                try:
                    if read_text(child + "/" + f).strip():
                        continue
                    value = read_text(parent + "/" + f).strip()
                except CgroupError as e:
                    if e.errno == errno.ENOENT:
                        # A `noprefix` mount names the files differently; the
                        # later write to cgroup.procs reports ENOSPC if needed.
                        continue
                    raise
                write_text(child + "/" + f, value)
            parent = child

    # freezer

    def can_freeze(self) -> bool:
        return "freezer" in self.keys

    def _state(self) -> str | None:
        try:
            return read_text(self.path + "/freezer.state").strip()
        except CgroupError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    def is_frozen(self) -> bool:
        if not self.can_freeze():
            return False
        state = self._state()
        # FREEZING counts: some tasks are already stopped.
        return state is not None and state != "THAWED"

    def set_frozen(self, frozen: bool) -> None:
        if not self.can_freeze():
            raise CgroupError(f"cgroup `{self.path}` has no freezer")
        state_file = self.path + "/freezer.state"
        if not frozen:
            write_text(state_file, "THAWED")
            return

        def probe() -> bool | None:
            state = self._state()
            return None if state is None else state == "FROZEN"

        # Re-writing FROZEN each round nudges tasks that were busy (e.g. in vfork).
        self.wait_frozen(probe, lambda: write_text(state_file, "THAWED"), FREEZE_TIMEOUT,
                         nudge=lambda: write_text(state_file, "FROZEN"))

