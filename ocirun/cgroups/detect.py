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


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            return f.read()
    except OSError as e:
        raise CgroupError(f"read `{path}`: {oserror_text(e)}", errno=e.errno) from e


def read_cgroup_mounts(root: str = "/sys/fs/cgroup", mountinfo: str = MOUNTINFO) -> list[CgroupMount]:
    """Every cgroup/cgroup2 mount at ``root`` or below it, in mount order.

    When a hierarchy is mounted twice below the root only the first mount is
    kept, so each hierarchy maps to one directory.
    """
    root = root.rstrip("/") or "/"
    prefix = root if root == "/" else root + "/"
    mounts: list[CgroupMount] = []
    seen: set[tuple[int, frozenset[str]]] = set()
    for line in _read(mountinfo).splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
        except ValueError:
            continue
        fstype = fields[sep + 1] if len(fields) > sep + 1 else ""
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mountpoint = _unescape(fields[4])
        if mountpoint != root and not mountpoint.startswith(prefix):
            continue
        version = 2 if fstype == "cgroup2" else 1
        options = frozenset(fields[sep + 3].split(",")) if len(fields) > sep + 3 else frozenset()
        key = (version, options if version == 1 else frozenset())
        if key in seen:
            continue
        seen.add(key)
        mounts.append(CgroupMount(mountpoint, _unescape(fields[3]), version, options))
    return mounts


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

