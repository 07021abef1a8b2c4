"""The container init: build the container from its plan, park, exec.

runtime.md "Lifecycle" steps 2-8 on the container side.  The container steps
are named functions, in this order (numbers as in specs/sync-protocol.md);
the process itself is then set up by the shared process step
(process/setup.py, S1-S10), the one ``exec`` uses too.  An error is reported
to the parent over the channel before ``ready``, through the exec FIFO after.

  N1 close every inherited fd not meant for the container (runtime-linux.md
     "File descriptors"): first, so no later hook or mount sees them;
  N2 setsid;
  N3 rootfs: propagation, rootfs bind, mounts, devices, /dev links.  We
     are born in the container's v2 cgroup (clone3: intermediate.py I5),
     possibly before the launch (nursery.send_fork: we then read it here,
     before we need the cgroup);
     right before the first mount that shows cgroups, or after the last
     mount, we move ourselves into its v1 ones (``handles.tasks``:
     CgroupManager.self_join_fds), so the rootfs work before is charged to
     the host, wait for ``cgroup_ready`` (the parent moves us meanwhile into
     any hierarchy we are not in yet), and unshare the cgroup namespace,
     whose root becomes the container's cgroup;
  N4 prestart + createRuntime hooks, run by the parent (runtime namespace);
  N5 createContainer hooks, here (container namespaces, host paths still
     reachable); sysctl (written through the container's own /proc) and
     hostname/domainname;
  N6 pivot_root; with process.terminal, the console (a pty of the
     container's devpts, /dev/console bound to it, its master sent to the
     runtime as ``console_master``, the slave as stdio); masked and
     read-only paths, read-only root;
  N7 the process step S1-S9 (process/setup.py): limits, ids, capabilities,
     cwd, executable lookup;
  N8 ``ready``; block in open(2) of the exec FIFO until ``start``;
  N9 startContainer hooks, then S10 (umask, execve).
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun import steps
from ocirun.errors import OciRunError, SyscallError
from ocirun.process import setup
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.process.channel import Channel
    from ocirun.plantypes import ContainerPlan, Handles


def preload(plan: ContainerPlan) -> None:
    """Import, in the parent, every module the children use.

    After pivot_root the runtime's own files are out of reach, so an import
    in the init would fail there; imported before the fork they are shared
    copy-on-write and cost the children nothing.
    """
    import ocirun.capabilities
    import ocirun.namespaces
    import ocirun.pathres
    import ocirun.process.intermediate
    import ocirun.rlimits
    import ocirun.rootfs
    import ocirun.sched
    import ocirun.user
    if plan.process.mem_policy is not None:
        import ocirun.mempolicy
    if plan.hooks:
        import ocirun.hooks  # noqa: F401
    if plan.process.terminal:
        import ocirun.console  # noqa: F401
    if plan.process.seccomp is not None:
        import ocirun.seccomp  # noqa: F401
    if plan.process.apparmor_profile or plan.process.selinux_label:
        import ocirun.lsm  # noqa: F401


def close_inherited_fds(keep: set[int]) -> None:                               # N1
    keep.discard(-1)
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)


def kept_fds(plan: ContainerPlan, handles: Handles, chan: Channel) -> set[int]:
    keep = {chan.fileno(), handles.fifo_fd, *handles.mount_fds.values(),
            *(fd for fd, _ in handles.tasks), *range(3, 3 + plan.process.keep_fds),
            steps.trace_fd()}
    return keep


def _monotonic_offset(text: bytes) -> int:
    """The time namespace's monotonic offset, to put trace times on the host's line."""
    for line in text.decode().splitlines():
        clock, secs, nsecs = line.split()
        if clock == "monotonic":
            return int(secs) * 1_000_000_000 + int(nsecs)
    return 0


def enter_cgroup(plan: ContainerPlan, handles: Handles, chan: Channel,
                 sys: api.Syscalls, take_launch: Callable[[], None] | None = None
                 ) -> None:                                                     # N3
    if take_launch is not None:  # forked before the launch (nursery.send_fork)
        take_launch()  # fills in handles: the exec FIFO, the v1 `tasks`
    if handles.tasks:  # the v1 hierarchies: we move ourselves (intermediate.py)
        from ocirun.process.intermediate import enter_v1_cgroups
        tasks, handles.tasks = handles.tasks, []
        enter_v1_cgroups(tasks)
    chan.expect("cgroup_ready")
    if plan.ns.new_cgroup:
        try:
            sys.unshare(api.CLONE_NEWCGROUP)
        except OSError as e:
            raise SyscallError(f"unshare the cgroup namespace: {e.strerror}", errno=e.errno,
                               stage="namespaces") from e


def build_rootfs(plan: ContainerPlan, handles: Handles, chan: Channel,
                 sys: api.Syscalls, take_launch: Callable[[], None] | None = None
                 ) -> None:                                                     # N3
    from ocirun import rootfs
    joined = []

    def join() -> None:
        enter_cgroup(plan, handles, chan, sys, take_launch)
        joined.append(True)

    rootfs.prepare_rootfs(plan, sys, mount_fds=handles.mount_fds, before_cgroup=join)
    for fd in handles.mount_fds.values():
        os.close(fd)  # attached now (move_mount); the fd only pins a copy
    if not joined:
        join()


def runtime_hooks(plan: ContainerPlan, chan: Channel) -> None:                  # N4
    if plan.has_runtime_hooks:
        chan.send("hooks_request")
        chan.expect("hooks_done")


def container_hooks_and_names(plan: ContainerPlan, sys: api.Syscalls) -> None:  # N5
    hooks = plan.hooks.get("createContainer")
    if hooks:
        from ocirun.hooks import run_hooks
        run_hooks(hooks, plan.hook_state("creating", os.getpid()), "createContainer",
                  cwd=plan.rootfs)
    if plan.sysctl:
        write_sysctl(plan.rootfs, plan.sysctl)
    if plan.hostname is not None:
        _named(sys.sethostname, plan.hostname, "hostname")
    if plan.domainname is not None:
        _named(sys.setdomainname, plan.domainname, "domainname")


def _named(fn: object, value: str, what: str) -> None:
    try:
        fn(value)  # type: ignore[operator]
    except OSError as e:
        raise SyscallError(f"set {what} {value!r}: {e.strerror}", errno=e.errno, stage=what) from e


def write_sysctl(rootfs: str, sysctl: tuple[tuple[str, str], ...]) -> None:
    """config-linux.md "Sysctl": through the container's /proc, before the
    read-only paths (which usually include /proc/sys) are applied."""
    from ocirun.pathres import resolve_in_root
    for key, value in sysctl:
        rel = "/proc/sys/" + key.replace(".", "/")
        try:
            path = resolve_in_root(rootfs, rel)
            fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                os.write(fd, value.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise SyscallError(f"linux.sysctl[{key!r}]: write {value!r} to `{rel}`: {e.strerror}",
                               errno=e.errno, stage="sysctl") from e


def switch_root(plan: ContainerPlan, chan: Channel, sys: api.Syscalls) -> None:  # N6
    from ocirun import rootfs
    after_pivot = None
    if plan.process.terminal:
        def after_pivot() -> None:
            setup_console(plan, chan, sys)
    rootfs.finish_rootfs(plan, sys, after_pivot)


def setup_console(plan: ContainerPlan, chan: Channel, sys: api.Syscalls) -> None:  # N6
    """After pivot_root, so /dev/ptmx is the container's (runc does the same)."""
    from ocirun import console
    master, slave, path = console.open_pty(plan.process.console_size)
    try:
        if not plan.dev_is_bind:  # a bound /dev is someone else's: leave its console be
            console.bind_console(path, sys)
        chan.send("console_master", fds=[master])
    finally:
        os.close(master)
    console.attach_stdio(slave, plan.process.uid, new_session=False)


