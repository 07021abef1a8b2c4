"""Find the cgroup hierarchies of this host (config-linux.md "Control groups").

A host is in one of three layouts:

* ``unified``: one cgroup2 filesystem at the root (``/sys/fs/cgroup``);
* ``legacy``: one cgroup v1 filesystem per hierarchy under the root
  (``/sys/fs/cgroup/memory``, ``/sys/fs/cgroup/cpu,cpuacct``, ...);
* ``hybrid``: legacy plus a controller-less cgroup2 (``/sys/fs/cgroup/unified``)
  used only for process tracking.

``os.statvfs`` does not expose the filesystem magic, so the layout is read from
``/proc/self/mountinfo`` (one read).  Which controllers a v1 mount carries is
decided by ``/proc/self/cgroup``, whose v1 lines name each hierarchy's
controllers exactly; the mount's super options also list flags such as
``clone_children`` or ``xattr`` that are not controllers.
"""

from __future__ import annotations

from ocirun.errors import CgroupError, oserror_text

MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"


class CgroupMount:
    """One cgroup filesystem mounted at or below the cgroup root."""

    __slots__ = ("mountpoint", "options", "root", "version")

    def __init__(self, mountpoint: str, root: str, version: int, options: frozenset[str]) -> None:
        self.mountpoint = mountpoint  # where it is visible, e.g. /sys/fs/cgroup/memory
        self.root = root              # which cgroup of the hierarchy is the mount's root
        self.version = version        # 1 or 2
        self.options = options        # super options (v1: contain the controller names)

    def __repr__(self) -> str:
        return f"CgroupMount({self.mountpoint!r}, root={self.root!r}, v{self.version})"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise CgroupError(f"read `{path}`: {oserror_text(e)}", errno=e.errno) from e


def read_cgroup_mounts(root: str = "/sys/fs/cgroup", mountinfo: str = MOUNTINFO) -> list[CgroupMount]:
    """Every cgroup/cgroup2 mount at ``root`` or below it, in mount order.

    When a hierarchy is mounted twice below the root only the first mount is
    kept, so each hierarchy maps to one directory (procfs.cgroup_mounts).
    """
    from ocirun.procfs import cgroup_mounts, parse_mountinfo
    return [CgroupMount(mi.mount_point, mi.root, 2 if mi.fstype == "cgroup2" else 1,
                        frozenset(mi.super_options.split(",")) if mi.super_options else frozenset())
            for mi in cgroup_mounts(parse_mountinfo(_read(mountinfo)), root)]


def mode_of(mounts: list[CgroupMount], root: str = "/sys/fs/cgroup") -> str:
    """``unified``, ``legacy`` or ``hybrid`` for the mounts found under ``root``."""
    root = root.rstrip("/") or "/"
    has_v1 = any(m.version == 1 for m in mounts)
    has_v2 = any(m.version == 2 for m in mounts)
    if any(m.version == 2 and m.mountpoint == root for m in mounts) or (has_v2 and not has_v1):
        return "unified"
    if has_v1:
        return "hybrid" if has_v2 else "legacy"
    raise CgroupError(f"no cgroup filesystem is mounted at `{root}`")


def cgroup_mode(root: str = "/sys/fs/cgroup", *, mountinfo: str = MOUNTINFO) -> str:
    """Return ``"unified"``, ``"legacy"`` or ``"hybrid"`` for the host's cgroup layout."""
    return mode_of(read_cgroup_mounts(root, mountinfo), root)


def read_own_cgroups(path: str = SELF_CGROUP) -> dict[frozenset[str], str]:
    """Parse ``/proc/self/cgroup``: controller set -> cgroup path.

    The v2 line (``0::/path``) has the empty controller set.  v1 named
    hierarchies appear as ``name=systemd`` in the set, like in mount options.
    """
    own: dict[frozenset[str], str] = {}
    for line in _read(path).splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ctrls = frozenset(c for c in parts[1].split(",") if c)
        own[ctrls] = parts[2]
    return own


def v1_controllers(mount: CgroupMount, own: dict[frozenset[str], str]) -> frozenset[str] | None:
    """The controllers of a v1 mount, or None when this process is not in that hierarchy."""
    for ctrls in own:
        if ctrls and ctrls <= mount.options:
            return ctrls
    return None

