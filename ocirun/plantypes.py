"""The plan types children run: built in the parent, never the config dict.

ARCHITECTURE rule 1, "plan in the parent, apply in the child".  Every value a
child needs is parsed, resolved and checked here, before the first fork, so
that every error a config can cause is raised while there is nothing to undo
(runtime.md "Errors": as if create had never been attempted).

* :class:`ProcessPlan`: one process (config.md "POSIX process"): argv, env,
  cwd, ids, umask, capabilities, rlimits, oom score, no_new_privs,
  personality, seccomp, terminal.  The same plan type serves a container's
  init and a process joining a running container (``exec``).
* :class:`ContainerPlan`: the container around it (namespaces, id maps, time
  offsets, mounts, devices, masked/readonly paths, sysctl, names, hooks).
* :class:`Handles`: the file descriptors the parent opened for the children
  (namespace paths to join, the exec FIFO, bind sources cloned with
  open_tree).  Kept apart because they are per-launch resources, not plan.

The objects are slotted and frozen after construction (assignment raises).
``process/plan.py`` builds them from a validated config; they live on the
ground floor because rootfs, devices and the process step consume them.
"""

from __future__ import annotations

# Two rules the planner checks here in the parent and the mechanisms apply in
# the children; they live on this floor, which both sides import anyway, so
# that the planner loads neither hooks.py nor rootfs.py (~1 ms) for them.

# config.md "POSIX-platform Hooks", in lifecycle order (runtime.md "Lifecycle").
HOOK_KINDS = ("prestart", "createRuntime", "createContainer", "startContainer",
              "poststart", "poststop")

# runc's rule for mounts over /proc (checkProcMount, CVE-2019-16884): only
# these files may be covered.  The planner checks the configured destination;
# rootfs._check_proc checks it again once symlinks in the rootfs are resolved.
ALLOWED_PROC_MOUNTS = frozenset({
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
    "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
})

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.capabilities import CapSets
    from ocirun.devices import Device
    from ocirun.hooks import Hook
    from ocirun.mempolicy import MemPolicyPlan
    from ocirun.mount_options import MountOptions
    from ocirun.namespaces import NamespacePlan
    from ocirun.sched import SchedPlan


class _Frozen:
    """Slotted record whose fields are set once, in ``__init__``."""

    __slots__ = ("_sealed",)

    def _seal(self) -> None:
        object.__setattr__(self, "_sealed", True)

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_sealed", False):
            raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name}")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k, None)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class ProcessPlan(_Frozen):
    """A process to start: what the shared process step (process/setup.py) applies."""

    __slots__ = (
        "additional_gids",
        "apparmor_profile",
        "args",
        "caps",
        "console_size",
        "cpu_affinity",
        "cwd",
        "env",
        "gid",
        "io_priority",
        "keep_fds",
        "keyring",
        "mem_policy",
        "no_new_privileges",
        "oom_score_adj",
        "personality",
        "rlimits",
        "scheduler",
        "seccomp",
        "selinux_label",
        "terminal",
        "uid",
        "umask",
    )

    def __init__(self, *, args: tuple[str, ...], env: tuple[str, ...], cwd: str = "/",
                 uid: int = 0, gid: int = 0, additional_gids: tuple[int, ...] = (),
                 umask: int | None = None, caps: CapSets | None = None,
                 rlimits: tuple[tuple[int, int, int, str], ...] = (),
                 oom_score_adj: int | None = None, no_new_privileges: bool = False,
                 personality: int | None = None, apparmor_profile: str | None = None,
                 selinux_label: str | None = None, seccomp: object | None = None,
                 terminal: bool = False, console_size: tuple[int, int] | None = None,
                 keep_fds: int = 0, keyring: str | None = None,
                 scheduler: SchedPlan | None = None, io_priority: tuple[int, str] | None = None,
                 cpu_affinity: tuple[tuple[int, ...] | None, tuple[int, ...] | None] | None = None,
                 mem_policy: MemPolicyPlan | None = None) -> None:
        self.args = args
        self.env = env
        self.cwd = cwd
        self.uid = uid
        self.gid = gid
        self.additional_gids = additional_gids
        self.umask = umask
        self.caps = caps
        # (RLIMIT_* number, soft, hard, config name) ready for setrlimit
        self.rlimits = rlimits
        self.oom_score_adj = oom_score_adj
        self.no_new_privileges = no_new_privileges
        self.personality = personality
        self.apparmor_profile = apparmor_profile
        self.selinux_label = selinux_label
        self.seccomp = seccomp  # ocirun.seccomp.SeccompProgram, compiled in the parent
        self.terminal = terminal
        self.console_size = console_size  # (rows, columns)
        self.keep_fds = keep_fds  # fds 3 .. 3+keep_fds-1 pass into the process
        self.keyring = keyring  # name of a new session keyring to join, or None
        # process.scheduler / ioPriority / execCPUAffinity, linux.memoryPolicy
        # (ocirun/sched.py, ocirun/mempolicy.py): None when not configured.
        self.scheduler = scheduler
        self.io_priority = io_priority  # (ioprio value, "IOPRIO_CLASS_BE 4")
        self.cpu_affinity = cpu_affinity  # (initial, final) CPU tuples; exec only
        self.mem_policy = mem_policy
        self._seal()

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kv in self.env:
            k, _, v = kv.partition("=")
            out[k] = v
        return out


