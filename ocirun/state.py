"""Container state on disk and the status derived from facts.

runtime.md "State": the state object (ociVersion, id, status, pid, bundle,
annotations) plus runc's rootfs/created/owner.  Layout: ``<root>/<id>/``
(mode 0711) holding ``state.json`` (0600, written to a temp file and renamed),
``config.json`` (the bundle's config as read at create: later edits of the
bundle must not affect the container) and ``exec.fifo`` while the container
is created.  The directory fd is ``flock``ed by every command that changes
the container, so concurrent commands on one id serialize.

The status is never stored: it is derived on each read from the init pid and
its start time (a reused pid is not our process), and the exec FIFO.
"""

from __future__ import annotations

import fcntl
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean delete
import time

from ocirun import ground, jsonio
from ocirun.errors import ExistsError, NotFoundError, OciRunError, StateError
from ocirun.ground import CONFIG_FILE, CREATED, FIFO, PAUSED, RUNNING, STATE_FILE, STOPPED
from ocirun.posixpaths import abspath, isdir, join, makedirs


class Status(str):
    """A derived status (``created``, ``running``, ``paused``, ``stopped``) that
    knows which verbs it allows.  A ``str``, so it compares with and
    serialises as the spec's status strings.  Every verb asks it through
    :meth:`require`, which raises in runc's words (containerd and podman
    match some of them)."""

    __slots__ = ()

    def can_start(self) -> bool:
        return self == CREATED

    def can_kill(self) -> bool:
        return self in (CREATED, RUNNING, PAUSED)

    def can_delete(self) -> bool:
        """Without --force; with it every status can be deleted."""
        return self == STOPPED

    def can_pause(self) -> bool:
        return self in (CREATED, RUNNING)  # runc freezes a created container too

    def can_resume(self) -> bool:
        return self == PAUSED

    def can_exec(self, ignore_paused: bool = False) -> bool:
        return self in (CREATED, RUNNING) or (ignore_paused and self == PAUSED)

    def require(self, verb: str, cid: str = "", *, ignore_paused: bool = False) -> None:
        """Raise StateError unless ``verb`` is allowed in this status."""
        ok = {"start": self.can_start, "kill": self.can_kill, "delete": self.can_delete,
              "pause": self.can_pause, "resume": self.can_resume}
        if verb == "exec":
            if self.can_exec(ignore_paused):
                return
        elif ok[verb]():
            return
        raise StateError(_refusal(verb, self, cid))


def _refusal(verb: str, status: str, cid: str) -> str:
    if verb == "start":
        if status == STOPPED:
            return "cannot start a container that has stopped"
        if status == RUNNING:
            return "cannot start an already running container"
        return f"cannot start a container in the {status} state"
    if verb == "delete":
        return f"cannot delete container {cid} that is not stopped: {status}"
    if verb == "resume":
        return "container not paused"
    if verb == "exec":
        if status == PAUSED:
            return "cannot exec in a paused container (use --ignore-paused to override)"
        return f"cannot exec in a {status} container"
    if verb == "pause" and status == PAUSED:
        return "container already paused"
    return "container not running"

__all__ = ["CONFIG_FILE", "CREATED", "FIFO", "PAUSED", "RUNNING", "STATE_FILE", "STOPPED",
           "ContainerState", "StateStore", "Status", "validate_id"]


def validate_id(cid: str) -> None:
    """runc's rule: ``^[\\w+,.-]+$`` (ASCII), and not ``.`` or ``..``."""
    if not ground.valid_id(cid):
        raise OciRunError(f"invalid container ID format: {cid!r} (allowed: letters, digits and _ + , - .)")


def rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"


