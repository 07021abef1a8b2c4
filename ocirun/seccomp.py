"""Seccomp: config-linux.md "Seccomp" and "The Container Process State".

Three steps, in three places:

* :func:`compile_program`, in the runtime before any fork: check the profile
  (every error names its JSON path), compile it with libseccomp (pyseccomp)
  into a classic BPF program, and keep that program in a cache under the
  state root keyed by a digest of the profile, the kernel and the
  architecture.  pyseccomp is imported only on a cache miss: its import loads
  ctypes and runs ``ldconfig`` to find the library (~25 ms), and compiling a
  large profile costs ~20 ms more.
* :func:`load`, in the container's init: one raw ``seccomp(2)`` through the
  syscall seam, with the profile's flags; returns the notify listener fd when
  the profile has ``SCMP_ACT_NOTIFY`` rules.
* :func:`send_listener`, in the runtime: the listener fd and the container
  process state over the unix socket at ``listenerPath`` (SCM_RIGHTS).

How a profile becomes rules follows runc 1.1 where the spec is silent:
names libseccomp does not know are skipped with a warning; a rule whose
action equals the default action is dropped (libseccomp refuses it, and it
changes nothing); the conditions of one rule are ANDed in one libseccomp
rule, except when two of them test the same argument, which libseccomp
cannot express: then each condition becomes its own rule (so they are ORed),
with a warning.  The runtime installs the program itself, so libseccomp's
own attributes for loading (no_new_privs, TSYNC) play no part.
"""

from __future__ import annotations

import errno
import os

from ocirun import jsonio, log
from ocirun.errors import ConfigError, OciRunError, SyscallError
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# seccomp(2) return actions (linux/seccomp.h); libseccomp uses the same values.
ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000,  # libseccomp's SCMP_ACT_KILL is KILL_THREAD
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_WITH_DATA = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")  # the actions errnoRet applies to
_MAX_DATA = {"SCMP_ACT_ERRNO": 4095, "SCMP_ACT_TRACE": 0xFFFF}  # MAX_ERRNO; 16-bit msg
EPERM = 1

# libseccomp's comparison operators (enum scmp_compare)
OPS: dict[str, int] = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
                       "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}

# AUDIT_ARCH_* values (linux/audit.h: ELF machine | 64-bit | little-endian bits),
# which is what libseccomp's SCMP_ARCH_* constants are.
_B64, _LE, _N32 = 0x80000000, 0x40000000, 0x20000000
ARCHES: dict[str, int] = {
    "SCMP_ARCH_X86": 3 | _LE,
    "SCMP_ARCH_X86_64": 62 | _B64 | _LE,
    "SCMP_ARCH_X32": 62 | _LE,
    "SCMP_ARCH_ARM": 40 | _LE,
    "SCMP_ARCH_AARCH64": 183 | _B64 | _LE,
    "SCMP_ARCH_MIPS": 8,
    "SCMP_ARCH_MIPS64": 8 | _B64,
    "SCMP_ARCH_MIPS64N32": 8 | _B64 | _N32,
    "SCMP_ARCH_MIPSEL": 8 | _LE,
    "SCMP_ARCH_MIPSEL64": 8 | _B64 | _LE,
    "SCMP_ARCH_MIPSEL64N32": 8 | _B64 | _LE | _N32,
    "SCMP_ARCH_PPC": 20,
    "SCMP_ARCH_PPC64": 21 | _B64,
    "SCMP_ARCH_PPC64LE": 21 | _B64 | _LE,
    "SCMP_ARCH_S390": 22,
    "SCMP_ARCH_S390X": 22 | _B64,
    "SCMP_ARCH_PARISC": 15,
    "SCMP_ARCH_PARISC64": 15 | _B64,
    "SCMP_ARCH_RISCV64": 243 | _B64 | _LE,
    "SCMP_ARCH_LOONGARCH64": 258 | _B64 | _LE,
    "SCMP_ARCH_M68K": 4,
    "SCMP_ARCH_SH": 42 | _LE,
    "SCMP_ARCH_SHEB": 42,
}

# seccomp(2) filter flags the spec names.  TSYNC is accepted and not passed:
# the init is single-threaded when it loads the filter, so it changes nothing
# (runc does the same), and the kernel refuses it next to NEW_LISTENER.
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_LOG": api.SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": api.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": api.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

