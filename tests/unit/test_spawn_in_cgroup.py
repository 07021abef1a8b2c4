"""fork.spawn_in_cgroup: clone3 with CLONE_INTO_CGROUP, or a plain fork where
the kernel or the cgroup refuses (issue 11: no migration of the init on a
cgroup v2 host)."""

from __future__ import annotations

import errno
from typing import Any

from ocirun.process import fork
from ocirun.syscalls.recording import RecordingSyscalls


def _names(sys: RecordingSyscalls) -> list[object]:
    return [c[0] for c in sys.calls]


def test_born_in_the_cgroup() -> None:
    sys = RecordingSyscalls()
    sys.fork_result = 4242
    assert fork.spawn_in_cgroup(lambda: None, None, (), "init", sys, 7) == (4242, True)  # type: ignore[arg-type]
    assert sys.calls == [("clone_into_cgroup", 7)]


def test_falls_back_to_fork() -> None:
    for err in (errno.ENOSYS, errno.EPERM, errno.EACCES, errno.EBUSY):
        sys = RecordingSyscalls({"clone_into_cgroup": err})
        sys.fork_result = 4242
        assert fork.spawn_in_cgroup(lambda: None, None, (), "init", sys, 7) == (4242, False)  # type: ignore[arg-type]
        assert _names(sys) == ["clone_into_cgroup", "fork"]


def test_a_full_pids_cgroup_is_not_cloned_into(tmp_path: Any) -> None:
    """pids.limit 0 (or a joined cgroup at its limit): clone3 would fail after
    allocating the pid, killing a new pid namespace; create takes the plain
    fork and the cgroup.procs move instead (the VM's cg-pids-zero found it)."""
    from ocirun.cgroups import _pids_full
    assert not _pids_full(str(tmp_path))  # no pids controller
    for limit, current, full in ((b"max\n", b"3\n", False), (b"0\n", b"0\n", True),
                                 (b"1\n", b"0\n", False), (b"2\n", b"2\n", True)):
        (tmp_path / "pids.max").write_bytes(limit)
        (tmp_path / "pids.current").write_bytes(current)
        assert _pids_full(str(tmp_path)) is full, (limit, current)


def test_a_fork_failing_after_clone3_names_both() -> None:
    sys = RecordingSyscalls({"clone_into_cgroup": errno.EAGAIN, "fork": errno.ENOMEM})
    try:
        fork.spawn_in_cgroup(lambda: None, None, (), "init", sys, 7)  # type: ignore[arg-type]
    except OSError as e:
        assert e.errno == errno.ENOMEM
        assert "after clone3 into the container's cgroup failed" in str(e), e
        assert "Resource temporarily unavailable" in str(e), e
    else:
        raise AssertionError("no error")
