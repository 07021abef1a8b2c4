"""The cgroup v2 device filter: an eBPF program of type
BPF_PROG_TYPE_CGROUP_DEVICE assembled here from the device rules
(config-linux.md "Allowed Device List"; kernel include/uapi/linux/bpf.h,
Documentation/bpf/standardization/instruction-set.rst).

cgroup v1 applies the rules one by one to a kernel list (devices.allow /
devices.deny); v2 has no such list, only a program the kernel runs on each
device open/mknod.  To give the same answers on both, the rules are first
played through an emulation of the v1 list (:class:`DeviceList`): a
``type: a`` rule resets it to "allow all" or "deny all" with no exceptions,
any other rule adds or removes access bits of an exception in the opposite
sense.  The program then checks the remaining exceptions and returns the
default when none matches.

The context the kernel passes (``struct bpf_cgroup_dev_ctx``) is three u32:
``access_type`` (device type in the low 16 bits, access in the high 16),
``major``, ``minor``.  Registers: r2 type, r3 access, r4 major, r5 minor,
r1 scratch once the context is read, r0 the verdict (1 allow, 0 deny).
"""

from __future__ import annotations

import sys

from ocirun.errors import ConfigError

BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
LICENSE = "Apache"

DEV_BLOCK = 1  # BPF_DEVCG_DEV_BLOCK
DEV_CHAR = 2   # BPF_DEVCG_DEV_CHAR
ACC = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
ALL_ACCESS = 7

# opcodes: class | op | source (instruction-set.rst)
_LDX_MEM_W = 0x61     # BPF_LDX | BPF_MEM | BPF_W
_ALU32_AND_K = 0x54   # BPF_ALU | BPF_AND | BPF_K
_ALU32_RSH_K = 0x74   # BPF_ALU | BPF_RSH | BPF_K
_ALU32_MOV_K = 0xB4   # BPF_ALU | BPF_MOV | BPF_K
_ALU32_MOV_X = 0xBC   # BPF_ALU | BPF_MOV | BPF_X
_JMP_JNE_K = 0x55     # BPF_JMP | BPF_JNE | BPF_K
_JMP_JNE_X = 0x5D     # BPF_JMP | BPF_JNE | BPF_X
_JMP_JEQ_K = 0x15     # BPF_JMP | BPF_JEQ | BPF_K
_EXIT = 0x95          # BPF_JMP | BPF_EXIT

# A device major/minor is at most 12/20 bits; an immediate is a signed 32-bit.
_IMM_MAX = (1 << 31) - 1

Rule = tuple[str, int | None, int | None, int]  # (type b|c, major, minor, access bits)


