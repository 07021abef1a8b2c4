"""fork.spawn_in_cgroup: clone3 with CLONE_INTO_CGROUP, or a plain fork where
the kernel or the cgroup refuses (issue 11: no migration of the init on a
cgroup v2 host)."""

from __future__ import annotations

import errno

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
