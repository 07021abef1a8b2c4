"""One cgroup directory that resource values are written to, and the checks
on the values before they are written.

Every error names the resource field by its JSON path (``linux.resources.
memory.limit`` at create, ``resources.memory.limit`` at update), the control
file and the value the kernel refused (runtime.md "Errors": the user must be
able to act on it).  The writers in ``res_v1``/``res_v2`` only use
:class:`Dir`, so a tmp directory of fixture files stands in for cgroupfs in
the unit tests.
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create

from ocirun import posixpaths
from ocirun.errors import CgroupError, ConfigError, oserror_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

INT64_MAX = (1 << 63) - 1
UINT64_MAX = (1 << 64) - 1


class Dir:
    """A cgroup directory: read, test and write its control files."""

    __slots__ = ("path", "version", "warn", "written")

    def __init__(self, path: str, version: int, warn: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.version = version
        self.warn: Callable[[str], None] = warn or (lambda _msg: None)
        self.written: list[tuple[str, str]] = []  # (file, value) in write order

    def __repr__(self) -> str:
        return f"Dir({self.path!r}, v{self.version})"

    def file(self, name: str) -> str:
        return posixpaths.join(self.path, name)

    def exists(self, name: str) -> bool:
        return posixpaths.exists(self.file(name))

    def read(self, field: str, name: str) -> str:
        path = self.file(name)
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            raise CgroupError(f"{field}: read `{path}`: {oserror_text(e)}", errno=e.errno) from e

    def read_int(self, field: str, name: str) -> int:
        """A number file; ``max`` reads as UINT64_MAX (v2 limit files)."""
        text = self.read(field, name).split()
        if text and text[0] == "max":
            return UINT64_MAX
        try:
            return int(text[0])
        except (IndexError, ValueError):
            raise CgroupError(f"{field}: `{self.file(name)}` holds {' '.join(text)!r}, "
                              "not a number") from None

    def write(self, field: str, name: str, value: str, *, quiet: tuple[int, ...] = ()) -> bool:
        """Write ``value`` in one write(2).  An errno listed in ``quiet`` returns
        False instead of raising; any other failure is a CgroupError that names
        the field, the file and the value."""
        path = self.file(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in quiet:
                return False
            if e.errno == errno.ENOENT:
                raise CgroupError(f"{field}: cannot write `{value}`: `{path}` does not exist "
                                  "(this kernel or cgroup controller does not offer it)",
                                  errno=e.errno) from e
            raise CgroupError(f"{field}: write `{value}` to `{path}`: {oserror_text(e)}",
                              errno=e.errno) from e
        try:
            os.write(fd, value.encode())
        except OSError as e:
            if e.errno in quiet:
                return False
            raise CgroupError(f"{field}: write `{value}` to `{path}`: {oserror_text(e)}"
                              + _hint(e.errno, name), errno=e.errno) from e
        finally:
            os.close(fd)
        self.written.append((name, value))
        return True


def _hint(err: int | None, name: str) -> str:
    if err == errno.EINVAL:
        return " (the kernel refused the value)"
    if err == errno.EBUSY and name.startswith("cpuset."):
        return " (a sub-cgroup or running task still uses the CPUs/nodes being removed)"
    return ""


# --- values from the resources object (create: schema-checked; update: raw JSON) ---

def _int(obj: dict[str, object], key: str, field: str, lo: int, hi: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field}.{key}: {value!r} is not an integer")
    if not lo <= value <= hi:
        raise ConfigError(f"{field}.{key}: {value} is out of range [{lo}, {hi}]")
    return value


def i64(obj: dict[str, object], key: str, field: str) -> int | None:
    return _int(obj, key, field, -INT64_MAX - 1, INT64_MAX)


def u64(obj: dict[str, object], key: str, field: str) -> int | None:
    return _int(obj, key, field, 0, UINT64_MAX)


def u32(obj: dict[str, object], key: str, field: str) -> int | None:
    return _int(obj, key, field, 0, (1 << 32) - 1)


def u16(obj: dict[str, object], key: str, field: str) -> int | None:
    return _int(obj, key, field, 0, (1 << 16) - 1)


def boolean(obj: dict[str, object], key: str, field: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ConfigError(f"{field}.{key}: {value!r} is not true or false")


def text(obj: dict[str, object], key: str, field: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ConfigError(f"{field}.{key}: {value!r} is not a string")


def mapping(value: object, field: str) -> dict[str, object]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{field}: {value!r} is not an object")
    return value


def items(value: object, field: str) -> list[dict[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise ConfigError(f"{field}: expected an array of objects")
    return value


def device_id(entry: dict[str, object], field: str) -> str:
    """``major:minor`` of a blockIO device entry (both REQUIRED)."""
    major = _int(entry, "major", field, 0, (1 << 32) - 1)
    minor = _int(entry, "minor", field, 0, (1 << 32) - 1)
    if major is None or minor is None:
        raise ConfigError(f"{field}: `major` and `minor` are required")
    return f"{major}:{minor}"


def cpu_list(value: str, field: str) -> str:
    """A cpuset list (``0-3,7``): checked here so the message names the field,
    not only the kernel's EINVAL."""
    v = value.strip()
    for part in v.split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and (not hi.isdigit() or int(hi) < int(lo))):
            raise ConfigError(f"{field}: {value!r} is not a list like `0-3,7`")
    return v
