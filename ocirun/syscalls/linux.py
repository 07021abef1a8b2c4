"""The real syscall seam: :class:`LinuxSyscalls` over libc via cffi.

Implements :class:`ocirun.syscalls.api.Syscalls`.  Every call checks the C
return value and turns ``-1``/``errno`` into ``OSError(errno, strerror, path)``
so callers handle one exception type, as with the ``os`` module.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.posixpaths import fsencode
from ocirun.syscalls import api
from ocirun.syscalls._ffi import NR, ffi, lib
from ocirun.syscalls.api import (
    KEYCTL_JOIN_SESSION_KEYRING,
    NS_GET_NSTYPE,
    SECCOMP_SET_MODE_FILTER,
)

from ocirun.syscalls.api import IOPRIO_WHO_PROCESS, KEYCTL_JOIN_SESSION_KEYRING, NS_GET_NSTYPE

_CAP_V3 = 0x20080522  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set


def _raise(path: str | None = None) -> None:
    err = ffi.errno
    if path is None:
        raise OSError(err, os.strerror(err))
    raise OSError(err, os.strerror(err), path)


def _cstr(s: str | None) -> object:
    # NULL rather than "" where the kernel distinguishes them (mount data).
    return ffi.NULL if s is None else fsencode(s)


CLONE_INTO_CGROUP = 0x200000000
_SIGCHLD = 17  # the same number on every architecture this seam knows


def _nr(name: str) -> int:
    try:
        return NR[name]
    except KeyError:
        raise OSError(38, f"{name}: syscall number unknown on {os.uname().machine}") from None


def _ul(v: int) -> object:
    return ffi.cast("unsigned long", v)


def _l(v: int) -> object:
    return ffi.cast("long", v)


# bpf(2) is not wrapped by glibc.
_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
# Larger than union bpf_attr: the kernel may write members past the one we fill.
_BPF_ATTR_SIZE = 256


def _bpf(cmd: int, attr: object) -> int:
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise OSError(38, f"bpf: syscall number unknown on {os.uname().machine}")
    rc = int(lib.syscall(_l(nr), ffi.cast("int", cmd), attr,
                         ffi.cast("unsigned int", _BPF_ATTR_SIZE)))
    if rc < 0:
        _raise()
    return rc


def _bpf_attr(struct: str) -> tuple[object, object]:
    """(zeroed buffer, the struct view of it); keep the buffer alive."""
    buf = ffi.new(f"char[{_BPF_ATTR_SIZE}]")
    return buf, ffi.cast(f"struct {struct} *", buf)


class LinuxSyscalls:
    """Kernel calls through libc; stateless, so one instance can be shared."""

    __slots__ = ()

    def mount(self, source: str | None, target: str, fstype: str | None,
              flags: int, data: str | None) -> None:
        if lib.mount(_cstr(source), _cstr(target), _cstr(fstype), flags, _cstr(data)) != 0:
            _raise(target)

    def umount2(self, target: str, flags: int) -> None:
        if lib.umount2(fsencode(target), flags) != 0:
            _raise(target)

    def pivot_root(self, new_root: str, put_old: str) -> None:
        # glibc has no wrapper for pivot_root(2).
        rc = lib.syscall(_nr("pivot_root"), ffi.new("char[]", fsencode(new_root)),
                         ffi.new("char[]", fsencode(put_old)))
        if rc != 0:
            _raise(new_root)

    def unshare(self, flags: int) -> None:
        if lib.unshare(flags) != 0:
            _raise()

    def setns(self, fd: int, nstype: int) -> None:
        if lib.setns(fd, nstype) != 0:
            _raise()

    def sethostname(self, name: str) -> None:
        b = name.encode()
        if lib.sethostname(b, len(b)) != 0:
            _raise()

    def setdomainname(self, name: str) -> None:
        b = name.encode()
        if lib.setdomainname(b, len(b)) != 0:
            _raise()

    def mknod(self, path: str, mode: int, device: int) -> None:
        os.mknod(path, mode, device)  # already raises OSError with the path

    def chroot(self, path: str) -> None:
        os.chroot(path)

    def capget(self) -> tuple[int, int, int]:
        hdr = ffi.new("struct oci_cap_header *", {"version": _CAP_V3, "pid": 0})
        data = ffi.new("struct oci_cap_data[2]")
        if lib.syscall(_nr("capget"), hdr, data) != 0:
            _raise()
        return (data[0].effective | (data[1].effective << 32),
                data[0].permitted | (data[1].permitted << 32),
                data[0].inheritable | (data[1].inheritable << 32))

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        hdr = ffi.new("struct oci_cap_header *", {"version": _CAP_V3, "pid": 0})
        data = ffi.new("struct oci_cap_data[2]")
        m = 0xFFFFFFFF
        for i, shift in ((0, 0), (1, 32)):
            data[i].effective = (effective >> shift) & m
            data[i].permitted = (permitted >> shift) & m
            data[i].inheritable = (inheritable >> shift) & m
        if lib.syscall(_nr("capset"), hdr, data) != 0:
            _raise()

    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        rc = int(lib.prctl(option, _ul(arg2), _ul(arg3), _ul(arg4), _ul(arg5)))
        if rc == -1:
            _raise()
        return rc

    def mount_setattr(self, dirfd: int, path: str, flags: int, attr_set: int,
                      attr_clr: int, propagation: int = 0, userns_fd: int = 0) -> None:
        attr = ffi.new("struct mount_attr *", {
            "attr_set": attr_set, "attr_clr": attr_clr,
            "propagation": propagation, "userns_fd": userns_fd})
        rc = lib.syscall(_nr("mount_setattr"), ffi.cast("int", dirfd),
                         ffi.new("char[]", fsencode(path)), ffi.cast("unsigned int", flags),
                         attr, ffi.cast("size_t", ffi.sizeof("struct mount_attr")))
        if rc != 0:
            _raise(path)

    def personality(self, persona: int) -> int:
        rc = int(lib.personality(persona))
        if rc == -1:
            _raise()
        return rc

    def ns_get_type(self, fd: int) -> int:
        rc = int(lib.ioctl(fd, NS_GET_NSTYPE))
        if rc == -1:
            _raise()
        return rc

    def join_session_keyring(self, name: str | None) -> int:
        arg = ffi.NULL if name is None else ffi.new("char[]", name.encode())
        rc = int(lib.syscall(_nr("keyctl"), _l(KEYCTL_JOIN_SESSION_KEYRING), arg))
        if rc == -1:
            _raise()
        return rc

    def open_tree(self, dirfd: int, path: str, flags: int) -> int:
        rc = int(lib.syscall(_nr("open_tree"), ffi.cast("int", dirfd),
                             ffi.new("char[]", fsencode(path)), ffi.cast("unsigned int", flags)))
        if rc < 0:
            _raise(path)
        return rc

    def move_mount(self, from_dirfd: int, from_path: str, to_dirfd: int, to_path: str,
                   flags: int) -> None:
        rc = lib.syscall(_nr("move_mount"), ffi.cast("int", from_dirfd),
                         ffi.new("char[]", fsencode(from_path)), ffi.cast("int", to_dirfd),
                         ffi.new("char[]", fsencode(to_path)), ffi.cast("unsigned int", flags))
        if rc != 0:
            _raise(to_path)

    def fork(self) -> int:
        return os.fork()

    def clone_into_cgroup(self, cgroup_fd: int) -> int:
        # struct clone_args (88 bytes, CLONE_ARGS_SIZE_VER2): flags, pidfd,
        # child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
        # set_tid_size, cgroup.  No stack: like fork, the child goes on with a
        # copy of ours, back into Python.  What os.fork adds around fork(2)
        # (PyOS_AfterFork_Child) resets state of other threads, of the import
        # lock and of at-fork hooks; the runtime's children have none of those
        # (ARCHITECTURE rule 6: one thread), and they never use the thread
        # id glibc cached in the parent.
        args = ffi.new("uint64_t[11]", [CLONE_INTO_CGROUP, 0, 0, 0, _SIGCHLD, 0, 0, 0, 0, 0,
                                        cgroup_fd])
        rc = int(lib.syscall(_nr("clone3"), ffi.cast("void *", args), ffi.cast("size_t", 88)))
        if rc < 0:
            _raise()
        return rc

    def bpf_prog_load(self, prog_type: int, insns: bytes, license: str,
                      log_size: int = 0) -> int:
        buf, attr = _bpf_attr("oci_bpf_prog_load")
        code = ffi.new("char[]", insns)
        lic = ffi.new("char[]", license.encode())
        log = ffi.new("char[]", log_size) if log_size else ffi.NULL
        attr.prog_type = prog_type  # type: ignore[attr-defined]
        attr.insn_cnt = len(insns) // 8  # type: ignore[attr-defined]
        attr.insns = int(ffi.cast("uintptr_t", code))  # type: ignore[attr-defined]
        attr.license = int(ffi.cast("uintptr_t", lic))  # type: ignore[attr-defined]
        if log_size:
            attr.log_level = 1  # type: ignore[attr-defined]
            attr.log_size = log_size  # type: ignore[attr-defined]
            attr.log_buf = int(ffi.cast("uintptr_t", log))  # type: ignore[attr-defined]
        try:
            return _bpf(api.BPF_PROG_LOAD, buf)
        except OSError as e:
            if not log_size:
                raise
            text = ffi.string(log).decode(errors="replace").strip()
            raise OSError(e.errno, f"{e.strerror}; verifier: {text[-500:]}") from None

    def bpf_prog_attach(self, target_fd: int, prog_fd: int, attach_type: int,
                        flags: int) -> None:
        buf, attr = _bpf_attr("oci_bpf_prog_attach")
        attr.target_fd = target_fd  # type: ignore[attr-defined]
        attr.attach_bpf_fd = prog_fd  # type: ignore[attr-defined]
        attr.attach_type = attach_type  # type: ignore[attr-defined]
        attr.attach_flags = flags  # type: ignore[attr-defined]
        _bpf(api.BPF_PROG_ATTACH, buf)

    def bpf_prog_detach(self, target_fd: int, prog_fd: int, attach_type: int) -> None:
        buf, attr = _bpf_attr("oci_bpf_prog_attach")
        attr.target_fd = target_fd  # type: ignore[attr-defined]
        attr.attach_bpf_fd = prog_fd  # type: ignore[attr-defined]
        attr.attach_type = attach_type  # type: ignore[attr-defined]
        _bpf(api.BPF_PROG_DETACH, buf)

    def bpf_prog_query(self, target_fd: int, attach_type: int) -> tuple[int, list[int]]:
        ids = ffi.new("uint32_t[64]")
        buf, attr = _bpf_attr("oci_bpf_prog_query")
        attr.target_fd = target_fd  # type: ignore[attr-defined]
        attr.attach_type = attach_type  # type: ignore[attr-defined]
        attr.prog_ids = int(ffi.cast("uintptr_t", ids))  # type: ignore[attr-defined]
        attr.prog_cnt = 64  # type: ignore[attr-defined]
        _bpf(api.BPF_PROG_QUERY, buf)
        n = min(int(attr.prog_cnt), 64)  # type: ignore[attr-defined]
        return int(attr.attach_flags), [int(ids[i]) for i in range(n)]  # type: ignore[attr-defined]

    def bpf_prog_get_fd_by_id(self, prog_id: int) -> int:
        buf, attr = _bpf_attr("oci_bpf_get_fd_by_id")
        attr.id = prog_id  # type: ignore[attr-defined]
        return _bpf(api.BPF_PROG_GET_FD_BY_ID, buf)

    def seccomp_set_filter(self, flags: int, bpf: bytes | None) -> int:
        if bpf is None:
            prog = ffi.NULL
        else:
            # ``buf`` must outlive the call: the kernel copies the program in.
            buf = ffi.from_buffer(bpf)
            prog = ffi.new("struct oci_sock_fprog *", {"len": len(bpf) // 8, "filter": buf})
        rc = int(lib.syscall(_nr("seccomp"), _l(SECCOMP_SET_MODE_FILTER),
                             ffi.cast("unsigned int", flags), prog))
        if rc == -1:
            _raise()
        return rc

    def sched_setattr(self, policy: int, flags: int, nice: int, priority: int,
                      runtime: int, deadline: int, period: int) -> None:
        attr = ffi.new("struct oci_sched_attr *", {
            "size": ffi.sizeof("struct oci_sched_attr"), "sched_policy": policy,
            "sched_flags": flags, "sched_nice": nice, "sched_priority": priority,
            "sched_runtime": runtime, "sched_deadline": deadline, "sched_period": period})
        if lib.syscall(_nr("sched_setattr"), ffi.cast("int", 0), attr,
                       ffi.cast("unsigned int", 0)) != 0:
            _raise()

    def ioprio_set(self, ioprio: int) -> None:
        if lib.syscall(_nr("ioprio_set"), ffi.cast("int", IOPRIO_WHO_PROCESS),
                       ffi.cast("int", 0), ffi.cast("int", ioprio)) != 0:
            _raise()

    def set_mempolicy(self, mode: int, nodes: tuple[int, ...]) -> None:
        if nodes:
            bits = 8 * ffi.sizeof("unsigned long")
            words = max(nodes) // bits + 1
            mask = ffi.new("unsigned long[]", words)
            for n in nodes:
                mask[n // bits] |= 1 << (n % bits)
            # maxnode counts bits, and the kernel drops the last one (a
            # historical off-by-one every libnuma caller compensates for).
            maxnode = words * bits + 1
        else:
            mask, maxnode = ffi.NULL, 0
        if lib.syscall(_nr("set_mempolicy"), ffi.cast("int", mode), mask,
                       ffi.cast("unsigned long", maxnode)) != 0:
            _raise()

    def sched_setaffinity(self, cpus: tuple[int, ...]) -> None:
        os.sched_setaffinity(0, cpus)
