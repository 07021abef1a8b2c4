"""The process step: turn the calling process into the planned one, then exec.

Shared by a new container's init (process/init.py, after the container steps)
and by a process joining a running container (``exec``).  It applies a
:class:`~ocirun.process.plan.ProcessPlan` (config.md "POSIX process",
config-linux.md "Personality") in this order, each step a named function:

  S1 join_keyring: a new session keyring (runc's ``_ses.<id>``), so the
     container does not share the caller's keys;
  S2 set_personality;
  S3 apply_limits: rlimits and oom_score_adj, while still privileged
     (raising a hard limit or lowering the score needs CAP_SYS_RESOURCE);
  S3a apply_scheduling: memory policy, I/O priority, scheduler, also while
     privileged (realtime classes need CAP_SYS_NICE / CAP_SYS_ADMIN);
  S3b set_lsm_labels: the AppArmor profile and SELinux label the next
     execve takes on (ocirun/lsm.py), while /proc/self/attr is still ours
     and before a seccomp filter could forbid the writes;
  S4 set_no_new_privs;
  S5 enter_cwd_early: chdir while still root, so a cwd only root can enter
     still works (runc does the same); EACCES is retried in S8;
  S5b load_seccomp, when no_new_privs is off: the kernel then wants
     CAP_SYS_ADMIN, which S7 may drop (runc loads it here too);
  S6 switch_user: groups, gid, then uid (PR_SET_KEEPCAPS keeps permitted);
  S7 apply_capabilities: bounding, capset, ambient;
  S8 enter_cwd: the retry of S5 as the container user; after either, the
     cwd must be below the container's root (check_cwd_inside_root);
  S9 find_executable: argv[0] in the container's PATH, so a missing binary
     fails before the process is reported ready;
  S9b load_seccomp, when no_new_privs is on: after everything above that a
     profile may forbid.  A NOTIFY listener is handed to the runtime at once
     (``hand_over``), before anything else the agent could be asked about;
  S10 exec_process: refuse to exec the runtime's own binary, umask, execve
     (the caller runs what must happen between S9 and S10: the init waits
     for ``start`` and runs startContainer hooks).

The runtime's own modules must be imported before the root is switched
(process/init.py ``preload``): nothing here imports lazily.
"""

from __future__ import annotations

import errno as _errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun import steps
from ocirun.errors import ExecError, SyscallError, oserror_text
from ocirun.posixpaths import fsdecode, join, makedirs
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.plantypes import ProcessPlan


def join_keyring(p: ProcessPlan, sys: api.Syscalls) -> None:                  # S1
    if p.keyring is None:
        return
    if p.selinux_label:  # the new keyring gets the process's label (as runc does)
        from ocirun.lsm import apply_keycreate_label
        apply_keycreate_label(p.selinux_label)
    try:
        sys.join_session_keyring(p.keyring)
    except OSError as e:
        # ENOSYS/EACCES/EPERM: no keyrings here (kernel config, or a seccomp'd
        # outer container); runc carries on too.
        if e.errno not in (_errno.ENOSYS, _errno.EACCES, _errno.EPERM):
            raise SyscallError(f"join session keyring: {e.strerror}", errno=e.errno,
                               stage="keyring") from e


def set_personality(p: ProcessPlan, sys: api.Syscalls) -> None:               # S2
    if p.personality is None:
        return
    try:
        sys.personality(p.personality)
    except OSError as e:
        raise SyscallError(f"linux.personality: set domain {p.personality:#x}: {e.strerror}",
                           errno=e.errno, stage="personality") from e


def apply_limits(p: ProcessPlan) -> None:                                      # S3
    from ocirun.rlimits import apply_oom_score_adj, apply_rlimits
    if p.rlimits:
        apply_rlimits(p.rlimits)
    apply_oom_score_adj(p.oom_score_adj)


def apply_scheduling(p: ProcessPlan, sys: api.Syscalls) -> None:             # S3a
    if p.mem_policy is not None:
        from ocirun.mempolicy import apply_mempolicy
        apply_mempolicy(p.mem_policy, sys)
    if p.io_priority is not None:
        from ocirun.sched import apply_ioprio
        apply_ioprio(p.io_priority[0], p.io_priority[1], sys)
    if p.scheduler is not None:
        from ocirun.sched import apply_scheduler
        apply_scheduler(p.scheduler, sys)