class ContainerState:
    """What ``create`` records; everything else is derived."""

    __slots__ = (
        "annotations",
        "bundle",
        "cgroup_paths",
        "created",
        "dir",
        "hooks",
        "id",
        "oci_version",
        "pid",
        "pid_start",
        "rootfs",
    )

    def __init__(self, cid: str, *, pid: int = 0, pid_start: int = 0, bundle: str = "",
                 rootfs: str = "", created: str = "", oci_version: str = "",
                 annotations: dict[str, str] | None = None,
                 cgroup_paths: dict[str, str] | None = None, dir: str = "",
                 hooks: dict[str, list[dict[str, object]]] | None = None) -> None:
        self.id = cid
        self.pid = pid
        self.pid_start = pid_start
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.oci_version = oci_version
        self.annotations = annotations or {}
        self.cgroup_paths = cgroup_paths or {}
        self.dir = dir
        # the hooks run after create (poststart, poststop), so start and
        # delete need not parse the saved config.json
        self.hooks = hooks or {}

    def to_record(self) -> dict[str, object]:
        return {"id": self.id, "pid": self.pid, "pid_start": self.pid_start,
                "bundle": self.bundle, "rootfs": self.rootfs, "created": self.created,
                "ociVersion": self.oci_version, "annotations": self.annotations,
                "cgroup_paths": self.cgroup_paths, "hooks": self.hooks}

    @classmethod
    def from_record(cls, rec: dict[str, object], dir: str) -> ContainerState:
        return cls(str(rec["id"]), pid=int(rec.get("pid", 0)),  # type: ignore[call-overload]
                   pid_start=int(rec.get("pid_start", 0)),  # type: ignore[call-overload]
                   bundle=str(rec.get("bundle", "")), rootfs=str(rec.get("rootfs", "")),
                   created=str(rec.get("created", "")), oci_version=str(rec.get("ociVersion", "")),
                   annotations=rec.get("annotations") or {},  # type: ignore[arg-type]
                   cgroup_paths=rec.get("cgroup_paths") or {},  # type: ignore[arg-type]
                   dir=dir, hooks=rec.get("hooks") or {})  # type: ignore[arg-type]

    @property
    def fifo_path(self) -> str:
        return join(self.dir, FIFO)

    @property
    def config_path(self) -> str:
        return join(self.dir, CONFIG_FILE)

    def alive(self) -> bool:
        """The recorded init still exists (same pid AND same start time)."""
        return ground.alive(self.pid, self.pid_start)

    def status(self) -> Status:
        """Derived by ground.status, the one implementation (the launcher's
        fast path uses it too)."""
        return Status(ground.status(self.pid, self.pid_start, self.dir, self.cgroup_paths))

    def oci_state(self, status: str | None = None, *, pid_view: int | None = None) -> dict[str, object]:
        """The state object of runtime.md (plus runc's rootfs, created, owner)."""
        return ground.state_doc(self, status or self.status(), pid_view)

    def hook_state(self, status: str, pid: int | None) -> dict[str, object]:
        """The state passed to hooks: the spec's fields only."""
        doc: dict[str, object] = {"ociVersion": self.oci_version, "id": self.id, "status": status,
                                  "bundle": self.bundle}
        if pid is not None:
            doc["pid"] = pid
        if self.annotations:
            doc["annotations"] = self.annotations
        return doc


class StateStore:
    """``<root>/<id>/`` directories."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = abspath(root)

    def dir_of(self, cid: str) -> str:
        return join(self.root, cid)

    def create_dir(self, cid: str) -> tuple[str, int]:
        """Make ``<root>/<id>`` and lock it; (path, locked dir fd)."""
        validate_id(cid)
        try:
            makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as e:
            raise OciRunError(f"create state root `{self.root}`: {e.strerror}{_hint(e)}",
                              errno=e.errno) from e
        path = self.dir_of(cid)
        try:
            os.mkdir(path, 0o711)
        except FileExistsError:
            raise ExistsError(f"container with given ID already exists: {cid}") from None
        except OSError as e:
            raise OciRunError(f"create state dir `{path}`: {e.strerror}{_hint(e)}",
                              errno=e.errno) from e
        os.chmod(path, 0o711)  # mkdir's mode is filtered by the umask
        return path, self._lock_path(path)

    @staticmethod
    def _lock_path(path: str) -> int:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def lock(self, cid: str) -> int:
        """Lock an existing container dir (blocks while another command holds it)."""
        validate_id(cid)
        try:
            return self._lock_path(self.dir_of(cid))
        except FileNotFoundError:
            raise NotFoundError("container does not exist") from None

    def load(self, cid: str) -> ContainerState:
        validate_id(cid)
        d = self.dir_of(cid)
        try:
            with open(join(d, STATE_FILE), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise NotFoundError("container does not exist") from None
        except NotADirectoryError:
            raise NotFoundError("container does not exist") from None
        try:
            return ContainerState.from_record(jsonio.loads(data), d)
        except (ValueError, KeyError, TypeError) as e:
            raise StateError(f"state of container {cid} is corrupt (`{d}/{STATE_FILE}`): {e}") from e

    def save(self, st: ContainerState) -> None:
        """Atomic for readers: write a temp file, rename it over state.json.
        No fsync: the state describes processes that a crash or a reboot
        ends anyway, so durability buys nothing (runc and crun do not sync
        either), and on a disk-backed root it cost create ~0.7 ms."""
        final = join(st.dir, STATE_FILE)
        tmp = final + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, jsonio.dumps(st.to_record()).encode())
        finally:
            os.close(fd)
        os.rename(tmp, final)

    def remove(self, cid: str) -> None:
        remove_tree(self.dir_of(cid))

    def list_ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if isdir(join(self.root, n)))


def _hint(e: OSError) -> str:
    if e.errno in (1, 13) and os.geteuid() != 0:  # EPERM, EACCES: rootless
        return (f" (running as uid {os.geteuid()}: pass --root DIR, or set XDG_RUNTIME_DIR "
                "for the default $XDG_RUNTIME_DIR/ocirun)")
    return ""


def remove_tree(path: str) -> None:
    """rm -r of a state dir (flat: files only, plus tolerated absence)."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return
    for n in names:
        p = join(path, n)
        try:
            os.unlink(p)
        except IsADirectoryError:
            remove_tree(p)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
