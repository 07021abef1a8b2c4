"""``exec``: run a new process inside a running container (runc's ``exec``).

The runtime-spec leaves exec to the runtimes; this follows runc.  The
process is described by a process.json (``--process``, what containerd's
shim sends) or by the container's own ``process`` with the command line's
overrides.  It is planned in the parent like an init's process
(process/plan.py), then launched as a TENANT (process/parent.py): an
intermediate enters every namespace of the container (user first) and
forks the process inside its pid namespace, the runtime puts it in the
container's cgroup, and the shared process step (process/setup.py) applies
the plan and execs.
"""

from __future__ import annotations

import posix as os  # the lean exec path never imports os (posixpaths.py)

from ocirun import log, posixpaths
from ocirun.errors import ConfigError, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirun.ops.run import Forwarder
    from ocirun.plantypes import ProcessPlan
    from ocirun.state import ContainerState, StateStore
    from ocirun.syscalls.api import Syscalls


class ExecOptions:
    __slots__ = ("cgroups", "console_socket", "detach", "ignore_paused", "pid_file",
                 "preserve_fds")

    def __init__(self, *, detach: bool = False, pid_file: str | None = None,
                 preserve_fds: int = 0, ignore_paused: bool = False,
                 console_socket: str | None = None, cgroups: list[str] = ()  # type: ignore[assignment]
                 ) -> None:
        self.detach = detach
        self.pid_file = pid_file
        self.preserve_fds = preserve_fds
        self.ignore_paused = ignore_paused
        self.console_socket = console_socket
        self.cgroups = list(cgroups)  # runc's --cgroup [CONTROLLER:]PATH


_CONFIGS: dict[str, dict[str, Any]] = {}


def container_config(st: ContainerState) -> dict[str, Any]:
    """The config saved at create (edits to the bundle since do not count).

    create validated it before saving it, so a plain parse is enough here:
    neither the schema nor the strict loader is imported on exec's path."""
    cfg = _CONFIGS.get(st.config_path)
    if cfg is None:
        from ocirun import jsonio
        try:
            with open(st.config_path, "rb") as f:
                cfg = jsonio.loads(f.read())
        except (OSError, ValueError) as e:
            raise StateError(f"container {st.id}: read its saved config "
                             f"`{st.config_path}`: {e}") from e
        if not isinstance(cfg, dict):
            raise StateError(f"container {st.id}: saved config `{st.config_path}` is not an object")
        _CONFIGS[st.config_path] = cfg
    return cfg


def plan_exec_process(st: ContainerState, cfg: dict[str, Any], proc: dict[str, Any],
                      opts: ExecOptions, where: str = "process.json",
                      cache_dir: str | None = None) -> ProcessPlan:
    """The process's plan; it gets the container's seccomp filter (a
    process.json has no seccomp of its own), compiled or read back from the
    cache create left under the state root."""
    from ocirun.process.plan import LaunchOptions, build_process_plan
    check_process(proc, where)
    linux = cfg.get("linux") or {}
    seccomp = None
    if linux.get("seccomp") is not None:
        from ocirun.seccomp import compile_program
        seccomp = compile_program(linux["seccomp"], cache_dir=cache_dir)
    return build_process_plan(
        proc, rootfs=st.rootfs, linux=linux, opts=LaunchOptions(keep_fds=opts.preserve_fds),
        keyring=f"_ses.{st.id}", where=where, seccomp=seccomp)


def check_process(proc: dict[str, Any], where: str) -> None:
    """runc's checks on an exec process: args non-empty, cwd absolute; the
    process's own fields (rlimits, capabilities, env) are checked while planning."""
    if not isinstance(proc, dict):
        raise ConfigError(f"{where}: expected a JSON object (config.md#process)")
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise ConfigError(f"{where}: args: a non-empty list of strings is required")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise ConfigError(f"{where}: cwd: {cwd!r} is not an absolute path")


def sub_cgroup_paths(paths: dict[str, str], specs: list[str]) -> dict[str, str]:
    """runc's ``exec --cgroup [CONTROLLER:]PATH``: the process goes to an
    existing sub-cgroup of the container's (one controller, or all)."""
    out = {k: v for k, v in paths.items() if not k.startswith("created:")}
    for spec in specs:
        ctrl, _, sub = spec.rpartition(":")
        keys = [k for k in out if not ctrl or ctrl in k.split(",")]
        if not keys:
            raise ConfigError(f"--cgroup {spec!r}: the container has no `{ctrl}` cgroup")
        for k in keys:
            base = paths[k]
            new = posixpaths.normpath(posixpaths.join(base, sub.lstrip("/")))
            if new != base and not new.startswith(base + "/"):
                raise ConfigError(f"--cgroup {spec!r}: `{sub}` is outside the container's cgroup")
            if not posixpaths.isdir(new):
                raise ConfigError(f"--cgroup {spec!r}: `{new}` does not exist")
            out[k] = new
    return out


