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

import errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)
import stat

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


def mkdir_all_in_root(root: str, path: str, mode: int = 0o755) -> str:
    """Create container directory ``path`` (and parents) under ``root``; return the host path.

    Every existing component is checked as it is walked, and each created one
    is made with mkdir(2) (which never follows a final symlink), so nothing is
    created outside ``root`` even if the image holds hostile links.
    """
    host = resolve_in_root(root, path)
    rootp = abspath(root).rstrip("/") or "/"
    rel = host[len(rootp):] if host != rootp else ""
    cur = rootp if rootp != "/" else ""
    for comp in _split(rel):
        cur = cur + "/" + comp
        try:
            os.mkdir(cur, mode)
            continue
        except FileExistsError:
            pass
        # Existing: after resolution it must be a real directory, not a link
        # that appeared meanwhile or a file.
        st = os.lstat(cur)
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "symlink appeared during resolution", cur)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), cur)
    return host
