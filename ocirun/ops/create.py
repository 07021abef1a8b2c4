"""``create``: runtime.md "Create" and lifecycle steps 1-5.

Plan in the parent (load, validate, meaning checks, refuse what is not built
yet), then build: state dir, config copy, exec FIFO, namespace fds, cgroup,
the children (process/parent.py).  Any failure rolls everything back: no
state dir, cgroup, mount or process survives a failed create.

With the nursery (process/nursery.py) the children start before the build is
done: the plan goes to it after C2 (it enters the new namespaces), and once
the cgroup's v2 directory exists (C4) it forks the init, which builds its
rootfs while C4 finishes (the v1 directories, the resources).
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create
import time

from ocirun import log, posixpaths, steps
from ocirun.errors import ChildDiedError, ConfigError, HookError, NotSupportedError, OciRunError
from ocirun.state import FIFO, ContainerState, StateStore, rfc3339_nano

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from ocirun.ops.hostside import HostSide
    from ocirun.plantypes import ContainerPlan, Handles
    from ocirun.process.channel import Channel
    from ocirun.process.nursery import Nursery
    from ocirun.syscalls.api import Syscalls


class CreateOptions:
    __slots__ = (
        "bundle",
        "cgroup_root",
        "console_master",
        "console_socket",
        "no_new_keyring",
        "no_pivot",
        "nursery",
        "pid_file",
        "preserve_fds",
        "rootless",
    )

    def __init__(self, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 cgroup_root: str = "/sys/fs/cgroup", console_master: Any = None,
                 rootless: bool = False, nursery: Nursery | None = None) -> None:
        self.bundle = bundle
        # --rootless: only delegated cgroups, no device rules (ocirun/rootless.py)
        self.rootless = rootless
        # run in the foreground with a terminal: a console.MasterHolder that
        # keeps the pty master for the runtime's own TtyProxy
        self.console_master = console_master
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.cgroup_root = cgroup_root
        # process/nursery.py: forked by the command line before anything
        # heavy was imported; create sends it the plan (None: create forks)
        self.nursery = nursery


def options_from(o: Mapping[str, object], *, rootless: bool = False) -> CreateOptions:
    """CreateOptions from create's (and run's) command-line options, as the
    flag parsers name them (cli.parse_flags, quick.create_request)."""
    return CreateOptions(rootless=rootless, bundle=str(o.get("bundle") or "."),
                         pid_file=o.get("pid_file"),  # type: ignore[arg-type]
                         console_socket=o.get("console_socket"),  # type: ignore[arg-type]
                         no_pivot=bool(o.get("no_pivot")),
                         no_new_keyring=bool(o.get("no_new_keyring")),
                         preserve_fds=int(str(o.get("preserve_fds") or 0)))


def load_and_check(bundle: str) -> tuple[dict[str, Any], bytes]:
    """Read, validate and meaning-check the bundle's config; refuse the unbuilt."""
    from ocirun.config import checks
    from ocirun.config.bundle import load_bundle
    loaded, raw = load_bundle(bundle)
    spec: dict[str, Any] = loaded  # schema-validated: the shapes below hold
    for w in checks.check(spec, bundle):
        log.warning(w)
    missing = checks.unsupported_message(spec)
    if missing:
        raise NotSupportedError(missing)
    return spec, raw


def make_plan(cid: str, spec: dict[str, Any], bundle: str, opts: CreateOptions,
              state_root: str | None = None) -> ContainerPlan:
    """The container plan: every config-caused error is raised here, before any fork."""
    from ocirun.process.plan import LaunchOptions, build_container_plan
    seccomp = None
    cfg = (spec.get("linux") or {}).get("seccomp")
    if cfg is not None:
        # compiled with libseccomp, or read back from the cache in the state root
        from ocirun.seccomp import compile_program
        seccomp = compile_program(cfg, cache_dir=state_root)
    return build_container_plan(cid, spec, bundle, LaunchOptions(
        keep_fds=opts.preserve_fds, no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring),
        seccomp=seccomp)


