"""The container init: build the container from the plan, park, exec.

runtime.md "Lifecycle" steps 2-8 on the container side.  Each step is a
function named in ``STEPS`` order; an error anywhere is reported to the parent
(before ``ready``) or through the exec FIFO (after it), naming the step.

Order and why:
  N1 close every inherited fd not meant for the container (runtime-linux.md
     "File descriptors"): done first so no later hook or mount sees them;
  N2 setsid;
  N3 rootfs: propagation, rootfs bind, mounts, devices, /dev links.  The
     parent moves us into the container's cgroup meanwhile (on v1 the first
     cgroup.procs write can wait ~10 ms for an RCU grace period: it overlaps
     the mount work); we wait for ``cgroup_ready`` only right before the
     first mount that shows cgroups, or after the last mount, and then
     unshare the cgroup namespace, whose root becomes the container's cgroup;
  N4 prestart + createRuntime hooks, run by the parent (runtime namespace);
  N5 createContainer hooks, here (container namespaces, host paths still
     reachable); sysctl (written through the container's own /proc) and
     hostname/domainname;
  N6 pivot_root, masked and read-only paths, read-only root;
  N7 keyring, rlimits, oom_score_adj: while we still hold every capability;
  N8 no_new_privs, ids, capabilities; cwd and argv[0] checked as the user;
  N9 ``ready``; block in open(2) of the exec FIFO until ``start``;
  N10 startContainer hooks, umask, execve.
"""

from __future__ import annotations

import os

from ocirun.errors import ExecError, OciRunError, SyscallError
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.process.channel import Channel
    from ocirun.process.plan import InitPlan


def preload(plan: InitPlan) -> None:
    """Import, in the parent, every module the children use.

    After pivot_root the runtime's own files are out of reach, so an import
    in the init would fail there; imported before the fork they are shared
    copy-on-write and cost the children nothing.
    """
    import ocirun.capabilities
    import ocirun.namespaces
    import ocirun.pathres
    import ocirun.process.intermediate
    import ocirun.rootfs
    import ocirun.user
    proc = plan.spec.get("process") or {}
    if proc.get("rlimits") or "oomScoreAdj" in proc:
        import ocirun.rlimits
    if plan.spec.get("hooks"):
        import ocirun.hooks  # noqa: F401
    if plan.seccomp is not None:  # [sec]
        import ocirun.seccomp  # noqa: F401


def close_inherited_fds(plan: InitPlan, chan: Channel) -> None:                 # N1
    keep = {chan.rfd, chan.wfd, plan.fifo_fd, *range(3, 3 + plan.keep_fds)}
    keep.discard(-1)
    lo = 3
    for fd in sorted(k for k in keep if k >= 3):
        if fd > lo:
            os.closerange(lo, fd)
        lo = fd + 1
    os.closerange(lo, 1 << 20)
    for fd in range(3, 3 + plan.keep_fds):
        os.set_inheritable(fd, True)


def enter_cgroup(plan: InitPlan, chan: Channel, sys: api.Syscalls) -> None:   # N3
    chan.expect("cgroup_ready")
    if plan.ns.new_cgroup:
        try:
            sys.unshare(api.CLONE_NEWCGROUP)
        except OSError as e:
            raise SyscallError(f"unshare the cgroup namespace: {e.strerror}", errno=e.errno,
                               stage="namespaces") from e


def build_rootfs(plan: InitPlan, chan: Channel, sys: api.Syscalls) -> None:    # N3
    from ocirun import rootfs
    joined = []

    def join() -> None:
        enter_cgroup(plan, chan, sys)
        joined.append(True)

    rootfs.prepare_rootfs(plan.spec, plan.bundle, plan.rootfs, sys, in_userns=plan.ns.in_userns,
                          before_cgroup=join)
    if not joined:
        join()


def runtime_hooks(plan: InitPlan, chan: Channel) -> None:                      # N4
    if plan.has_create_hooks:
        chan.send("hooks_request")
        chan.expect("hooks_done")


