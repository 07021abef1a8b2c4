"""rlimits.py: validation, setrlimit in a forked child, oom_score_adj."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from ocirun.errors import ConfigError, SyscallError
from ocirun.rlimits import RLIMITS, apply_oom_score_adj, apply_rlimits, check_rlimits, plan_rlimits

U64 = (1 << 64) - 1


def test_table_matches_resource_module() -> None:
    assert len(RLIMITS) == 16
    for name, num in RLIMITS.items():
        if hasattr(resource, name):
            assert getattr(resource, name) == num, name
    assert sorted(RLIMITS.values()) == list(range(16))


def test_check_converts_unlimited() -> None:
    plan = check_rlimits([{"type": "RLIMIT_CORE", "soft": 0, "hard": U64},
                          {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}])
    assert plan == [(4, 0, resource.RLIM_INFINITY), (7, 1024, 4096)]


@pytest.mark.parametrize("entry, msg", [
    ({"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}, r"process.rlimits\[0\]: unknown rlimit type `RLIMIT_BOGUS`"),
    ({"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}, r"soft limit 10 of `RLIMIT_NOFILE` is above its hard limit 5"),
    ({"type": "RLIMIT_NOFILE", "soft": U64, "hard": 5}, r"is above its hard limit"),
    ({"type": "RLIMIT_NOFILE", "soft": -1, "hard": 5}, r"process.rlimits\[0\].soft: -1 is not an unsigned"),
    ({"type": "RLIMIT_NOFILE", "soft": 1, "hard": "x"}, r"process.rlimits\[0\].hard"),
    ({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1 << 63}, r"above 2\^63-1"),
])
def test_check_rejects(entry: dict[str, object], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        check_rlimits([entry])


def test_duplicate_type_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"process.rlimits\[1\]: `RLIMIT_CORE` is already set by process.rlimits\[0\]"):
        check_rlimits([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                       {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}])


def _in_child(fn) -> int:  # type: ignore[no-untyped-def]
    """Run fn() in a forked child, return its exit code (0 on success)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        except BaseException:  # noqa: BLE001 - a forked child reports any failure, then _exits
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_apply_in_child_lowers_limits() -> None:
    def child() -> int:
        apply_rlimits(plan_rlimits([{"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                                    {"type": "RLIMIT_NOFILE", "soft": 64, "hard": 128}]))
        ok = (resource.getrlimit(resource.RLIMIT_CORE) == (0, 0)
              and resource.getrlimit(resource.RLIMIT_NOFILE) == (64, 128))
        return 0 if ok else 3
    assert _in_child(child) == 0


def test_apply_failure_names_the_entry() -> None:
    def child() -> int:
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 64))
        if os.geteuid() == 0:
            # root may raise the hard limit; drop the capability by becoming nobody
            os.setresuid(65534, 65534, 65534)
        try:
            apply_rlimits(plan_rlimits([{"type": "RLIMIT_NOFILE", "soft": 32, "hard": 1000}]))
        except SyscallError as e:
            return 0 if str(e).startswith("setrlimit `RLIMIT_NOFILE` (process.rlimits[0]) soft=32 hard=1000:") else 4
        return 5
    assert _in_child(child) == 0


def test_oom_score_adj_unset_touches_nothing(tmp_path: Path) -> None:
    p = tmp_path / "oom"
    apply_oom_score_adj(None, path=str(p))
    assert not p.exists()


def test_oom_score_adj_written(tmp_path: Path) -> None:
    p = tmp_path / "oom"
    p.write_text("0")
    apply_oom_score_adj(-500, path=str(p))
    assert p.read_text() == "-500"


def test_oom_score_adj_error(tmp_path: Path) -> None:
    with pytest.raises(SyscallError, match=r"write `100` to `.*/nope/oom` \(process.oomScoreAdj\): No such file"):
        apply_oom_score_adj(100, path=str(tmp_path / "nope" / "oom"))


def test_oom_score_adj_real_in_child() -> None:
    def child() -> int:
        apply_oom_score_adj(123)
        with open("/proc/self/oom_score_adj") as f:
            return 0 if f.read().strip() == "123" else 6
    assert _in_child(child) == 0