def open_handles(plan: ContainerPlan, sys: Syscalls) -> Handles:
    """Fds the children need from the runtime's own view: namespaces to join,
    and (with a user namespace) a detached copy of each bind source, cloned
    while the runtime can still reach it (the mapped root may not), and
    id-mapped (process/idmap.py) when the mount asks for it."""
    from ocirun import namespaces
    from ocirun.plantypes import Handles
    from ocirun.syscalls.api import AT_FDCWD, AT_RECURSIVE, OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE
    h = Handles()
    users = None
    try:
        h.join_fds = namespaces.open_joins(plan.ns, sys)
        for m in plan.mounts:
            if m.kind != "bind" or not (plan.ns.new_user or m.idmap):
                continue
            flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if m.recursive else 0)
            try:
                h.mount_fds[m.index] = sys.open_tree(AT_FDCWD, m.source, flags)
            except OSError as e:
                if e.errno == 1 and m.idmap is None:
                    # EPERM: an unprivileged runtime (rootless) may not clone
                    # mounts; its mapped root reaches what it reaches itself,
                    # and the init binds the path
                    continue
                raise ConfigError(f"config.json: $.mounts[{m.index}].source: cannot clone "
                                  f"`{m.source}` for {m.where}: {e.strerror}",
                                  errno=e.errno) from e
            if m.idmap is not None:
                from ocirun.process.idmap import UsernsFds, map_tree
                users = users or UsernsFds()
                map_tree(h.mount_fds[m.index], m, users.get(m.idmap, f"$.mounts[{m.index}]",
                                                            sys), sys)
    except BaseException:
        h.close()
        raise
    finally:
        if users is not None:
            users.close()
    return h


def create(store: StateStore, cid: str, opts: CreateOptions,
           sys: Syscalls | None = None) -> ContainerState:
    """Build the container; on return the init is parked before exec."""
    try:
        return _create(store, cid, opts, sys)
    finally:
        if opts.nursery is not None:
            opts.nursery.close()  # unused (a failure, or too many fds): kill and reap it
            opts.nursery = None