# The init hands the listener fd to the runtime with sendmsg(2) right after
# loading the filter: a NOTIFY rule on it would wait for an agent that cannot
# have the fd yet (runc refuses NOTIFY on write, its hand-over call, likewise).
NOTIFY_FORBIDDEN = ("sendmsg",)

# libseccomp >= 2.5 builds a binary tree over the syscall numbers when asked;
# runc asks above 32 rules (2.5.4 misbehaves with the tree and no rules at all).
_OPTIMIZE_ABOVE = 32

# Bump when the translation above changes: older cache entries stop matching.
COMPILER_VERSION = 1
CACHE_PREFIX = "seccomp@"  # '@' cannot appear in a container id: no clash in the state root
CACHE_MAX = 64
_MAGIC = b"ocirun-seccomp-bpf 1"


class SeccompProgram:
    """A compiled profile, ready for :func:`load` (treat as immutable)."""

    __slots__ = ("bpf", "flags", "listener_metadata", "listener_path", "notify")

    def __init__(self, bpf: bytes, flags: int, *, notify: bool = False,
                 listener_path: str | None = None, listener_metadata: str = "") -> None:
        self.bpf = bpf  # struct sock_filter[]: 8 bytes per instruction
        self.flags = flags  # for seccomp(2), NEW_LISTENER included when notify
        self.notify = notify
        self.listener_path = listener_path
        self.listener_metadata = listener_metadata


# --------------------------------------------------------------------------
# checking (pure, no libseccomp)

class _Rule:
    __slots__ = ("action", "args", "names", "path")

    def __init__(self, path: str, action: int, names: list[tuple[str, str]],
                 args: list[tuple[int, int, int, int]]) -> None:
        self.path = path
        self.action = action
        self.names = names  # (JSON path, name)
        self.args = args  # (index, op, value, valueTwo)


class _Profile:
    __slots__ = ("arches", "default", "flags", "names", "notify", "rules", "warnings")

    def __init__(self) -> None:
        self.default = 0
        self.arches: list[tuple[str, int]] = []
        self.rules: list[_Rule] = []
        self.flags: list[tuple[str, str, int]] = []  # (path, name, bit)
        self.notify: list[str] = []  # paths of NOTIFY rules
        self.names = 0
        self.warnings: list[str] = []


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"config.json: {path}: {msg}", stage="seccomp")