class IdMap(_Frozen):
    """How a bind mount is id-mapped: through a user namespace made with
    ``uid_map``/``gid_map`` (text for /proc/<pid>/uid_map), or an existing
    one at ``userns_path``; ``recursive`` (ridmap) maps every mount below."""

    __slots__ = ("gid_map", "recursive", "uid_map", "userns_path")

    def __init__(self, *, uid_map: bytes = b"", gid_map: bytes = b"", recursive: bool = False,
                 userns_path: str = "") -> None:
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.recursive = recursive
        self.userns_path = userns_path
        self._seal()


class MountPlan(_Frozen):
    """One ``mounts[i]`` entry, parsed.

    ``kind``: ``bind`` (source bound onto the destination), ``cgroup`` (the
    host's cgroup layout mirrored), ``host_sysfs`` (sysfs that a user
    namespace without its own network namespace may not mount: the host's
    /sys is bound instead, as runc does) or ``fs`` (a filesystem mount).
    """

    __slots__ = ("destination", "fstype", "idmap", "index", "kind", "options", "recursive",
                 "shows_cgroups", "source")

    def __init__(self, *, index: int, destination: str, fstype: str, source: str,
                 options: MountOptions, kind: str, recursive: bool,
                 shows_cgroups: bool, idmap: IdMap | None = None) -> None:
        self.index = index
        self.destination = destination  # absolute, normalised, inside the container
        self.fstype = fstype
        self.source = source  # binds: absolute host path; others: the mount source
        self.options = options
        self.kind = kind
        self.recursive = recursive
        self.shows_cgroups = shows_cgroups
        # An id-mapped bind (idmap/ridmap, uidMappings/gidMappings): the
        # runtime clones the source and maps it before the children start.
        self.idmap = idmap
        self._seal()

    @property
    def where(self) -> str:
        return f"`{self.destination}` (mounts[{self.index}])"


