"""The package's compiled modules in one file, each read with a single pread.

Most of a command's time after the interpreter's own start-up is imports,
and a good part of each import is the path machinery around the code: a
finder that lists and stats directories, a loader that stats the source,
then opens, reads and checks its ``.pyc``.  ``bin/ocirun`` installs this
finder first: it serves every ``ocirun`` module from
``ocirun/__pycache__/ocirun-hot.<tag>.bin`` (the very ``.pyc`` bodies pip
compiled, indexed by module name) after one ``stat`` of the source, and
leaves anything else, or a module whose source changed since, to the
standard path.  In the paired bench it takes ~2.8 ms off create's imports
and ~1.7 ms off exec's.

The file is a cache and nothing else: a missing, unreadable, foreign or
stale one only sends imports down the standard path, and the launcher then
rewrites it from the package's current ``.pyc`` files on its way out
(:func:`save`), when the directory is writable (as ``__pycache__`` is for
Python itself).  Modules come with the loader Python's own ``.py`` files
get (SourceFileLoader), so ``__file__``, tracebacks and resources are those
of a normal import.

Layout: the interpreter's magic number, 4 bytes (little-endian) the
length of the index, the index (marshal: module name -> 21 bytes: source
mtime_ns (8), source size, offset, length (4 each, offsets counted from the
end of the index), is_package (1)), then the code objects (marshal).  The
index stays in the memory of every process the runtime forks, the waiting
init's too: a few bytes per module, not a tuple of int objects.
"""

from __future__ import annotations

import marshal
import posix
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_ext: Any = sys.modules["_frozen_importlib_external"]  # importlib's own, loaded at start-up
# the file is for one bytecode format: the interpreter's tag and magic number
NAME = f"ocirun-hot.{sys.implementation.cache_tag}.bin"
_MAGIC = _ext.MAGIC_NUMBER

_S_IFMT = 0o170000
_S_IFREG = 0o100000


class _State:
    __slots__ = ("base", "fd", "index", "parent", "pkg", "stale")

    def __init__(self) -> None:
        self.fd = -1
        self.index: dict[str, bytes] = {}
        self.base = 0
        self.parent = ""  # the directory holding the package, with a trailing /
        self.pkg = ""
        self.stale = False  # save() should write the file anew


_st = _State()


def _pack(mtime_ns: int, size: int, off: int, length: int, is_pkg: bool) -> bytes:
    return b"".join([mtime_ns.to_bytes(8, "little", signed=True), size.to_bytes(4, "little"),
                     off.to_bytes(4, "little"), length.to_bytes(4, "little"), bytes([is_pkg])])


def _field(e: bytes, at: int) -> int:
    return int.from_bytes(e[at:at + 4], "little")


class _Loader(_ext.SourceFileLoader):  # type: ignore[misc]
    """A source file's loader whose code comes from the cache file."""

    def get_code(self, fullname: str) -> Any:
        e = _st.index.get(fullname)
        if e is not None and _st.fd >= 0:
            try:
                return marshal.loads(posix.pread(_st.fd, _field(e, 16), _st.base + _field(e, 12)))
            except (OSError, ValueError, EOFError, TypeError):
                _st.stale = True
        return super().get_code(fullname)