def container_hooks_and_names(plan: InitPlan, sys: api.Syscalls) -> None:     # N5
    spec = plan.spec
    hooks = (spec.get("hooks") or {}).get("createContainer")
    if hooks:
        from ocirun.hooks import run_hooks
        run_hooks(hooks, plan.hook_state("creating", os.getpid()), "createContainer",
                  cwd=plan.rootfs)
    linux = spec.get("linux") or {}
    sysctl = linux.get("sysctl")
    if sysctl:
        write_sysctl(plan.rootfs, sysctl)
    if "hostname" in spec:
        _named(sys.sethostname, spec["hostname"], "hostname")
    if "domainname" in spec:
        _named(sys.setdomainname, spec["domainname"], "domainname")


def _named(fn: object, value: str, what: str) -> None:
    try:
        fn(value)  # type: ignore[operator]
    except OSError as e:
        raise SyscallError(f"set {what} {value!r}: {e.strerror}", errno=e.errno, stage=what) from e


def write_sysctl(rootfs: str, sysctl: dict[str, str]) -> None:
    """config-linux.md "Sysctl": through the container's /proc, before the
    read-only paths (which usually include /proc/sys) are applied."""
    from ocirun.pathres import resolve_in_root
    for key, value in sysctl.items():
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


def switch_root(plan: InitPlan, sys: api.Syscalls) -> None:                    # N6
    from ocirun import rootfs
    rootfs.finish_rootfs(plan.spec, plan.rootfs, sys, no_pivot=plan.no_pivot)


# config-linux.md "Personality": execution domains (linux/personality.h)
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}


def set_personality(personality: dict[str, object], sys: api.Syscalls) -> None:
    domain = str(personality.get("domain"))
    try:
        sys.personality(PERSONALITY_DOMAINS[domain])
    except OSError as e:
        raise SyscallError(f"linux.personality: set domain {domain}: {e.strerror}", errno=e.errno,
                           stage="personality") from e


def process_limits(plan: InitPlan, sys: api.Syscalls) -> None:                 # N7
    if not plan.no_new_keyring:
        try:
            sys.join_session_keyring(f"_ses.{plan.cid}")
        except OSError as e:
            # ENOSYS/EACCES: no keyrings here (kernel config, or a seccomp'd
            # outer container); runc carries on too.
            import errno
            if e.errno not in (errno.ENOSYS, errno.EACCES, errno.EPERM):
                raise SyscallError(f"join session keyring: {e.strerror}", errno=e.errno,
                                   stage="keyring") from e
    personality = (plan.spec.get("linux") or {}).get("personality")
    if personality:
        set_personality(personality, sys)
    proc = plan.spec.get("process") or {}
    if proc.get("rlimits"):
        from ocirun.rlimits import apply_rlimits
        apply_rlimits(proc["rlimits"])
    if "oomScoreAdj" in proc:
        from ocirun.rlimits import apply_oom_score_adj
        apply_oom_score_adj(proc["oomScoreAdj"])


def become_user(plan: InitPlan, sys: api.Syscalls) -> str:                     # N8
    proc = plan.spec.get("process") or {}
    cwd = proc.get("cwd") or "/"
    try:
        os.makedirs(cwd, mode=0o755, exist_ok=True)
    except OSError:
        pass  # the chdir below reports the real problem
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        sys.prctl(api.PR_SET_NO_NEW_PRIVS, 1)
    # [sec] seccomp early when no_new_privs is off: the kernel then wants
    # CAP_SYS_ADMIN, which the capabilities below may drop (as runc does).
    if plan.seccomp is not None and not nnp:
        load_seccomp(plan, sys)
    from ocirun.user import apply_user
    apply_user(proc.get("user") or {"uid": 0, "gid": 0}, sys)
    from ocirun.capabilities import apply_caps
    if plan.caps is not None:
        apply_caps(plan.caps, sys)
    try:
        os.chdir(cwd)
    except OSError as e:
        raise ExecError(f"chdir to cwd ({cwd!r}) set in config.json failed: {e.strerror}",
                        errno=e.errno, stage="cwd") from e
    exe = find_executable(proc.get("args") or [""], plan.env)
    # [sec] seccomp last when no_new_privs is on: after everything the runtime
    # does that a profile may forbid, but before `ready` (a NOTIFY listener fd
    # must reach the runtime first).  Still to come: ready, the exec FIFO,
    # startContainer hooks, umask, execve.
    if plan.seccomp is not None and nnp:
        load_seccomp(plan, sys)
    return exe