def _create(store: StateStore, cid: str, opts: CreateOptions,
            sys: Syscalls | None) -> ContainerState:
    from ocirun.process.parent import INIT, Launch, Rollback, launch
    from ocirun.state import validate_id

    validate_id(cid)
    bundle = posixpaths.abspath(opts.bundle)
    pid_file = posixpaths.abspath(opts.pid_file) if opts.pid_file else None
    t = steps.begin()
    spec, raw = load_and_check(bundle)
    if os.geteuid() != 0:
        from ocirun.rootless import check_config
        check_config(spec)
    steps.end("C1", "load and validate config.json", t)
    t = steps.begin()
    plan = make_plan(cid, spec, bundle, opts, store.root)
    host = plan_host_side(cid, spec)
    n = opts.nursery
    if n is not None:
        from ocirun.process.nursery import can_enter_early, send_plan
        if can_enter_early(plan):
            # it takes I1-I4 while we make the state dir and the cgroup
            send_plan(n, plan)
    steps.end("C2", "plan", t)
    console = console_sink(plan.process.terminal, opts)
    if sys is None:
        from ocirun.syscalls.linux import LinuxSyscalls
        sys = LinuxSyscalls()
    from ocirun.process.intermediate import Entry
    try:
        with Rollback() as rb:
            t = steps.begin()
            handles = open_handles(plan, sys)
            rb.push(handles.close)
            if console is not None:
                _connect(console)
                rb.push(console.close)
            path, lock_fd = store.create_dir(cid)
            rb.push(lambda: store.remove(cid))
            _write_file(posixpaths.join(path, "config.json"), raw, 0o600)
            fifo = posixpaths.join(path, FIFO)
            old = os.umask(0)
            try:
                os.mkfifo(fifo, 0o622)
            finally:
                os.umask(old)
            handles.fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            steps.end("C3", "state dir, exec FIFO, namespace and mount fds", t)
            t = steps.begin()
            mgr = _cgroup(cid, spec, opts.cgroup_root, opts.rootless)
            if mgr is not None:
                rb.push(mgr.destroy)
                mgr.create(2)
            if n is not None and n.planned and host is None and (mgr is None
                                                                 or mgr.made_v2_dir()):
                _fork_early(n, plan, handles, mgr, rb)
            if mgr is not None:
                mgr.create(1)
                mgr.apply((spec.get("linux") or {}).get("resources"), sys=sys)
            steps.end("C4", "cgroup", t)
            if host is not None:
                host.prepare(rb)
            st = ContainerState(cid, bundle=bundle, rootfs=plan.rootfs,
                                created=rfc3339_nano(time.time_ns()), oci_version=plan.oci_version,
                                annotations=plan.annotations,
                                cgroup_paths=mgr.paths() if mgr else {}, dir=path,
                                hooks={k: [h.to_config() for h in v]
                                       for k, v in plan.hooks.items()
                                       if k in ("poststart", "poststop")})

            def runtime_hooks(pid: int) -> None:
                from ocirun.hooks import run_hooks
                state = plan.hook_state("creating", pid)
                # runc runs these with the bundle as cwd (it chdirs there)
                for phase in ("prestart", "createRuntime"):
                    if plan.hooks.get(phase):
                        run_hooks(plan.hooks[phase], state, phase, cwd=bundle)

            # Not from a user namespace: its root may lack rights on the host's
            # cgroup, and clone3 fails that check after allocating the pid, which
            # as pid 1 of a new pid namespace leaves it unable to fork (ENOMEM).
            if mgr is not None:
                if n is None or not n.forked:  # else _fork_early took it, before the resources
                    handles.cgroup_fd = -1 if plan.ns.in_userns else mgr.v2_dir_fd()
                handles.tasks = mgr.self_join_fds()
            # the init moves itself into the v1 cgroups only at N3, right
            # before it needs them (handles.tasks): its rootfs work until then
            # is not charged to the container (a memory limit of 512 KiB runs)
            entry = Entry(handles.join_fds, plan.ns, plan.time_offsets,
                          cgroup_fd=handles.cgroup_fd)
            from ocirun.process.nursery import fits
            # an init forked early waits for this launch on the nursery's channel;
            # such a launch has no bind-source or namespace fds, so it always fits
            nursery = opts.nursery if opts.nursery is not None and (
                opts.nursery.forked or fits(handles)) else None
            if nursery is None:
                from ocirun.process.init import preload
                preload(plan)  # the children are forked from us

            def final(chan: Channel) -> None:
                from ocirun.process.init import run_init
                run_init(plan, handles, chan, sys)

            try:
                init_pid = launch(Launch(INIT, entry, final,
                                         mgr=mgr, uid_map=plan.uid_map, gid_map=plan.gid_map,
                                         run_runtime_hooks=runtime_hooks,
                                         self_join=bool(handles.tasks),
                                         on_fds=lambda msg: take_fds(plan, msg, console),
                                         on_pid=None if host is None else
                                         lambda pid: host.on_pid(pid, rb, sys),
                                         nursery=None if nursery is None else
                                         (nursery, plan, handles)), rb, sys)
            except ChildDiedError as e:
                if plan.process.seccomp is None:
                    raise
                raise ChildDiedError(e.msg + SECCOMP_DIED_HINT) from None
            handles.close()
            t = steps.begin()
            from ocirun import procfs
            st.pid = init_pid
            st.pid_start = procfs.pid_start_time(init_pid) or 0
            store.save(st)
            if host is not None:
                host.save(path)
            if pid_file:
                write_pid_file(pid_file, init_pid)
            steps.end("C5", "save state.json", t)
            rb.commit()
    except HookError:
        # runtime.md "Lifecycle": a failing create-time hook stops the
        # container, which is destroyed (the rollback above did that), and
        # the poststop hooks still run (step 13); their failures only warn.
        _run_poststop(plan)
        raise
    os.close(lock_fd)
    return st


