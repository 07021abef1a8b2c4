"""Build step for the syscall seam's C declarations (cffi out-of-line ABI mode).

Run ``python3 -m ocirun.syscalls._build_ffi`` at install/CI time.  It writes
``ocirun/syscalls/_ffi_out.py``: a pure-Python module holding the declarations
pre-parsed, so a runtime start skips pycparser (~20 ms) and imports in ~1 ms.
:mod:`ocirun.syscalls._ffi` falls back to parsing :data:`CDEF` at run time when
that generated file is missing.  No C compiler is involved (ABI mode).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # avoids importing typing (~8 ms cold); mypy still honours it

if TYPE_CHECKING:
    import cffi  # type: ignore[import-untyped]

MODULE_NAME = "ocirun.syscalls._ffi_out"

# Only what ``os`` lacks.  Variadic functions are declared variadic so cffi
# passes the arguments with the C calling convention for varargs (explicit
# integer casts are required at the call sites).
CDEF = """
int mount(const char *source, const char *target, const char *filesystemtype,
          unsigned long mountflags, const void *data);
int umount2(const char *target, int flags);
long syscall(long number, ...);
int unshare(int flags);
int setns(int fd, int nstype);
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
int prctl(int option, ...);
int personality(unsigned long persona);
int chroot(const char *path);
int ioctl(int fd, unsigned long request, ...);

/* linux/capability.h, _LINUX_CAPABILITY_VERSION_3 */
struct oci_cap_header {
    uint32_t version;
    int pid;
};
struct oci_cap_data {
    uint32_t effective;
    uint32_t permitted;
    uint32_t inheritable;
};

/* linux/filter.h: a classic BPF program for seccomp(2) */
struct oci_sock_fprog {
    unsigned short len;
    void *filter;
};

/* linux/mount.h */
struct mount_attr {
    uint64_t attr_set;
    uint64_t attr_clr;
    uint64_t propagation;
    uint64_t userns_fd;
};
"""


def make_ffi() -> cffi.FFI:
    """An FFI object with :data:`CDEF` parsed (the slow in-line ABI path)."""
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    return ffi


def build(target_dir: str | None = None) -> str:
    """Write ``_ffi_out.py`` next to this file (or into ``target_dir``); return its path."""
    ffi = make_ffi()
    ffi.set_source(MODULE_NAME, None)
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(target_dir or here, "_ffi_out.py")
    # emit_python_code writes exactly one file, at the path we choose, instead
    # of compile()'s package-directory layout under a tmpdir.
    ffi.emit_python_code(out)
    # The generated module imports the stub-less _cffi_backend: keep mypy out.
    with open(out, encoding="utf-8") as f:
        text = f.read()
    with open(out, "w", encoding="utf-8") as f:
        f.write("# mypy: ignore-errors\n" + text)
    return out


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else None))
