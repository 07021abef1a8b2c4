"""Process identity: config.md "POSIX process" ``process.user`` (uid, gid,
umask, additionalGids) and config-linux.md "User namespace mappings"
(``linux.uidMappings`` / ``linux.gidMappings``).

* :func:`apply_user` runs in the init: supplementary groups, gid, then uid.
* :func:`write_id_maps` runs in the parent for a new user namespace
  (user_namespaces(7), "User and group ID mappings").
* :func:`lookup_home` finds HOME in the rootfs's /etc/passwd, as runc does
  when the configured ``env`` has none.
"""

from __future__ import annotations

import errno as _errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.errors import ConfigError, SyscallError, oserror_text
from ocirun.syscalls.api import PR_SET_KEEPCAPS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.syscalls.api import Syscalls


def setgroups_allowed(path: str = "/proc/self/setgroups") -> bool:
    """False when setgroups(2) is disabled in this user namespace ("deny").

    Kernels before 3.19 lack the file; setgroups is then governed by
    CAP_SETGID alone, so treat it as allowed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 64).strip() != b"deny"
        finally:
            os.close(fd)
    except FileNotFoundError:
        return True
    except OSError as e:
        raise SyscallError(f"read `{path}`: {oserror_text(e)}", errno=e.errno, stage="user") from e


def apply_user(uid: int, gid: int, extra: tuple[int, ...] | list[int], sys: Syscalls, *,
               setgroups_path: str = "/proc/self/setgroups") -> None:
    """Switch the calling process to ``process.user`` (uid, gid, additionalGids).

    Order matters: groups and gid first, because after setresuid to a
    non-zero uid we would lack CAP_SETGID.  PR_SET_KEEPCAPS keeps the
    permitted set across the uid change so that capabilities.apply_caps can
    still shape it afterwards; apply_caps's capset makes resetting the flag
    unnecessary, and the kernel clears it at execve anyway.
    """
    extra = list(extra)
    if setgroups_allowed(setgroups_path):
        try:
            os.setgroups(extra)
        except OSError as e:
            raise SyscallError(f"setgroups {extra}: {oserror_text(e)}", errno=e.errno,
                               stage="user") from e
    elif extra:
        # runc refuses this too: the groups would silently not be set.
        raise ConfigError(f"process.user.additionalGids {extra}: supplementary groups cannot be "
                          f"set, setgroups is denied in this user namespace")
    try:
        os.setresgid(gid, gid, gid)
    except OSError as e:
        raise SyscallError(f"setresgid {gid}: {oserror_text(e)}", errno=e.errno,
                           stage="user") from e
    try:
        sys.prctl(PR_SET_KEEPCAPS, 1)
    except OSError as e:
        raise SyscallError(f"prctl PR_SET_KEEPCAPS: {oserror_text(e)}", errno=e.errno,
                           stage="user") from e
    try:
        os.setresuid(uid, uid, uid)
    except OSError as e:
        hint = " (is the uid mapped in the user namespace?)" if e.errno == _errno.EINVAL else ""
        raise SyscallError(f"setresuid {uid}: {oserror_text(e)}{hint}", errno=e.errno,
                           stage="user") from e


def _map_text(maps: list[dict[str, object]], where: str) -> bytes:
    lines = []
    for i, m in enumerate(maps):
        try:
            cid, hid, size = (int(m[k]) for k in ("containerID", "hostID", "size"))  # type: ignore[call-overload]
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}[{i}]: needs integer containerID, hostID and size") from e
        lines.append(f"{cid} {hid} {size}\n")
    return "".join(lines).encode()


def _write_proc(path: str, data: bytes, what: str) -> None:
    # The kernel accepts exactly one write(2) per map file, so the whole map
    # goes in a single write; a short write would mean a truncated map.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"write {what} to `{path}`: {oserror_text(e)}", errno=e.errno,
                           stage="userns") from e
    if n != len(data):
        raise SyscallError(f"write {what} to `{path}`: short write ({n} of {len(data)} bytes)",
                           stage="userns")


def write_id_maps(pid: int, uid_maps: list[dict[str, object]], gid_maps: list[dict[str, object]],
                  *, deny_setgroups: bool, proc: str = "/proc") -> None:
    """Write the id maps of the user namespace of ``pid`` (from the parent).

    ``deny_setgroups``: write "deny" to /proc/<pid>/setgroups first.  An
    unprivileged writer must do so before writing gid_map; a root parent
    need not, and runc only denies it for a rootless single mapping, since it
    makes additionalGids impossible.  The file must be written before gid_map.
    """
    write_id_map_text(pid, _map_text(uid_maps, "linux.uidMappings"),
                      _map_text(gid_maps, "linux.gidMappings"), deny_setgroups=deny_setgroups,
                      proc=proc)


def write_id_map_text(pid: int, uid_text: bytes, gid_text: bytes, *, deny_setgroups: bool,
                      proc: str = "/proc") -> None:
    """:func:`write_id_maps` with the maps already rendered (a plan's)."""
    base = f"{proc}/{pid}"
    if deny_setgroups:
        _write_proc(f"{base}/setgroups", b"deny", "`deny`")
    if uid_text:
        _write_proc(f"{base}/uid_map", uid_text, "linux.uidMappings")
    if gid_text:
        _write_proc(f"{base}/gid_map", gid_text, "linux.gidMappings")


_MAX_SYMLINKS = 40


def _open_in_root(rootfs: str, rel: str) -> int:
    """Open ``rel`` for reading with symlinks resolved *inside* ``rootfs``.

    The rootfs belongs to the image, so an absolute symlink such as
    ``/etc/passwd -> /host/file`` must not reach the host.  Walk the path one
    component at a time with O_NOFOLLOW and resolve each link by hand against
    the rootfs, with ".." clamped at the root (like openat2 RESOLVE_IN_ROOT).
    """
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        todo = [p for p in rel.split("/") if p not in ("", ".")]
        stack: list[str] = []  # resolved components from the root
        links = 0
        while todo:
            part = todo.pop(0)
            if part == "..":
                if stack:
                    stack.pop()
                continue
            here = "/".join(stack + [part])
            try:
                target = os.readlink(here, dir_fd=root_fd)
            except OSError as e:
                if e.errno != _errno.EINVAL:  # EINVAL: not a symlink
                    raise
                stack.append(part)
                continue
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(_errno.ELOOP, os.strerror(_errno.ELOOP), rel)
            if target.startswith("/"):
                stack = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
        return os.open("/".join(stack) or ".", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=root_fd)
    finally:
        os.close(root_fd)


def lookup_home(rootfs: str, uid: int, *, default: str = "/") -> str:
    """Home directory of ``uid`` from ``<rootfs>/etc/passwd``, else ``default``.

    A missing or unreadable passwd file is not an error: runc falls back
    to "/" too.
    """
    try:
        fd = _open_in_root(rootfs, "etc/passwd")
    except OSError:
        return default
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:
        return default
    finally:
        os.close(fd)
    for line in b"".join(chunks).decode("utf-8", "replace").splitlines():
        # name:password:uid:gid:gecos:home:shell
        fields = line.split(":")
        if len(fields) < 6 or line.startswith("#"):
            continue
        try:
            if int(fields[2]) == uid:
                return fields[5] or default
        except ValueError:
            continue
    return default
