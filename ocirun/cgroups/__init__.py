"""The container's cgroup (config-linux.md "Control groups", "Cgroups path").

:func:`open_manager` resolves ``linux.cgroupsPath`` into one directory per
mounted hierarchy for a new container; :func:`load_manager` re-opens those
directories from the dict :meth:`CgroupManager.paths` returned (saved in the
container state), for ``kill --all``, ``pause``, ``delete`` and friends.

Only the cgroupfs driver is built: the systemd driver is refused with
:class:`NotSupportedError` (specs/cgroups.md says what it would need).
Cgroup ownership (chown for a cgroup namespace) is not done.
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean delete
import time

from ocirun.cgroups.detect import (
    MOUNTINFO,
    SELF_CGROUP,
    mode_of,
    read_cgroup_mounts,
    read_own_cgroups,
    v1_controllers,
)
from ocirun.cgroups.paths import RMDIR_TIMEOUT, Hierarchy, check_cgroups_path, resolve_dir
from ocirun.cgroups.v1 import Hierarchy1
from ocirun.cgroups.v2 import Hierarchy2
from ocirun.errors import CgroupError, NotSupportedError
from ocirun.posixpaths import normpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cgroups.oom import OomWatcher
    from ocirun.syscalls.api import Syscalls

__all__ = ["CREATED_PREFIX", "UNIFIED_KEY", "CgroupManager", "load_manager", "open_manager"]

UNIFIED_KEY = "unified"
# paths() also records, per hierarchy, the topmost directory create() made, so
# a manager re-opened from the state file removes exactly those directories.
CREATED_PREFIX = "created:"

_SIGKILL = 9  # same number on every Linux architecture; avoids importing `signal`


class CgroupManager:
    """One container's cgroup directories, one per hierarchy (v1, v2 or both)."""

    __slots__ = ("hierarchies",)

    def __init__(self, hierarchies: list[Hierarchy]) -> None:
        self.hierarchies = hierarchies

    def __repr__(self) -> str:
        return f"CgroupManager({self.hierarchies!r})"

    # --- life cycle ---

    def create(self, version: int | None = None) -> None:
        """Create the directories (mkdir -p); on failure remove what was made.
        ``version``: only the hierarchies of that cgroup version (create
        makes the v2 directory first, for an init born there early, then
        the v1 ones); each hierarchy is created once."""
        mine = [h for h in self.hierarchies if version is None or h.version == version]
        try:
            for h in mine:
                h.create()
            if (len(self.hierarchies) == 1 and mine
                    and isinstance(self.hierarchies[0], Hierarchy2)):
                # Pure v2: enable every controller down to the container, as
                # runc does, so its stats files exist and nested cgroups work.
                self.hierarchies[0].enable(None, strict=False)
        except BaseException:
            # "as if never attempted" (runtime.md#errors): undo our own mkdirs.
            deadline = time.monotonic() + RMDIR_TIMEOUT
            for h in mine:
                try:
                    h.remove(deadline)
                except CgroupError:
                    pass
            raise

    def made_v2_dir(self) -> bool:
        """The container's v2 directory is one create() made (new and
        empty), or there is none: nothing else lives where an init born
        before the rest of the set-up would be."""
        return all(h.created is not None for h in self.hierarchies if h.version == 2)

    def add(self, pid: int, *, except_v2: bool = False, except_v1: bool = False) -> None:
        """Move ``pid`` into the container's cgroup in every hierarchy, but the
        unified one with ``except_v2`` (the process was born there, clone3)
        and the v1 ones with ``except_v1`` (it joins them itself,
        :meth:`self_join_fds`)."""
        for h in self.hierarchies:
            if not (except_v2 and h.version == 2) and not (except_v1 and h.version == 1):
                h.add(pid)

    def self_join_fds(self) -> list[tuple[int, str]]:
        """The v1 hierarchies' ``tasks`` files, opened for writing: (fd, path).

        The process that enters the container writes ``0`` (itself) into
        each (process/intermediate.py :func:`enter_v1_cgroups`): a tenant
        first thing after its fork, an init at N3, before its first cgroup
        mount.  A thread moving itself is the one cgroup
        move for which the kernel does not take the global
        cgroup_threadgroup_rwsem for writing (cgroup_procs_write_start, since
        Linux 5.5: "cgroup: Optimize single thread migration"; an older
        kernel makes the same move, only waiting as for any other), so
        it never waits for the RCU grace period (8-15 ms here) that the
        runtime's ``cgroup.procs`` write of another process's pid waits for,
        holding cgroup_mutex (every other cgroup mkdir on the host queues
        behind it).  The process is single-threaded then: its thread is all
        of it.  The file is opened by us; the kernel's check of the write
        (the writer's or the opener's euid is root or the task's own uid)
        passes for a process moving itself, so it works from a user
        namespace too.
        Empty when a file cannot be opened: the runtime then moves the
        process itself (:meth:`add`), and that write reports the error."""
        out: list[tuple[int, str]] = []
        for h in self.hierarchies:
            if h.version != 1:
                continue
            path = h.path + "/tasks"
            try:
                out.append((os.open(path, os.O_WRONLY | os.O_CLOEXEC), path))
            except OSError:
                for fd, _ in out:
                    os.close(fd)
                return []
        return out

    def v2_dir_fd(self) -> int:
        """An O_PATH fd on the container's cgroup v2 directory, for clone3's
        CLONE_INTO_CGROUP (process/fork.py spawn_in_cgroup); -1 without one,
        or when the cgroup's pids.max leaves no room for one more process
        (``pids.limit`` 0, or a joined cgroup already at its limit).  clone3
        would then fail after allocating the pid, and the first pid of a new
        pid namespace allocated and freed leaves that namespace unable to
        fork (ENOMEM): the plain fork and a cgroup.procs move (which the pids
        controller does not limit) are taken instead, as runc does."""
        d = self.v2_dir()
        if d is None or _pids_full(d):
            return -1
        try:
            return os.open(d, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return -1  # the process is then moved by cgroup.procs, as on a v1 host

    def v2_dir(self) -> str | None:
        """The container's directory in the unified hierarchy, if there is one
        (the target of clone3's CLONE_INTO_CGROUP)."""
        for h in self.hierarchies:
            if h.version == 2:
                return h.path
        return None

    def apply(self, resources: dict[str, object] | None, *, sys: Syscalls | None = None,
              update: bool = False, prefix: str = "linux.resources") -> None:
        """Write ``linux.resources`` (``apply.py`` routes each resource to a hierarchy).

        Device rules are always written at create (deny all, the config's
        rules, the defaults), as runc does, so a container only reaches the
        devices it is given even when the config lists no rules; ``update``
        leaves them alone, like ``runc update``.
        """
        from ocirun import log
        from ocirun.cgroups.apply import apply_resources
        apply_resources(self.hierarchies, resources, sys=sys, prefix=prefix, update=update,
                        warn=log.warning)

    def destroy(self) -> None:
        """Remove the directories create() made, leaf first; kill nothing.

        A cgroup whose last task is still exiting answers EBUSY for a moment,
        so removal is retried for up to RMDIR_TIMEOUT in total.  Missing
        directories are fine (already removed).
        """
        deadline = time.monotonic() + RMDIR_TIMEOUT
        first: CgroupError | None = None
        for h in self.hierarchies:
            try:
                h.remove(deadline)
            except CgroupError as e:
                first = first or e
        if first is not None:
            raise first

    def paths(self) -> dict[str, str]:
        """Key -> directory: v1 controller names (``memory``, ``name=systemd``) and
        ``unified``; plus ``created:<key>`` entries for the directories we made."""
        out: dict[str, str] = {}
        for h in self.hierarchies:
            for k in h.keys:
                out[k] = h.path
        for h in self.hierarchies:
            if h.created is not None:
                for k in h.keys:
                    out[CREATED_PREFIX + k] = h.created
        return out

    # --- processes ---

    def _primary(self) -> Hierarchy | None:
        # The unified hierarchy (or else the freezer) is where every process
        # of the container is tracked; reading one hierarchy is enough.
        for h in self.hierarchies:
            if h.version == 2:
                return h
        for h in self.hierarchies:
            if h.can_freeze():
                return h
        return self.hierarchies[0] if self.hierarchies else None

    def pids(self, recursive: bool = True) -> list[int]:
        """PIDs in the container's cgroup (sub-cgroups too when ``recursive``)."""
        h = self._primary()
        return sorted(h.procs(recursive)) if h is not None else []

    def kill_all(self, sig: int) -> None:
        """Send ``sig`` to every process of the cgroup; a missing cgroup is not an error."""
        if sig == _SIGKILL:
            for h in self.hierarchies:
                if isinstance(h, Hierarchy2) and h.kill():
                    self._thaw_for_kill()
                    return
        was_frozen = self.frozen()
        froze = False
        if self._freezer() is not None and not was_frozen:
            # Freezing first stops the processes from forking new ones between
            # our listing of the pids and the signals.
            try:
                self.freeze(True)
                froze = True
            except CgroupError:
                pass  # gone, or stuck freezing (freeze() thawed it): signal anyway
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if froze:
                self._quiet_thaw()
        if sig == _SIGKILL:
            self._thaw_for_kill()

    def _thaw_for_kill(self) -> None:
        # A frozen (paused) task only dies once it runs again.
        if self.frozen():
            self._quiet_thaw()

    def _quiet_thaw(self) -> None:
        try:
            self.freeze(False)
        except CgroupError as e:
            if e.errno != errno.ENOENT:
                raise

    # --- observation ---

    def stats(self) -> dict[str, object]:
        """Usage in runc's ``events`` ``data`` shape (``stats.py``)."""
        from ocirun.cgroups.stats import collect
        v1: dict[str, str] = {}
        v2 = None
        for h in self.hierarchies:
            if isinstance(h, Hierarchy2):
                v2 = h.path
            else:
                for k in h.keys:
                    v1[k] = h.path
        return collect(v1, v2)

    def oom_watcher(self) -> OomWatcher:
        """An ``oom.OomWatcher`` on the memory controller (v1 when mounted, else v2)."""
        from ocirun.cgroups import oom
        for h in self.hierarchies:
            if h.version == 1 and "memory" in h.keys:
                return oom.watch_v1(h.path)
        for h in self.hierarchies:
            if isinstance(h, Hierarchy2):
                return oom.watch_v2(h.path)
        raise CgroupError("no memory controller to watch for OOM events")

    # --- freezer ---

    def _freezer(self) -> Hierarchy | None:
        # One freezer only: on a hybrid host the v1 freezer (what runc uses),
        # otherwise cgroup.freeze of the unified hierarchy.
        v2 = None
        for h in self.hierarchies:
            if h.version == 1 and "freezer" in h.keys:
                return h
            if h.version == 2:
                v2 = h
        return v2

    def freeze(self, frozen: bool) -> None:
        """Freeze (pause) or thaw (resume) every process of the container."""
        h = self._freezer()
        if h is None:
            raise CgroupError("no cgroup freezer is available (no v1 `freezer` hierarchy "
                              "and no unified hierarchy)")
        if frozen:
            h.set_frozen(True)
            return
        # Thaw every freezer, so a cgroup frozen by some other tool is resumed too.
        for other in self.hierarchies:
            if other is h or other.can_freeze():
                other.set_frozen(False)

    def frozen(self) -> bool:
        """True when any hierarchy reports the cgroup frozen (or freezing)."""
        return any(h.is_frozen() for h in self.hierarchies)


def open_manager(cgroups_path: str | None, container_id: str, *, root: str = "/sys/fs/cgroup",
                 mode: str | None = None, systemd: bool = False,
                 mountinfo: str = MOUNTINFO, self_cgroup: str = SELF_CGROUP) -> CgroupManager:
    """Resolve the cgroup of a NEW container (nothing is created until ``create()``).

    ``cgroups_path`` unset means ``/<container_id>``.  An absolute path is
    relative to each hierarchy's mount point, a relative one to this
    process's own cgroup in that hierarchy.  ``mode`` (from
    ``detect.cgroup_mode``) restricts the hierarchies used; None detects it.
    """
    if systemd:
        raise NotSupportedError("systemd cgroup driver is not supported yet")
    path = check_cgroups_path(cgroups_path, container_id)
    mounts = read_cgroup_mounts(root, mountinfo)
    if mode is None:
        mode = mode_of(mounts, root)
    if mode == "unified":
        mounts = [m for m in mounts if m.version == 2]
    elif mode == "legacy":
        mounts = [m for m in mounts if m.version == 1]
    elif mode != "hybrid":
        raise CgroupError(f"unknown cgroup mode `{mode}` (want unified, legacy or hybrid)")
    if not mounts:
        raise CgroupError(f"no {mode} cgroup hierarchy is mounted under `{root}`")
    # /proc/self/cgroup names the v1 controllers of each mount and gives our
    # own cgroup for relative paths; a v2-only host with an absolute path needs neither.
    need_own = not path.startswith("/") or any(m.version == 1 for m in mounts)
    own = read_own_cgroups(self_cgroup) if need_own else {}
    hierarchies: list[Hierarchy] = []
    for m in mounts:
        if m.version == 2:
            d = resolve_dir(m.mountpoint, m.root, own.get(frozenset()), path)
            hierarchies.append(Hierarchy2((UNIFIED_KEY,), d, m.mountpoint))
            continue
        ctrls = v1_controllers(m, own)
        if ctrls is None:
            continue  # a hierarchy this process is not part of: nothing to join
        d = resolve_dir(m.mountpoint, m.root, own.get(ctrls), path)
        hierarchies.append(Hierarchy1(tuple(sorted(ctrls)), d, m.mountpoint))
    if not hierarchies:
        raise CgroupError(f"no usable cgroup hierarchy under `{root}`")
    return CgroupManager(hierarchies)


def _inside(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/") and normpath(path) == path


def load_manager(paths: dict[str, str], *, root: str = "/sys/fs/cgroup") -> CgroupManager:
    """Re-open a container's cgroup from the dict ``CgroupManager.paths()`` returned."""
    created: dict[str, str] = {}
    by_dir: dict[str, list[str]] = {}
    for key, path in paths.items():
        if not isinstance(path, str) or not _inside(path, root):
            # The state file is ours, but never rmdir outside the cgroup root.
            raise CgroupError(f"saved cgroup path `{path}` for `{key}` is not below `{root}`")
        if key.startswith(CREATED_PREFIX):
            created[key[len(CREATED_PREFIX):]] = path
        else:
            by_dir.setdefault(path, []).append(key)
    hierarchies: list[Hierarchy] = []
    for path, keys in by_dir.items():
        ks = tuple(sorted(keys))
        top = created.get(ks[0])
        if top is not None and path != top and not path.startswith(top + "/"):
            raise CgroupError(f"saved cgroup path `{top}` is not an ancestor of `{path}`")
        if UNIFIED_KEY in ks:
            if len(ks) != 1:
                raise CgroupError(f"saved cgroup path `{path}` is shared by `unified` and v1 "
                                  f"controllers {', '.join(k for k in ks if k != UNIFIED_KEY)}")
            hierarchies.append(Hierarchy2(ks, path, None, top))
        else:
            hierarchies.append(Hierarchy1(ks, path, None, top))
    return CgroupManager(hierarchies)


def _pids_full(d: str) -> bool:
    """True when ``d``'s pids.max leaves no room for one more process."""
    try:
        with open(d + "/pids.max", "rb") as f:
            limit = f.read().strip()
        if limit == b"max":
            return False
        with open(d + "/pids.current", "rb") as f:
            return int(f.read()) >= int(limit)
    except (OSError, ValueError):
        return False  # no pids controller here