def exec_process(store: StateStore, cid: str, proc: dict[str, Any], opts: ExecOptions,
                 sys: Syscalls | None = None, fwd: Forwarder | None = None) -> int:
    """Start ``proc`` in container ``cid``; its exit status (0 when detached).

    ``fwd``: signal handlers the caller installed as early as it could; in
    the foreground they forward to the process once it runs."""
    from ocirun.cgroups import load_manager
    from ocirun.namespaces import open_container_namespaces
    from ocirun.process.intermediate import Entry
    from ocirun.process.parent import TENANT, Launch, Rollback, launch
    from ocirun.process.tenant import can_fork_direct, run_tenant

    st = store.load(cid)
    st.status().require("exec", cid, ignore_paused=opts.ignore_paused)
    terminal = bool(proc.get("terminal"))
    sink: Any = None
    if terminal or opts.console_socket:
        from ocirun.console import ConsoleSocket, MasterHolder, check_terminal_flags
        check_terminal_flags(terminal, opts.detach, opts.console_socket)
        sink = ConsoleSocket(str(opts.console_socket)) if opts.detach else MasterHolder()
    cfg = container_config(st)
    plan = plan_exec_process(st, cfg, proc, opts, cache_dir=store.root)
    if sys is None:
        from ocirun.syscalls.linux import LinuxSyscalls
        sys = LinuxSyscalls()
    # what the tenant uses, imported before the fork (see init.preload)
    import ocirun.process.setup
    import ocirun.rlimits
    import ocirun.sched
    import ocirun.user
    if plan.mem_policy is not None:
        import ocirun.mempolicy
    if plan.apparmor_profile or plan.selinux_label:
        import ocirun.lsm  # noqa: F401
    paths = st.cgroup_paths
    if paths and opts.cgroups:
        paths = sub_cgroup_paths(paths, opts.cgroups)
    mgr = load_manager(paths) if paths else None
    with Rollback() as rb:
        try:
            fds = open_container_namespaces(st.pid)
        except OSError as e:
            if e.errno == 13 and os.geteuid() != 0 and st.alive():  # EACCES, rootless
                # its pid 1 is still the runtime, non-dumpable: /proc/<pid>/ns
                # belongs to root (SECURITY.md "Known limits")
                raise StateError(f"container {cid} has not been started: running as uid "
                                 f"{os.geteuid()}, exec can join it only after `start` "
                                 f"({e.strerror})") from e
            raise StateError(f"container {cid} is not running: its namespaces are gone "
                             f"({e.strerror})") from e
        rb.push(lambda: _close_all(fds))
        if not st.alive():
            raise StateError("cannot exec in a stopped container")
        if sink is not None:
            if opts.detach:
                sink.connect()
            rb.push(sink.close)
        initial = plan.cpu_affinity[0] if plan.cpu_affinity else None
        direct = can_fork_direct(fds)
        cgroup_fd, tasks = -1, []
        if mgr is not None:
            # born in the v2 cgroup only when forked by the runtime itself
            # (process/fork.py: never clone3 from inside a user namespace)
            cgroup_fd = mgr.v2_dir_fd() if direct else -1
            tasks = mgr.self_join_fds()
        cg_fds = [(fd, 0) for fd, _ in tasks]
        if cgroup_fd >= 0:
            cg_fds.append((cgroup_fd, 0))
        rb.push(lambda: _close_all(cg_fds))
        pid = launch(Launch(TENANT, Entry(fds, cpus=initial, cgroup_fd=cgroup_fd, tasks=tasks),
                            lambda chan: run_tenant(plan, chan, sys),
                            mgr=mgr, on_fds=lambda msg: _take_fds(st, plan, msg, sink),
                            on_pid=_rdt_joiner(st), direct=direct), rb, sys)
        _close_all(fds + cg_fds)
        fds.clear()  # closed: the rollback must not close their numbers again
        cg_fds.clear()
        if opts.pid_file:
            from ocirun.ops.create import write_pid_file
            write_pid_file(posixpaths.abspath(opts.pid_file), pid)
        rb.commit()
    if opts.detach:
        if fwd is not None:
            fwd.restore()
        return 0
    from ocirun.ops.run import Forwarder, proxy_terminal, wait_init
    if fwd is None:
        fwd = Forwarder()
        fwd.install()
    fwd.target(pid)
    try:
        if sink is not None and sink.master >= 0:
            proxy_terminal(sink.master, pid)
        return wait_init(pid)
    finally:
        if sink is not None:
            sink.close()
        fwd.restore()


