"""The ground floor: a container's state, read and derived with builtin modules only.

runtime.md "State" and "Query State".  Everything here uses ``posix``,
``_signal``, ``pwd`` and ``_json`` (through jsonio), never ``os``: importing
``os`` alone costs about as much as the rest of a ``state`` command.  Two
callers share this one implementation of how a status is derived (ARCHITECTURE
rule 4: observed, not trusted) and of what ``state`` and ``list`` print:

* ``state.py``, the library every command uses;
* ``quick.py``, the launcher's fast path for ``state``, ``list``, ``kill``
  and ``start``, which runs before anything else is imported.

Functions return plain values or raise ``OSError``/``ValueError``; the
library turns those into its error types, the fast path into "let the full
command line do it" (which then reports the error in its usual words).
"""

from __future__ import annotations

import posix

from ocirun import jsonio
from ocirun.posixpaths import exists, normpath

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class HasState(Protocol):
        """Record, or state.ContainerState."""
        oci_version: str
        id: str
        pid: int
        bundle: str
        rootfs: str
        created: str
        annotations: dict[str, str]

DEFAULT_ROOT = "/run/ocirun"
CGROUP_ROOT = "/sys/fs/cgroup"

CREATED = "created"
RUNNING = "running"
STOPPED = "stopped"
PAUSED = "paused"

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"
FIFO = "exec.fifo"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")
_ENOENT = 2

# What cgroups/__init__.py records (kept equal by tests/unit/test_ground.py).
_UNIFIED_KEY = "unified"
_CREATED_PREFIX = "created:"


# --- paths ---

def valid_id(cid: str) -> bool:
    """runc's rule: ``^[\\w+,.-]+$`` (ASCII), and not ``.`` or ``..``."""
    return bool(cid) and len(cid) <= 1024 and cid not in (".", "..") and set(cid) <= _ID_CHARS


def join(directory: str, name: str) -> str:
    """``os.path.join`` of a directory and one plain name."""
    return directory + name if directory.endswith("/") else directory + "/" + name