def _uint(v: object, path: str, bits: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise _err(path, f"expected an unsigned {bits}-bit integer, got {v!r}")
    return v


def _action(name: object, errno_ret: object, path: str, ret_path: str) -> int:
    if name not in ACTIONS:
        raise _err(path, f"unknown action {name!r} (expected one of {', '.join(ACTIONS)})")
    value = ACTIONS[str(name)]
    if name in _WITH_DATA:
        if errno_ret is None:
            return value | EPERM
        data = _uint(errno_ret, ret_path, 32)
        if data > _MAX_DATA[str(name)]:
            raise _err(ret_path, f"{data} is out of range for {name} "
                                 f"(at most {_MAX_DATA[str(name)]})")
        return value | data
    if errno_ret is not None:
        raise _err(ret_path, f"{name} returns no errno: only SCMP_ACT_ERRNO and "
                             "SCMP_ACT_TRACE take one")
    return value


def check_profile(cfg: dict[str, Any], base: str = "$.linux.seccomp") -> _Profile:
    """Everything about the profile that can be checked without libseccomp."""
    if not isinstance(cfg, dict):
        raise _err(base, "expected an object")
    p = _Profile()
    p.default = _action(cfg.get("defaultAction"), cfg.get("defaultErrnoRet"),
                        f"{base}.defaultAction", f"{base}.defaultErrnoRet")
    if cfg.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise _err(f"{base}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action: "
                   "the runtime's own calls before exec would wait for the agent")
    for i, a in enumerate(cfg.get("architectures") or []):
        path = f"{base}.architectures[{i}]"
        if a not in ARCHES:
            raise _err(path, f"unknown architecture {a!r}")
        p.arches.append((path, ARCHES[a]))
    for i, rule in enumerate(cfg.get("syscalls") or []):
        path = f"{base}.syscalls[{i}]"
        if not isinstance(rule, dict):
            raise _err(path, "expected an object")
        action = _action(rule.get("action"), rule.get("errnoRet"), f"{path}.action",
                         f"{path}.errnoRet")
        names = rule.get("names")
        if not isinstance(names, list) or not names:
            raise _err(f"{path}.names", "expected a non-empty list of syscall names")
        named: list[tuple[str, str]] = []
        for j, n in enumerate(names):
            if not isinstance(n, str) or not n or "\0" in n:
                raise _err(f"{path}.names[{j}]", f"invalid syscall name {n!r}")
            named.append((f"{path}.names[{j}]", n))
        args: list[tuple[int, int, int, int]] = []
        for j, a in enumerate(rule.get("args") or []):
            apath = f"{path}.args[{j}]"
            if not isinstance(a, dict):
                raise _err(apath, "expected an object")
            index = _uint(a.get("index"), f"{apath}.index", 32)
            if index > 5:
                raise _err(f"{apath}.index", f"{index} is not a syscall argument (0 to 5)")
            op = a.get("op")
            if op not in OPS:
                raise _err(f"{apath}.op", f"unknown operator {op!r} (expected one of "
                                          f"{', '.join(OPS)})")
            args.append((index, OPS[str(op)], _uint(a.get("value"), f"{apath}.value", 64),
                         _uint(a.get("valueTwo", 0), f"{apath}.valueTwo", 64)))
        if rule.get("action") == "SCMP_ACT_NOTIFY":
            p.notify.append(path)
            for npath, n in named:
                if n in NOTIFY_FORBIDDEN:
                    raise _err(npath, f"SCMP_ACT_NOTIFY cannot be used for `{n}`: the runtime "
                                      "needs it to hand the listener fd over after loading")
        p.names += len(named)
        p.rules.append(_Rule(path, action, named, args))
    for i, f in enumerate(cfg.get("flags") or []):
        path = f"{base}.flags[{i}]"
        if f not in FLAGS:
            raise _err(path, f"unknown seccomp flag {f!r} (expected one of {', '.join(FLAGS)})")
        p.flags.append((path, str(f), FLAGS[str(f)]))
    lpath = cfg.get("listenerPath")
    if cfg.get("listenerMetadata") and not lpath:
        raise _err(f"{base}.listenerMetadata", "set without listenerPath")
    if p.notify and not lpath:
        raise _err(f"{base}.listenerPath", f"required by the SCMP_ACT_NOTIFY rule {p.notify[0]}")
    if lpath is not None and (not isinstance(lpath, str) or not lpath.startswith("/")):
        raise _err(f"{base}.listenerPath", f"expected an absolute path, got {lpath!r}")
    return p


def _seccomp_flags(p: _Profile, sys: api.Syscalls) -> int:
    """The seccomp(2) flags, each probed on this kernel (the parent may ask; the
    kernel answers EFAULT for a known flag with a NULL program, EINVAL else)."""
    flags = api.SECCOMP_FILTER_FLAG_NEW_LISTENER if p.notify else 0
    probes: list[tuple[str, str, int]] = [("$.linux.seccomp", "seccomp(2) filters", flags)]
    for path, name, bit in p.flags:
        if bit == api.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV and not p.notify:
            log.warning(f"{path}: {name} ignored: it applies to the notify listener and the "
                        "profile has no SCMP_ACT_NOTIFY rule")
            continue
        if bit:
            flags |= bit
            extra = api.SECCOMP_FILTER_FLAG_NEW_LISTENER \
                if bit == api.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV else 0
            probes.append((path, name, bit | extra))
    for path, name, bits in probes:
        try:
            sys.seccomp_set_filter(bits, None)
        except OSError as e:
            if e.errno == errno.EFAULT:
                continue
            why = "not supported by this kernel" if e.errno == errno.EINVAL else e.strerror
            raise _err(path, f"{name}: {why} (Linux {os.uname().release})") from None
        raise _err(path, f"{name}: the kernel accepted a NULL program")  # never: EFAULT expected
    return flags


# --------------------------------------------------------------------------
# compiling (libseccomp through pyseccomp, imported here only)

def _build(p: _Profile) -> Any:
    """A pyseccomp SyscallFilter holding the profile's rules."""
    import pyseccomp as ps  # type: ignore[import-untyped]  # ctypes + ldconfig: ~25 ms
    f = ps.SyscallFilter(p.default)
    for path, arch in p.arches:
        try:
            f.add_arch(arch)
        except OSError as e:
            if e.errno == errno.EEXIST:  # the native architecture is always there
                continue
            raise _err(path, "architecture not supported by this host's libseccomp") from None
    if p.names > _OPTIMIZE_ABOVE:
        try:
            f.set_attr(ps.Attr.CTL_OPTIMIZE, 2)
        except OSError:
            pass  # older libseccomp: a linear program, just slower
    unknown: list[str] = []
    for rule in p.rules:
        if rule.action == p.default:
            continue  # redundant; libseccomp refuses it (EACCES)
        indexes = [a[0] for a in rule.args]
        if len(set(indexes)) == len(indexes):
            groups = [rule.args]
        else:
            groups = [[a] for a in rule.args]
            p.warnings.append(f"{rule.path}.args: several conditions on one argument: each "
                              "becomes a rule of its own, so they are ORed (as runc does)")
        for npath, name in rule.names:
            nr = ps.resolve_syscall(ps.Arch.NATIVE, name)
            if nr == -1:  # __NR_SCMP_ERROR; other negative numbers are pseudo-syscalls
                unknown.append(name)
                continue
            for g in groups:
                try:
                    f.add_rule(rule.action, nr, *(ps.Arg(i, op, a, b) for i, op, a, b in g))
                except OSError as e:
                    raise _err(npath, f"libseccomp refused the rule for `{name}`: "
                                      f"{e.strerror}") from None
    if unknown:
        p.warnings.append("$.linux.seccomp: syscalls unknown to libseccomp skipped: "
                          + ", ".join(dict.fromkeys(unknown)))
    return f


class _Fd:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def _export(f: Any, what: str) -> bytes:
    fd = os.memfd_create("ocirun-seccomp", os.MFD_CLOEXEC)
    try:
        getattr(f, "export_" + what)(_Fd(fd))
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        out = b""
        while len(out) < size:
            chunk = os.read(fd, size - len(out))
            if not chunk:
                break
            out += chunk
        return out
    finally:
        os.close(fd)


def export_pfc(cfg: dict[str, Any]) -> str:
    """libseccomp's pseudo-filter-code text of a profile (for tests and debugging)."""
    return _export(_build(check_profile(cfg)), "pfc").decode()


def _libseccomp_id() -> tuple[str, list[int]] | None:
    """Path and (inode, size, mtime_ns) of the libseccomp this process loaded."""
    try:
        with open("/proc/self/maps", "rb") as fh:
            for line in fh:
                path = line.split(None, 5)[-1].strip().decode(errors="replace")
                if "/libseccomp.so" in path:
                    st = os.stat(path)
                    return path, [st.st_ino, st.st_size, st.st_mtime_ns]
    except (OSError, IndexError):
        pass
    return None


# --------------------------------------------------------------------------
# the cache: <cache_dir>/seccomp@<digest>, one file per profile
#   line 1: magic; line 2: JSON {"key": digest, "lib": path, "lib_id": [...],
#   "warnings": [...]}; then the BPF program.  An entry is used only under its
#   own name (a renamed file is ignored) and while the libseccomp it was
#   compiled with is unchanged (a newer one may know more syscall names).

def cache_key(cfg: dict[str, Any]) -> str:
    """Digest of what decides the program: the profile (not the listener or flags),
    this compiler's version, the kernel release and the machine."""
    try:
        from _blake2 import blake2b  # the C module hashlib wraps: ~0.2 ms, hashlib ~3 ms
    except ImportError:  # pragma: no cover - other Pythons
        from hashlib import blake2b
    doc = {k: v for k, v in cfg.items()
           if k not in ("listenerPath", "listenerMetadata", "flags")}
    u = os.uname()
    text = f"{COMPILER_VERSION}\n{u.release}\n{u.machine}\n{jsonio.dumps(doc)}"
    return blake2b(text.encode(), digest_size=24).hexdigest()


def cache_read(path: str, key: str | None = None) -> tuple[bytes, list[str]] | None:
    """(program, warnings) of the entry at ``path``, or None when it is missing,
    damaged, not ours, filed under another ``key`` or from another libseccomp."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        # ours, and nobody else may have written it
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or st.st_size > 1 << 20:
            return None
        data = os.read(fd, st.st_size)
    except OSError:
        return None
    finally:
        os.close(fd)
    magic, _, rest = data.partition(b"\n")
    header, _, bpf = rest.partition(b"\n")
    if magic != _MAGIC or not bpf or len(bpf) % 8:
        return None
    try:
        meta = jsonio.loads(header)
        if key is not None and meta["key"] != key:
            return None
        lib = meta["lib"]
        if lib is not None:
            st = os.stat(lib)
            if [st.st_ino, st.st_size, st.st_mtime_ns] != meta["lib_id"]:
                return None
        return bpf, [str(w) for w in meta["warnings"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cache_write(cache_dir: str, key: str, bpf: bytes, warnings: list[str]) -> None:
    """Best effort: a cache that cannot be written only costs speed."""
    lib = _libseccomp_id()
    header = jsonio.dumps({"key": key, "lib": lib[0] if lib else None,
                           "lib_id": lib[1] if lib else None, "warnings": warnings})
    path = os.path.join(cache_dir, CACHE_PREFIX + key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _MAGIC + b"\n" + header.encode() + b"\n" + bpf)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _evict(cache_dir)
    except OSError as e:
        log.debug(f"seccomp cache: cannot write `{path}`: {e.strerror}")
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _evict(cache_dir: str) -> None:
    entries = []
    for name in os.listdir(cache_dir):
        if name.startswith(CACHE_PREFIX) and not name.endswith(".tmp"):
            p = os.path.join(cache_dir, name)
            try:
                entries.append((os.stat(p).st_mtime_ns, p))
            except OSError:
                pass
    entries.sort()
    for _, p in entries[:max(0, len(entries) - CACHE_MAX)]:
        try:
            os.unlink(p)
        except OSError:
            pass


# --------------------------------------------------------------------------
# the API

def compile_program(cfg: dict[str, Any], *, cache_dir: str | None,
                    sys: api.Syscalls | None = None) -> SeccompProgram:
    """Check and compile ``linux.seccomp``; raises ConfigError with the JSON path.

    With ``cache_dir``, a program compiled before for the same profile, kernel
    and libseccomp is read back instead of importing pyseccomp.
    """
    p = check_profile(cfg)
    if sys is None:
        from ocirun.syscalls.linux import LinuxSyscalls
        sys = LinuxSyscalls()
    flags = _seccomp_flags(p, sys)
    hit = None
    key = ""
    if cache_dir:
        key = cache_key(cfg)
        hit = cache_read(os.path.join(cache_dir, CACHE_PREFIX + key), key)
    if hit is not None:
        bpf, warnings = hit
    else:
        bpf = _export(_build(p), "bpf")
        warnings = p.warnings
        if cache_dir:
            cache_write(cache_dir, key, bpf, warnings)
    for w in warnings:
        log.warning(w)
    return SeccompProgram(bpf, flags, notify=bool(p.notify),
                          listener_path=cfg.get("listenerPath"),
                          listener_metadata=str(cfg.get("listenerMetadata") or ""))


def load(program: SeccompProgram, sys: api.Syscalls) -> int | None:
    """Install the filter on this process (the init); the listener fd for NOTIFY.

    The kernel wants no_new_privs set, or CAP_SYS_ADMIN in the user namespace.
    """
    try:
        fd = sys.seccomp_set_filter(program.flags, program.bpf)
    except OSError as e:
        hint = ""
        if e.errno == errno.EACCES:
            hint = " (the kernel wants no_new_privs or CAP_SYS_ADMIN)"
        elif e.errno == errno.EINVAL:
            hint = f" (flags {program.flags:#x}, {len(program.bpf) // 8} instructions)"
        raise SyscallError(f"linux.seccomp: load the filter: {e.strerror}{hint}",
                           errno=e.errno, stage="seccomp") from e
    return fd if program.notify else None


def send_listener(path: str, notify_fd: int, state: dict[str, object], metadata: str, *,
                  pid: int | None = None) -> None:
    """config-linux.md "The Container Process State": one connection, one JSON
    document, the listener fd as SCM_RIGHTS with the first bytes; then close.
    ``pid``: the process under the filter, when not the container's (exec)."""
    import _socket
    from sys import byteorder

    from ocirun import SPEC_VERSION
    doc: dict[str, object] = {"ociVersion": SPEC_VERSION, "fds": ["seccompFd"],
                              "pid": state.get("pid") if pid is None else pid, "state": state}
    if metadata:
        doc["metadata"] = metadata
    data = jsonio.dumps(doc).encode()
    where = f"linux.seccomp.listenerPath `{path}`"
    try:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    except OSError as e:
        raise OciRunError(f"{where}: socket: {e.strerror}", errno=e.errno, stage="seccomp") from e
    try:
        s.settimeout(10)
        s.connect(path)
        rights = notify_fd.to_bytes(4, byteorder)  # one C int
        sent = s.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])
        while sent < len(data):  # the fd went with the first call only
            sent += s.send(data[sent:])
    except OSError as e:
        raise OciRunError(f"{where}: send the seccomp listener: {e.strerror or e}",
                          errno=e.errno, stage="seccomp") from e
    finally:
        s.close()