def exec_request(store: StateStore, cid: str, args: list[str],
                 o: dict[str, object]) -> tuple[dict[str, Any], ExecOptions]:
    """The process and options of ``ocirun exec`` from its parsed flags.

    With ``--process FILE`` the file is the whole process and the flags that
    shape a process are ignored, as runc does; otherwise the container's own
    process with ``args`` and the flags' overrides."""
    opts = ExecOptions(detach=bool(o.get("detach")), pid_file=o.get("pid_file"),  # type: ignore[arg-type]
                       preserve_fds=int(o.get("preserve_fds") or 0),  # type: ignore[call-overload]
                       ignore_paused=bool(o.get("ignore_paused")),
                       console_socket=o.get("console_socket") or None,  # type: ignore[arg-type]
                       cgroups=list(o.get("cgroup") or ()))  # type: ignore[call-overload]
    path = o.get("process")
    if path:
        if args:
            log.warning(f"exec: --process given: the command line {args!r} is ignored")
        from ocirun import jsonio
        try:
            with open(str(path), "rb") as f:
                proc = jsonio.loads(f.read())
        except OSError as e:
            raise ConfigError(f"--process `{path}`: {e.strerror}", errno=e.errno) from e
        except ValueError as e:
            raise ConfigError(f"--process `{path}`: malformed JSON: {e}") from None
        if not isinstance(proc, dict):
            raise ConfigError(f"--process `{path}`: expected a JSON object (config.md#process)")
        return proc, opts
    st = store.load(cid)
    gids = []
    for g in o.get("additional_gids") or ():  # type: ignore[attr-defined]
        if not str(g).isdigit():
            raise ConfigError(f"--additional-gids {g!r}: not a number")
        gids.append(int(g))
    proc = process_from_args(
        container_config(st), args, cwd=o.get("cwd"), env=list(o.get("env") or ()),  # type: ignore[arg-type,call-overload]
        user=o.get("user"), additional_gids=gids,  # type: ignore[arg-type]
        caps=[str(c) for c in o.get("cap") or ()],  # type: ignore[attr-defined]
        no_new_privs=bool(o.get("no_new_privs")), tty=bool(o.get("tty")),
        apparmor=o.get("apparmor"), process_label=o.get("process_label"))  # type: ignore[arg-type]
    return proc, opts


def _take_fds(st: ContainerState, plan: ProcessPlan, msg: dict[str, Any], sink: Any) -> None:
    """The tenant's fd-carrying messages: the pty master (console socket or
    our TtyProxy), a seccomp NOTIFY listener (to the container's agent)."""
    fds: list[int] = msg["fds"]
    if msg["type"] == "console_master" and sink is not None:
        sink.on_fds(msg)
        return
    try:
        from ocirun.errors import OciRunError
        if msg["type"] != "seccomp_listener" or len(fds) != 1 or plan.seccomp is None:
            raise OciRunError(f"sync protocol: unexpected `{msg['type']}` with {len(fds)} fds")
        from ocirun.seccomp import SeccompProgram, send_listener
        prog = plan.seccomp
        assert isinstance(prog, SeccompProgram) and prog.listener_path
        send_listener(prog.listener_path, fds[0], st.hook_state("running", int(msg["pid"])),
                      prog.listener_metadata)
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _rdt_joiner(st: ContainerState) -> Callable[[int], None] | None:
    """The container's resctrl group, which an exec'd process joins too."""
    if not posixpaths.exists(posixpaths.join(st.dir, "resctrl")):
        return None
    from ocirun.ops.hostside import join_rdt
    return lambda pid: join_rdt(st.dir, pid)


def _close_all(fds: list[tuple[int, int]]) -> None:
    for fd, _ in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def process_from_args(cfg: dict[str, Any], args: list[str], *, cwd: str | None = None,
                      env: list[str] = (), user: str | None = None,  # type: ignore[assignment]
                      additional_gids: list[int] = (),  # type: ignore[assignment]
                      caps: list[str] = (), no_new_privs: bool = False,  # type: ignore[assignment]
                      tty: bool = False, apparmor: str | None = None,
                      process_label: str | None = None) -> dict[str, Any]:
    """runc's exec without --process: the container's process with overrides."""
    # a copy deep enough for the overrides below (copy.deepcopy costs an import)
    proc: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list)
                            else v for k, v in (cfg.get("process") or {}).items()}
    if not args:
        raise ConfigError("exec: no command given (args after the container id, or --process)")
    proc["args"] = list(args)
    proc["terminal"] = tty  # runc: false unless -t, whatever config.json says
    if cwd:
        proc["cwd"] = cwd
    if env:
        merged = {e.partition("=")[0]: e for e in proc.get("env") or []}
        merged.update({e.partition("=")[0]: e for e in env})
        proc["env"] = list(merged.values())
    if user:
        uid, _, gid = user.partition(":")
        try:
            proc["user"] = {**(proc.get("user") or {}), "uid": int(uid),
                            "gid": int(gid) if gid else int((proc.get("user") or {}).get("gid", 0))}
        except ValueError:
            raise ConfigError(f"exec: --user {user!r}: expected uid[:gid] (numbers)") from None
    if additional_gids:
        proc.setdefault("user", {})["additionalGids"] = list(additional_gids)
    if caps:
        c = proc.setdefault("capabilities", {})
        for k in ("bounding", "effective", "permitted", "ambient"):
            c[k] = list(dict.fromkeys(list(c.get(k) or []) + list(caps)))
    if no_new_privs:
        proc["noNewPrivileges"] = True
    if apparmor:
        proc["apparmorProfile"] = apparmor
    if process_label:
        proc["selinuxLabel"] = process_label
    log.debug(f"exec: process {proc.get('args')}")
    return proc