class Finder:
    """First on sys.meta_path: the package's modules, from the cache."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> Any:
        e = _st.index.get(name)
        if e is None:
            return None
        is_pkg = e[20] == 1
        src = _st.parent + name.replace(".", "/") + ("/__init__.py" if is_pkg else ".py")
        try:
            st = posix.stat(src)
        except OSError:
            _st.stale = True
            return None
        if st.st_mtime_ns != int.from_bytes(e[:8], "little", signed=True) or \
                st.st_size != _field(e, 8):
            _st.stale = True
            return None
        return _ext.spec_from_file_location(
            name, src, loader=_Loader(name, src),
            submodule_search_locations=[src.rpartition("/")[0]] if is_pkg else None)


def _path(pkg_dir: str) -> str:
    return f"{pkg_dir}/__pycache__/{NAME}"


def install(pkg_dir: str) -> None:
    """Serve the package in ``pkg_dir`` (a path without a trailing /) from
    its cache file; with none (or a foreign one), only note that save()
    should write it."""
    parent, _, _st.pkg = pkg_dir.rpartition("/")
    _st.parent = parent + "/"
    if Finder not in sys.meta_path:
        sys.meta_path.insert(0, Finder)
    try:
        fd = posix.open(_path(pkg_dir), posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        _st.stale = True
        return
    try:
        head = posix.pread(fd, 8, 0)
        n = int.from_bytes(head[4:8], "little")
        if head[:4] != _MAGIC or n <= 0:
            raise ValueError("not this interpreter's")
        index = marshal.loads(posix.pread(fd, n, 8))
        if not isinstance(index, dict) or \
                any(not isinstance(v, bytes) or len(v) != 21 for v in index.values()):
            raise TypeError("no index")
    except (OSError, ValueError, EOFError, TypeError):
        posix.close(fd)
        _st.stale = True
        return
    _st.fd, _st.index, _st.base = fd, index, 8 + n


def _pyc_body(src: str, st: Any) -> bytes | None:
    """The code of a timestamp .pyc that matches ``src``, else None."""
    try:
        with open(_ext.cache_from_source(src), "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 16 or data[:4] != _MAGIC or data[4:8] != b"\0\0\0\0":
        return None  # another interpreter's, or hash-based: not worth the care
    if int.from_bytes(data[8:12], "little") != int(st.st_mtime) & 0xFFFFFFFF or \
            int.from_bytes(data[12:16], "little") != st.st_size & 0xFFFFFFFF:
        return None
    return data[16:]


def save() -> bool:
    """Write the cache file anew when an import found it missing or stale,
    from the package's ``.pyc`` files as they are now (those that match
    their sources).  True when it wrote the file.  Never raises: it is only
    a cache."""
    if not _st.pkg:
        return False
    if not _st.stale:
        # a module of the package imported from its source, missing from the
        # index (no .pyc yet when the file was written): add it once it has one
        prefix = _st.pkg + "."
        for name, m in list(sys.modules.items()):
            if name.startswith(prefix) and name not in _st.index:
                src = getattr(m, "__file__", None)
                try:
                    if src and src.endswith(".py") and _pyc_body(src, posix.stat(src)):
                        _st.stale = True
                        break
                except OSError:
                    pass
        if not _st.stale:
            return False
    _st.stale = False
    pkg_dir = _st.parent + _st.pkg
    target = _path(pkg_dir)
    tmp = f"{target}.{posix.getpid()}.tmp"
    fd = -1
    try:
        if not posix.access(pkg_dir + "/__pycache__", posix.W_OK):
            return False
        try:
            if posix.lstat(target).st_mode & _S_IFMT != _S_IFREG:
                return False  # something else in its place: never rebuild it on every command
        except FileNotFoundError:
            pass
        # the file to rename first: where it cannot be made, nothing is read
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC,
                        0o644)
        index: dict[str, bytes] = {}
        chunks: list[bytes] = []
        off = 0
        todo = [pkg_dir]
        while todo:
            d = todo.pop()
            for name in sorted(posix.listdir(d)):
                path = f"{d}/{name}"
                if name == "__pycache__":
                    continue
                st = posix.lstat(path)
                if st.st_mode & _S_IFMT == 0o040000:
                    todo.append(path)
                    continue
                if not name.endswith(".py") or st.st_mode & _S_IFMT != _S_IFREG:
                    continue
                body = _pyc_body(path, st)
                if body is None:
                    continue
                mod = path[len(_st.parent):-3].replace("/", ".")
                is_pkg = mod.endswith(".__init__")
                if is_pkg:
                    mod = mod[:-len(".__init__")]
                if "." in name[:-3] or st.st_size >= 1 << 32:
                    continue  # not a module name (its path is derived from the name)
                index[mod] = _pack(st.st_mtime_ns, st.st_size, off, len(body), is_pkg)
                chunks.append(body)
                off += len(body)
        head = marshal.dumps(index)
        data = b"".join([_MAGIC, len(head).to_bytes(4, "little"), head, *chunks])
        view = memoryview(data)
        while view:
            view = view[posix.write(fd, view):]
        posix.close(fd)
        fd = -1
        posix.rename(tmp, target)
        return True
    except Exception:  # noqa: BLE001 - a cache: any failure leaves the standard path
        if fd >= 0:
            posix.close(fd)
        try:
            posix.unlink(tmp)
        except OSError:
            pass
        return False
