"""``os.path`` and the few ``os`` helpers the lean processes need, on ``posix`` alone.

The launcher's fast path (quick.py), the nursery and the container's init
(process/nursery.py) never import ``os``: its Python layer (with posixpath,
stat and _collections_abc) costs a ``state`` command about as much as the
rest of it, and the waiting init 160 KiB of memory.  Their modules call
``posix`` for the system calls (``os`` re-exports the very same functions)
and these for the rest.  Each behaves as its ``os``/``os.path`` namesake for
``str`` paths (tests/unit/test_posixpaths.py compares them).
"""

from __future__ import annotations

import posix
import sys

_S_IFMT = 0o170000
_S_IFDIR = 0o040000


def normpath(path: str) -> str:
    if not path:
        return "."
    slashes = 2 if path.startswith("//") and not path.startswith("///") else \
        1 if path.startswith("/") else 0
    comps: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp != ".." or (not slashes and not comps) or (comps and comps[-1] == ".."):
            comps.append(comp)
        elif comps:
            comps.pop()
    out = "/" * slashes + "/".join(comps)
    return out or "."


def abspath(path: str) -> str:
    if not path.startswith("/"):
        path = join(posix.getcwd(), path)
    return normpath(path)


def join(a: str, *rest: str) -> str:
    out = a
    for b in rest:
        if b.startswith("/"):
            out = b
        elif not out or out.endswith("/"):
            out += b
        else:
            out += "/" + b
    return out


def split(path: str) -> tuple[str, str]:
    i = path.rfind("/") + 1
    head, tail = path[:i], path[i:]
    if head and head != "/" * len(head):
        head = head.rstrip("/")
    return head, tail


def dirname(path: str) -> str:
    return split(path)[0]


def exists(path: str) -> bool:
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


def lexists(path: str) -> bool:
    try:
        posix.lstat(path)
    except (OSError, ValueError):
        return False
    return True


def isdir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & _S_IFMT == _S_IFDIR
    except (OSError, ValueError):
        return False


def isfile(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & _S_IFMT == 0o100000
    except (OSError, ValueError):
        return False


def realpath(path: str) -> str:
    """``os.path.realpath`` (not strict): every symlink resolved; from a
    missing component, or a symlink loop, on, the rest kept as written."""
    if not path.startswith("/"):
        path = posix.getcwd() + "/" + path
    links: dict[str, str | None] = {}  # a link's resolution; None while resolving it

    def walk(base: str, rest: str) -> tuple[str, bool]:
        # base: absolute, free of symlinks; False: a loop, the rest left as is
        names = rest.split("/")
        for i, name in enumerate(names):
            if name in ("", "."):
                continue
            if name == "..":
                base = base.rsplit("/", 1)[0] or "/"
                continue
            at = base.rstrip("/") + "/" + name
            try:
                link = posix.lstat(at).st_mode & _S_IFMT == 0o120000
            except OSError:
                link = False
            if not link:
                base = at
                continue
            if at in links:
                done = links[at]
                if done is None:
                    return join(at, "/".join(names[i + 1:])), False
                base = done
                continue
            links[at] = None
            target = posix.readlink(at)
            base, ok = walk("/" if target.startswith("/") else base, target)
            if not ok:
                return join(base, "/".join(names[i + 1:])), False
            links[at] = base
        return base, True

    return normpath(walk("/", path)[0])


def fsencode(name: str | bytes) -> bytes:
    if isinstance(name, bytes):
        return name
    return name.encode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def fsdecode(name: str | bytes) -> str:
    if isinstance(name, str):
        return name
    return name.decode(sys.getfilesystemencoding(), sys.getfilesystemencodeerrors())


def getenv(name: str) -> str | None:
    """``os.environ.get``: the variable as ``str``, None when unset."""
    v = posix.environ.get(name.encode())
    return None if v is None else fsdecode(v)


def makedirs(name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
    """``os.makedirs``: the parents with the default mode, the leaf with ``mode``."""
    head, tail = split(name)
    if not tail:
        head, tail = split(head)
    if head and tail and not exists(head):
        try:
            makedirs(head, exist_ok=exist_ok)
        except FileExistsError:
            pass  # another process made it meanwhile
        if tail == ".":
            return
    try:
        posix.mkdir(name, mode)
    except OSError:
        if not exist_ok or not isdir(name):
            raise