def load_seccomp(plan: InitPlan, sys: api.Syscalls) -> None:                   # [sec]
    from ocirun.seccomp import load
    assert plan.seccomp is not None
    fd = load(plan.seccomp, sys)
    if fd is not None:  # NOTIFY is refused at create until the channel carries fds
        os.close(fd)


def find_executable(args: list[str], env: list[str]) -> str:
    """execvp(3)'s lookup in the container's PATH (from process.env)."""
    name = args[0]
    if not name:
        raise ExecError("exec: process.args is empty", stage="exec")
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
        candidates = [os.path.join(d or ".", name) for d in path.split(":")] if path else []
    denied = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if not (st.st_mode & 0o170000 == 0o100000):
            continue
        if os.access(c, os.X_OK):
            return c
        denied = c
    if denied:
        raise ExecError(f'exec: "{name}": permission denied', stage="exec")
    if "/" in name:
        raise ExecError(f'exec: "{name}": stat {name}: no such file or directory', stage="exec")
    raise ExecError(f'exec: "{name}": executable file not found in $PATH', stage="exec")


def wait_for_start(plan: InitPlan, chan: Channel) -> int:                      # N9
    chan.send("ready")
    chan.close()
    # Reopen our O_PATH handle for writing: blocks until `start` opens the
    # FIFO for reading.  Through /proc because the host path is gone after
    # pivot_root.
    try:
        fd = os.open(f"/proc/self/fd/{plan.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
    except OSError as e:
        if plan.seccomp is not None:  # [sec] the channel is closed: tell the container's stderr
            os.write(2, f"ocirun: init: reopen the exec FIFO: {e.strerror} (linux.seccomp is "
                        "loaded before exec: does the profile allow openat?)\n".encode())
        raise
    os.close(plan.fifo_fd)
    os.write(fd, b"\0")
    return fd


def exec_process(plan: InitPlan, exe: str, fifo: int) -> None:                  # N10
    proc = plan.spec.get("process") or {}
    try:
        hooks = (plan.spec.get("hooks") or {}).get("startContainer")
        if hooks:
            from ocirun.hooks import run_hooks
            run_hooks(hooks, plan.hook_state("created", os.getpid()), "startContainer")
        umask = (proc.get("user") or {}).get("umask")
        if umask is not None:
            os.umask(umask)
        os.execve(exe, proc["args"], _env_dict(plan.env))
    except OciRunError as e:
        _fail_start(fifo, e.code, e.errno, e.msg)
    except OSError as e:
        msg = f'exec: "{proc["args"][0]}": {e.strerror.lower() if e.strerror else e}'
        if plan.seccomp is not None:  # [sec] the profile applies to execve too
            msg += " (linux.seccomp is loaded before exec: does the profile allow execve?)"
        _fail_start(fifo, "exec", e.errno, msg)
    except BaseException as e:  # never die silently: start would take it for an exec
        _fail_start(fifo, "error", None, f"start: internal error: {type(e).__name__}: {e}")


def _env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in env:
        k, sep, v = kv.partition("=")
        out[k] = v
    return out


def _fail_start(fifo: int, code: str, errno: int | None, msg: str) -> None:
    """After ``ready`` the channel is gone: ``start`` reads the error from the FIFO."""
    try:
        os.write(fifo, f"{code}:{errno if errno is not None else ''}:{msg}".encode())
    finally:
        os._exit(127)


def run_init(plan: InitPlan, chan: Channel, sys: api.Syscalls) -> None:
    close_inherited_fds(plan, chan)
    os.setsid()                                                                 # N2
    build_rootfs(plan, chan, sys)
    runtime_hooks(plan, chan)
    container_hooks_and_names(plan, sys)
    switch_root(plan, sys)
    process_limits(plan, sys)
    exe = become_user(plan, sys)
    fifo = wait_for_start(plan, chan)
    exec_process(plan, exe, fifo)