_ORDER = sys.byteorder


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One 8-byte ``struct bpf_insn`` in host byte order: opcode, the dst/src
    register bitfields (dst in the low nibble on little-endian hosts), offset,
    immediate."""
    regs = (dst << 4) | src if _ORDER == "big" else (src << 4) | dst
    return (bytes((code, regs)) + off.to_bytes(2, _ORDER, signed=True)
            + imm.to_bytes(4, _ORDER, signed=True))


# --- the rules as the v1 device list would hold them ---

def parse_rule(r: dict[str, object], field: str) -> tuple[bool, str, int | None, int | None, int]:
    """(allow, type, major, minor, access bits) of one ``resources.devices`` entry."""
    allow = r.get("allow")
    if not isinstance(allow, bool):
        raise ConfigError(f"{field}.allow: required, true or false")
    dtype = r.get("type") or "a"
    if dtype not in ("a", "b", "c"):
        raise ConfigError(f"{field}.type: {dtype!r} is not one of a, b, c")
    nums: list[int | None] = []
    for key in ("major", "minor"):
        v = r.get(key)
        if v is None or v == -1:
            nums.append(None)  # wildcard
        elif isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _IMM_MAX:
            raise ConfigError(f"{field}.{key}: {v!r} is not a device number")
        else:
            nums.append(v)
    access = r.get("access") or "rwm"
    if not isinstance(access, str) or not access or set(access) - set(ACC):
        raise ConfigError(f"{field}.access: {access!r} is not a combination of r, w and m")
    bits = 0
    for ch in access:
        bits |= ACC[ch]
    return allow, str(dtype), nums[0], nums[1], bits


class DeviceList:
    """The v1 device list: a default verdict plus exceptions to it."""

    __slots__ = ("default_allow", "exceptions")

    def __init__(self) -> None:
        self.default_allow = False  # a new v1 devices cgroup under a deny-all parent
        self.exceptions: dict[tuple[str, int | None, int | None], int] = {}

    def apply(self, allow: bool, dtype: str, major: int | None, minor: int | None,
              access: int) -> None:
        if dtype == "a":
            # devices.allow / devices.deny of "a": reset, whatever follows it
            self.default_allow = allow
            self.exceptions.clear()
            return
        key = (dtype, major, minor)
        if allow != self.default_allow:
            self.exceptions[key] = self.exceptions.get(key, 0) | access
        elif key in self.exceptions:
            # the kernel removes bits from an exactly matching exception only
            left = self.exceptions[key] & ~access
            if left:
                self.exceptions[key] = left
            else:
                del self.exceptions[key]

    def rules(self) -> list[Rule]:
        return [(t, ma, mi, acc) for (t, ma, mi), acc in self.exceptions.items()]


def emulate(rules: list[tuple[bool, str, int | None, int | None, int]]) -> DeviceList:
    dl = DeviceList()
    for r in rules:
        dl.apply(*r)
    return dl


# --- the program ---

# One instruction of a block: (code, dst, src, imm, jumps to the next block?)
_Item = tuple[int, int, int, int, bool]


def _block(rule: Rule, allow_list: bool) -> list[_Item]:
    """The test of one exception: each failed comparison jumps to the next block."""
    dtype, major, minor, access = rule
    out: list[_Item] = [(_JMP_JNE_K, 2, 0, DEV_BLOCK if dtype == "b" else DEV_CHAR, True)]
    if allow_list:
        if access != ALL_ACCESS:
            # allowed only when every requested bit is granted: (req & acc) == req
            out += [(_ALU32_MOV_X, 1, 3, 0, False), (_ALU32_AND_K, 1, 0, access, False),
                    (_JMP_JNE_X, 1, 3, 0, True)]
    else:
        # denied when any requested bit is named (v1's partial match): skip if none is
        out += [(_ALU32_MOV_X, 1, 3, 0, False), (_ALU32_AND_K, 1, 0, access, False),
                (_JMP_JEQ_K, 1, 0, 0, True)]
    if major is not None:
        out.append((_JMP_JNE_K, 4, 0, major, True))
    if minor is not None:
        out.append((_JMP_JNE_K, 5, 0, minor, True))
    out += [(_ALU32_MOV_K, 0, 0, 1 if allow_list else 0, False), (_EXIT, 0, 0, 0, False)]
    return out


def assemble(dl: DeviceList) -> bytes:
    """The program for a device list, as bytes of ``struct bpf_insn``."""
    prog = [insn(_LDX_MEM_W, 2, 1, 0), insn(_ALU32_AND_K, 2, imm=0xFFFF),
            insn(_LDX_MEM_W, 3, 1, 0), insn(_ALU32_RSH_K, 3, imm=16),
            insn(_LDX_MEM_W, 4, 1, 4), insn(_LDX_MEM_W, 5, 1, 8)]
    for rule in dl.rules():
        block = _block(rule, not dl.default_allow)
        n = len(block)
        for i, (code, dst, src, imm, jumps) in enumerate(block):
            # a jump offset counts from the next instruction: n-i-1 lands on the next block
            prog.append(insn(code, dst, src, n - i - 1 if jumps else 0, imm))
    prog += [insn(_ALU32_MOV_K, 0, imm=1 if dl.default_allow else 0), insn(_EXIT)]
    return b"".join(prog)


def program(rules: list[tuple[bool, str, int | None, int | None, int]]) -> bytes:
    return assemble(emulate(rules))
