"""ocirun.seccomp: profile checks, compilation (what the program does, not how it is laid
out), golden output, the BPF cache, load() through the seam and send_listener().

The compiled programs are run by tests/seccomp_bpf.py, a small classic-BPF evaluator, so
each action, operator and combination is asserted by its effect on a syscall. Loading for
real into a process is in tests/privileged/test_seccomp_kernel.py.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from seccomp_bpf import AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, evaluate

from ocirun import seccomp
from ocirun.errors import ConfigError, OciRunError, SyscallError
from ocirun.syscalls import api
from ocirun.syscalls.recording import RecordingSyscalls

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64",
                                reason="syscall numbers below are x86_64's")

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent / "golden"

# x86_64 numbers
GETPRIORITY, UMASK, PERSONALITY, READ, WRITE, MKDIR, GETPID, GETSID = 140, 95, 135, 0, 1, 83, 39, 124
I386_GETPRIORITY = 96

ALLOW, KILL_THREAD, KILL_PROCESS, TRAP = 0x7FFF0000, 0x0, 0x80000000, 0x00030000
LOG, NOTIFY = 0x7FFC0000, 0x7FC00000


def ERRNO(e: int) -> int:
    return 0x00050000 | e


def TRACE(d: int) -> int:
    return 0x7FF00000 | d


@pytest.fixture
def warned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The warnings ocirun.log received (its output depends on other tests' set-up)."""
    got: list[str] = []
    monkeypatch.setattr("ocirun.log.warning", got.append)
    return got


def probe_ok() -> RecordingSyscalls:
    """A seam whose seccomp(2) probe answers like a kernel that knows every flag."""
    return RecordingSyscalls(fail={"seccomp_set_filter": errno.EFAULT})


def compile_(cfg: dict[str, Any], **kw: Any) -> seccomp.SeccompProgram:
    kw.setdefault("cache_dir", None)
    kw.setdefault("sys", probe_ok())
    return seccomp.compile_program(cfg, **kw)


def profile(*rules: dict[str, Any], default: str = "SCMP_ACT_ALLOW", **extra: Any) -> dict[str, Any]:
    return {"defaultAction": default, "syscalls": list(rules), **extra}


def rule(names: list[str] | str, action: str, **kw: Any) -> dict[str, Any]:
    return {"names": [names] if isinstance(names, str) else names, "action": action, **kw}


def arg(index: int, op: str, value: int, value_two: int | None = None) -> dict[str, Any]:
    a: dict[str, Any] = {"index": index, "op": "SCMP_CMP_" + op, "value": value}
    if value_two is not None:
        a["valueTwo"] = value_two
    return a


# --------------------------------------------------------------------------- actions

