"""A process joining a running container (``exec``): the tenant's final process.

The intermediate has entered every namespace of the container (user first)
and forked us inside its pid namespace, into the container's cgroup.  What
is left is the shared process step (process/setup.py) and execve.  An error before execve reaches the runtime
over the channel; a successful execve closes the channel (it is
close-on-exec), which the runtime reads as success.

  T1 close every inherited fd but the channel and the preserved ones;
  T2 wait for ``cgroup_ready`` (after T3 when there is no seccomp filter and
     no terminal, so the runtime's cgroup writes overlap the process step);
  T2a with process.terminal: a pty, its master sent as ``console_master``;
  T3 the process step S1-S9;  T4 execve (S10).
"""

from __future__ import annotations

import posix as os  # the lean exec path never imports os (posixpaths.py)

from ocirun import steps
from ocirun.process import fork, setup
from ocirun.process.init import close_inherited_fds
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.plantypes import ProcessPlan
    from ocirun.process.channel import Channel
    from ocirun.process.intermediate import Entry
    from ocirun.syscalls.api import Syscalls


def run_tenant(p: ProcessPlan, chan: Channel, sys: Syscalls) -> None:
    from ocirun.process.intermediate import debug_sink
    steps.in_child("tenant", debug_sink(chan))
    t = steps.begin()
    close_inherited_fds({chan.fileno(), *range(3, 3 + p.keep_fds), steps.trace_fd()})  # T1
    for fd in range(3, 3 + p.keep_fds):
        os.set_inheritable(fd, True)
    steps.end("T1", "close inherited fds", t)
    # Nothing of the user's runs before we are in the cgroup.  Where we were
    # not born there nor could move ourselves (intermediate.py I5), the
    # runtime's cgroup.procs write can wait for an RCU grace period: without
    # a seccomp filter we do the process step meanwhile and wait for
    # ``cgroup_ready`` only right before execve.  With one, we wait first:
    # the filter (loaded in S5b/S9b) may forbid receiving on the channel.  With a
    # terminal too: its master must not reach the runtime before our pid.
    late = p.seccomp is None and not p.terminal
    if not late:
        wait_for_cgroup(chan, p, sys)                                          # T2
    if p.terminal:                                                             # T2a
        t = steps.begin()
        open_terminal(p, chan)
        steps.end("T2a", "terminal", t)
    t = steps.begin()
    exe = setup.prepare_process(                                               # T3 (S1-S9)
        p, sys, lambda fd: chan.send("seccomp_listener", fds=(fd,)))
    steps.end("T3", "process step S1-S9", t)
    if late:
        wait_for_cgroup(chan, p, sys)                                          # T2
    env = None
    if "LISTEN_PID=1" in p.env:
        # Socket activation: LISTEN_PID names the process that owns the fds,
        # and we are not the container's pid 1 (getpid() is our pid in the
        # container's pid namespace, which we forked into).
        env = {**p.env_dict(), "LISTEN_PID": str(os.getpid())}
    setup.exec_process(p, exe, env)                                            # T4 (S10)


def can_fork_direct(join_fds: list[tuple[int, int]]) -> bool:
    """Whether exec may skip the intermediate (:func:`fork_direct`): as root
    (joining a pid namespace takes CAP_SYS_ADMIN both in the caller's user
    namespace and in the one owning it), and with no time namespace to join
    (its setns too acts on children only, and wants a single-threaded caller)."""
    return os.geteuid() == 0 and all(flag != api.CLONE_NEWTIME for _, flag in join_fds)


def fork_direct(entry: Entry, chan: Channel, close_fds: tuple[int, ...],
                final: Callable[[], None], sys: Syscalls) -> tuple[int, bool]:
    """P2 without an intermediate: one fork less on exec's path.

    A pid namespace applies to the children of whoever joins it, so the
    runtime joins the container's itself (setns acts on its children only:
    the runtime stays where it is) and forks the process straight into it;
    the process joins the other namespaces (user first) and goes on as a
    tenant.  What the intermediate guaranteed holds from the first instant
    of the fork: the runtime makes itself non-dumpable first (the fork
    inherits it, so nothing of the runtime in the container can be ptraced
    or read through /proc), and wipes its command line and environment just
    around the fork (the fork keeps the wiped copy, the runtime puts its own
    back).  The process is born in the container's cgroup v2 directory
    (``entry.cgroup_fd``, clone3: the runtime has not joined the user
    namespace, so it is the runtime's right to the cgroup that counts);
    ``final`` moves it into the v1 ones.  Returns (pid, born in the v2
    cgroup).  The pid namespace fd stays open (the caller closes its fds)."""
    from ocirun import procfs
    from ocirun.errors import SyscallError
    sys.prctl(api.PR_SET_DUMPABLE, 0)
    rest = []
    for fd, flag in entry.join_fds:
        if flag != api.CLONE_NEWPID:
            rest.append((fd, flag))
            continue
        try:
            sys.setns(fd, flag)
        except OSError as e:
            raise SyscallError(f"setns into the pid namespace: {e.strerror}", errno=e.errno,
                               stage="namespaces") from e
    saved = procfs.save_args_and_env()
    if saved is not None:
        procfs.wipe_args_and_env(b"ocirun init")
    def child() -> None:
        _direct_child(entry.cpus, rest, final, sys)
    try:
        if entry.cgroup_fd >= 0:
            return fork.spawn_in_cgroup(child, chan, close_fds, "exec", sys, entry.cgroup_fd)
        return fork.spawn(child, chan, close_fds, "exec", sys), False
    except OSError as e:  # ENOMEM: the pid namespace's init is gone
        raise SyscallError(f"fork into the container's pid namespace: {e.strerror}",
                           errno=e.errno, stage="namespaces") from e
    finally:
        if saved is not None:
            procfs.restore_args_and_env(saved)


def _direct_child(cpus: tuple[int, ...] | None, join_fds: list[tuple[int, int]],
                  final: Callable[[], None], sys: Syscalls) -> None:
    """The intermediate's I1 and I2, in the process itself (see fork_direct)."""
    from ocirun import namespaces
    from ocirun.sched import all_cpus, set_affinity
    set_affinity(cpus or all_cpus(), "process.execCPUAffinity.initial" if cpus
                 else "reset the CPU affinity", sys)
    namespaces.join(join_fds, sys)
    final()


def wait_for_cgroup(chan: Channel, p: ProcessPlan, sys: Syscalls) -> None:    # T2
    t = steps.begin()
    chan.expect("cgroup_ready")
    if p.cpu_affinity is not None and p.cpu_affinity[1] is not None:
        # execCPUAffinity.final: once in the cgroup (whose cpuset reset it).
        from ocirun.sched import set_affinity
        set_affinity(p.cpu_affinity[1], "process.execCPUAffinity.final", sys)
    steps.end("T2", "wait for the cgroup", t)


def open_terminal(p: ProcessPlan, chan: Channel) -> None:
    """A pty of the container's devpts (setns put us under its root), the
    master to the runtime, the slave as our controlling terminal in a new
    session."""
    from ocirun import console
    master, slave, _ = console.open_pty(p.console_size)
    try:
        chan.send("console_master", fds=[master])
    finally:
        os.close(master)
    console.attach_stdio(slave, p.uid, new_session=True)
