"""``create``: runtime.md "Create" and lifecycle steps 1-5.

Plan in the parent (load, validate, meaning checks, refuse what is not built
yet), then build: state dir, config copy, exec FIFO, namespace fds, cgroup,
the children (process/parent.py).  Any failure rolls everything back: no
state dir, cgroup, mount or process survives a failed create.
"""

from __future__ import annotations

import os
import time

from ocirun import log
from ocirun.errors import ChildDiedError, HookError, NotSupportedError, OciRunError
from ocirun.state import FIFO, ContainerState, StateStore, rfc3339_nano

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.process.plan import InitPlan
    from ocirun.seccomp import SeccompProgram


class CreateOptions:
    __slots__ = (
        "bundle",
        "cgroup_root",
        "console_socket",
        "no_new_keyring",
        "no_pivot",
        "pid_file",
        "preserve_fds",
    )

    def __init__(self, bundle: str = ".", pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 no_new_keyring: bool = False, preserve_fds: int = 0,
                 cgroup_root: str = "/sys/fs/cgroup") -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.cgroup_root = cgroup_root


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
    if not (spec.get("process") or {}).get("args"):
        # process is OPTIONAL at create but start needs it; runc refuses it at
        # create and so do we (there is nothing to park the init on).
        raise OciRunError("config.json: $.process: a process with args is required")
    return spec, raw


