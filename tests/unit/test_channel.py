import os

import pytest

from ocirun import errors
from ocirun.process import channel, fork


def test_messages_roundtrip():
    parent, child, parent_fds = channel.pair()
    child.send("init_pid", pid=42)
    assert parent.expect("init_pid") == {"pid": 42, "type": "init_pid"}
    parent.send("cgroup_ready")
    assert child.expect("cgroup_ready")["type"] == "cgroup_ready"
    for c in (parent, child):
        c.close()


def test_child_error_is_rebuilt_and_eof_is_child_died():
    parent, child, parent_fds = channel.pair()

    def fail():
        raise errors.SyscallError("mount `proc` on `/x/proc`: Operation not permitted", errno=1)

    pid = fork.spawn(fail, child, parent_fds, "rootfs")
    child.close()
    with pytest.raises(errors.SyscallError) as ei:
        parent.expect("ready")
    assert ei.value.errno == 1 and ei.value.stage == "rootfs"
    assert "Operation not permitted" in ei.value.msg
    with pytest.raises(errors.ChildDiedError):
        parent.expect("ready")
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 1
    parent.close()


def test_oserror_in_child_names_stage():
    parent, child, parent_fds = channel.pair()

    def fail():
        os.stat("/nonexistent/for/sure")

    pid = fork.spawn(fail, child, parent_fds, "cwd")
    child.close()
    with pytest.raises(errors.OciRunError, match="cwd: `/nonexistent/for/sure` No such file"):
        parent.expect("ready")
    os.waitpid(pid, 0)
    parent.close()
