"""The cgroup v2 device filter, run in a small eBPF interpreter (no root).

The interpreter knows only the instructions ``bpf.assemble`` emits; it runs
the program on a ``bpf_cgroup_dev_ctx`` and returns r0.  The verdicts are
compared with what the v1 device list (the kernel's semantics) answers.
The same programs are loaded into the kernel in tests/privileged.
"""

from __future__ import annotations

import pytest

from ocirun.cgroups import bpf, devices
from ocirun.errors import CgroupError
from ocirun.syscalls.recording import RecordingSyscalls

MASK32 = (1 << 32) - 1


def verdict(prog: bytes, dtype: str, major: int, minor: int, access: str) -> int:
    acc = 0
    for ch in access:
        acc |= bpf.ACC[ch]
    ctx = [(bpf.DEV_BLOCK if dtype == "b" else bpf.DEV_CHAR) | (acc << 16), major, minor]
    regs: list[int | None] = [None] * 11  # None: never written (the verifier rejects reads)
    pc = 0
    n = len(prog) // 8
    assert len(prog) % 8 == 0
    for _ in range(10000):
        assert 0 <= pc < n, "jumped out of the program"
        b = prog[pc * 8:pc * 8 + 8]
        code, dst, src = b[0], b[1] & 0xF, b[1] >> 4
        off = int.from_bytes(b[2:4], "little", signed=True)
        imm = int.from_bytes(b[4:8], "little", signed=True)
        pc += 1
        if code == 0x61:  # r_dst = *(u32 *)(r1 + off), r1 = ctx
            assert src == 1 and off % 4 == 0 and pc <= 6, "context read after r1 was reused"
            regs[dst] = ctx[off // 4]
            continue
        if code == 0xB4:
            regs[dst] = imm & MASK32
            continue
        if code == 0xBC:
            assert regs[src] is not None
            regs[dst] = regs[src]
            continue
        if code == 0x95:
            assert regs[0] is not None
            return regs[0]
        a = regs[dst]
        assert a is not None, f"r{dst} read before it was written"
        if code == 0x54:
            regs[dst] = a & imm & MASK32
        elif code == 0x74:
            regs[dst] = (a & MASK32) >> imm
        elif code == 0x55:
            pc += off if a != imm else 0
        elif code == 0x15:
            pc += off if a == imm else 0
        elif code == 0x5D:
            pc += off if a != regs[src] else 0
        else:
            raise AssertionError(f"unknown opcode {code:#x}")
    raise AssertionError("no exit")


def v1_verdict(rules: list[dict[str, object]], dtype: str, major: int, minor: int,
               access: str) -> int:
    """What the kernel's v1 list says (whitelist: one exception covers every bit;
    blacklist: any exception overlapping a bit denies)."""
    dl = bpf.emulate(devices.parsed_rules(rules, "x"))
    acc = 0
    for ch in access:
        acc |= bpf.ACC[ch]
    for t, ma, mi, bits in dl.rules():
        if t != dtype or (ma is not None and ma != major) or (mi is not None and mi != minor):
            continue
        if dl.default_allow and bits & acc:
            return 0
        if not dl.default_allow and acc & ~bits == 0:
            return 1
    return 1 if dl.default_allow else 0


RUNC_TEMPLATE = [{"allow": False, "access": "rwm"}]
CASES = [
    (RUNC_TEMPLATE, ("c", 1, 3, "rw"), 1),     # /dev/null: a default
    (RUNC_TEMPLATE, ("c", 1, 3, "m"), 1),
    (RUNC_TEMPLATE, ("c", 10, 229, "rw"), 0),  # /dev/fuse: not given
    (RUNC_TEMPLATE, ("c", 10, 229, "m"), 1),   # mknod of anything is a default
    (RUNC_TEMPLATE, ("b", 8, 0, "r"), 0),
    (RUNC_TEMPLATE, ("c", 136, 4, "rw"), 1),   # ptys
    (RUNC_TEMPLATE + [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"}],
     ("c", 10, 229, "r"), 1),
    (RUNC_TEMPLATE + [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "r"}],
     ("c", 10, 229, "rw"), 0),                 # read granted, write not
    (RUNC_TEMPLATE + [{"allow": True, "type": "b", "major": 8, "access": "rw"}],
     ("b", 8, 17, "rw"), 1),                   # minor wildcard
    ([{"allow": True, "access": "rwm"}], ("b", 8, 0, "rw"), 1),    # allow all
    ([{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 1, "minor": 3,
                                          "access": "w"}], ("c", 1, 3, "rw"), 1),
    # a deny of /dev/null's w in allow-all mode is undone by the defaults (as in v1)
    ([{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 4, "minor": 1,
                                          "access": "w"}], ("c", 4, 1, "rw"), 0),
    ([{"allow": True, "access": "rwm"}, {"allow": False, "type": "c", "major": 4, "minor": 1,
                                          "access": "w"}], ("c", 4, 1, "r"), 1),
    ([{"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rw"},
      {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"}], ("c", 4, 1, "r"), 1),
    ([{"allow": True, "type": "c", "major": 4, "minor": 1, "access": "rw"},
      {"allow": False, "type": "c", "major": 4, "minor": 1, "access": "w"}], ("c", 4, 1, "w"), 0),
]


@pytest.mark.parametrize("rules,req,want", CASES)
def test_verdicts(rules: list[dict[str, object]], req: tuple[str, int, int, str], want: int) -> None:
    prog = devices.v2_program(rules)
    assert verdict(prog, *req) == want
    assert v1_verdict(rules, *req) == want


def test_exhaustive_against_the_v1_list() -> None:
    rules = [{"allow": False, "access": "rwm"},
             {"allow": True, "type": "c", "major": 4, "access": "rw"},
             {"allow": True, "type": "b", "minor": 2, "access": "r"},
             {"allow": False, "type": "c", "major": 4, "access": "w"},
             {"allow": True, "type": "c", "major": 4, "minor": 7, "access": "m"}]
    prog = devices.v2_program(rules)
    for dtype in "bc":
        for major in (1, 4, 8, 136):
            for minor in (0, 2, 3, 7):
                for access in ("r", "w", "m", "rw", "rwm", "wm"):
                    req = (dtype, major, minor, access)
                    assert verdict(prog, *req) == v1_verdict(rules, *req), req


def test_program_shape() -> None:
    prog = bpf.assemble(bpf.DeviceList())
    # prologue (6) + deny-all epilogue (2)
    assert len(prog) == 8 * 8
    assert prog[-8:] == bpf.insn(0x95)
    assert bpf.insn(0x55, 4, 0, 3, 10) == bytes([0x55, 0x04, 3, 0, 10, 0, 0, 0])


def test_apply_v2_attaches_then_detaches_old(tmp_path: object) -> None:
    sys = RecordingSyscalls()
    sys.bpf_progs = (2, [41, 42])  # BPF_F_ALLOW_MULTI, two old filters
    devices.apply_v2(str(tmp_path), [], sys)
    assert sys.names() == ["bpf_prog_load", "bpf_prog_query", "bpf_prog_attach",
                           "bpf_prog_get_fd_by_id", "bpf_prog_detach",
                           "bpf_prog_get_fd_by_id", "bpf_prog_detach"]
    load = sys.calls[0]
    assert load[1] == bpf.BPF_PROG_TYPE_CGROUP_DEVICE and load[3] == bpf.LICENSE
    assert sys.calls[2][3:] == (bpf.BPF_CGROUP_DEVICE, 2)


def test_apply_v2_replaces_a_single_non_multi_filter(tmp_path: object) -> None:
    sys = RecordingSyscalls()
    sys.bpf_progs = (0, [7])
    devices.apply_v2(str(tmp_path), [], sys)
    assert sys.names() == ["bpf_prog_load", "bpf_prog_query", "bpf_prog_attach"]
    assert sys.calls[2][4] == 0


def test_apply_v2_load_failure_carries_the_verifier_log(tmp_path: object) -> None:
    sys = RecordingSyscalls(fail={"bpf_prog_load": 22})
    with pytest.raises(CgroupError, match=r"devices: the kernel refused the eBPF device filter"):
        devices.apply_v2(str(tmp_path), [], sys)
    assert [c[4] for c in sys.calls] == [0, 1 << 16]  # retried with a log buffer