def make_plan(cid: str, spec: dict, bundle: str, opts: CreateOptions) -> InitPlan:  # type: ignore[type-arg]
    from ocirun.capabilities import compute_caps, limit_to_grantable, own_bounding_set
    from ocirun.namespaces import NamespacePlan
    from ocirun.process.plan import InitPlan
    linux = spec.get("linux") or {}
    ns = NamespacePlan(linux.get("namespaces") or [])
    if not ns.has("mount"):
        raise OciRunError("config.json: $.linux.namespaces: ocirun needs a mount namespace "
                          "(add {\"type\": \"mount\"}) to set up the root filesystem")
    proc = spec["process"]
    caps, warnings = compute_caps(proc.get("capabilities"))
    grantable = own_bounding_set()  # inherited into a new user namespace too
    if grantable is not None:
        warnings += limit_to_grantable(caps, grantable)
    for w in warnings:
        if "unknown" not in w:  # checks.check() has warned about unknown names
            log.warning(w)
    rootfs = os.path.realpath(os.path.join(bundle, spec["root"]["path"]))
    env = list(proc.get("env") or [])
    if not any(e.startswith("HOME=") for e in env):
        from ocirun.user import lookup_home
        env.append("HOME=" + lookup_home(rootfs, int((proc.get("user") or {}).get("uid", 0))))
    keep = opts.preserve_fds
    listen = os.environ.get("LISTEN_FDS")
    if listen and listen.isdigit() and int(listen) > 0:
        # socket activation (RUNC-CLI.md §8): pass the fds on, with LISTEN_PID=1
        keep += int(listen)
        env = [e for e in env if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
        env += [f"LISTEN_FDS={listen}", "LISTEN_PID=1"]
    for fd in range(3, 3 + keep):
        try:
            os.fstat(fd)
        except OSError as e:
            raise OciRunError(f"--preserve-fds: fd {fd} is not open ({e.strerror})") from None
    hook_base: dict[str, object] = {"ociVersion": spec["ociVersion"], "id": cid, "bundle": bundle}
    if spec.get("annotations"):
        hook_base["annotations"] = spec["annotations"]
    return InitPlan(cid=cid, spec=spec, bundle=bundle, rootfs=rootfs, ns=ns, caps=caps, env=env,
                    no_pivot=opts.no_pivot, no_new_keyring=opts.no_new_keyring, keep_fds=keep,
                    hook_base=hook_base)


def create(store: StateStore, cid: str, opts: CreateOptions) -> ContainerState:
    """Build the container; on return the init is parked before exec."""
    from ocirun.process.parent import Rollback, launch
    from ocirun.state import validate_id
    from ocirun.syscalls.linux import LinuxSyscalls

    validate_id(cid)
    bundle = os.path.abspath(opts.bundle)
    pid_file = os.path.abspath(opts.pid_file) if opts.pid_file else None
    if opts.console_socket:
        raise NotSupportedError("--console-socket: terminals are not supported yet")
    spec, raw = load_and_check(bundle)
    plan = make_plan(cid, spec, bundle, opts)
    seccomp_cfg = (spec.get("linux") or {}).get("seccomp")
    if seccomp_cfg is not None:  # [sec] compiled before any fork: a bad profile fails here
        plan.seccomp = compile_seccomp(seccomp_cfg, store.root)
    sys = LinuxSyscalls()
    from ocirun import namespaces
    from ocirun.process.init import preload
    preload(plan)
    try:
        with Rollback() as rb:
            plan.join_fds = namespaces.open_joins(plan.ns, sys)
            for fd, _ in plan.join_fds:
                rb.push(lambda fd=fd: _close(fd))  # type: ignore[misc]
            path, lock_fd = store.create_dir(cid)
            rb.push(lambda: store.remove(cid))
            _write_file(os.path.join(path, "config.json"), raw, 0o600)
            fifo = os.path.join(path, FIFO)
            old = os.umask(0)
            try:
                os.mkfifo(fifo, 0o622)
            finally:
                os.umask(old)
            plan.fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            mgr = _cgroup(cid, spec, opts.cgroup_root)
            if mgr is not None:
                mgr.create()
                rb.push(mgr.destroy)
                mgr.apply((spec.get("linux") or {}).get("resources"))
            st = ContainerState(cid, bundle=bundle, rootfs=plan.rootfs,
                                created=rfc3339_nano(time.time_ns()), oci_version=spec["ociVersion"],
                                annotations=spec.get("annotations") or {},
                                cgroup_paths=mgr.paths() if mgr else {}, dir=path,
                                hooks={k: v for k, v in (spec.get("hooks") or {}).items()
                                       if k in ("poststart", "poststop") and v})

            def runtime_hooks(pid: int) -> None:
                from ocirun.hooks import run_hooks
                hooks = spec.get("hooks") or {}
                state = plan.hook_state("creating", pid)
                # runc runs these with the bundle as cwd (it chdirs there)
                for phase in ("prestart", "createRuntime"):
                    if hooks.get(phase):
                        run_hooks(hooks[phase], state, phase, cwd=bundle)

            try:
                init_pid = launch(plan, mgr, rb, sys, runtime_hooks)
            except ChildDiedError as e:
                if plan.seccomp is None:
                    raise
                raise ChildDiedError(e.msg + SECCOMP_DIED_HINT) from None  # [sec]
            os.close(plan.fifo_fd)
            from ocirun import procfs
            st.pid = init_pid
            st.pid_start = procfs.pid_start_time(init_pid) or 0
            store.save(st)
            if pid_file:
                write_pid_file(pid_file, init_pid)
            rb.commit()
    except HookError:
        # runtime.md "Lifecycle": a failing create-time hook stops the
        # container, which is destroyed (the rollback above did that), and
        # the poststop hooks still run (step 13); their failures only warn.
        _run_poststop(plan)
        raise
    os.close(lock_fd)
    return st


# [sec] The init loads the profile before `ready` and still writes to the
# runtime, closes fds, opens the exec FIFO and execs after it.
SECCOMP_DIED_HINT = ("; the seccomp profile (linux.seccomp) is loaded before that point: it must "
                     "allow what the runtime still does before exec (write, close, openat, "
                     "execve; signal 31 is SIGSYS, a seccomp kill)")


def compile_seccomp(cfg: dict[str, Any], state_root: str) -> SeccompProgram:  # [sec]
    """linux.seccomp, compiled (or read from the cache under the state root)."""
    from ocirun.seccomp import compile_program
    prog = compile_program(cfg, cache_dir=state_root)
    if prog.notify:
        raise NotSupportedError("config.json: $.linux.seccomp: SCMP_ACT_NOTIFY is not supported "
                                "yet: the init cannot hand the listener fd to the runtime until "
                                "the sync channel carries fds")
    return prog


def _run_poststop(plan: InitPlan) -> None:
    hooks = (plan.spec.get("hooks") or {}).get("poststop")
    if hooks:
        from ocirun.hooks import run_hooks_warn
        state = dict(plan.hook_base)
        state["status"] = "stopped"
        for w in run_hooks_warn(hooks, state, "poststop"):
            log.warning(w)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _cgroup(cid: str, spec: dict, root: str):  # type: ignore[no-untyped-def,type-arg]
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
    d, name = os.path.split(path)
    tmp = os.path.join(d, "." + name)
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
