"""intermediate.enter_v1_cgroups: the final process writes itself (``0``)
into each v1 hierarchy's ``tasks``, closes the fds, and names the file when
the kernel refuses."""

from __future__ import annotations

import os

import pytest

from ocirun.errors import CgroupError
from ocirun.process.intermediate import enter_v1_cgroups, joining_v1_cgroups


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


def test_writes_zero_to_each_and_closes() -> None:
    pipes = [os.pipe() for _ in range(3)]
    try:
        enter_v1_cgroups([(w, f"/sys/fs/cgroup/c{i}/x/tasks") for i, (_, w) in enumerate(pipes)])
        for r, w in pipes:
            assert os.read(r, 16) == b"0"
            assert _closed(w)
    finally:
        for r, _ in pipes:
            os.close(r)


def test_a_refused_write_names_the_file() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)  # EBADF on write
    with pytest.raises(CgroupError) as e:
        enter_v1_cgroups([(fd, "/sys/fs/cgroup/cpuset/x/tasks")])
    assert str(e.value) == ("join the container's cgroup: write `/sys/fs/cgroup/cpuset/x/tasks`: "
                            "Bad file descriptor")
    assert _closed(fd)


def test_the_final_step_runs_after_the_join() -> None:
    r, w = os.pipe()
    order: list[str] = []
    try:
        joining_v1_cgroups([(w, "t")], lambda: order.append(os.read(r, 1).decode()))()
        assert order == ["0"]
    finally:
        os.close(r)
