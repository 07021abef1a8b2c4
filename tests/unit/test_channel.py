import os
import time

import pytest

from ocirun import errors
from ocirun.process import channel, fork
from ocirun.syscalls.linux import LinuxSyscalls


def test_messages_roundtrip():
    parent, child, parent_fds = channel.pair()
    child.send("init_pid", pid=42)
    assert parent.expect("init_pid") == {"pid": 42, "type": "init_pid", "fds": []}
    parent.send("cgroup_ready")
    assert child.expect("cgroup_ready")["type"] == "cgroup_ready"
    for c in (parent, child):
        c.close()


def test_child_error_is_rebuilt_and_eof_is_child_died():
    parent, child, parent_fds = channel.pair()

    def fail():
        raise errors.SyscallError("mount `proc` on `/x/proc`: Operation not permitted", errno=1)

    pid = fork.spawn(fail, child, parent_fds, "rootfs", LinuxSyscalls())
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

    pid = fork.spawn(fail, child, parent_fds, "cwd", LinuxSyscalls())
    child.close()
    with pytest.raises(errors.OciRunError, match="cwd: `/nonexistent/for/sure` No such file"):
        parent.expect("ready")
    os.waitpid(pid, 0)
    parent.close()


def test_fds_travel_with_a_message():
    parent, child, parent_fds = channel.pair()
    r, w = os.pipe()
    child.send("seccomp_listener", fds=[r, w], note="x")
    os.close(r)
    os.close(w)
    msg = parent.expect("seccomp_listener")
    got_r, got_w = msg["fds"]
    assert msg["note"] == "x"
    os.write(got_w, b"ping")
    assert os.read(got_r, 4) == b"ping"
    assert not os.get_inheritable(got_r)  # MSG_CMSG_CLOEXEC
    for fd in (got_r, got_w):
        os.close(fd)
    parent.close()
    child.close()


def test_send_to_a_dead_child_raises_its_pending_error():
    # The child reported an error and died before the parent's next send:
    # the parent must surface the child's message, not "child exited".
    parent, child, parent_fds = channel.pair()

    def fail():
        raise errors.SyscallError("mount `proc`: Operation not permitted", errno=1)

    pid = fork.spawn(fail, child, parent_fds, "rootfs", LinuxSyscalls())
    child.close()
    os.waitpid(pid, 0)
    with pytest.raises(errors.SyscallError, match="Operation not permitted"):
        parent.send("cgroup_ready")
    parent.close()


def test_eof_when_every_child_end_is_closed():
    parent, child, _ = channel.pair()
    child.close()
    assert parent.recv() is None
    with pytest.raises(errors.ChildDiedError):
        parent.send("cgroup_ready")
    parent.close()


def test_a_peer_that_died_with_our_message_unread_still_tells_its_error():
    # unix sockets report ECONNRESET once when the peer closed with data of
    # ours unread; the peer's own messages are still queued behind it.
    parent, child, parent_fds = channel.pair()
    parent.send("cgroup_ready")  # never read by the child
    child.send("error", code="syscall", errno=19, msg="mount `nosuchfs`: No such device",
               stage="mounts")
    child.close()
    with pytest.raises(errors.SyscallError, match="No such device"):
        parent.expect("ready")
    with pytest.raises(errors.ChildDiedError):
        parent.expect("ready")
    parent.close()


def test_recv_within_waits_at_most_that_long():
    a, b, _ = channel.pair()
    try:
        t0 = time.monotonic()
        assert a.recv_within(0.05) is None  # nothing sent: back after the wait
        assert 0.04 <= time.monotonic() - t0 < 2
        b.send("init_pid", pid=7)
        got = a.recv_within(1)
        assert got is not None and got[0]["pid"] == 7
        a.send("x")  # still a blocking socket afterwards
        assert b.expect("x")["type"] == "x"
        b.close()
        assert a.recv_within(1) is None  # EOF
    finally:
        a.close()
        b.close()
