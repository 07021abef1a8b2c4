"""Process capabilities: config.md "POSIX process" ``process.capabilities``.

Implements the five capability sets of the OCI config (bounding, effective,
permitted, inheritable, ambient) on Linux, see capabilities(7).

Two halves, following the "plan in the parent, apply in the child" rule:

* :func:`compute_caps` is pure.  It turns the config object into five 64-bit
  masks and a list of warnings.  Since runtime-spec v1.1.0 a capability that
  is unknown, or that the kernel cannot grant, is a *warning*, never an error;
  such a capability is left out of the masks.
* :func:`apply_caps` runs in the container init, right before ``execve``.

What the program sees after ``execve`` is decided by the kernel, not by us
(capabilities(7), "Transformation of capabilities during execve()"):

* target uid non-zero: permitted and effective become exactly the ambient set
  (the file has no capabilities).  Caps in ``permitted``/``effective`` that are
  not ambient are lost at exec.  runc behaves the same way.
* target uid 0 (no SECBIT_NOROOT): permitted becomes inheritable | bounding and
  effective equals permitted.  So for root, the bounding set is what counts.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.errors import SyscallError, oserror_text
from ocirun.syscalls.api import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.syscalls.api import Syscalls

# linux/capability.h, in kernel order.  The numbers are ABI and never change.
KNOWN_CAPABILITIES: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}

# The five sets, in the order of CapSets' fields.
SET_NAMES: tuple[str, ...] = ("bounding", "effective", "permitted", "inheritable", "ambient")

_CAP_SETPCAP_BIT = 1 << KNOWN_CAPABILITIES["CAP_SETPCAP"]
_FALLBACK_LAST_CAP = 40
_last_cap_cache: list[int] = []


def last_cap(path: str = "/proc/sys/kernel/cap_last_cap") -> int:
    """Highest capability number the running kernel knows (cached per process)."""
    if _last_cap_cache:
        return _last_cap_cache[0]
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            value = int(os.read(fd, 32))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        # Kernels before 3.2 lack the file; the table is then the best guess.
        value = _FALLBACK_LAST_CAP
    _last_cap_cache.append(value)
    return value


class CapSets:
    """The five capability masks (bit n = capability number n)."""

    __slots__ = ("ambient", "bounding", "effective", "inheritable", "permitted")

    def __init__(self, bounding: int = 0, effective: int = 0, permitted: int = 0,
                 inheritable: int = 0, ambient: int = 0) -> None:
        self.bounding = bounding
        self.effective = effective
        self.permitted = permitted
        self.inheritable = inheritable
        self.ambient = ambient

    def as_dict(self) -> dict[str, int]:
        """Plain form, for the init plan sent over the sync channel."""
        return {name: getattr(self, name) for name in SET_NAMES}

    @classmethod
    def from_dict(cls, d: dict[str, int]) -> CapSets:
        return cls(**{name: int(d.get(name, 0)) for name in SET_NAMES})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CapSets):
            return NotImplemented
        return self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n):#x}" for n in SET_NAMES)
        return f"CapSets({inner})"


def names_of(mask: int) -> list[str]:
    """Capability names of the bits set in ``mask``, in kernel order."""
    return [name for name, bit in KNOWN_CAPABILITIES.items() if mask >> bit & 1]


def compute_caps(caps: dict[str, list[str]] | None, *,
                 last: int | None = None) -> tuple[CapSets, list[str]]:
    """Turn ``process.capabilities`` into masks plus warnings (pure).

    ``last`` is the kernel's last capability (default :func:`last_cap`).  A
    missing object means no capabilities at all and a missing set means an
    empty one, as in runc.  Besides unknown names, it also warns about and
    removes what capset(2) and prctl(2) would refuse, so the apply step cannot
    fail on them:

    * effective ⊄ permitted: capset fails with EPERM;
    * inheritable ⊄ bounding: capset fails with EPERM (the init's inheritable
      set is empty when it starts, as under runc);
    * ambient ⊄ permitted ∩ inheritable: PR_CAP_AMBIENT_RAISE fails with EPERM.
    """
    if last is None:
        last = last_cap()
    warnings: list[str] = []
    masks: dict[str, int] = {}
    for set_name in SET_NAMES:
        mask = 0
        names = (caps or {}).get(set_name) or []
        for name in names:
            bit = KNOWN_CAPABILITIES.get(name)
            if bit is None:
                warnings.append(f"process.capabilities.{set_name}: unknown capability `{name}`, ignored")
                continue
            if bit > last:
                warnings.append(f"process.capabilities.{set_name}: `{name}` is not supported by "
                                f"this kernel (last capability is {last}), ignored")
                continue
            mask |= 1 << bit
        masks[set_name] = mask

    def prune(set_name: str, allowed: int, why: str) -> None:
        extra = masks[set_name] & ~allowed
        if extra:
            warnings.append(f"process.capabilities.{set_name}: {', '.join(names_of(extra))} "
                            f"not {why}, ignored")
            masks[set_name] &= allowed

    prune("effective", masks["permitted"], "in the permitted set")
    prune("inheritable", masks["bounding"], "in the bounding set")
    prune("ambient", masks["permitted"] & masks["inheritable"],
          "in both the permitted and inheritable sets")
    return CapSets(**masks), warnings


def apply_caps(sets: CapSets, sys: Syscalls, *, last: int | None = None) -> None:
    """Make this thread's capabilities match ``sets``.

    Runs in the init after ``setresuid`` (with PR_SET_KEEPCAPS set, so the
    permitted set survived the uid change) and before ``execve``.  Order:

    1. If the uid change emptied the effective set, raise it back to the
       permitted set: PR_CAPBSET_DROP needs CAP_SETPCAP in effective.
    2. Drop from the bounding set every capability not requested.  This has
       to precede capset: once permitted loses CAP_SETPCAP we could not.
    3. capset(effective, permitted, inheritable).
    4. Reset the ambient set and raise the requested ones; the kernel demands
       each be in permitted and inheritable, which compute_caps ensured.
    """
    if last is None:
        last = last_cap()
    eff, prm, inh = sys.capget()
    if not eff & _CAP_SETPCAP_BIT and prm & _CAP_SETPCAP_BIT:
        _capset(sys, prm, prm, inh)
    for bit in range(last + 1):
        if not sets.bounding >> bit & 1:
            try:
                sys.prctl(PR_CAPBSET_DROP, bit)
            except OSError as e:
                raise SyscallError(f"drop `{_name(bit)}` from the bounding set: {oserror_text(e)}",
                                   errno=e.errno, stage="capabilities") from e
    _capset(sys, sets.effective, sets.permitted, sets.inheritable)
    try:
        sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:
        raise SyscallError(f"clear the ambient capability set: {oserror_text(e)}",
                           errno=e.errno, stage="capabilities") from e
    for bit in range(last + 1):
        if sets.ambient >> bit & 1:
            try:
                sys.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, bit)
            except OSError as e:
                raise SyscallError(f"raise ambient capability `{_name(bit)}`: {oserror_text(e)}",
                                   errno=e.errno, stage="capabilities") from e


def _capset(sys: Syscalls, effective: int, permitted: int, inheritable: int) -> None:
    try:
        sys.capset(effective, permitted, inheritable)
    except OSError as e:
        raise SyscallError(f"capset effective={effective:#x} permitted={permitted:#x} "
                           f"inheritable={inheritable:#x}: {oserror_text(e)}",
                           errno=e.errno, stage="capabilities") from e


def _name(bit: int) -> str:
    for name, b in KNOWN_CAPABILITIES.items():
        if b == bit:
            return name
    return f"capability {bit}"


def own_bounding_set(status_path: str = "/proc/self/status") -> int | None:
    """The runtime's own bounding set (CapBnd), or None if unreadable."""
    try:
        with open(status_path, "rb") as f:
            for line in f:
                if line.startswith(b"CapBnd:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def limit_to_grantable(sets: CapSets, grantable: int) -> list[str]:
    """Drop what the runtime itself cannot grant, with a warning per set.

    config.md: capabilities that cannot be granted MUST produce a warning and
    SHOULD NOT fail the container.  A runtime cannot hand out a capability
    outside its own bounding set (a nested or restricted caller).
    """
    warnings = []
    for name in SET_NAMES:
        mask = getattr(sets, name)
        lost = mask & ~grantable
        if lost:
            setattr(sets, name, mask & grantable)
            warnings.append(f"process.capabilities.{name}: {', '.join(names_of(lost))} cannot be "
                            "granted (not in the runtime's own bounding set), left out")
    return warnings
