"""The intermediate process: enter the namespaces, fork the final process, leave.

The same for a new container's init and for a process joining a running
container (``exec``): only what it enters differs.  Steps are numbered as
in specs/sync-protocol.md:
  I1 become non-dumpable (nothing of the runtime can be ptraced or read
     through /proc once it shares namespaces with the container), and wipe
     the caller's command line and environment from our memory (cmdline is
     readable by anyone who sees the pid, environ by CAP_SYS_ADMIN or
     CAP_PERFMON even then); set the
     CPU affinity: an exec's execCPUAffinity.initial, else every CPU, so
     the container does not inherit the CPUs its caller was pinned to
     (runc 1.2 does the same; the cgroup's cpuset narrows it on attach);
  I2 setns into every namespace to join (user first);
  I3 new user namespace: unshare, ask the parent for the id maps, become root;
  I4 unshare the other new namespaces (not cgroup: the init does that once
     it is in its cgroup); write the time namespace offsets;
  I5 fork the final process (pid 1 of a new pid namespace, or a member of
     the joined one), born in the container's cgroup v2 directory where
     the host has one (clone3 CLONE_INTO_CGROUP: no migration and no RCU
     wait in the runtime's cgroup.procs write), send its pid, exit.  A
     tenant (exec) first moves itself into the v1 hierarchies' cgroups
     (enter_v1_cgroups: a thread moving itself waits for no grace period);
     an init does the same later, at N3 (process/init.py).
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun import steps
from ocirun.errors import SyscallError
from ocirun.process import fork
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.namespaces import NamespacePlan
    from ocirun.process.channel import Channel


class Entry:
    """What the intermediate enters: fds to setns into, namespaces to create."""

    __slots__ = ("cgroup_fd", "cpus", "join_fds", "ns", "tasks", "time_offsets")

    def __init__(self, join_fds: list[tuple[int, int]], ns: NamespacePlan | None = None,
                 time_offsets: bytes = b"", cpus: tuple[int, ...] | None = None,
                 cgroup_fd: int = -1, tasks: list[tuple[int, str]] | None = None) -> None:
        self.join_fds = join_fds  # (fd, CLONE_NEW*) in join order
        self.ns = ns  # new namespaces (None: join only)
        self.time_offsets = time_offsets
        self.cpus = cpus  # execCPUAffinity.initial (None: every CPU)
        # the container's cgroup v2 directory: the final process is born there
        # (clone3 CLONE_INTO_CGROUP), so the runtime need not move it (-1: none)
        self.cgroup_fd = cgroup_fd
        # (fd, path): the v1 hierarchies' `tasks` files, which a tenant
        # writes itself into first thing (parent.launch wraps its final step
        # with joining_v1_cgroups); an init's come in its Handles, for N3
        self.tasks = tasks or []


def debug_sink(chan: Channel) -> Callable[[str], None] | None:
    """--debug step lines of a child go to the runtime as ``log`` messages."""
    if not steps.active():
        return None
    return lambda msg: chan.send("log", level="debug", msg=msg)


def run_intermediate(entry: Entry, chan: Channel, sys: api.Syscalls,
                     final: Callable[[], None], stage: str, *, wiped: bool = False,
                     entered: bool = False) -> None:
    """I1-I5.  ``wiped``: the caller's argv and environment are already gone
    from our memory (the nursery wipes them while it waits for the launch);
    ``entered``: I1-I4 are done (:func:`enter`, the nursery's early start)."""
    steps.in_child("intermediate", debug_sink(chan))
    if not entered:
        enter(entry, chan, sys, wiped=wiped)
    fork_final(entry, chan, sys, final, stage)


def enter(entry: Entry, chan: Channel, sys: api.Syscalls, *, wiped: bool = False) -> None:
    """I1-I4: non-dumpable, CPU affinity, join and create the namespaces."""
    t = steps.begin()
    sys.prctl(api.PR_SET_DUMPABLE, 0)                                   # I1
    if not wiped:
        from ocirun.procfs import wipe_args_and_env
        wipe_args_and_env(b"ocirun init")  # the caller's argv and environment stay outside
    from ocirun.sched import all_cpus, set_affinity
    set_affinity(entry.cpus or all_cpus(), "process.execCPUAffinity.initial" if entry.cpus
                 else "reset the CPU affinity", sys)
    steps.end("I1", "non-dumpable, CPU affinity", t)
    t = steps.begin()
    from ocirun import namespaces
    namespaces.join(entry.join_fds, sys)                                 # I2
    steps.end("I2", "join namespaces", t)
    t = steps.begin()
    ns = entry.ns
    if ns is not None and ns.new_user:                                   # I3
        # An unprivileged runtime (rootless) writes the maps, or has
        # newuidmap write them, only into /proc/<pid>/ of a dumpable process
        # (a non-dumpable one's belongs to root); non-dumpable again after.
        rootless = os.geteuid() != 0
        _unshare(sys, api.CLONE_NEWUSER, "user")
        if rootless:
            sys.prctl(api.PR_SET_DUMPABLE, 1)
        chan.send("userns_map_request")
        chan.expect("userns_mapped")
        if rootless:
            sys.prctl(api.PR_SET_DUMPABLE, 0)
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as e:
            raise SyscallError(f"become root in the new user namespace: {e.strerror} "
                               "(does linux.uidMappings/gidMappings map container id 0?)",
                               errno=e.errno, stage="user_namespace") from e
    steps.end("I3", "user namespace", t)
    t = steps.begin()
    if ns is not None and ns.unshare_flags:                              # I4
        _unshare(sys, ns.unshare_flags, "new namespaces")
    if entry.time_offsets:
        _write_time_offsets(entry.time_offsets)
    steps.end("I4", "new namespaces", t)


def fork_final(entry: Entry, chan: Channel, sys: api.Syscalls, final: Callable[[], None],
               stage: str, before_launch: bool = False) -> None:
    """I5: fork the final process, send its pid.  ``before_launch``: an
    init forked early (nursery.send_fork), named so in the step record."""
    t = steps.begin()
    born = False
    if entry.cgroup_fd >= 0:                                             # I5
        pid, born = fork.spawn_in_cgroup(final, chan, (), stage, sys, entry.cgroup_fd)
    else:
        pid = fork.spawn(final, chan, (), stage, sys)
    chan.send("init_pid", pid=pid, in_cgroup=born)
    steps.end("I5", "fork the final process" + (", before the launch" if before_launch else ""),
              t)


def joining_v1_cgroups(tasks: list[tuple[int, str]],
                       final: Callable[[], None]) -> Callable[[], None]:
    """``final``, run once the process has joined the v1 hierarchies."""
    def run() -> None:
        enter_v1_cgroups(tasks)
        final()
    return run


def enter_v1_cgroups(tasks: list[tuple[int, str]]) -> None:
    """The final process, just forked (single-threaded): move itself into
    the container's cgroup of every v1 hierarchy by writing ``0`` to the
    ``tasks`` fds the runtime opened (CgroupManager.self_join_fds says why
    not the runtime's cgroup.procs write), then close them."""
    from ocirun.errors import CgroupError
    for fd, path in tasks:
        try:
            os.write(fd, b"0")
        except OSError as e:
            raise CgroupError(f"join the container's cgroup: write `{path}`: {e.strerror}",
                              errno=e.errno) from e
        finally:
            os.close(fd)


def _unshare(sys: api.Syscalls, flags: int, what: str) -> None:
    try:
        sys.unshare(flags)
    except OSError as e:
        raise SyscallError(f"unshare ({what}, flags {flags:#x}): {e.strerror}", errno=e.errno,
                           stage="namespaces") from e


def _write_time_offsets(text: bytes) -> None:
    """config-linux.md "Offset for Time Namespace": before any process enters it."""
    try:
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"write linux.timeOffsets to /proc/self/timens_offsets: {e.strerror}",
                           errno=e.errno, stage="time_namespace") from e