class ContainerPlan(_Frozen):
    """Everything about the container a new init builds before its process step."""

    __slots__ = (
        "annotations",
        "bundle",
        "cid",
        "dev_is_bind",
        "devices",
        "domainname",
        "gid_map",
        "hooks",
        "hostname",
        "masked_paths",
        "mounts",
        "no_pivot",
        "ns",
        "oci_version",
        "private_devpts",
        "process",
        "readonly_paths",
        "root_readonly",
        "rootfs",
        "rootfs_propagation",
        "sysctl",
        "time_offsets",
        "uid_map",
    )

    def __init__(self, *, cid: str, bundle: str, rootfs: str, oci_version: str,
                 annotations: dict[str, str], ns: NamespacePlan, uid_map: bytes, gid_map: bytes,
                 time_offsets: bytes, mounts: tuple[MountPlan, ...], devices: tuple[Device, ...],
                 dev_is_bind: bool, private_devpts: bool, masked_paths: tuple[str, ...],
                 readonly_paths: tuple[str, ...], sysctl: tuple[tuple[str, str], ...],
                 hostname: str | None, domainname: str | None,
                 rootfs_propagation: str | None, root_readonly: bool, no_pivot: bool,
                 hooks: dict[str, tuple[Hook, ...]], process: ProcessPlan) -> None:
        self.cid = cid
        self.bundle = bundle
        self.rootfs = rootfs
        self.oci_version = oci_version
        self.annotations = annotations
        self.ns = ns
        self.uid_map = uid_map  # text for /proc/<pid>/uid_map ("" when none)
        self.gid_map = gid_map
        self.time_offsets = time_offsets  # text for /proc/self/timens_offsets
        self.mounts = mounts
        self.devices = devices
        self.dev_is_bind = dev_is_bind  # a bind on /dev: no nodes, no links
        self.private_devpts = private_devpts  # a devpts on /dev/pts: ptmx link
        self.masked_paths = masked_paths
        self.readonly_paths = readonly_paths
        self.sysctl = sysctl
        self.hostname = hostname
        self.domainname = domainname
        self.rootfs_propagation = rootfs_propagation
        self.root_readonly = root_readonly
        self.no_pivot = no_pivot
        self.hooks = hooks  # kind -> hooks, only the kinds the config has
        self.process = process
        self._seal()

    def hook_state(self, status: str, pid: int | None) -> dict[str, object]:
        """The state document hooks get on stdin (runtime.md "State")."""
        doc: dict[str, object] = {"ociVersion": self.oci_version, "id": self.cid,
                                  "status": status, "bundle": self.bundle}
        if pid is not None:
            doc["pid"] = pid
        if self.annotations:
            doc["annotations"] = self.annotations
        return doc

    @property
    def has_runtime_hooks(self) -> bool:
        return bool(self.hooks.get("prestart") or self.hooks.get("createRuntime"))


class Handles:
    """File descriptors the parent opened for the children of one launch.

    Inherited across fork (not CLOEXEC-sensitive: children never exec the
    runtime).  ``close()`` is the parent's clean-up.
    """

    __slots__ = ("cgroup_fd", "fifo_fd", "join_fds", "mount_fds", "tasks")

    def __init__(self) -> None:
        self.join_fds: list[tuple[int, int]] = []  # (fd, CLONE_NEW*) in join order
        self.fifo_fd = -1  # O_PATH handle on exec.fifo (a new container's init only)
        self.mount_fds: dict[int, int] = {}  # mounts[] index -> detached tree (open_tree)
        self.cgroup_fd = -1  # O_PATH on the cgroup v2 directory (clone3 CLONE_INTO_CGROUP)
        # (fd, path) of each v1 hierarchy's `tasks`: the init joins them itself
        self.tasks: list[tuple[int, str]] = []

    def all_fds(self) -> list[int]:
        fds = [fd for fd, _ in self.join_fds] + list(self.mount_fds.values())
        fds += [fd for fd, _ in self.tasks]
        for fd in (self.fifo_fd, self.cgroup_fd):
            if fd >= 0:
                fds.append(fd)
        return fds

    def close(self) -> None:
        import posix as os
        for fd in self.all_fds():
            try:
                os.close(fd)
            except OSError:
                pass
        self.join_fds = []
        self.mount_fds = {}
        self.fifo_fd = -1
        self.cgroup_fd = -1
        self.tasks = []
