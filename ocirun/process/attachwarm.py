"""Paying the kernel's wait for a cgroup move early (exec, and the nursery of create/run).

Every write to a ``cgroup.procs`` takes the kernel's global
cgroup_threadgroup_rwsem for writing, and the first writer after a quiet
spell waits for an RCU grace period (8-15 ms here) while holding
cgroup_mutex; writers that come while that sync is held, or within a grace
period after, do not wait again.  Moving a process into the cgroup it is
already in is a no-op that still takes the lock: done in a thread while the
main thread loads, parses and plans, it pays the wait before the write that
matters (the process into the container's cgroup) or the mkdirs that queue
behind cgroup_mutex.

A thread, not a forked helper: the write blocks in the kernel with the GIL
released, and a fork would cost the runtime a copy of its page tables and a
copy-on-write fault for every page it touches after.  Its fd is
close-on-exec, and a process forked meanwhile is a copy of the main thread
alone.  Posix only: the nursery imports it before it forks.
"""

from __future__ import annotations

import posix


def move_self(procs: str | bytes) -> None:
    """Move this process to the cgroup whose ``cgroup.procs`` is ``procs``
    (its own: a no-op); a failure (not ours to write) is no one's concern."""
    try:
        fd = posix.open(procs, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            posix.write(fd, str(posix.getpid()).encode())
        finally:
            posix.close(fd)
    except OSError:
        pass


def move_self_in_thread(procs: str | bytes) -> None:
    """:func:`move_self` in a new thread, which then ends.  It blocks every
    signal (a thread inherits the mask it starts with): a signal for the
    process must reach the main thread, whose handlers forward it and whose
    blocking calls it interrupts."""
    import _signal
    import _thread
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())
    try:
        _thread.start_new_thread(move_self, (procs,))
    finally:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
