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

import os

from ocirun import log
from ocirun.errors import ConfigError, StateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.plantypes import ProcessPlan
    from ocirun.state import ContainerState, StateStore
    from ocirun.syscalls.api import Syscalls


class ExecOptions:
    __slots__ = ("detach", "ignore_paused", "pid_file", "preserve_fds")

    def __init__(self, *, detach: bool = False, pid_file: str | None = None,
                 preserve_fds: int = 0, ignore_paused: bool = False) -> None:
        self.detach = detach
        self.pid_file = pid_file
        self.preserve_fds = preserve_fds
        self.ignore_paused = ignore_paused


def container_config(st: ContainerState) -> dict[str, Any]:
    """The config saved at create (edits to the bundle since do not count)."""
    from ocirun.config.bundle import parse_config
    with open(st.config_path, "rb") as f:
        return parse_config(f.read(), st.config_path)


def plan_exec_process(st: ContainerState, cfg: dict[str, Any], proc: dict[str, Any],
                      opts: ExecOptions, where: str = "process.json",
                      state_root: str | None = None) -> ProcessPlan:
    from ocirun.process.plan import LaunchOptions, build_process_plan
    if proc.get("terminal"):
        from ocirun.errors import NotSupportedError
        raise NotSupportedError("exec: process.terminal: terminals are not supported yet")
    seccomp = None
    profile = (cfg.get("linux") or {}).get("seccomp")
    if profile is not None:
        # the container's profile binds every process in it, as with runc
        # (the program comes from the cache create filled in the state root)
        from ocirun.seccomp import compile_program
        seccomp = compile_program(profile, cache_dir=state_root)
    return build_process_plan(
        proc, rootfs=st.rootfs, linux=cfg.get("linux") or {},
        opts=LaunchOptions(keep_fds=opts.preserve_fds), keyring=f"_ses.{st.id}", where=where,
        seccomp=seccomp)


def exec_process(store: StateStore, cid: str, proc: dict[str, Any], opts: ExecOptions,
                 sys: Syscalls | None = None) -> int:
    """Start ``proc`` in container ``cid``; its exit status (0 when detached)."""
    from ocirun.cgroups import load_manager
    from ocirun.namespaces import open_container_namespaces
    from ocirun.process.intermediate import Entry
    from ocirun.process.parent import TENANT, Launch, Rollback, launch
    from ocirun.process.tenant import run_tenant

    st = store.load(cid)
    st.status().require("exec", cid, ignore_paused=opts.ignore_paused)
    cfg = container_config(st)
    plan = plan_exec_process(st, cfg, proc, opts, state_root=store.root)
    if sys is None:
        from ocirun.syscalls.linux import LinuxSyscalls
        sys = LinuxSyscalls()
    import ocirun.process.setup  # noqa: F401  (imported before the fork: see init.preload)
    import ocirun.rlimits
    import ocirun.user  # noqa: F401
    mgr = load_manager(st.cgroup_paths) if st.cgroup_paths else None
    with Rollback() as rb:
        try:
            fds = open_container_namespaces(st.pid)
        except OSError as e:
            raise StateError(f"container {cid} is not running: its namespaces are gone "
                             f"({e.strerror})") from e
        rb.push(lambda: _close_all(fds))
        if not st.alive():
            raise StateError("cannot exec in a stopped container")
        pid = launch(Launch(TENANT, Entry(fds), lambda chan: run_tenant(plan, chan, sys),
                            mgr=mgr, on_fds=lambda msg: _take_fds(st, plan, msg)), rb, sys)
        _close_all(fds)
        if opts.pid_file:
            from ocirun.ops.create import write_pid_file
            write_pid_file(os.path.abspath(opts.pid_file), pid)
        rb.commit()
    if opts.detach:
        return 0
    from ocirun.ops.run import Forwarder, wait_init
    fwd = Forwarder()
    fwd.install()
    fwd.target(pid)
    try:
        return wait_init(pid)
    finally:
        fwd.restore()


def _take_fds(st: ContainerState, plan: ProcessPlan, msg: dict[str, object]) -> None:
    """The exec'd process's seccomp listener: to the agent, with the container's
    state and the process's own pid (config-linux.md "listenerPath")."""
    fds: list[int] = msg["fds"]  # type: ignore[assignment]
    try:
        from ocirun.errors import OciRunError
        from ocirun.seccomp import SeccompProgram, send_listener
        prog = plan.seccomp
        if msg["type"] != "seccomp_listener" or len(fds) != 1 \
                or not isinstance(prog, SeccompProgram) or not prog.listener_path:
            raise OciRunError(f"sync protocol: unexpected `{msg['type']}` with {len(fds)} fds")
        send_listener(prog.listener_path, fds[0], st.hook_state("running", st.pid),
                      prog.listener_metadata, pid=int(msg["pid"]))  # type: ignore[call-overload]
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


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
                      ) -> dict[str, Any]:
    """runc's exec without --process: the container's process with overrides."""
    import copy
    proc: dict[str, Any] = copy.deepcopy(cfg.get("process") or {})
    if not args:
        raise ConfigError("exec: no command given (args after the container id, or --process)")
    proc["args"] = list(args)
    proc["terminal"] = False
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
    log.debug(f"exec: process {proc.get('args')}")
    return proc
