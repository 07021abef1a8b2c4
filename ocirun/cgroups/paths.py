"""Cgroup paths and the per-hierarchy directory life cycle.

Implements config-linux.md "Cgroups path" (where the container's cgroup
lives) and the parts of "Control groups" that do not depend on the cgroup
version: creating the directory chain, the fitness check at create, joining
through ``cgroup.procs``, listing processes and removing what we created.
``v1.Hierarchy1`` and ``v2.Hierarchy2`` add the version-specific files
(cpuset preparation, freezer, ``cgroup.kill``).
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean delete
import time

from ocirun.errors import CgroupError, ConfigError, NotSupportedError, oserror_text
from ocirun.posixpaths import dirname, isdir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# rmdir of a cgroup whose last task has exited but not yet left the cgroup
# (exit is asynchronous) fails with EBUSY for a short while: retry this long.
RMDIR_TIMEOUT = 1.0


# --- small file helpers (cgroupfs files are short, read/written in one call) ---

def read_text(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"read `{path}`: {oserror_text(e)}", errno=e.errno) from e
    try:
        chunks: list[bytes] = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks).decode("utf-8", "surrogateescape")
    except OSError as e:
        raise CgroupError(f"read `{path}`: {oserror_text(e)}", errno=e.errno) from e
    finally:
        os.close(fd)


def write_text(path: str, data: str) -> None:
    """Write ``data`` in one write(2), the way cgroupfs expects it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise CgroupError(f"write `{data}` to `{path}`: {oserror_text(e)}", errno=e.errno) from e
    try:
        os.write(fd, data.encode())
    except OSError as e:
        raise CgroupError(f"write `{data}` to `{path}`: {oserror_text(e)}", errno=e.errno) from e
    finally:
        os.close(fd)


# --- cgroupsPath -> directories ---

def check_cgroups_path(cgroups_path: str | None, container_id: str) -> str:
    """Validate ``linux.cgroupsPath`` and return it normalised (absolute or relative).

    Unset means ``/<container_id>`` (runc's cgroupfs default on a host where the
    runtime runs in the root cgroup).  ``slice:prefix:name`` is the systemd
    driver's syntax, which is refused rather than misread as a directory name.
    """
    path = cgroups_path if cgroups_path else "/" + container_id
    if not path.startswith("/") and path.count(":") == 2:
        raise NotSupportedError(
            f"cgroupsPath `{path}`: systemd cgroup driver is not supported yet")
    if "\0" in path:
        raise ConfigError(f"cgroupsPath `{path!r}` contains a NUL byte")
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        # A lexical ".." could climb out of the runtime's own cgroup (relative
        # paths) or name a parent shared with other containers.
        raise ConfigError(f"cgroupsPath `{path}` must not contain `..`")
    if not parts:
        raise ConfigError(f"cgroupsPath `{path}` names the root cgroup; use a sub-cgroup")
    joined = "/".join(parts)
    return "/" + joined if path.startswith("/") else joined


def resolve_dir(mountpoint: str, mount_root: str, own: str | None, cgroup_path: str) -> str:
    """Directory of ``cgroup_path`` in one hierarchy mounted at ``mountpoint``.

    An absolute path is taken from the mount point (config-linux.md: relative
    to the cgroup mount point); a relative one from this process's own cgroup
    ``own`` (the ``/proc/self/cgroup`` entry), which is expressed relative to
    the hierarchy root, hence the ``mount_root`` correction.
    """
    if cgroup_path.startswith("/"):
        return mountpoint.rstrip("/") + cgroup_path
    if own is None:
        raise CgroupError(f"cannot resolve relative cgroupsPath `{cgroup_path}`: "
                          f"this process is not in the hierarchy at `{mountpoint}`")
    mount_root = mount_root.rstrip("/")
    if own != mount_root and not own.startswith(mount_root + "/"):
        raise CgroupError(f"cannot resolve relative cgroupsPath `{cgroup_path}`: own cgroup "
                          f"`{own}` is not visible under `{mountpoint}` (mounted from `{mount_root or '/'}`)")
    rel = own[len(mount_root):].strip("/")
    base = mountpoint.rstrip("/") + ("/" + rel if rel else "")
    return base + "/" + cgroup_path


# --- one hierarchy ---