@pytest.mark.parametrize("action,errno_ret,want", [
    ("SCMP_ACT_ERRNO", None, ERRNO(errno.EPERM)),
    ("SCMP_ACT_ERRNO", errno.EXDEV, ERRNO(errno.EXDEV)),
    ("SCMP_ACT_ERRNO", 0, ERRNO(0)),
    ("SCMP_ACT_TRACE", None, TRACE(errno.EPERM)),
    ("SCMP_ACT_TRACE", 4242, TRACE(4242)),
    ("SCMP_ACT_KILL", None, KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", None, KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
    ("SCMP_ACT_TRAP", None, TRAP),
    ("SCMP_ACT_LOG", None, LOG),
])
def test_every_rule_action(action: str, errno_ret: int | None, want: int) -> None:
    kw = {} if errno_ret is None else {"errnoRet": errno_ret}
    prog = compile_(profile(rule("getpriority", action, **kw)))
    assert evaluate(prog.bpf, GETPRIORITY) == want
    assert evaluate(prog.bpf, GETPID) == ALLOW  # the default elsewhere
    assert prog.flags == 0 and not prog.notify


def test_notify_rule_sets_the_listener_flag() -> None:
    cfg = profile(rule(["mkdir", "mkdirat"], "SCMP_ACT_NOTIFY"), listenerPath="/run/agent.sock",
                  listenerMetadata="meta")
    prog = compile_(cfg)
    assert evaluate(prog.bpf, MKDIR) == NOTIFY
    assert prog.notify and prog.flags == api.SECCOMP_FILTER_FLAG_NEW_LISTENER
    assert (prog.listener_path, prog.listener_metadata) == ("/run/agent.sock", "meta")


@pytest.mark.parametrize("default,errno_ret,want", [
    ("SCMP_ACT_ERRNO", None, ERRNO(errno.EPERM)),
    ("SCMP_ACT_ERRNO", errno.ENOSYS, ERRNO(errno.ENOSYS)),
    ("SCMP_ACT_TRACE", 7, TRACE(7)),
    ("SCMP_ACT_KILL_PROCESS", None, KILL_PROCESS),
    ("SCMP_ACT_LOG", None, LOG),
])
def test_default_action_and_errno(default: str, errno_ret: int | None, want: int) -> None:
    extra = {} if errno_ret is None else {"defaultErrnoRet": errno_ret}
    prog = compile_(profile(rule("getpid", "SCMP_ACT_ALLOW"), default=default, **extra))
    assert evaluate(prog.bpf, GETPID) == ALLOW
    assert evaluate(prog.bpf, GETPRIORITY) == want


def test_rule_equal_to_the_default_is_dropped() -> None:
    # runc: libseccomp refuses it; it changes nothing
    prog = compile_(profile(rule("getpid", "SCMP_ACT_ALLOW"), rule("umask", "SCMP_ACT_ERRNO")))
    assert evaluate(prog.bpf, GETPID) == ALLOW and evaluate(prog.bpf, UMASK) == ERRNO(1)


def test_several_names_share_a_rule() -> None:
    prog = compile_(profile(rule(["getpriority", "getsid"], "SCMP_ACT_ERRNO", errnoRet=33)))
    assert evaluate(prog.bpf, GETPRIORITY) == evaluate(prog.bpf, GETSID) == ERRNO(33)


# --------------------------------------------------------------------------- operators

VALUES = [0, 1, 5, 7, 8, 9, 0xFF, 0x1_0000_0005, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]
PY_OPS = {
    "NE": lambda v, k, k2: v != k,
    "LT": lambda v, k, k2: v < k,
    "LE": lambda v, k, k2: v <= k,
    "EQ": lambda v, k, k2: v == k,
    "GE": lambda v, k, k2: v >= k,
    "GT": lambda v, k, k2: v > k,
    "MASKED_EQ": lambda v, k, k2: v & k == k2,  # value is the mask, valueTwo the result
}


@pytest.mark.parametrize("op", sorted(PY_OPS))
@pytest.mark.parametrize("k,k2", [(8, 8), (0x1_0000_0005, 5), (0xFF, 0x07)])
def test_every_operator_on_64_bit_values(op: str, k: int, k2: int) -> None:
    prog = compile_(profile(rule("personality", "SCMP_ACT_ERRNO", errnoRet=33,
                                 args=[arg(0, op, k, k2)])))
    for v in VALUES:
        want = ERRNO(33) if PY_OPS[op](v, k, k2) else ALLOW
        assert evaluate(prog.bpf, PERSONALITY, (v,)) == want, (op, hex(v), hex(k))


def test_conditions_on_different_arguments_are_anded() -> None:
    # podman's profile: socket(AF_NETLINK, *, NETLINK_AUDIT) -> EINVAL
    prog = compile_(profile(rule("read", "SCMP_ACT_ERRNO", errnoRet=22,
                                 args=[arg(0, "EQ", 16), arg(2, "EQ", 9)])))
    assert evaluate(prog.bpf, READ, (16, 0, 9)) == ERRNO(22)
    assert evaluate(prog.bpf, READ, (16, 0, 8)) == ALLOW
    assert evaluate(prog.bpf, READ, (15, 0, 9)) == ALLOW


def test_conditions_on_one_argument_become_separate_rules(warned: list[str]) -> None:
    # libseccomp cannot AND two tests of one argument; runc adds one rule each (OR)
    prog = compile_(profile(rule("umask", "SCMP_ACT_ERRNO", args=[arg(0, "GT", 0o700),
                                                                  arg(0, "LT", 0o10)])))
    assert evaluate(prog.bpf, UMASK, (0o777,)) == ERRNO(1)
    assert evaluate(prog.bpf, UMASK, (0o7,)) == ERRNO(1)
    assert evaluate(prog.bpf, UMASK, (0o22,)) == ALLOW
    assert any(w.startswith("$.linux.seccomp.syscalls[0].args: several conditions on one argument")
               for w in warned)


def test_rules_with_and_without_conditions_on_one_syscall() -> None:
    prog = compile_(profile(rule("personality", "SCMP_ACT_ALLOW", args=[arg(0, "EQ", 0)]),
                            rule("personality", "SCMP_ACT_ALLOW", args=[arg(0, "EQ", 8)]),
                            default="SCMP_ACT_ERRNO"))
    assert evaluate(prog.bpf, PERSONALITY, (0,)) == ALLOW
    assert evaluate(prog.bpf, PERSONALITY, (8,)) == ALLOW
    assert evaluate(prog.bpf, PERSONALITY, (9,)) == ERRNO(1)


# --------------------------------------------------------------------------- architectures

def test_architectures_each_get_their_own_numbers() -> None:
    cfg = profile(rule("getpriority", "SCMP_ACT_ERRNO", errnoRet=3),
                  architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    prog = compile_(cfg)
    assert evaluate(prog.bpf, GETPRIORITY, arch=AUDIT_ARCH_X86_64) == ERRNO(3)
    assert evaluate(prog.bpf, I386_GETPRIORITY, arch=AUDIT_ARCH_I386) == ERRNO(3)
    assert evaluate(prog.bpf, GETPRIORITY, arch=AUDIT_ARCH_I386) == ALLOW  # i386's 140 is another call


def test_an_architecture_not_listed_is_killed() -> None:
    prog = compile_(profile(rule("getpriority", "SCMP_ACT_ERRNO")))
    assert evaluate(prog.bpf, GETPID, arch=AUDIT_ARCH_I386) == KILL_THREAD


# --------------------------------------------------------------------------- unknown names

def test_unknown_syscall_names_are_skipped_with_a_warning(warned: list[str]) -> None:
    prog = compile_(profile(rule(["no_such_call", "getpriority", "not_either"], "SCMP_ACT_ERRNO")))
    assert evaluate(prog.bpf, GETPRIORITY) == ERRNO(1)
    assert warned == ["$.linux.seccomp: syscalls unknown to libseccomp skipped: no_such_call, not_either"]


def test_names_of_other_architectures_are_known() -> None:
    # socketcall exists on i386 only: a pseudo-syscall on x86_64, not an unknown name
    cfg = profile(rule("socketcall", "SCMP_ACT_ERRNO"), architectures=["SCMP_ARCH_X86"])
    prog = compile_(cfg)
    assert evaluate(prog.bpf, 102, arch=AUDIT_ARCH_I386) == ERRNO(1)


# --------------------------------------------------------------------------- errors

@pytest.mark.parametrize("cfg,path,words", [
    (profile(rule("getpid", "SCMP_ACT_FROB")), "$.linux.seccomp.syscalls[0].action",
     "unknown action 'SCMP_ACT_FROB'"),
    (profile(default="SCMP_ACT_NOPE"), "$.linux.seccomp.defaultAction", "unknown action"),
    (profile(rule("umask", "SCMP_ACT_ERRNO", args=[arg(0, "XX", 1)])),
     "$.linux.seccomp.syscalls[0].args[0].op", "unknown operator 'SCMP_CMP_XX'"),
    (profile(rule("umask", "SCMP_ACT_ERRNO", args=[{"index": 6, "op": "SCMP_CMP_EQ", "value": 1}])),
     "$.linux.seccomp.syscalls[0].args[0].index", "not a syscall argument"),
    (profile(rule("umask", "SCMP_ACT_ERRNO", args=[{"index": 0, "op": "SCMP_CMP_EQ", "value": -1}])),
     "$.linux.seccomp.syscalls[0].args[0].value", "unsigned 64-bit"),
    (profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]),
     "$.linux.seccomp.architectures[1]", "unknown architecture 'SCMP_ARCH_Z80'"),
    (profile(rule("getpid", "SCMP_ACT_ALLOW", errnoRet=5), default="SCMP_ACT_ERRNO"),
     "$.linux.seccomp.syscalls[0].errnoRet", "SCMP_ACT_ALLOW returns no errno"),
    (profile(defaultErrnoRet=5, default="SCMP_ACT_KILL"),
     "$.linux.seccomp.defaultErrnoRet", "SCMP_ACT_KILL returns no errno"),
    (profile(rule("getpid", "SCMP_ACT_ERRNO", errnoRet=5000)),
     "$.linux.seccomp.syscalls[0].errnoRet", "at most 4095"),
    (profile(rule("getpid", "SCMP_ACT_ERRNO"), listenerMetadata="x"),
     "$.linux.seccomp.listenerMetadata", "without listenerPath"),
    (profile(rule("mkdir", "SCMP_ACT_NOTIFY")), "$.linux.seccomp.listenerPath",
     "required by the SCMP_ACT_NOTIFY rule $.linux.seccomp.syscalls[0]"),
    (profile(default="SCMP_ACT_NOTIFY", listenerPath="/a"), "$.linux.seccomp.defaultAction",
     "cannot be the default action"),
    (profile(rule(["mkdir", "sendmsg"], "SCMP_ACT_NOTIFY"), listenerPath="/a"),
     "$.linux.seccomp.syscalls[0].names[1]", "cannot be used for `sendmsg`"),
    (profile(rule("mkdir", "SCMP_ACT_NOTIFY"), listenerPath="rel.sock"),
     "$.linux.seccomp.listenerPath", "absolute path"),
    (profile(rule([], "SCMP_ACT_ERRNO")), "$.linux.seccomp.syscalls[0].names", "non-empty"),
    (profile(rule(["getpid", ""], "SCMP_ACT_ERRNO")), "$.linux.seccomp.syscalls[0].names[1]",
     "invalid syscall name"),
    (profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_FAST"]),
     "$.linux.seccomp.flags[1]", "unknown seccomp flag 'SECCOMP_FILTER_FLAG_FAST'"),
])
def test_bad_profiles_name_the_json_path(cfg: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        compile_(cfg)
    assert ei.value.msg.startswith(f"config.json: {path}: "), ei.value.msg
    assert words in ei.value.msg


def test_an_architecture_this_libseccomp_lacks_is_a_config_error() -> None:
    import pyseccomp
    if hasattr(pyseccomp.Arch, "LOONGARCH64"):
        pytest.skip("this libseccomp knows loongarch64")
    with pytest.raises(ConfigError, match=r"\$\.linux\.seccomp\.architectures\[1\]: architecture "
                                          "not supported by this host's libseccomp"):
        compile_(profile(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_LOONGARCH64"]))


# --------------------------------------------------------------------------- flags

def test_flags_are_probed_and_passed() -> None:
    sys_ = probe_ok()
    prog = compile_(profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                   "SECCOMP_FILTER_FLAG_TSYNC"]), sys=sys_)
    assert prog.flags == api.SECCOMP_FILTER_FLAG_LOG | api.SECCOMP_FILTER_FLAG_SPEC_ALLOW
    assert sys_.calls == [("seccomp_set_filter", 0, None),
                          ("seccomp_set_filter", api.SECCOMP_FILTER_FLAG_LOG, None),
                          ("seccomp_set_filter", api.SECCOMP_FILTER_FLAG_SPEC_ALLOW, None)]


def test_wait_killable_recv_goes_with_the_listener() -> None:
    sys_ = probe_ok()
    cfg = profile(rule("mkdir", "SCMP_ACT_NOTIFY"), listenerPath="/a",
                  flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"])
    prog = compile_(cfg, sys=sys_)
    both = api.SECCOMP_FILTER_FLAG_NEW_LISTENER | api.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
    assert prog.flags == both
    assert sys_.calls[-1] == ("seccomp_set_filter", both, None)


def test_wait_killable_recv_without_notify_is_dropped(warned: list[str]) -> None:
    prog = compile_(profile(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    assert prog.flags == 0
    assert len(warned) == 1 and warned[0].startswith(
        "$.linux.seccomp.flags[0]: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored")


def test_a_flag_the_kernel_lacks_is_named() -> None:
    def fail(name: str, args: tuple[object, ...]) -> int:
        return errno.EINVAL if args[0] == api.SECCOMP_FILTER_FLAG_SPEC_ALLOW else errno.EFAULT
    with pytest.raises(ConfigError) as ei:
        compile_(profile(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
                 sys=RecordingSyscalls(fail=fail))
    assert ei.value.msg.startswith("config.json: $.linux.seccomp.flags[1]: "
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW: not supported by this kernel")


def test_flags_probe_on_the_real_kernel() -> None:
    prog = seccomp.compile_program(profile(flags=["SECCOMP_FILTER_FLAG_LOG",
                                                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]),
                                   cache_dir=None)
    assert prog.flags == 6


# --------------------------------------------------------------------------- golden output

REFERENCE = profile(
    rule(["getpriority", "getsid"], "SCMP_ACT_ERRNO", errnoRet=18),
    rule("personality", "SCMP_ACT_ALLOW", args=[arg(0, "EQ", 8)]),
    rule("umask", "SCMP_ACT_ERRNO", args=[arg(0, "MASKED_EQ", 0o7, 0o7)]),
    rule("read", "SCMP_ACT_ERRNO", errnoRet=22, args=[arg(0, "EQ", 16), arg(2, "NE", 9)]),
    rule("getppid", "SCMP_ACT_LOG"),
    rule("getpgid", "SCMP_ACT_TRAP"),
    rule("setsid", "SCMP_ACT_KILL_PROCESS"),
    rule("mkdir", "SCMP_ACT_NOTIFY"),
    default="SCMP_ACT_ALLOW", architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    listenerPath="/run/agent.sock")


def _libseccomp_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libseccomp2"],
                         capture_output=True, text=True, check=False).stdout
    return out.split("-")[0]


golden = pytest.mark.skipif(_libseccomp_version() != "2.5.4",
                            reason="golden output is libseccomp 2.5.4's (Debian 12)")


@golden
def test_golden_pfc() -> None:
    assert seccomp.export_pfc(REFERENCE) == (GOLDEN / "seccomp_reference.pfc").read_text()


@golden
def test_golden_bpf() -> None:
    prog = compile_(REFERENCE)
    assert prog.bpf.hex() == (GOLDEN / "seccomp_reference.bpf.hex").read_text().strip()


# --------------------------------------------------------------------------- the cache

def test_cached_and_fresh_programs_are_byte_identical(tmp_path: Path) -> None:
    fresh = compile_(REFERENCE).bpf
    first = compile_(REFERENCE, cache_dir=str(tmp_path))
    [entry] = os.listdir(tmp_path)
    assert entry.startswith("seccomp@")
    second = compile_(REFERENCE, cache_dir=str(tmp_path))
    assert fresh == first.bpf == second.bpf
    assert (tmp_path / entry).stat().st_mode & 0o777 == 0o600


def test_the_cache_key_ignores_the_listener_and_flags_only() -> None:
    base = seccomp.cache_key(REFERENCE)
    assert seccomp.cache_key({**REFERENCE, "listenerPath": "/b", "listenerMetadata": "m",
                              "flags": ["SECCOMP_FILTER_FLAG_LOG"]}) == base
    assert seccomp.cache_key({**REFERENCE, "defaultErrnoRet": 1}) != base
    assert seccomp.cache_key({**REFERENCE, "architectures": ["SCMP_ARCH_X86_64"]}) != base


SECOND_RUN = """
import sys
sys.path.insert(0, {repo!r})
from ocirun import seccomp
from ocirun.syscalls.recording import RecordingSyscalls
import errno, json
cfg = json.loads({cfg!r})
prog = seccomp.compile_program(cfg, cache_dir={cache!r},
                               sys=RecordingSyscalls(fail={{"seccomp_set_filter": errno.EFAULT}}))
print(prog.bpf.hex())
print(sorted(m for m in ("pyseccomp", "ctypes", "ctypes.util", "hashlib") if m in sys.modules))
"""


def _fresh_process(cfg: dict[str, Any], cache: Path) -> tuple[str, str, str]:
    code = SECOND_RUN.format(repo=str(REPO), cfg=json.dumps(cfg), cache=str(cache))
    r = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                       check=True, env={**os.environ, "PYTHONPATH": ""})
    hexbpf, mods = r.stdout.splitlines()
    return hexbpf, mods, r.stderr


def test_a_second_compile_does_not_import_pyseccomp(tmp_path: Path) -> None:
    cfg = {**REFERENCE, "syscalls": [*REFERENCE["syscalls"], rule("no_such_call", "SCMP_ACT_ERRNO")]}
    fresh = compile_(cfg).bpf.hex()
    cold, _, _ = _fresh_process(cfg, tmp_path)  # fills the cache (imports pyseccomp)
    warm, mods, err = _fresh_process(cfg, tmp_path)
    assert cold == warm == fresh
    assert mods == "[]"
    # the warning is replayed from the cache entry
    assert "syscalls unknown to libseccomp skipped: no_such_call" in err


def _entry(cache: Path) -> Path:
    [name] = [n for n in os.listdir(cache) if n.startswith("seccomp@")]
    return cache / name


def test_an_entry_from_another_libseccomp_is_recompiled(tmp_path: Path) -> None:
    compile_(REFERENCE, cache_dir=str(tmp_path))
    entry = _entry(tmp_path)
    magic, header, bpf = entry.read_bytes().split(b"\n", 2)
    meta = json.loads(header)
    assert meta["lib"] and "libseccomp.so" in meta["lib"]
    meta["lib_id"][0] += 1  # as if the library had been upgraded
    entry.write_bytes(magic + b"\n" + json.dumps(meta).encode() + b"\n" + b"\0" * 8)
    assert seccomp.cache_read(str(entry)) is None
    assert compile_(REFERENCE, cache_dir=str(tmp_path)).bpf == bpf
    assert entry.read_bytes().endswith(bpf)


def test_an_entry_under_another_name_is_ignored(tmp_path: Path) -> None:
    compile_(REFERENCE, cache_dir=str(tmp_path))
    entry = _entry(tmp_path)
    other = {**REFERENCE, "defaultErrnoRet": 1, "defaultAction": "SCMP_ACT_ERRNO"}
    key = seccomp.cache_key(other)
    entry.rename(tmp_path / f"seccomp@{key}")  # as if someone had renamed it
    assert seccomp.cache_read(str(tmp_path / f"seccomp@{key}"), key) is None
    assert compile_(other, cache_dir=str(tmp_path)).bpf == compile_(other).bpf


@pytest.mark.parametrize("damage", ["truncated", "magic", "writable", "not-json"])
def test_a_damaged_entry_is_ignored(tmp_path: Path, damage: str) -> None:
    good = compile_(REFERENCE, cache_dir=str(tmp_path)).bpf
    entry = _entry(tmp_path)
    data = entry.read_bytes()
    if damage == "truncated":
        entry.write_bytes(data[:-3])
    elif damage == "magic":
        entry.write_bytes(b"x" + data)
    elif damage == "writable":
        entry.chmod(0o666)
    else:
        first, _, rest = data.partition(b"\n")
        entry.write_bytes(first + b"\n{" + rest)
    assert seccomp.cache_read(str(entry)) is None
    assert compile_(REFERENCE, cache_dir=str(tmp_path)).bpf == good


def test_the_cache_keeps_a_bounded_number_of_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seccomp, "CACHE_MAX", 3)
    for e in range(1, 6):
        compile_(profile(rule("getpriority", "SCMP_ACT_ERRNO", errnoRet=e)), cache_dir=str(tmp_path))
    assert len([n for n in os.listdir(tmp_path) if n.startswith("seccomp@")]) == 3


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    prog = compile_(REFERENCE, cache_dir=str(blocker / "sub"))
    assert prog.bpf == compile_(REFERENCE).bpf


# --------------------------------------------------------------------------- load()

def test_load_calls_seccomp_through_the_seam() -> None:
    prog = compile_(profile(rule("getpriority", "SCMP_ACT_ERRNO"), flags=["SECCOMP_FILTER_FLAG_LOG"]))
    sys_ = RecordingSyscalls()
    assert seccomp.load(prog, sys_) is None
    assert sys_.calls == [("seccomp_set_filter", api.SECCOMP_FILTER_FLAG_LOG, prog.bpf)]


def test_load_returns_the_listener_for_notify() -> None:
    prog = compile_(profile(rule("mkdir", "SCMP_ACT_NOTIFY"), listenerPath="/a"))
    sys_ = RecordingSyscalls()
    sys_.seccomp_result = 7
    assert seccomp.load(prog, sys_) == 7


def test_load_failure_says_what_the_kernel_wants() -> None:
    prog = compile_(profile(rule("getpriority", "SCMP_ACT_ERRNO")))
    with pytest.raises(SyscallError) as ei:
        seccomp.load(prog, RecordingSyscalls(fail={"seccomp_set_filter": errno.EACCES}))
    assert ei.value.msg == ("linux.seccomp: load the filter: Permission denied "
                            "(the kernel wants no_new_privs or CAP_SYS_ADMIN)")
    assert ei.value.stage == "seccomp"


# --------------------------------------------------------------------------- send_listener()

def _serve_once(path: str, out: dict[str, Any]) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run() -> None:
        conn, _ = srv.accept()
        msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
        data = msg
        while True:
            more = conn.recv(65536)
            if not more:
                break
            data += more
        out["doc"] = json.loads(data)
        out["fds"] = fds
        conn.close()
        srv.close()
    t = threading.Thread(target=run)
    t.start()
    return t


def test_send_listener_sends_the_state_and_the_fd(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    got: dict[str, Any] = {}
    t = _serve_once(path, got)
    r, w = os.pipe()
    state = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 4422,
             "bundle": "/b", "annotations": {"k": "v"}}
    try:
        seccomp.send_listener(path, r, state, "MKNOD=/dev/null")
        t.join(10)
        doc = got["doc"]
        assert doc == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": 4422,
                       "metadata": "MKNOD=/dev/null", "state": state}
        [fd] = got["fds"]
        assert os.fstat(fd).st_ino == os.fstat(r).st_ino  # the same open file
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_send_listener_without_metadata_omits_it(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    got: dict[str, Any] = {}
    t = _serve_once(path, got)
    seccomp.send_listener(path, 0, {"pid": 1, "id": "c"}, "")
    t.join(10)
    assert "metadata" not in got["doc"]
    for fd in got["fds"]:
        os.close(fd)


def test_send_listener_names_an_exec_process(tmp_path: Path) -> None:
    path = str(tmp_path / "agent.sock")
    got: dict[str, Any] = {}
    t = _serve_once(path, got)
    seccomp.send_listener(path, 0, {"pid": 1, "id": "c", "status": "running"}, "", pid=77)
    t.join(10)
    assert got["doc"]["pid"] == 77 and got["doc"]["state"]["pid"] == 1
    for fd in got["fds"]:
        os.close(fd)


def test_send_listener_failure_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody.sock")
    with pytest.raises(OciRunError) as ei:
        seccomp.send_listener(path, 0, {"pid": 1}, "")
    assert ei.value.msg == (f"linux.seccomp.listenerPath `{path}`: send the seccomp listener: "
                            "No such file or directory")
