"""Build the container's filesystem view, in the init process.

Implements config.md ``#root`` (readonly), ``#mounts`` (in order, bind
sources relative to the bundle), config-linux.md ``#rootfs-mount-propagation``,
``#masked-paths``, ``#readonly-paths`` and runtime-linux.md
``#dev-symbolic-links``.  Two phases, because hooks run in between
(runtime.md "Lifecycle" step 2, createRuntime/createContainer):

* :func:`prepare_rootfs`: in the new mount namespace, before pivot_root:
  propagation of ``/``, the rootfs bind, ``mounts[]``, devices, ``/dev`` links.
* :func:`finish_rootfs`: pivot_root (or MS_MOVE + chroot), then readonly and
  masked paths, then the read-only root.

Container paths are resolved with :mod:`ocirun.pathres` so a hostile image
cannot redirect a mount outside the rootfs, and every call that mounts on or
creates in such a path goes through an fd opened without following symlinks
(:class:`Pinned`, ``/proc/self/fd/N``): a directory swapped for a symlink by
another container sharing it, between the resolution and the call, cannot
redirect it either (CVE-2021-30465).
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.devices import create_devices
from ocirun.errors import ConfigError, SyscallError, oserror_text
from ocirun.mount_options import PROPAGATION_OPTIONS, MountOptions
from ocirun.pathres import mkdir_all_in_root, open_in_root, resolve_in_root
from ocirun.plantypes import ALLOWED_PROC_MOUNTS  # mounts over /proc (the planner's rule too)
from ocirun.posixpaths import dirname, exists, isdir, lexists
from ocirun.syscalls.api import (
    AT_FDCWD,
    AT_RECURSIVE,
    MNT_DETACH,
    MOVE_MOUNT_F_EMPTY_PATH,
    MOVE_MOUNT_T_SYMLINKS,
    MS_BIND,
    MS_MOVE,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SLAVE,
    MS_STRICTATIME,
)

TYPE_CHECKING = False  # avoids importing typing (~8 ms cold); mypy still honours it
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.plantypes import ContainerPlan, MountPlan
    from ocirun.procfs import MountInfo
    from ocirun.syscalls.api import Syscalls

# Host files read while mounting cgroups; module attributes so tests can point
# them at fixtures.
MOUNTINFO = "/proc/self/mountinfo"
PROC_SELF_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"

DEV_SYMLINKS = (("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
                ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2"))

_ATIME_FLAGS = MS_NOATIME | MS_RELATIME | MS_STRICTATIME


def _fail(what: str, e: OSError, stage: str) -> SyscallError:
    return SyscallError(f"{what}: {oserror_text(e)}", errno=e.errno, stage=stage)


def mount_flags_of(path: str | int) -> int:
    """MS_* flags of the mount holding ``path`` (statvfs), to keep on a remount.

    A bind remount replaces every per-mount flag, and inside a user namespace
    the kernel refuses to clear flags the parent namespace set (EPERM).
    ST_RELATIME and ST_NOSYMFOLLOW differ from their MS_* values.
    """
    f = os.statvfs(path).f_flag
    out = f & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if f & 0x1000:
        out |= MS_RELATIME
    if f & 0x2000:
        out |= MS_NOSYMFOLLOW
    return out


def _in_root(rootfs: str, path: str, what: str, stage: str) -> str:
    try:
        return resolve_in_root(rootfs, path)
    except OSError as e:
        raise _fail(what, e, stage) from e


class Pinned:
    """``with Pinned(rootfs, host) as target:`` -- ``target`` is
    ``/proc/self/fd/N`` of an O_PATH fd on ``host`` (below ``rootfs``) opened
    without following any symlink (pathres.open_in_root).  A mount onto it,
    or a name created through it, is exactly there whatever is renamed
    meanwhile.  Pin again after a mount: the fd names the place beneath it."""

    __slots__ = ("fd",)

    def __init__(self, rootfs: str, host: str, create_dirs: bool = False) -> None:
        self.fd = open_in_root(rootfs, host, create_dirs=create_dirs)

    def __enter__(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _parent_in_root(rootfs: str, path: str) -> str:
    """Host path of ``path`` with its parent resolved but the last component
    kept as is, to create or replace a symlink itself rather than its target."""
    parent, _, name = path.rpartition("/")
    return resolve_in_root(rootfs, parent or "/").rstrip("/") + "/" + name


# --------------------------------------------------------------------------
# prepare_rootfs


def prepare_rootfs(plan: ContainerPlan, sys: Syscalls, *, mount_fds: dict[int, int] | None = None,
                   before_cgroup: Callable[[], None] | None = None) -> None:
    """Everything before pivot_root; runs inside the container's mount namespace.

    ``mount_fds`` maps a mounts[] index to a detached copy of its bind source
    (open_tree, made by the runtime before the user namespace applied).
    ``before_cgroup`` is called once, right before the first mount that shows
    cgroups (a cgroup mount, or anything under /sys/fs/cgroup): the init may
    start here before the runtime has finished moving it into its cgroup.
    """
    rootfs = plan.rootfs
    in_userns = plan.ns.in_userns
    _root_propagation(plan.rootfs_propagation, rootfs, sys)
    # pivot_root(2) needs new_root to be a mount point.
    try:
        sys.mount(rootfs, rootfs, "bind", MS_BIND | MS_REC, None)
    except OSError as e:
        hint = reach_hint(plan.uid_map) if in_userns and e.errno == errno.EACCES else ""
        raise _fail(f"bind mount rootfs `{rootfs}` onto itself{hint}", e, "rootfs") from e
    own_cgroupns = plan.ns.has("cgroup")
    for m in plan.mounts:
        if before_cgroup is not None and m.shows_cgroups:
            before_cgroup()
            before_cgroup = None
        _mount_entry(m, rootfs, sys, in_userns, own_cgroupns,
                     (mount_fds or {}).get(m.index, -1))
    # A bind-mounted /dev is the host's (or the user's) as is: runc then makes
    # no nodes and no links there.
    if plan.dev_is_bind:
        return
    create_devices(plan.devices, rootfs, sys, in_userns=in_userns)
    try:
        if plan.private_devpts:
            _ptmx_symlink(rootfs)
        _dev_symlinks(rootfs)
    except OSError as e:
        raise _fail(f"create /dev symlinks in `{rootfs}`", e, "dev_symlinks") from e


def reach_hint(uid_map: bytes) -> str:
    """Why a path is out of reach in a user namespace: the container's root
    is a host uid of the map (runc's rule: the rootfs must be reachable by it)."""
    who = "the container's root"
    for line in uid_map.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and int(parts[0]) <= 0 < int(parts[0]) + int(parts[2]):
            who += f" (host uid {int(parts[1]) - int(parts[0])})"
    return (f" ({who} must be able to reach it: every directory above it must be searchable "
            "by that uid)")


def _root_propagation(value: str | None, rootfs: str, sys: Syscalls) -> None:
    """Cut (or shape) propagation between the host and the new mount namespace."""
    if value is None:
        flag = MS_SLAVE | MS_REC  # nothing the container mounts reaches the host
    elif value == "unbindable":
        # the rootfs could not be bind-mounted out of an unbindable tree;
        # finish_rootfs makes the new "/" unbindable after the pivot
        flag = PROPAGATION_OPTIONS["private"] | MS_REC
    elif value in PROPAGATION_OPTIONS:
        flag = PROPAGATION_OPTIONS[value] | MS_REC
    else:
        raise ConfigError(f"linux.rootfsPropagation `{value}`: expected shared, slave, "
                          "private or unbindable", stage="rootfs")
    try:
        sys.mount(None, "/", None, flag, None)
        if flag & MS_SHARED:
            # pivot_root(2) fails with EINVAL when the parent mount of new_root
            # is shared; keep "/" shared but make that one mount private.
            parent = _mount_point_of(dirname(rootfs))
            sys.mount(None, parent, None, PROPAGATION_OPTIONS["private"], None)
    except OSError as e:
        raise _fail(f"set propagation of `/` to `{value or 'rslave'}`", e, "rootfs") from e


def _mount_entry(m: MountPlan, rootfs: str, sys: Syscalls, in_userns: bool,
                 own_cgroupns: bool, source_fd: int = -1) -> None:
    dest = m.destination
    where = m.where
    opts = m.options
    host = _in_root(rootfs, dest, f"resolve mount destination {where}", "mounts")
    _check_proc(rootfs, host, m.fstype, m.kind == "bind", where)
    if m.fstype in ("proc", "sysfs") and host != rootfs + dest:
        # The image's symlinks must not move procfs or sysfs elsewhere: the
        # masked paths would then mask the wrong place.
        raise ConfigError(f"mount `{m.fstype}` on {where}: a path component is a symlink in "
                          f"the rootfs (it resolves to `{host[len(rootfs):] or '/'}`)",
                          stage="mounts")

    if m.kind == "bind":
        _bind(sys, m.source, rootfs, dest, host, opts.flags, m.recursive, where, in_userns,
              source_fd, prefer_path=m.idmap is None)
    elif m.kind == "cgroup":
        _mkdir_dest(rootfs, dest, host, where)
        _mount_cgroup(sys, rootfs, dest, host, opts, where, in_userns, own_cgroupns)
    elif m.kind == "host_sysfs":
        _bind(sys, m.source, rootfs, dest, host, opts.flags, True, where, in_userns)
    else:
        _mkdir_dest(rootfs, dest, host, where)
        _mount_fs(sys, m.source, rootfs, dest, host, m.fstype, opts, where, in_userns)

    for prop in opts.propagation:
        try:
            with Pinned(rootfs, host) as target:
                sys.mount(None, target, None, prop, None)
        except OSError as e:
            raise _fail(f"set propagation of {where}", e, "mounts") from e
    if opts.attr_set or opts.attr_clr:
        try:
            with Pinned(rootfs, host) as target:
                sys.mount_setattr(AT_FDCWD, target, AT_RECURSIVE, opts.attr_set, opts.attr_clr)
        except OSError as e:
            hint = " (recursive options need Linux >= 5.12)" if e.errno == errno.ENOSYS else ""
            raise _fail(f"mount_setattr on {where}{hint}", e, "mounts") from e


def _check_proc(rootfs: str, host: str, fstype: str, is_bind: bool, where: str) -> None:
    proc = rootfs + "/proc"
    if host != proc and not host.startswith(proc + "/"):
        return
    rel = host[len(rootfs):]
    if rel == "/proc" and fstype == "proc" and not is_bind:
        return
    if rel in ALLOWED_PROC_MOUNTS:
        return
    raise ConfigError(f"mount on {where}: `{rel}` is inside /proc; only a proc filesystem "
                      "on /proc or binds over a few harmless /proc files are allowed",
                      stage="mounts")


def _mkdir_dest(rootfs: str, dest: str, host: str, where: str) -> None:
    if lexists(host):
        return
    try:
        mkdir_all_in_root(rootfs, dest)
    except OSError as e:
        raise _fail(f"create mount point {where}", e, "mounts") from e


def _bind(sys: Syscalls, source: str, rootfs: str, dest: str, host: str, flags: int,
          rec: bool, where: str, in_userns: bool, source_fd: int = -1,
          prefer_path: bool = False) -> None:
    """Bind ``source`` (or the detached tree ``source_fd``) onto ``host``.

    ``prefer_path``: bind the path when this process reaches it, the tree
    only when it does not.  In a user namespace a bind made here is a copy
    of a mount the kernel locked when the mount namespace was made: the
    container can never clear the host's ro, nosuid, nodev, noexec on it.
    The runtime's clone carries no such lock (it was made outside), so it
    serves only sources the container's root cannot reach (runc's rule
    would refuse those), with the host's flags kept by hand.
    """
    import _stat
    try:
        # fstat the cloned tree when there is one: the source itself may be
        # out of this (user-namespaced) process's reach.  Any errno is kept.
        st = os.fstat(source_fd) if source_fd >= 0 else os.stat(source)
        is_dir = _stat.S_ISDIR(st.st_mode)
        if not lexists(host):
            if is_dir:
                mkdir_all_in_root(rootfs, dest)
            else:
                # A file is bound onto a file: create an empty one to cover.
                _create_file(rootfs, host)
    except OSError as e:
        raise _fail(f"prepare bind mount of `{source}` on {where}", e, "mounts") from e
    used_fd = False
    try:
        if source_fd >= 0 and prefer_path:
            try:
                with Pinned(rootfs, host) as target:
                    sys.mount(source, target, "bind", MS_BIND | (MS_REC if rec else 0), None)
            except OSError as e:
                # EACCES/EPERM: out of reach; EINVAL: a plain (non-recursive)
                # bind would uncover what a locked mount below hides
                if e.errno not in (errno.EACCES, errno.EPERM, errno.EINVAL):
                    raise
                used_fd = True
        else:
            used_fd = source_fd >= 0
        if used_fd:
            with Pinned(rootfs, host) as target:
                sys.move_mount(source_fd, "", AT_FDCWD, target,
                               MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS)
        elif source_fd < 0:
            with Pinned(rootfs, host) as target:
                sys.mount(source, target, "bind", MS_BIND | (MS_REC if rec else 0), None)
    except OSError as e:
        raise _fail(f"mount `{source}` on {where}", e, "mounts") from e
    extra = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if extra:
        if used_fd and in_userns:
            # The runtime cloned the source outside the user namespace, so
            # the kernel locked none of its flags; keep them as it would
            # have (a bind of a nosuid,nodev host mount stays so).
            try:
                locked = mount_flags_of(source_fd)
            except OSError as e:
                raise _fail(f"read the mount flags of `{source}` for {where}", e,
                            "mounts") from e
            extra |= locked & ~_ATIME_FLAGS if flags & _ATIME_FLAGS else locked
        # MS_BIND ignores every other flag: ro, nosuid... need a remount.
        _remount_bind(sys, rootfs, host, extra, where, in_userns)


def _remount_bind(sys: Syscalls, rootfs: str, host: str, flags: int, where: str,
                  in_userns: bool) -> None:
    try:
        pin = Pinned(rootfs, host)  # the mount just made on host
    except OSError as e:
        raise _fail(f"remount {where} with flags {flags:#x}", e, "mounts") from e
    with pin as target:
        _remount_bind_at(sys, target, flags, where, in_userns)


def _remount_bind_at(sys: Syscalls, target: str, flags: int, where: str,
                     in_userns: bool) -> None:
    """Remount the bind mount at ``target`` (a pinned path) with ``flags``."""
    want = MS_BIND | MS_REMOUNT | flags
    try:
        sys.mount(None, target, None, want, None)
        return
    except OSError as e:
        if e.errno != errno.EPERM or not in_userns:
            raise _fail(f"remount {where} with flags {flags:#x}", e, "mounts") from e
        first = e
    # In a user namespace the flags the host set on the source are locked;
    # retry keeping them (an atime choice of the config still wins).
    try:
        locked = mount_flags_of(target)
    except OSError:
        raise _fail(f"remount {where} with flags {flags:#x}", first, "mounts") from first
    if flags & _ATIME_FLAGS:
        locked &= ~_ATIME_FLAGS
    if want | locked == want:
        raise _fail(f"remount {where} with flags {flags:#x}", first, "mounts") from first
    try:
        sys.mount(None, target, None, want | locked, None)
    except OSError as e:
        raise _fail(f"remount {where} with flags {flags | locked:#x}", e, "mounts") from e


def _mount_fs(sys: Syscalls, source: str, rootfs: str, dest: str, host: str, fstype: str,
              opts: MountOptions, where: str, in_userns: bool) -> None:
    flags = opts.flags
    data = opts.data or None
    copyup = opts.tmpcopyup and fstype == "tmpfs"
    late_ro = bool(flags & MS_RDONLY) and (copyup or (dest == "/dev" and fstype == "tmpfs"))
    if late_ro:
        # Files are still to be written there (copy-up, device nodes): mount
        # read-write now; read-only comes after (here, or finish_rootfs for /dev).
        flags &= ~MS_RDONLY
    old_fd = -1
    try:
        if copyup:
            # Keep a handle on the directory about to be covered, to copy from.
            old_fd = open_in_root(rootfs, host)
        try:
            with Pinned(rootfs, host) as target:
                sys.mount(source, target, fstype, flags, data)
        except OSError as e:
            if not (fstype == "mqueue" and in_userns and e.errno == errno.EPERM):
                raise _fail(f"mount `{fstype}` on {where}", e, "mounts") from e
            # mqueue belongs to the IPC namespace's owner: show the host's.
            if not isdir("/dev/mqueue"):
                raise _fail(f"mount `mqueue` on {where} (a user namespace may mount mqueue "
                            "only for an ipc namespace of its own: add an ipc namespace; the "
                            "host has no /dev/mqueue to bind instead)", e, "mounts") from e
            _bind(sys, "/dev/mqueue", rootfs, dest, host, flags, False, where, in_userns)
        if copyup:
            try:
                with Pinned(rootfs, host) as target:  # the new tmpfs
                    _copy_up(old_fd, target)
            except OSError as e:
                raise _fail(f"tmpcopyup into {where}", e, "mounts") from e
            if late_ro:
                try:
                    with Pinned(rootfs, host) as target:
                        sys.mount(None, target, None, MS_REMOUNT | opts.flags, data)
                except OSError as e:
                    raise _fail(f"remount {where} read-only", e, "mounts") from e
    except OSError as e:
        raise _fail(f"open mount point {where}", e, "mounts") from e
    finally:
        if old_fd >= 0:
            os.close(old_fd)


def _copy_up(old_fd: int, host: str) -> None:
    """Copy the covered directory (reached through its fd) into the new tmpfs."""
    import os  # frozen, importable here; only for the rare tmpcopyup option
    import shutil

    src = f"/proc/self/fd/{old_fd}"
    try:
        shutil.copytree(src, host, symlinks=True, dirs_exist_ok=True)
    except shutil.Error as e:
        # Its args are a list of (src, dst, reason): report the first one.
        first = e.args[0][0] if e.args and e.args[0] else ("?", "?", "copy failed")
        raise OSError(errno.EIO, f"{first[2]} (copying `{first[0]}`)") from e
    # copytree keeps modes and times, not owners: an image's files keep theirs.
    st = os.stat(src)
    os.chown(host, st.st_uid, st.st_gid)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in (*dirnames, *filenames):
            s = os.lstat(os.path.join(dirpath, name))
            os.lchown(os.path.normpath(os.path.join(host, rel, name)), s.st_uid, s.st_gid)


# --------------------------------------------------------------------------
# cgroup mounts


def _read_mountinfo() -> list[MountInfo]:
    from ocirun.procfs import read_mountinfo
    return read_mountinfo(MOUNTINFO)


def _mount_point_of(path: str) -> str:
    from ocirun.procfs import mount_point_of
    return mount_point_of(path, _read_mountinfo())


def _host_cgroups() -> list[tuple[str, str, str | None]]:
    """The host's hierarchies under CGROUP_ROOT: (name relative to it, fstype, data)."""
    from ocirun.procfs import cgroup_mounts
    found = []
    for mi in cgroup_mounts(_read_mountinfo(), CGROUP_ROOT):
        name = mi.mount_point[len(CGROUP_ROOT):].lstrip("/")
        data = None
        if mi.fstype == "cgroup":
            # The hierarchy's controller set must be given exactly (else EBUSY).
            data = ",".join(o for o in mi.super_options.split(",") if o not in ("rw", "ro")) or None
        found.append((name, mi.fstype, data))
    return found


def _own_cgroup_paths() -> dict[str, str]:
    """This process's cgroup in each hierarchy, by controller list as
    /proc/self/cgroup gives it ("" for the unified one)."""
    out = {}
    with open(PROC_SELF_CGROUP, encoding="utf-8") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            out[ctrls] = path
    return out


def _own_cgroup_path(own: dict[str, str], fstype: str, data: str | None) -> str:
    if fstype == "cgroup2":
        return own.get("", "/")
    want = set((data or "").split(",")) - {"xattr", "noprefix", "clone_children"}
    for ctrls, path in own.items():
        if ctrls and set(ctrls.split(",")) == want:
            return path
    return "/"


def _mount_cgroup(sys: Syscalls, rootfs: str, dest: str, host: str, opts: MountOptions,
                  where: str, in_userns: bool, own_cgroupns: bool = True) -> None:
    """Mirror the host's cgroup layout (v1, hybrid or unified) at ``dest``.

    With a cgroup namespace of its own a fresh cgroup mount shows the
    container its own cgroup as the root.  Without one it would show the
    host's whole hierarchy, so the container's own directory of each
    hierarchy is bind-mounted instead (what runc does).
    """
    flags = opts.flags & ~(MS_BIND | MS_REC)
    try:
        hier = _host_cgroups()
    except OSError as e:
        raise _fail(f"read `{MOUNTINFO}` for cgroup mount on {where}", e, "mounts") from e
    if not hier:
        raise SyscallError(f"mount cgroup on {where}: no cgroup filesystem mounted under "
                           f"`{CGROUP_ROOT}` on the host", errno=errno.ENODEV, stage="mounts")
    own: list[dict[str, str]] = []  # /proc/self/cgroup, read once when needed
    if len(hier) == 1 and hier[0][0] == "":  # cgroup2 only
        with Pinned(rootfs, host, create_dirs=True) as target:
            bound = _mount_one_cgroup(sys, hier[0], target, dest, flags, where,
                                      not own_cgroupns, own)
        if bound and flags:  # pinned again: the fd names the place beneath the bind
            _remount_bind(sys, rootfs, host, flags, where, in_userns)
        return
    try:
        with Pinned(rootfs, host) as target:
            sys.mount("tmpfs", target, "tmpfs", flags & ~MS_RDONLY, "mode=755")
        # Pinned again: the fd now names the fresh tmpfs.  It is ours alone
        # (nothing of the container runs yet), so the names made in it below
        # are what they were made as: no per-name walk from the rootfs.
        pin = Pinned(rootfs, host)
    except OSError as e:
        raise _fail(f"mount `tmpfs` on {where}", e, "mounts") from e
    with pin as top:
        for h in hier:
            sub = dest.rstrip("/") + "/" + h[0]
            try:
                os.mkdir(h[0], 0o755, dir_fd=pin.fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise _fail(f"create cgroup mount point `{sub}`", e, "mounts") from e
            # a name looked up in the pinned directory: on the mount made there
            if _mount_one_cgroup(sys, h, f"{top}/{h[0]}", sub, flags, where,
                                 not own_cgroupns, own) and flags:
                _remount_bind_at(sys, f"{top}/{h[0]}", flags, where, in_userns)
        try:
            # e.g. cpu -> cpu,cpuacct on hosts that co-mount controllers.
            with os.scandir(CGROUP_ROOT) as it:
                for ent in it:
                    if ent.is_symlink():
                        try:
                            os.symlink(os.readlink(ent.path), ent.name, dir_fd=pin.fd)
                        except FileExistsError:
                            pass
        except OSError as e:
            raise _fail(f"copy cgroup symlinks into {where}", e, "mounts") from e
    if flags & MS_RDONLY:
        try:
            with Pinned(rootfs, host) as target:
                sys.mount(None, target, None, MS_REMOUNT | flags, None)
        except OSError as e:
            raise _fail(f"remount {where} read-only", e, "mounts") from e


def _mount_one_cgroup(sys: Syscalls, h: tuple[str, str, str | None], target: str,
                      label: str, flags: int, where: str, bind_own: bool,
                      own: list[dict[str, str]]) -> bool:
    """One hierarchy at ``target`` (a pinned path): a fresh mount (False), or
    a bind of this process's own cgroup directory (True: the caller remounts
    it with ``flags``)."""
    _, fstype, data = h
    if not bind_own:
        try:
            sys.mount("cgroup", target, fstype, flags, data)
            return False
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.EBUSY):
                raise _fail(f"mount `{fstype}` on `{label}` ({where})", e, "mounts") from e
    # Not allowed here (a user namespace without its own cgroup namespace):
    # bind the host hierarchy at this process's own cgroup instead.
    try:
        if not own:
            own.append(_own_cgroup_paths())
        path = _own_cgroup_path(own[0], fstype, data)
    except OSError as e:
        raise _fail(f"read `{PROC_SELF_CGROUP}` for `{label}` ({where})", e, "mounts") from e
    source = (CGROUP_ROOT.rstrip("/") + "/" + h[0]).rstrip("/") + path.rstrip("/")
    try:
        sys.mount(source, target, "bind", MS_BIND | MS_REC, None)
    except OSError as e:
        raise _fail(f"mount `{source}` on `{label}` ({where})", e, "mounts") from e
    return True


# --------------------------------------------------------------------------
# /dev


def _ptmx_symlink(rootfs: str) -> None:
    # A private devpts instance only works through its own ptmx.
    parent, name = _parent_in_root(rootfs, "/dev/ptmx").rsplit("/", 1)
    with Pinned(rootfs, parent) as d:
        try:
            os.unlink(f"{d}/{name}")
        except FileNotFoundError:
            pass
        os.symlink("pts/ptmx", f"{d}/{name}")


def _dev_symlinks(rootfs: str) -> None:
    links = list(DEV_SYMLINKS)
    if exists("/proc/kcore"):
        links.append(("/dev/core", "/proc/kcore"))
    by_parent: dict[str, list[tuple[str, str]]] = {}
    for link, target in links:
        parent, name = _parent_in_root(rootfs, link).rsplit("/", 1)
        by_parent.setdefault(parent, []).append((name, target))
    for parent, entries in by_parent.items():
        with Pinned(rootfs, parent) as d:
            for name, target in entries:
                try:
                    os.symlink(target, f"{d}/{name}")
                except FileExistsError:
                    pass  # the image or a mount already provides it


def _create_file(rootfs: str, host: str) -> None:
    """An empty file at ``host`` (below ``rootfs``), to bind a file onto;
    created in its parent's pinned fd, so never outside the rootfs."""
    parent, name = host.rsplit("/", 1)
    with Pinned(rootfs, parent, create_dirs=True) as d:
        os.close(os.open(f"{d}/{name}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644))


# --------------------------------------------------------------------------
# finish_rootfs


def finish_rootfs(plan: ContainerPlan, sys: Syscalls,
                  after_pivot: Callable[[], None] | None = None) -> None:
    """Switch root, then readonly paths, masked paths and the read-only root.

    ``after_pivot`` runs right after the switch, while /dev is still
    writable: the console is set up there (its pty must come from the
    container's own /dev/ptmx, and /dev/console is bound over a new file)."""
    rootfs = plan.rootfs
    if plan.no_pivot:
        _move_root(rootfs, sys)
    else:
        _pivot_root(rootfs, sys)
    if after_pivot is not None:
        after_pivot()
    prop = plan.rootfs_propagation
    if prop in PROPAGATION_OPTIONS:
        # config-linux.md: the value is the rootfs mount's own propagation.
        # Before the pivot only the tree around it could be shaped (pivot_root
        # refuses a shared new_root; an unbindable one cannot be bound).
        try:
            sys.mount(None, "/", None, PROPAGATION_OPTIONS[prop], None)
        except OSError as e:
            raise _fail(f"set propagation of the rootfs to `{prop}`", e, "rootfs") from e
    for m in plan.mounts:
        # /dev was mounted read-write to create nodes; honour its ro now.
        if m.destination == "/dev" and m.fstype == "tmpfs" and m.options.flags & MS_RDONLY:
            try:
                sys.mount(None, "/dev", None, MS_REMOUNT | m.options.flags,
                          m.options.data or None)
            except OSError as e:
                raise _fail(f"remount {m.where} read-only", e, "mounts") from e
    for p in plan.readonly_paths:
        _readonly_path(p, sys)
    for p in plan.masked_paths:
        _mask_path(p, sys)
    if plan.root_readonly:
        try:
            keep = mount_flags_of("/")
            sys.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, None)
        except OSError as e:
            raise _fail("remount `/` read-only (root.readonly)", e, "readonly_root") from e


def _pivot_root(rootfs: str, sys: Syscalls) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one at "/";
    # it can then be detached without needing a put_old directory in the image.
    try:
        old = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise _fail("open `/`", e, "pivot_root") from e
    try:
        new = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fchdir(new)
            sys.pivot_root(".", ".")
        finally:
            os.close(new)
        os.fchdir(old)
        # Slave first, so that the detach below does not propagate back to
        # the host's mounts (if "/" was shared).
        sys.mount(None, ".", None, MS_SLAVE | MS_REC, None)
        sys.umount2(".", MNT_DETACH)
        os.chdir("/")
    except OSError as e:
        raise _fail(f"pivot_root to `{rootfs}`", e, "pivot_root") from e
    finally:
        os.close(old)


def _move_root(rootfs: str, sys: Syscalls) -> None:
    """--no-pivot (e.g. a ramfs root, where pivot_root is refused).

    The old root stays in this mount namespace, under the chroot.  Its full
    procfs and sysfs mounts must not stay there: the kernel lets a user
    namespace mount a fresh proc or sysfs only while a fully visible one
    exists in the mount namespace, so a process that escapes into a nested
    user namespace could otherwise mount an unmasked /proc.  Each such mount
    outside the rootfs is detached, or covered with an empty tmpfs when it
    cannot be (which makes it no longer fully visible), as runc does.
    """
    try:
        _hide_host_proc_sys(rootfs, sys)
        os.chdir(rootfs)
        sys.mount(rootfs, "/", None, MS_MOVE, None)
        sys.chroot(".")
        os.chdir("/")
    except OSError as e:
        raise _fail(f"move `{rootfs}` to `/` and chroot", e, "pivot_root") from e


def _hide_host_proc_sys(rootfs: str, sys: Syscalls) -> None:
    inside = rootfs.rstrip("/") + "/"
    # Deepest first, so a mount is handled before the one under it.
    for mi in sorted(_read_mountinfo(), key=lambda m: m.mount_point.count("/"), reverse=True):
        mp = mi.mount_point
        if mi.fstype not in ("proc", "sysfs") or mp == rootfs or mp.startswith(inside):
            continue
        try:
            sys.umount2(mp, MNT_DETACH)
        except OSError:
            try:
                sys.mount("tmpfs", mp, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "size=0")
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise


def _readonly_path(path: str, sys: Syscalls) -> None:
    try:
        sys.mount(path, path, "bind", MS_BIND | MS_REC, None)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise _fail(f"bind mount readonly path `{path}`", e, "readonly_paths") from e
    try:
        keep = mount_flags_of(path)
        sys.mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, None)
    except OSError as e:
        raise _fail(f"remount readonly path `{path}` read-only", e, "readonly_paths") from e


def _mask_path(path: str, sys: Syscalls) -> None:
    try:
        sys.mount("/dev/null", path, "bind", MS_BIND, None)
        return
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        if e.errno != errno.ENOTDIR:
            raise _fail(f"mask `{path}` with /dev/null", e, "masked_paths") from e
    # A directory: cover it with an empty read-only tmpfs.
    try:
        sys.mount("tmpfs", path, "tmpfs", MS_RDONLY, None)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise _fail(f"mask `{path}` with a read-only tmpfs", e, "masked_paths") from e