def _fork_early(n: Nursery, plan: ContainerPlan, handles: Handles, mgr: Any, rb: Any) -> None:
    """The cgroup directories exist: have the nursery (which entered the
    namespaces early) fork the init now, into the v2 directory where there
    is one, so that its rootfs work up to the first cgroup mount overlaps
    the resources we apply and the rest of the launch (nursery.send_fork).
    It waits for the launch, and for ``cgroup_ready``, before it needs the
    cgroup."""
    from ocirun.process.nursery import abort_fork, can_fork_early, send_fork
    if not can_fork_early(plan, handles):
        return
    if mgr is not None:
        handles.cgroup_fd = mgr.v2_dir_fd()  # not in a user namespace (can_enter_early)
    send_fork(n, handles.cgroup_fd)
    rb.push(lambda: abort_fork(n))


def console_sink(terminal: bool, opts: CreateOptions) -> Any:
    """Where the pty master goes: the caller's --console-socket (create and
    run -d detach, so a terminal needs one), or run's own TtyProxy."""
    if opts.console_master is not None:
        return opts.console_master if terminal else None
    if not terminal and not opts.console_socket:
        return None
    from ocirun.console import ConsoleSocket, check_terminal_flags
    check_terminal_flags(terminal, True, opts.console_socket)
    return ConsoleSocket(str(opts.console_socket))


def _connect(console: Any) -> None:
    if hasattr(console, "connect"):
        console.connect()


def plan_host_side(cid: str, spec: dict[str, Any]) -> HostSide | None:
    """linux.intelRdt and linux.netDevices, checked before any fork (ops/hostside.py)."""
    linux = spec.get("linux") or {}
    if not (linux.get("intelRdt") or linux.get("netDevices")):
        return None
    from ocirun.ops.hostside import plan
    return plan(cid, spec)


# The init loads the profile before `ready` and still sends to the runtime,
# closes fds, opens the exec FIFO and execs after it.
SECCOMP_DIED_HINT = ("; the seccomp profile (linux.seccomp) is loaded before that point: it must "
                     "allow what the runtime still does before exec (sendmsg, close, openat, "
                     "write, execve; signal 31 is SIGSYS, a seccomp kill)")


def take_fds(plan: ContainerPlan, msg: dict[str, object], console: Any = None) -> None:
    """An fd-carrying message from the init (process/parent.py ``on_fds``):
    the pty master (to the console socket or run's TtyProxy) or the seccomp
    listener (to the agent)."""
    if msg["type"] == "console_master" and console is not None:
        console.on_fds(msg)
        return
    fds: list[int] = msg["fds"]  # type: ignore[assignment]
    try:
        if msg["type"] != "seccomp_listener" or len(fds) != 1 or plan.process.seccomp is None:
            raise OciRunError(f"sync protocol: unexpected `{msg['type']}` with {len(fds)} fds")
        # config-linux.md "listenerPath": the agent gets the listener and the
        # container process state, before the container's process runs
        from ocirun.seccomp import SeccompProgram, send_listener
        prog = plan.process.seccomp
        assert isinstance(prog, SeccompProgram) and prog.listener_path
        pid = int(msg["pid"])  # type: ignore[call-overload]
        send_listener(prog.listener_path, fds[0], plan.hook_state("creating", pid),
                      prog.listener_metadata)
    finally:
        for fd in fds:
            _close(fd)


def _run_poststop(plan: ContainerPlan) -> None:
    hooks = plan.hooks.get("poststop")
    if hooks:
        from ocirun.hooks import run_hooks_warn
        for w in run_hooks_warn(hooks, plan.hook_state("stopped", None), "poststop"):
            log.warning(w)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _cgroup(cid: str, spec: dict, root: str, rootless: bool = False):  # type: ignore[no-untyped-def,type-arg]
    if rootless:
        from ocirun.rootless import cgroup_manager
        return cgroup_manager(cid, spec, root)
    from ocirun.cgroups import open_manager
    return open_manager((spec.get("linux") or {}).get("cgroupsPath"), cid, root=root)


def _write_file(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def write_pid_file(path: str, pid: int) -> None:
    """RUNC-CLI.md §6: digits only, no newline; ``.<name>`` then rename."""
    d, name = posixpaths.split(path)
    tmp = posixpaths.join(d, "." + name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OciRunError(f"write pid file `{path}`: {e.strerror}", errno=e.errno) from e
