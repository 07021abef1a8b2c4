"""procfs.py against the real /proc (own processes only) and a fake tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.procfs import ns_path, pid_start_time, pid_state, same_ns, status_fields


def _fake_stat(tmp_path: Path, pid: int, comm: str, state: str, start: int) -> str:
    d = tmp_path / str(pid)
    d.mkdir()
    # fields 3..21 are filler, field 22 is the start time
    rest = [state] + [str(n) for n in range(4, 22)] + [str(start), "999", "0"]
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    return str(tmp_path)


def test_start_time_of_self_is_stable() -> None:
    t1 = pid_start_time(os.getpid())
    assert isinstance(t1, int) and t1 > 0
    assert pid_start_time(os.getpid()) == t1


def test_start_time_matches_stat_field_22() -> None:
    with open(f"/proc/{os.getpid()}/stat") as f:
        data = f.read()
    expected = int(data[data.rfind(")") + 2:].split()[19])
    assert pid_start_time(os.getpid()) == expected


def test_comm_with_parens_and_spaces(tmp_path: Path) -> None:
    proc = _fake_stat(tmp_path, 42, "a) b (c) S 1", "S", 12345)
    assert pid_start_time(42, proc=proc) == 12345
    assert pid_state(42, proc=proc) == "S"


def test_zombie_counts_as_gone(tmp_path: Path) -> None:
    proc = _fake_stat(tmp_path, 7, "sh", "Z", 555)
    assert pid_state(7, proc=proc) == "Z"
    assert pid_start_time(7, proc=proc) is None


def test_real_zombie() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        # wait until the child has exited, leaving it unreaped (WNOWAIT): a
        # spin of sched_yield ran out on a loaded machine
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        assert pid_state(pid) == "Z"
        assert pid_start_time(pid) is None
    finally:
        os.waitpid(pid, 0)
    assert pid_state(pid) is None


def test_missing_pid(tmp_path: Path) -> None:
    assert pid_start_time(99999999) is None
    assert pid_state(99999999) is None
    assert status_fields(99999999) == {}
    assert pid_start_time(3, proc=str(tmp_path)) is None


def test_truncated_stat(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "stat").write_text("5 (x) S 1 2\n")
    assert pid_start_time(5, proc=str(tmp_path)) is None
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "stat").write_text("garbage")
    assert pid_state(6, proc=str(tmp_path)) is None


def test_status_fields_self() -> None:
    st = status_fields("self")
    assert st["Pid"] == str(os.getpid())
    assert st["Uid"].split()[0] == str(os.getuid())
    assert "CapEff" in st
    assert status_fields(os.getpid())["Pid"] == str(os.getpid())


def test_status_fields_fake(tmp_path: Path) -> None:
    (tmp_path / "9").mkdir()
    (tmp_path / "9" / "status").write_text("Name:\tsh\nUid:\t0\t0\t0\t0\nGroups:\t\nweird line\n")
    assert status_fields(9, proc=str(tmp_path)) == {"Name": "sh", "Uid": "0\t0\t0\t0", "Groups": ""}


def test_ns_path_names() -> None:
    assert ns_path(1, "network") == "/proc/1/ns/net"
    assert ns_path(1, "mount") == "/proc/1/ns/mnt"
    assert ns_path("self", "net") == "/proc/self/ns/net"
    assert ns_path(5, "cgroup", proc="/x") == "/x/5/ns/cgroup"
    with pytest.raises(ValueError, match="unknown namespace type `bogus`"):
        ns_path(1, "bogus")


def test_same_ns() -> None:
    me = os.getpid()
    assert same_ns(ns_path(me, "network"), "/proc/self/ns/net")
    assert not same_ns("/proc/self/ns/net", "/proc/self/ns/uts")
    with pytest.raises(FileNotFoundError):
        same_ns("/proc/self/ns/net", "/nonexistent")
