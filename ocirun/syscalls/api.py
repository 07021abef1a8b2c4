"""The syscall seam: the kernel calls that Python's ``os`` module lacks.

Effectful code takes ``sys: Syscalls`` and calls these methods; unit tests
pass :class:`ocirun.syscalls.recording.RecordingSyscalls`, the runtime passes
:class:`ocirun.syscalls.linux.LinuxSyscalls`.  Every method raises
``OSError(errno, strerror, path)`` on failure, never returns an error code.

Constants are the x86_64/generic Linux values (include/uapi/linux/*.h).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:  # typing costs ~7 ms at import; the Protocol only matters to mypy
    Protocol = object

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_I_VERSION = 0x800000
MS_STRICTATIME = 0x1000000
MS_LAZYTIME = 0x2000000
MS_PROPAGATION = MS_SHARED | MS_SLAVE | MS_PRIVATE | MS_UNBINDABLE

# umount2(2)
MNT_FORCE = 1
MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8

# mount_setattr(2)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000

# open_tree(2) / move_mount(2)
OPEN_TREE_CLONE = 0x1
OPEN_TREE_CLOEXEC = 0o2000000  # O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_SYMLINKS = 0x10  # follow symlinks (here: /proc/self/fd/N) in to_path

# clone(2)/unshare(2)/setns(2) namespace flags
CLONE_NEWTIME = 0x80
CLONE_NEWNS = 0x20000
CLONE_NEWCGROUP = 0x2000000
CLONE_NEWUTS = 0x4000000
CLONE_NEWIPC = 0x8000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# keyctl(2)
KEYCTL_JOIN_SESSION_KEYRING = 1

# ioctl(2) on namespace fds (linux/nsfs.h)
NS_GET_NSTYPE = 0xB703

# bpf(2) commands and flags (linux/bpf.h), for the cgroup v2 device filter
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_F_ALLOW_OVERRIDE = 1
BPF_F_ALLOW_MULTI = 2

# seccomp(2) (linux/seccomp.h)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
SECCOMP_FILTER_FLAG_LOG = 2
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32

# ioprio_set(2) (linux/ioprio.h)
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13


class Syscalls(Protocol):
    """Kernel calls the runtime makes that ``os`` does not wrap."""

    def mount(self, source: str | None, target: str, fstype: str | None,
              flags: int, data: str | None) -> None: ...

    def umount2(self, target: str, flags: int) -> None: ...

    def pivot_root(self, new_root: str, put_old: str) -> None: ...

    def unshare(self, flags: int) -> None: ...

    def setns(self, fd: int, nstype: int) -> None: ...

    def sethostname(self, name: str) -> None: ...

    def setdomainname(self, name: str) -> None: ...

    def mknod(self, path: str, mode: int, device: int) -> None: ...

    def chroot(self, path: str) -> None: ...

    def capget(self) -> tuple[int, int, int]:
        """(effective, permitted, inheritable) 64-bit masks of this thread."""

    def capset(self, effective: int, permitted: int, inheritable: int) -> None: ...

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int: ...

    def mount_setattr(self, dirfd: int, path: str, flags: int, attr_set: int,
                      attr_clr: int, propagation: int = 0, userns_fd: int = 0) -> None: ...

    def personality(self, persona: int) -> int: ...

    def ns_get_type(self, fd: int) -> int:
        """``ioctl(fd, NS_GET_NSTYPE)``: the CLONE_NEW* flag of a namespace fd."""

    def join_session_keyring(self, name: str | None) -> int: ...

    def open_tree(self, dirfd: int, path: str, flags: int) -> int:
        """A detached copy of the mount tree at ``path`` (OPEN_TREE_CLONE): an fd."""

    def move_mount(self, from_dirfd: int, from_path: str, to_dirfd: int, to_path: str,
                   flags: int) -> None: ...

    def fork(self) -> int:
        """fork(2), through the seam so that tests can see (and forbid) it."""

    def clone_into_cgroup(self, cgroup_fd: int) -> int:
        """fork(2) as clone3(2) with CLONE_INTO_CGROUP: the child starts in the
        cgroup v2 directory ``cgroup_fd`` (no migration, no cgroup.procs write).
        Raises OSError when the kernel or the cgroup refuses (callers fork)."""

    # bpf(2), for the cgroup v2 device filter (cgroups/devices.py)

    def bpf_prog_load(self, prog_type: int, insns: bytes, license: str,
                      log_size: int = 0) -> int:
        """BPF_PROG_LOAD: the program fd.  With ``log_size`` the verifier's log
        is appended to the OSError's message on failure."""

    def bpf_prog_attach(self, target_fd: int, prog_fd: int, attach_type: int,
                        flags: int) -> None: ...

    def bpf_prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None: ...

    def bpf_prog_query(self, target_fd: int, attach_type: int) -> tuple[int, list[int]]:
        """BPF_PROG_QUERY: (attach flags, ids of the attached programs)."""

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int: ...

    def seccomp_set_filter(self, flags: int, bpf: bytes | None) -> int:
        """``seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`` with ``bpf`` (an array
        of 8-byte ``struct sock_filter``).  Returns the notify listener fd when
        ``flags`` has NEW_LISTENER, else 0.  ``bpf=None`` passes a NULL program:
        the kernel then fails with EFAULT when it knows ``flags`` and EINVAL when
        it does not (how libseccomp probes for flags)."""

    def sched_setattr(self, policy: int, flags: int, nice: int, priority: int,
                      runtime: int, deadline: int, period: int) -> None:
        """``sched_setattr(0, attr, 0)`` on the calling thread (struct sched_attr v1)."""

    def ioprio_set(self, ioprio: int) -> None:
        """``ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio)`` on the calling process."""

    def set_mempolicy(self, mode: int, nodes: tuple[int, ...]) -> None:
        """``set_mempolicy(mode | MPOL_F_*, nodemask, maxnode)``; ``nodes`` empty
        passes a NULL mask (MPOL_DEFAULT, MPOL_LOCAL, local MPOL_PREFERRED)."""

    def sched_setaffinity(self, cpus: tuple[int, ...]) -> None:
        """``sched_setaffinity(0, cpus)`` (os wraps it; here so tests see it)."""