def wait_for_start(handles: Handles, chan: Channel, seccomp: bool = False) -> int:  # N8
    chan.send("ready")
    chan.close()
    steps.in_child("init")  # no channel from here on: no --debug lines
    # Reopen our O_PATH handle for writing: blocks until `start` opens the
    # FIFO for reading.  Through /proc because the host path is gone after
    # pivot_root.
    try:
        fd = os.open(f"/proc/self/fd/{handles.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        if seccomp:  # the channel is closed: tell the container's stderr
            os.write(2, f"ocirun: init: reopen the exec FIFO: {e.strerror} (linux.seccomp is "
                        "loaded before exec: does the profile allow openat?)\n".encode())
        raise
    os.close(handles.fifo_fd)
    os.write(fd, b"\0")
    return fd


def start_process(plan: ContainerPlan, exe: str, fifo: int) -> None:            # N9
    try:
        hooks = plan.hooks.get("startContainer")
        if hooks:
            from ocirun.hooks import run_hooks
            run_hooks(hooks, plan.hook_state("created", os.getpid()), "startContainer")
        setup.exec_process(plan.process, exe)
    except OciRunError as e:
        _fail_start(fifo, e.code, e.errno, e.msg)
    except BaseException as e:  # never die silently: start would take it for an exec
        _fail_start(fifo, "error", None, f"start: internal error: {type(e).__name__}: {e}")


def _fail_start(fifo: int, code: str, errno: int | None, msg: str) -> None:
    """After ``ready`` the channel is gone: ``start`` reads the error from the FIFO."""
    try:
        os.write(fifo, f"{code}:{errno if errno is not None else ''}:{msg}".encode())
    finally:
        os._exit(127)


def run_init(plan: ContainerPlan, handles: Handles, chan: Channel, sys: api.Syscalls,
             take_launch: Callable[[], None] | None = None) -> None:
    """N1-N9.  ``take_launch``: an init the nursery forked before the launch
    (nursery.send_fork) calls it at N3, before it needs the cgroup, to read
    the launch into ``handles``; else they came with the launch."""
    from ocirun.process.intermediate import debug_sink
    steps.in_child("init", debug_sink(chan), _monotonic_offset(plan.time_offsets))
    t = steps.begin()
    close_inherited_fds(kept_fds(plan, handles, chan))
    for fd in range(3, 3 + plan.process.keep_fds):
        os.set_inheritable(fd, True)
    steps.end("N1", "close inherited fds", t)
    t = steps.begin()
    os.setsid()                                                                 # N2
    steps.end("N2", "setsid", t)
    t = steps.begin()
    build_rootfs(plan, handles, chan, sys, take_launch)
    steps.end("N3", "rootfs", t)
    t = steps.begin()
    runtime_hooks(plan, chan)
    steps.end("N4", "runtime hooks", t)
    t = steps.begin()
    container_hooks_and_names(plan, sys)
    steps.end("N5", "createContainer hooks, sysctl, names", t)
    t = steps.begin()
    switch_root(plan, chan, sys)
    steps.end("N6", "pivot_root, console, masked and read-only paths", t)
    t = steps.begin()
    exe = setup.prepare_process(                                                # N7
        plan.process, sys, lambda fd: chan.send("seccomp_listener", fds=(fd,)))
    steps.end("N7", "process step S1-S9", t)
    t = steps.begin()
    fifo = wait_for_start(handles, chan, plan.process.seccomp is not None)
    steps.end("N8", "ready; wait for start", t)
    start_process(plan, exe, fifo)