class Hierarchy:
    """The container's cgroup directory in one hierarchy (v1 or v2).

    ``created`` is the topmost directory that :meth:`create` made; everything
    from it down to ``path`` is ours and is removed by :meth:`remove`.  It is
    None when the leaf already existed (we then remove nothing).
    """

    __slots__ = ("created", "keys", "mount", "path")
    version = 0

    def __init__(self, keys: tuple[str, ...], path: str, mount: str | None,
                 created: str | None = None) -> None:
        self.keys = keys        # paths() keys: v1 controller names, or ("unified",)
        self.path = path        # the container's leaf directory
        self.mount = mount      # mount point; None when re-opened from saved paths
        self.created = created

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.keys!r}, {self.path!r}, created={self.created!r})"

    def wait_frozen(self, probe: Callable[[], bool | None], thaw: Callable[[], None],
                    timeout: float, nudge: Callable[[], None] | None = None) -> None:
        """Poll ``probe`` (True frozen, False not yet, None cgroup gone) with
        a growing delay; past ``timeout`` thaw again and fail, so a freeze that
        cannot complete never leaves the container half stopped."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            if nudge is not None:
                nudge()
            state = probe()
            if state:
                return
            if state is None:
                raise CgroupError(f"freeze `{self.path}`: the cgroup is gone", errno=errno.ENOENT)
            if time.monotonic() >= deadline:
                thaw()
                raise CgroupError(f"freeze `{self.path}`: not frozen after {timeout:g}s; "
                                  "thawed it again", errno=errno.EBUSY)
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    # creation

    def create(self) -> None:
        """mkdir -p the leaf, recording what we made; check fitness of an existing leaf."""
        if self.mount is None:
            raise CgroupError(f"cgroup `{self.path}` was re-opened from saved state; "
                              "it cannot be created again")
        made = self._mkdir_chain(self.path)
        if made:
            self.created = made[0]
        else:
            self.check_fit()
        self.prepare()
        # Also for a new leaf: it starts frozen when an ancestor is frozen,
        # and the container would then hang at its first instruction.
        if self.is_frozen():
            raise CgroupError(f"cgroup `{self.path}` is frozen: thaw it (or its parent) first")

    def _mkdir_chain(self, path: str) -> list[str]:
        """Create ``path`` and missing parents up to the mount point; return the new dirs, top first."""
        try:
            os.mkdir(path, 0o755)
            return [path]
        except FileExistsError:
            return []
        except FileNotFoundError:
            parent = dirname(path)
            if self.mount is None or len(parent) <= len(self.mount.rstrip("/")):
                raise CgroupError(f"create cgroup `{path}`: cgroup root `{parent}` does not exist",
                                  errno=errno.ENOENT) from None
        except OSError as e:
            raise CgroupError(f"create cgroup `{path}`: {oserror_text(e)}", errno=e.errno) from e
        made = self._mkdir_chain(parent)
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            # Someone else made it between our two attempts: it is not ours.
            return made
        except OSError as e:
            self.created = made[0] if made else None
            raise CgroupError(f"create cgroup `{path}`: {oserror_text(e)}", errno=e.errno) from e
        return made + [path]

    def check_fit(self) -> None:
        """config-linux.md fitness check: a pre-existing cgroup must be empty (frozen: see create)."""
        if self.procs(recursive=True):
            raise CgroupError(f"cgroup `{self.path}` already exists and has processes: "
                              "refusing to share it with a new container")

    def prepare(self) -> None:
        """Version hook run after the directory exists (v1 cpuset needs it)."""

    # membership

    def add(self, pid: int) -> None:
        write_text(self.path + "/cgroup.procs", str(pid))

    def procs(self, recursive: bool = True) -> set[int]:
        """PIDs in the leaf (and its sub-cgroups); empty when the cgroup is gone."""
        found: set[int] = set()
        self._collect(self.path, recursive, found)
        return found

    def _collect(self, path: str, recursive: bool, found: set[int]) -> None:
        try:
            text = read_text(path + "/cgroup.procs")
        except CgroupError as e:
            if e.errno == errno.ENOENT:  # removed while we walked: nothing left there
                return
            raise
        found.update(int(x) for x in text.split())
        if not recursive:
            return
        for sub in self.children(path):
            self._collect(sub, True, found)

    @staticmethod
    def children(path: str) -> list[str]:
        try:
            with os.scandir(path) as it:
                return [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CgroupError(f"list cgroup `{path}`: {oserror_text(e)}", errno=e.errno) from e

    def exists(self) -> bool:
        return isdir(self.path)

    # freezing: overridden by the versions that can freeze

    def can_freeze(self) -> bool:
        return False

    def is_frozen(self) -> bool:
        return False

    def set_frozen(self, frozen: bool) -> None:
        raise CgroupError(f"cgroup `{self.path}` has no freezer")

    # removal

    def remove(self, deadline: float) -> None:
        """rmdir, leaf first, what :meth:`create` made (sub-cgroups of the leaf included)."""
        if self.created is None:
            return
        for sub in self._descendants(self.path):
            _rmdir(sub, deadline)
        path = self.path
        top = self.created.rstrip("/")
        while True:
            _rmdir(path, deadline)
            if path == top or len(path) <= len(top):
                break
            path = dirname(path)

    def _descendants(self, path: str) -> list[str]:
        """Sub-cgroups below ``path``, deepest first (made by the container itself)."""
        out: list[str] = []
        for sub in self.children(path):
            out.extend(self._descendants(sub))
            out.append(sub)
        return out


def _rmdir(path: str, deadline: float) -> None:
    delay = 0.001
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            # EBUSY: tasks are still leaving (or a sub-cgroup appeared).
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise CgroupError(f"remove cgroup `{path}`: {oserror_text(e)}",
                                  errno=e.errno) from e
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)
