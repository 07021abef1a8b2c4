"""Test double of the syscall seam: records calls, injects failures.

:class:`RecordingSyscalls` implements :class:`ocirun.syscalls.api.Syscalls`
without touching the kernel.  Each call is appended to ``.calls`` as a tuple
``(method_name, *args)`` (defaults included, so assertions are exact), then
the failure rule is consulted: ``fail`` maps a method name to an errno, or is
a callable ``(name, args) -> errno | None``.  A failing call is still recorded
and raises ``OSError(errno, strerror, path)`` like the real implementation.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # avoids importing typing (~8 ms cold); mypy still honours it

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    FailRule = Mapping[str, int] | Callable[[str, tuple[object, ...]], int | None]

# Methods whose first argument is a path, reported as OSError.filename.
_PATH_ARG = {"mount": 1, "umount2": 0, "pivot_root": 0, "mknod": 0, "chroot": 0,
             "mount_setattr": 1, "open_tree": 1, "move_mount": 3}


def _unpin(arg: object) -> object:
    if isinstance(arg, str) and arg.startswith("/proc/self/fd/"):
        num, _, rest = arg[len("/proc/self/fd/"):].partition("/")
        try:
            return os.readlink(f"/proc/self/fd/{num}") + ("/" + rest if rest else "")
        except (OSError, ValueError):
            return arg
    return arg


class RecordingSyscalls:
    """Records every call; fails on demand; otherwise succeeds doing nothing.

    ``caps`` is what :meth:`capget` returns (effective, permitted,
    inheritable); :meth:`capset` updates it so a sequence of calls observes
    its own effect.  With ``create_nodes`` (default), :meth:`mknod` leaves an
    empty regular file at the path so code that chmods/chowns the new node
    keeps working in a tmp dir.
    """

    __slots__ = ("bpf_progs", "calls", "caps", "create_nodes", "fail", "fork_result", "nstypes",
                 "prctl_result", "seccomp_result")

    def __init__(self, fail: FailRule | None = None, *,
                 caps: tuple[int, int, int] = ((1 << 41) - 1, (1 << 41) - 1, 0),
                 create_nodes: bool = True) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.fail = fail
        self.caps = caps
        self.create_nodes = create_nodes
        self.prctl_result = 0
        self.nstypes: dict[int, int] = {}  # fd -> CLONE_NEW* for ns_get_type
        # fork() records the call, then returns this; None (the default)
        # raises instead, so a test can assert that no child was ever made.
        self.fork_result: int | None = None
        self.bpf_progs: tuple[int, list[int]] = (0, [])
        self.seccomp_result = 0  # what seccomp_set_filter returns (a listener fd)

    def _record(self, name: str, *args: object) -> None:
        # A path through a pinned fd (rootfs.Pinned: /proc/self/fd/N[/name])
        # is recorded as the path it names, so tests read where a call acted.
        args = tuple(_unpin(a) for a in args)
        self.calls.append((name, *args))
        rule = self.fail
        if rule is None:
            return
        err = rule(name, args) if callable(rule) else rule.get(name)
        if err:
            idx = _PATH_ARG.get(name)
            if idx is not None and isinstance(args[idx], str):
                raise OSError(err, os.strerror(err), args[idx])
            raise OSError(err, os.strerror(err))

    def names(self) -> list[str]:
        """Just the method names, in call order."""
        return [str(c[0]) for c in self.calls]

    def mount(self, source: str | None, target: str, fstype: str | None,
              flags: int, data: str | None) -> None:
        self._record("mount", source, target, fstype, flags, data)

    def umount2(self, target: str, flags: int) -> None:
        self._record("umount2", target, flags)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        self._record("pivot_root", new_root, put_old)

    def unshare(self, flags: int) -> None:
        self._record("unshare", flags)

    def setns(self, fd: int, nstype: int) -> None:
        self._record("setns", fd, nstype)

    def sethostname(self, name: str) -> None:
        self._record("sethostname", name)

    def setdomainname(self, name: str) -> None:
        self._record("setdomainname", name)

    def mknod(self, path: str, mode: int, device: int) -> None:
        self._record("mknod", path, mode, device)
        if self.create_nodes:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            os.close(fd)

    def chroot(self, path: str) -> None:
        self._record("chroot", path)

    def capget(self) -> tuple[int, int, int]:
        self._record("capget")
        return self.caps

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        self._record("capset", effective, permitted, inheritable)
        self.caps = (effective, permitted, inheritable)

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        self._record("prctl", option, arg2, arg3, arg4, arg5)
        return self.prctl_result

    def mount_setattr(self, dirfd: int, path: str, flags: int, attr_set: int,
                      attr_clr: int, propagation: int = 0, userns_fd: int = 0) -> None:
        self._record("mount_setattr", dirfd, path, flags, attr_set, attr_clr,
                     propagation, userns_fd)

    def personality(self, persona: int) -> int:
        self._record("personality", persona)
        return 0

    def ns_get_type(self, fd: int) -> int:
        self._record("ns_get_type", fd)
        return self.nstypes.get(fd, 0)

    def join_session_keyring(self, name: str | None) -> int:
        self._record("join_session_keyring", name)
        return 1

    def open_tree(self, dirfd: int, path: str, flags: int) -> int:
        self._record("open_tree", dirfd, path, flags)
        return os.open("/", os.O_PATH | os.O_CLOEXEC)  # a real fd the caller may close

    def move_mount(self, from_dirfd: int, from_path: str, to_dirfd: int, to_path: str,
                   flags: int) -> None:
        self._record("move_mount", from_dirfd, from_path, to_dirfd, to_path, flags)

    def fork(self) -> int:
        self._record("fork")
        if self.fork_result is None:
            raise AssertionError("RecordingSyscalls.fork: the code under test forked")
        return self.fork_result

    # bpf(2): the fds handed out are real (of /dev/null) so callers can close
    # them; ``bpf_progs`` is what bpf_prog_query reports as attached (flags, ids).

    def bpf_prog_load(self, prog_type: int, insns: bytes, license: str,
                      log_size: int = 0) -> int:
        self._record("bpf_prog_load", prog_type, insns, license, log_size)
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def bpf_prog_attach(self, target_fd: int, prog_fd: int, attach_type: int,
                        flags: int) -> None:
        self._record("bpf_prog_attach", target_fd, prog_fd, attach_type, flags)

    def bpf_prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None:
        self._record("bpf_prog_detach", target_fd, prog_fd, attach_type)

    def clone_into_cgroup(self, cgroup_fd: int) -> int:
        self._record("clone_into_cgroup", cgroup_fd)
        if self.fork_result is None:
            raise AssertionError("RecordingSyscalls.clone_into_cgroup: the code under test forked")
        return self.fork_result

    def bpf_prog_query(self, target_fd: int, attach_type: int) -> tuple[int, list[int]]:
        self._record("bpf_prog_query", target_fd, attach_type)
        return self.bpf_progs

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        self._record("bpf_prog_get_fd_by_id", prog_id)
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

    def seccomp_set_filter(self, flags: int, bpf: bytes | None) -> int:
        self._record("seccomp_set_filter", flags, bpf)
        return self.seccomp_result

    def sched_setattr(self, policy: int, flags: int, nice: int, priority: int,
                      runtime: int, deadline: int, period: int) -> None:
        self._record("sched_setattr", policy, flags, nice, priority, runtime, deadline, period)

    def ioprio_set(self, ioprio: int) -> None:
        self._record("ioprio_set", ioprio)

    def set_mempolicy(self, mode: int, nodes: tuple[int, ...]) -> None:
        self._record("set_mempolicy", mode, nodes)

    def sched_setaffinity(self, cpus: tuple[int, ...]) -> None:
        self._record("sched_setaffinity", cpus)