def set_lsm_labels(p: ProcessPlan) -> None:                                    # S3b
    if p.apparmor_profile or p.selinux_label:
        from ocirun.lsm import apply_exec_labels
        apply_exec_labels(p.apparmor_profile, p.selinux_label)


def set_no_new_privs(p: ProcessPlan, sys: api.Syscalls) -> None:              # S4
    if p.no_new_privileges:
        try:
            sys.prctl(api.PR_SET_NO_NEW_PRIVS, 1)
        except OSError as e:
            raise SyscallError(f"prctl PR_SET_NO_NEW_PRIVS: {e.strerror}", errno=e.errno,
                               stage="no_new_privs") from e


def enter_cwd_early(p: ProcessPlan) -> bool:                                   # S5
    """chdir as root; True when it must be retried as the container user."""
    try:
        makedirs(p.cwd, mode=0o755, exist_ok=True)
    except OSError:
        pass  # the chdir reports the real problem
    try:
        os.chdir(p.cwd)
    except PermissionError:
        return True  # root may lack access (root-squashed NFS, a user ns)
    except OSError as e:
        raise _cwd_error(p.cwd, e) from e
    check_cwd_inside_root(p.cwd)
    return False


def _cwd_error(cwd: str, e: OSError) -> ExecError:
    return ExecError(f"chdir to cwd ({cwd!r}) set in config.json failed: {oserror_text(e)}",
                     errno=e.errno, stage="cwd")


def load_seccomp(p: ProcessPlan, sys: api.Syscalls,
                 hand_over: Callable[[int], None] | None) -> None:              # S5b/S9b
    """Install p.seccomp; a NOTIFY listener goes to ``hand_over`` and is closed
    here: the container keeps no handle on its own listener."""
    from ocirun.seccomp import SeccompProgram, load
    assert isinstance(p.seccomp, SeccompProgram)
    fd = load(p.seccomp, sys)
    if fd is None:
        return
    try:
        if hand_over is None:
            raise SyscallError("linux.seccomp: SCMP_ACT_NOTIFY: nobody to hand the listener to",
                               stage="seccomp")
        hand_over(fd)
    finally:
        os.close(fd)


def switch_user(p: ProcessPlan, sys: api.Syscalls) -> None:                   # S6
    from ocirun.user import apply_user
    apply_user(p.uid, p.gid, p.additional_gids, sys)


def apply_capabilities(p: ProcessPlan, sys: api.Syscalls) -> None:            # S7
    if p.caps is not None:
        from ocirun.capabilities import apply_caps
        apply_caps(p.caps, sys)


def enter_cwd(p: ProcessPlan, retry: bool) -> None:                           # S8
    if not retry:
        return
    try:
        os.chdir(p.cwd)
    except OSError as e:
        raise _cwd_error(p.cwd, e) from e
    check_cwd_inside_root(p.cwd)


