"""Test helper: run a seccomp classic-BPF program on a syscall, as the kernel would.

``evaluate(bpf, nr, args, arch)`` returns the 32-bit SECCOMP_RET_* value the program
gives for ``struct seccomp_data {int nr; u32 arch; u64 ip; u64 args[6]}``. It knows the
instructions libseccomp emits (loads from the data, ALU on the accumulator, the
conditional jumps, returns, the scratch memory) and fails loudly on anything else, so
a test asserts what a filter does rather than how libseccomp laid it out.
"""

from __future__ import annotations

import struct
import sys

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF


def seccomp_data(nr: int, args: tuple[int, ...] = (), arch: int = AUDIT_ARCH_X86_64,
                 ip: int = 0) -> bytes:
    full = list(args) + [0] * (6 - len(args))
    order = "<" if sys.byteorder == "little" else ">"
    return struct.pack(order + "iIQ6Q", nr, arch, ip, *(a & (2**64 - 1) for a in full))


def evaluate(bpf: bytes, nr: int, args: tuple[int, ...] = (), arch: int = AUDIT_ARCH_X86_64) -> int:
    data = seccomp_data(nr, args, arch)
    order = "<" if sys.byteorder == "little" else ">"
    insns = [struct.unpack(order + "HBBI", bpf[i:i + 8]) for i in range(0, len(bpf), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    for _ in range(100000):
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if code == 0x20:  # ld [k]  (BPF_LD|BPF_W|BPF_ABS)
            (a,) = struct.unpack_from(order + "I", data, k)
        elif code == 0x00:  # ld #k
            a = k
        elif code == 0x60:  # ld M[k]
            a = mem[k]
        elif code == 0x01:  # ldx #k
            x = k
        elif code == 0x61:  # ldx M[k]
            x = mem[k]
        elif code == 0x02:  # st M[k]
            mem[k] = a
        elif code == 0x03:  # stx M[k]
            mem[k] = x
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        elif cls == 0x04:  # ALU
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x50:
                a &= src
            elif op == 0x40:
                a |= src
            elif op == 0xA0:
                a ^= src
            elif op == 0x00:
                a = (a + src) & 0xFFFFFFFF
            elif op == 0x10:
                a = (a - src) & 0xFFFFFFFF
            elif op == 0x60:
                a = (a << src) & 0xFFFFFFFF
            elif op == 0x70:
                a >>= src
            else:
                raise AssertionError(f"unknown ALU op {code:#x}")
        elif code == 0x05:  # ja
            pc += k
        elif cls == 0x05:  # conditional jumps
            op, src = code & 0xF0, (x if code & 0x08 else k)
            if op == 0x10:
                cond = a == src
            elif op == 0x20:
                cond = a > src
            elif op == 0x30:
                cond = a >= src
            elif op == 0x40:
                cond = bool(a & src)
            else:
                raise AssertionError(f"unknown jump {code:#x}")
            pc += jt if cond else jf
        elif code == 0x06:  # ret #k
            return k
        elif code == 0x16:  # ret a
            return a
        else:
            raise AssertionError(f"instruction {code:#x} at {pc - 1} not known to this evaluator")
    raise AssertionError("program did not return")