def read_file(path: str) -> bytes | None:
    """The whole file; None when it does not exist (ENOENT).  Other errors raise."""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        chunks: list[bytes] = []
        while True:
            b = posix.read(fd, 65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        posix.close(fd)


# --- /proc (proc(5)) ---

def pid_start_time(pid: int, proc: str = "/proc") -> int | None:
    """Start time of ``pid`` in clock ticks since boot (stat field 22).

    None when the process does not exist or is a zombie: a zombie container
    init has already stopped, it only waits for its parent to reap it.  The
    command name (field 2) may hold spaces and ``)``: split after the last ``)``.
    """
    try:
        fd = posix.open(f"{proc}/{pid}/stat", posix.O_RDONLY | posix.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    try:
        data = posix.read(fd, 4096)
    except ProcessLookupError:  # exited between open and read (ESRCH)
        return None
    finally:
        posix.close(fd)
    end = data.rfind(b")")
    if not data or end < 0:
        return None
    fields = data[end + 1:].split()
    # field 22 is index 19 once fields 1 and 2 are cut off
    if len(fields) < 20 or fields[0] == b"Z":
        return None
    try:
        return int(fields[19])
    except ValueError:
        return None


# --- the state record ---

def load_record(directory: str) -> dict[str, object] | None:
    """``<dir>/state.json`` parsed (a dict); None when there is none.

    Raises ValueError (malformed) and OSError (unreadable)."""
    try:
        data = read_file(join(directory, STATE_FILE))
    except NotADirectoryError:
        return None
    if data is None:
        return None
    rec = jsonio.loads(data)
    if not isinstance(rec, dict):
        raise TypeError(f"state is a JSON {type(rec).__name__}, not an object")
    return rec


class Record:
    """The fields of a state record that status derivation and ``state`` use,
    converted the way ``state.ContainerState.from_record`` converts them."""

    __slots__ = ("annotations", "bundle", "cgroup_paths", "created", "dir", "hooks", "id",
                 "oci_version", "pid", "pid_start", "rootfs")

    def __init__(self, rec: dict[str, object], directory: str) -> None:
        self.id = str(rec["id"])
        self.pid = int(rec.get("pid", 0))  # type: ignore[call-overload]
        self.pid_start = int(rec.get("pid_start", 0))  # type: ignore[call-overload]
        self.bundle = str(rec.get("bundle", ""))
        self.rootfs = str(rec.get("rootfs", ""))
        self.created = str(rec.get("created", ""))
        self.oci_version = str(rec.get("ociVersion", ""))
        self.annotations: dict[str, str] = rec.get("annotations") or {}  # type: ignore[assignment]
        self.cgroup_paths: dict[str, str] = rec.get("cgroup_paths") or {}  # type: ignore[assignment]
        self.hooks: dict[str, list[dict[str, object]]] = rec.get("hooks") or {}  # type: ignore[assignment]
        self.dir = directory


# --- status (ARCHITECTURE rule 4) ---

def alive(pid: int, pid_start: int) -> bool:
    """The recorded init still exists (same pid AND same start time)."""
    return pid > 0 and pid_start_time(pid) == pid_start


def status(pid: int, pid_start: int, directory: str, cgroup_paths: dict[str, str]) -> str:
    """``stopped`` (init gone), ``created`` (exec FIFO still there), ``paused``
    (cgroup frozen) or ``running``."""
    if not alive(pid, pid_start):
        return STOPPED
    if exists(join(directory, FIFO)):
        return CREATED
    if cgroup_paths and frozen(cgroup_paths):
        return PAUSED
    return RUNNING


def _v1_frozen(path: str) -> bool:
    state = read_file(path + "/freezer.state")
    # FREEZING counts: some tasks are already stopped.
    return state is not None and state.strip() != b"THAWED"


def _v2_frozen(path: str) -> bool:
    # Either asked to freeze (cgroup.freeze) or frozen through an ancestor
    # (cgroup.events reports the effective state).
    want = read_file(path + "/cgroup.freeze")
    if want is None:
        return False
    if want.strip() == b"1":
        return True
    events = read_file(path + "/cgroup.events")
    for line in (events or b"").splitlines():
        key, _, value = line.partition(b" ")
        if key == b"frozen":
            return value.strip() == b"1"
    return False


def frozen(paths: dict[str, str], root: str = CGROUP_ROOT) -> bool:
    """Whether the container's cgroup is frozen, from the saved cgroup paths.

    What ``cgroups.load_manager(paths).frozen()`` answers, where an unusable
    record or an unreadable freezer counts as not frozen.
    """
    prefix = root.rstrip("/") + "/"
    created: dict[str, str] = {}
    by_dir: dict[str, list[str]] = {}
    for key, path in paths.items():
        if not isinstance(path, str) or not path.startswith(prefix) or normpath(path) != path:
            return False
        if key.startswith(_CREATED_PREFIX):
            created[key[len(_CREATED_PREFIX):]] = path
        else:
            by_dir.setdefault(path, []).append(key)
    todo: list[tuple[int, str]] = []
    for path, keys in by_dir.items():
        ks = sorted(keys)
        top = created.get(ks[0])
        if top is not None and path != top and not path.startswith(top + "/"):
            return False
        if _UNIFIED_KEY in ks:
            if len(ks) != 1:
                return False
            todo.append((2, path))
        elif "freezer" in ks:
            todo.append((1, path))
    try:
        for version, path in todo:
            if (_v2_frozen if version == 2 else _v1_frozen)(path):
                return True
    except OSError:
        return False
    return False


# --- what state and list print ---

def state_doc(r: HasState, status: str, pid_view: int | None = None) -> dict[str, object]:
    """The state object of runtime.md (plus runc's rootfs, created, owner)."""
    doc: dict[str, object] = {
        "ociVersion": r.oci_version,
        "id": r.id,
        "pid": (pid_view if pid_view is not None else r.pid) if status != STOPPED else 0,
        "status": status,
        "bundle": r.bundle,
        "rootfs": r.rootfs,
        "created": r.created,
    }
    if r.annotations:
        doc["annotations"] = r.annotations
    doc["owner"] = ""
    return doc


def owner_name(path: str, cache: dict[int, str] | None = None) -> str:
    """The user owning ``path`` (``list``'s OWNER), ``#uid`` without a name."""
    try:
        uid = posix.stat(path).st_uid
    except OSError:
        return ""
    if cache is not None and uid in cache:
        return cache[uid]
    import pwd
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"#{uid}"
    if cache is not None:
        cache[uid] = name
    return name


def format_list(states: list[dict[str, object]], fmt: str, quiet: bool) -> str:
    """``list`` output: runc's table (or JSON, or the ids only)."""
    if quiet:
        return "".join(f"{s['id']}\n" for s in states)
    if fmt == "json":
        return (jsonio.dumps(states) if states else "null") + "\n"
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    rows += [(str(s["id"]), str(s["pid"]), str(s["status"]), str(s["bundle"]),
              str(s["created"]), str(s["owner"])) for s in states]
    widths = [2, 3, 6, 6, 7, 5]  # one pass: a list of 100 spent ~1.5 ms on six max() scans
    for r in rows:
        for i, c in enumerate(r):
            if len(c) > widths[i]:
                widths[i] = len(c)
    return "".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


# --- signals ---

def signal_number(text: str) -> int | None:
    """``9``, ``KILL``, ``SIGKILL``, ``sigkill`` (runc's forms); None if unknown.
    ``0`` is kill(2)'s liveness probe."""
    if text.isdigit():
        n = int(text)
        return n if 0 <= n <= 64 else None
    import _signal
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name.startswith("SIG_") or name in ("SIGRTMIN", "SIGRTMAX"):
        return None
    found = getattr(_signal, name, None)
    return int(found) if isinstance(found, int) else None


# --- start: release the parked init (runtime.md "Start") ---

def release_init(fifo_path: str, pid: int) -> None:
    """Open the exec FIFO for reading, which lets the parked init go on, and
    wait until it has exec'd (the write end is close-on-exec: EOF after the
    NUL) or died; a pidfd polled with the FIFO notices a death at once.
    Anything the init wrote after the NUL is its error (``code:errno:msg``),
    raised here as the class ``errors.CODES`` names."""
    try:
        fifo = posix.open(fifo_path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_CLOEXEC)
    except FileNotFoundError:
        from ocirun import errors
        raise errors.StateError("cannot start an already running container") from None
    try:
        pidfd = posix.pidfd_open(pid)
    except ProcessLookupError:
        posix.close(fifo)
        from ocirun import errors
        raise errors.StateError("cannot start a container that has stopped") from None
    try:
        data = _read_until_exec(fifo, pidfd)
    finally:
        posix.close(pidfd)
        posix.close(fifo)
    try:
        posix.unlink(fifo_path)
    except FileNotFoundError:
        pass
    if len(data) == 1:
        return  # the NUL alone: exec'd
    from ocirun import errors
    if not data:
        raise errors.StateError("container process is already dead")
    code, _, rest = data[1:].decode(errors="replace").partition(":")
    errno_s, _, msg = rest.partition(":")
    cls = errors.CODES.get(code, errors.ExecError)
    raise cls(msg, errno=int(errno_s) if errno_s.isdigit() else None, stage="start")


def _read_until_exec(fifo: int, pidfd: int) -> bytes:
    """Bytes written by the init before its write end closed (exec or death)."""
    import select
    p = select.poll()
    p.register(fifo, select.POLLIN)
    p.register(pidfd, select.POLLIN)
    data = b""
    init_dead = False
    while True:
        events = dict(p.poll())
        if events.get(fifo):
            while True:
                try:
                    chunk = posix.read(fifo, 4096)
                except BlockingIOError:
                    break
                if not chunk:
                    return data  # every writer gone: exec'd (or died)
                data += chunk
        if events.get(pidfd):
            if init_dead:
                return data
            # The init died: drain what it may have written, then stop
            # (POLLHUP may never come if it died before opening the FIFO).
            init_dead = True
            p.unregister(pidfd)
            p.register(fifo, select.POLLIN)
            if not events.get(fifo):
                try:
                    data += posix.read(fifo, 4096)
                except BlockingIOError:
                    pass
                return data
