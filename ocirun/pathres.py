"""Resolve container paths inside the rootfs without escaping it.

Mount destinations and device paths (config.md ``mounts``, config-linux.md
``devices``) name paths in the container, but are resolved on the host before
pivot_root, where a symlink in the (untrusted) image could point anywhere,
e.g. ``/etc -> /host/etc`` or ``../../..`` (CVE-2015-3627 style attacks).  Like
filepath-securejoin, walk one component at a time with lstat: a symlink's
target is re-rooted at the rootfs, ``..`` stops at the rootfs, and at most
255 links are followed (ELOOP beyond, like the kernel's MAXSYMLINKS).
"""

from __future__ import annotations

import _stat as stat  # the C module alone: `stat` adds its Python layer
import errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.posixpaths import abspath

MAX_SYMLINKS = 255


def _split(path: str) -> list[str]:
    return [c for c in path.split("/") if c and c != "."]


def resolve_in_root(root: str, path: str) -> str:
    """Host path of container path ``path`` under ``root``, symlinks kept inside.

    Components that do not exist (or sit under a non-directory) are appended
    literally, so the result can be created afterwards.  ``root`` itself is
    trusted (it is the bundle's rootfs as the runtime found it).
    """
    root = abspath(root).rstrip("/") or "/"
    prefix = "" if root == "/" else root
    pending = _split(path)
    pending.reverse()  # a stack: pop() yields the next component
    done: list[str] = []
    links = 0
    missing = False
    while pending:
        comp = pending.pop()
        if comp == "..":
            # Lexical: a parent of a real directory is its parent, and we never
            # step above the root (a chroot's view of "..").
            if done:
                done.pop()
            continue
        if missing:
            done.append(comp)
            continue
        candidate = prefix + "/" + "/".join([*done, comp])
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            missing = True
            done.append(comp)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(comp)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), prefix + "/" + path.lstrip("/"))
        target = os.readlink(candidate)
        if target.startswith("/"):
            done = []  # absolute targets are relative to the container root
        parts = _split(target)
        parts.reverse()
        pending.extend(parts)
    return prefix + "/" + "/".join(done) if done else root


def open_in_root(root: str, host: str, *, create_dirs: bool = False, mode: int = 0o755) -> int:
    """An ``O_PATH`` fd on ``host``, a path below ``root`` as :func:`resolve_in_root`
    gave it, reached without following any symlink.

    The walk starts at ``root`` and opens one component at a time with
    O_NOFOLLOW, so a component that is, or has meanwhile become, a symlink
    stops it (ELOOP: "symlink appeared") instead of leading out of the root:
    what the runtime then mounts on, or creates in, through the fd is inside
    the root whatever a container sharing a directory with it renames in the
    meantime (CVE-2021-30465).  ``create_dirs`` makes missing components as
    directories (mkdirat, which never follows a symlink either).
    """
    rootp = abspath(root).rstrip("/") or "/"
    if host != rootp and not host.startswith(rootp.rstrip("/") + "/"):
        raise OSError(errno.EXDEV, f"`{host}` is not below `{rootp}`", host)
    comps = _split(host[len(rootp):])
    last = len(comps) - 1
    fd = os.open(rootp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, comp in enumerate(comps):
            # O_DIRECTORY on the way (a symlink there fails ENOTDIR), the
            # last one may be anything but a symlink (checked below)
            flags = _WALK if i < last else _LAST
            try:
                nfd = os.open(comp, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create_dirs:
                    raise
                try:
                    os.mkdir(comp, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: the open below checks what it is
                nfd = os.open(comp, flags, dir_fd=fd)
            except NotADirectoryError:
                if stat.S_ISLNK(os.stat(comp, dir_fd=fd, follow_symlinks=False).st_mode):
                    raise OSError(errno.ELOOP, "symlink appeared during resolution",
                                  host) from None
                raise
            os.close(fd)
            fd = nfd
        if comps and stat.S_ISLNK(os.fstat(fd).st_mode):
            raise OSError(errno.ELOOP, "symlink appeared during resolution", host)
        return fd
    except BaseException:
        os.close(fd)
        raise


_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_LAST = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def mkdir_all_in_root(root: str, path: str, mode: int = 0o755) -> str:
    """Create container directory ``path`` (and parents) under ``root``; return the host path.

    Resolved with :func:`resolve_in_root`, then created by :func:`open_in_root`
    (mkdirat from the parent's fd, never through a symlink), so nothing is
    created outside ``root`` even if the image holds hostile links or they
    are swapped in meanwhile.
    """
    host = resolve_in_root(root, path)
    fd = open_in_root(root, host, create_dirs=True, mode=mode)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), host)
    finally:
        os.close(fd)
    return host
