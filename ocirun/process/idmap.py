"""Id-mapped bind mounts, prepared by the runtime before the children start.

config.md ``mounts[].uidMappings``/``gidMappings`` and the ``idmap``/``ridmap``
options, as runc 1.2 does it: the bind source is cloned into a detached tree
(open_tree OPEN_TREE_CLONE, with AT_RECURSIVE for rbind), the tree is
id-mapped (mount_setattr MOUNT_ATTR_IDMAP, AT_RECURSIVE for ridmap) through
a user namespace that has the mount's maps, and the init attaches it with
move_mount (rootfs._bind, through Handles.mount_fds).  A file owned by
``containerID`` on disk then shows as owned by ``hostID``.

The user namespace comes from a helper process: it unshares CLONE_NEWUSER
and waits; the runtime writes its maps, opens /proc/<pid>/ns/user and lets
it go.  The fd keeps the namespace alive; one helper per distinct pair of
maps.  A mount without maps of its own uses the container's (a helper with
the container's maps, or the joined user namespace's path).
"""

from __future__ import annotations

import os

from ocirun.errors import ConfigError, OciRunError
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.plantypes import IdMap, MountPlan
    from ocirun.syscalls.api import Syscalls


def _write(path: str, data: bytes, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise ConfigError(f"config.json: {what}: write `{path}`: {e.strerror}",
                          errno=e.errno) from e


def userns_fd(uid_map: bytes, gid_map: bytes, where: str, sys: Syscalls) -> int:
    """An fd on a new user namespace with these maps (text for uid_map/gid_map)."""
    from ocirun.process.fork import spawn_helper
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)

    def helper() -> None:
        sys.unshare(api.CLONE_NEWUSER)
        os.write(ready_w, b"1")
        os.read(go_r, 1)  # EOF once the runtime holds the namespace

    try:
        pid = spawn_helper(helper, (ready_r, go_w), sys)
    except BaseException:
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        raise
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OciRunError(f"{where}: could not make a user namespace for the id mapping "
                              "(unshare CLONE_NEWUSER failed)")
        _write(f"/proc/{pid}/uid_map", uid_map, f"{where}.uidMappings")
        _write(f"/proc/{pid}/gid_map", gid_map, f"{where}.gidMappings")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)


class UsernsFds:
    """One user namespace fd per distinct mapping, closed together."""

    __slots__ = ("fds",)

    def __init__(self) -> None:
        self.fds: dict[tuple[bytes, bytes, str], int] = {}

    def get(self, idmap: IdMap, where: str, sys: Syscalls) -> int:
        key = (idmap.uid_map, idmap.gid_map, idmap.userns_path)
        fd = self.fds.get(key)
        if fd is None:
            if idmap.userns_path:
                try:
                    fd = os.open(idmap.userns_path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as e:
                    raise ConfigError(f"config.json: {where}: open the container's user "
                                      f"namespace `{idmap.userns_path}`: {e.strerror}") from e
            else:
                fd = userns_fd(idmap.uid_map, idmap.gid_map, where, sys)
            self.fds[key] = fd
        return fd

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def map_tree(tree: int, m: MountPlan, userns: int, sys: Syscalls) -> None:
    """Id-map the detached tree ``tree`` (from open_tree) of mount ``m``."""
    assert m.idmap is not None
    flags = api.AT_EMPTY_PATH | (api.AT_RECURSIVE if m.idmap.recursive else 0)
    try:
        sys.mount_setattr(tree, "", flags, api.MOUNT_ATTR_IDMAP, 0, 0, userns)
    except OSError as e:
        hint = ""
        if e.errno == 22:  # EINVAL
            hint = (" (the filesystem of the source cannot be id-mapped, or a mount below "
                    "it cannot: try idmap instead of ridmap, or a plain bind)")
        elif e.errno == 38:  # ENOSYS
            hint = " (id-mapped mounts need Linux >= 5.12)"
        raise OciRunError(f"config.json: $.mounts[{m.index}]: id-map `{m.source}` for "
                          f"{m.where}: {e.strerror}{hint}", errno=e.errno) from e


def features(release: str | None = None) -> dict[str, dict[str, bool]]:
    """features-linux.md "MountExtensions": id-mapped mounts need mount_setattr
    (Linux 5.12); on an older kernel they are not offered."""
    release = release or os.uname().release
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        return {"idmap": {"enabled": True}}
    return {"idmap": {"enabled": (major, minor) >= (5, 12)}}