def check_cwd_inside_root(cwd: str) -> None:                                  # S5/S8
    """The cwd must lie below the container's root.  A cwd such as
    /proc/self/fd/N reaches whatever directory fd N is: a host directory if
    one leaked into the container (CVE-2024-21626's pattern).  The kernel's
    getcwd says "(unreachable)" for a directory outside the root, which
    os.getcwd turns into ENOENT."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise ExecError(f"chdir to cwd ({cwd!r}) set in config.json: the directory is outside "
                        "the container's root (a host directory reached through a file "
                        "descriptor?); refused", errno=_errno.EACCES, stage="cwd") from None


def find_executable(args: tuple[str, ...], env: tuple[str, ...]) -> str:      # S9
    """execvp(3)'s lookup in the container's PATH (from process.env).

    Errors read like runc's (``exec: "x": executable file not found in
    $PATH``), and like execve's errno: a directory is "permission denied".
    """
    name = args[0] if args else ""
    if not name:
        raise ExecError("exec: process.args is empty", stage="exec")
    if "/" in name:
        candidates = [name]
    else:
        path = next((e[5:] for e in reversed(env) if e.startswith("PATH=")), "")
        candidates = [join(d or ".", name) for d in path.split(":")] if path else []
    denied = None
    for c in candidates:
        try:
            st = os.stat(c)
        except OSError as e:
            if e.errno == _errno.EACCES:
                denied = c
            continue
        if st.st_mode & 0o170000 != 0o100000:
            # execve(2) answers EACCES for a directory or a device; execvp
            # goes on along PATH, but a path with a slash ends here.
            denied = c
            continue
        if os.access(c, os.X_OK):
            return c
        denied = c
    if denied:
        raise ExecError(f'exec: "{name}": permission denied', errno=_errno.EACCES, stage="exec")
    if "/" in name:
        raise ExecError(f'exec: "{name}": stat {name}: no such file or directory',
                        errno=_errno.ENOENT, stage="exec")
    raise ExecError(f'exec: "{name}": executable file not found in $PATH',
                    errno=_errno.ENOENT, stage="exec")


def prepare_process(p: ProcessPlan, sys: api.Syscalls,
                    hand_over: Callable[[int], None] | None = None) -> str:
    """Steps S1-S9; returns the executable's path for :func:`exec_process`.

    ``hand_over`` sends a seccomp NOTIFY listener fd to the runtime.
    """
    t = steps.begin()
    join_keyring(p, sys)
    steps.end("S1", "session keyring", t)
    t = steps.begin()
    set_personality(p, sys)
    steps.end("S2", "personality", t)
    t = steps.begin()
    apply_limits(p)
    steps.end("S3", "rlimits, oom_score_adj", t)
    t = steps.begin()
    apply_scheduling(p, sys)
    steps.end("S3a", "memory policy, I/O priority, scheduler", t)
    t = steps.begin()
    set_lsm_labels(p)
    steps.end("S3b", "LSM labels", t)
    t = steps.begin()
    set_no_new_privs(p, sys)
    steps.end("S4", "no_new_privs", t)
    t = steps.begin()
    retry = enter_cwd_early(p)
    steps.end("S5", "cwd (as root)", t)
    if p.seccomp is not None and not p.no_new_privileges:
        t = steps.begin()
        load_seccomp(p, sys, hand_over)                                         # S5b
        steps.end("S5b", "seccomp (before the uid change)", t)
    t = steps.begin()
    switch_user(p, sys)
    steps.end("S6", "user and groups", t)
    t = steps.begin()
    apply_capabilities(p, sys)
    steps.end("S7", "capabilities", t)
    t = steps.begin()
    enter_cwd(p, retry)
    steps.end("S8", "cwd (as the user)", t)
    t = steps.begin()
    exe = find_executable(p.args, p.env)
    steps.end("S9", "executable lookup", t)
    if p.seccomp is not None and p.no_new_privileges:
        t = steps.begin()
        load_seccomp(p, sys, hand_over)                                         # S9b
        steps.end("S9b", "seccomp (last, under no_new_privs)", t)
    return exe


# binfmt_script: at most 4 interpreters deep (BINPRM_MAX_RECURSION)
_MAX_SHEBANG_DEPTH = 5


def _shebang(path: str) -> str | None:
    """The interpreter a ``#!`` script names, or None (not a script, unreadable)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    try:
        head = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return fsdecode(words[0]) if words else None


def refuse_runtime_binary(exe: str) -> None:                                  # S10
    """CVE-2019-5736: a container that makes its program ``#!/proc/self/exe``
    (or a link to it) would have the runtime exec its own interpreter inside
    the container, whose /proc/<pid>/exe then hands the host's binary to the
    container for writing.  The executable and each interpreter in its
    ``#!`` chain must not be the file this process runs from."""
    try:
        me = os.stat("/proc/self/exe")
    except OSError:
        return
    path: str | None = exe
    for _ in range(_MAX_SHEBANG_DEPTH):
        if path is None:
            return
        try:
            st = os.stat(path)
        except OSError:
            return  # execve reports it
        if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
            raise ExecError(f'exec: "{exe}": refused: it runs the runtime\'s own binary '
                            "(`/proc/self/exe`), which would expose it to the container "
                            "(CVE-2019-5736)", errno=_errno.EACCES, stage="exec")
        path = _shebang(path)


def exec_process(p: ProcessPlan, exe: str, env: dict[str, str] | None = None) -> None:  # S10
    """umask and execve; raises ExecError when execve fails (never returns).
    ``env``: the environment to use instead of the plan's (exec's LISTEN_PID)."""
    refuse_runtime_binary(exe)
    if p.umask is not None:
        os.umask(p.umask)
    try:
        os.execve(exe, list(p.args), p.env_dict() if env is None else env)
    except OSError as e:
        text = e.strerror.lower() if e.strerror else str(e)
        if p.seccomp is not None:  # the profile applies to execve too
            text += " (linux.seccomp is loaded before exec: does the profile allow execve?)"
        raise ExecError(f'exec: "{p.args[0]}": {text}', errno=e.errno, stage="exec") from e
