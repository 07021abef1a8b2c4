"""The cgroup v2 (unified) hierarchy (config-linux.md "Control groups", kernel cgroup-v2.rst).

Used on a pure v2 host and, on a hybrid host, for the controller-less cgroup2
mount at ``<root>/unified``, where it still gives process tracking, the
freezer (``cgroup.freeze``, kernel >= 5.2) and ``cgroup.kill`` (>= 5.14).

* freezing: write ``1`` to ``cgroup.freeze``; the freeze is complete when
  ``cgroup.events`` shows ``frozen 1``.
* ``cgroup.kill``: SIGKILL to every process of the subtree in one write, with
  no race against forks (the reason to prefer it over a pid walk).

* controllers: a v2 cgroup only has the files of the controllers its
  parent lists in ``cgroup.subtree_control``, so :meth:`Hierarchy2.enable`
  writes ``+<controller>`` into every ancestor from the mount root down to
  the leaf's parent (the root cgroup is exempt from the "no internal
  processes" rule, other ancestors must hold no processes).
"""

from __future__ import annotations

import errno

from ocirun.cgroups.paths import Hierarchy, read_text, write_text
from ocirun.errors import CgroupError
from ocirun.posixpaths import dirname, exists, isdir, isfile

FREEZE_TIMEOUT = 2.0


def _words(path: str) -> frozenset[str]:
    try:
        return frozenset(read_text(path).split())
    except CgroupError as e:
        if e.errno == errno.ENOENT:
            return frozenset()
        raise


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
        return isfile(self.path + "/cgroup.freeze")

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
            if e.errno == errno.ENOENT and isdir(self.path):
                return False  # kernel < 5.14
            if e.errno == errno.ENOENT:
                return True  # the cgroup is gone, so are its processes
            raise
        return True

    # controllers

    def mount_root(self) -> str:
        """The hierarchy's mount point (known at create; found by walking up
        to the last directory with a ``cgroup.controllers`` when re-opened)."""
        if self.mount is not None:
            return self.mount.rstrip("/")
        path = self.path
        while True:
            parent = dirname(path)
            if parent == path or not exists(parent + "/cgroup.controllers"):
                return path
            path = parent

    def offered(self) -> frozenset[str]:
        """Controllers the hierarchy has at all (the mount root's cgroup.controllers)."""
        return _words(self.mount_root() + "/cgroup.controllers")

    def controllers(self) -> frozenset[str]:
        """Controllers enabled for the container's cgroup."""
        return _words(self.path + "/cgroup.controllers")

    def enable(self, wanted: frozenset[str] | None, strict: bool = True) -> None:
        """Enable ``wanted`` (None: every offered controller) down to the leaf.

        With ``strict`` a controller that cannot be enabled raises; otherwise
        it is left out (used for the enable-everything step at create).
        """
        root = self.mount_root()
        rel = self.path[len(root):].strip("/")
        parts = rel.split("/")[:-1] if rel else []
        level = root
        for name in [None, *parts]:
            if name is not None:
                level = level + "/" + name
            have = _words(level + "/cgroup.controllers")
            want = have if wanted is None else wanted
            done = _words(level + "/cgroup.subtree_control")
            for ctrl in sorted(want - done):
                if ctrl not in have:
                    if strict:
                        raise CgroupError(f"the `{ctrl}` controller is not available in "
                                          f"`{level}` (it has: {', '.join(sorted(have)) or 'none'})")
                    continue
                try:
                    write_text(level + "/cgroup.subtree_control", "+" + ctrl)
                except CgroupError as e:
                    if strict:
                        hint = (" (that cgroup has processes of its own: cgroup v2 allows "
                                "controllers only where no process lives)"
                                if e.errno == errno.EBUSY else "")
                        raise CgroupError(f"enable the `{ctrl}` controller: {e}{hint}",
                                          errno=e.errno) from e
