"""``start``: runtime.md "Start" and lifecycle steps 6-9.

Opening the exec FIFO for reading releases the parked init.  It writes one
NUL byte, runs the startContainer hooks and execs; the FIFO's write end is
O_CLOEXEC, so a successful exec shows up here as EOF right after the NUL.
Anything after the NUL is the init's error (``code:errno:msg``).  A pidfd
is polled together with the FIFO so a dead init is noticed at once.
Poststart hooks run after the exec; since v1.3.0 a failing one stops the
container and fails start.
"""

from __future__ import annotations

import os
import select

from ocirun import errors, steps
from ocirun.state import RUNNING, ContainerState, StateStore


def check_startable(st: ContainerState) -> None:
    st.status().require("start", st.id)


def start(store: StateStore, cid: str) -> ContainerState:
    lock = store.lock(cid)
    try:
        st = store.load(cid)
        check_startable(st)
        try:
            t = steps.begin()
            release_init(st)
            steps.end("R1", "release the init, wait for its execve", t)
            t = steps.begin()
            run_poststart(st)
            steps.end("R2", "poststart hooks", t)
        except errors.HookError:
            # a failing startContainer or poststart hook: stop the container,
            # destroy it, run the poststop hooks (lifecycle steps 12-13)
            from ocirun.ops.delete import destroy_after_hook_failure
            destroy_after_hook_failure(store, st)
            raise
        return st
    finally:
        os.close(lock)


def release_init(st: ContainerState) -> None:
    try:
        fifo = os.open(st.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise errors.StateError("cannot start an already running container") from None
    try:
        pidfd = os.pidfd_open(st.pid)
    except ProcessLookupError:
        os.close(fifo)
        raise errors.StateError("cannot start a container that has stopped") from None
    try:
        data = _read_until_exec(fifo, pidfd)
    finally:
        os.close(pidfd)
        os.close(fifo)
    try:
        os.unlink(st.fifo_path)
    except FileNotFoundError:
        pass
    if not data:
        raise errors.StateError("container process is already dead")
    if len(data) > 1:
        code, _, rest = data[1:].decode(errors="replace").partition(":")
        errno_s, _, msg = rest.partition(":")
        cls = errors.CODES.get(code, errors.ExecError)
        raise cls(msg, errno=int(errno_s) if errno_s.isdigit() else None, stage="start")


def _read_until_exec(fifo: int, pidfd: int) -> bytes:
    """Bytes written by the init before its write end closed (exec or death)."""
    p = select.poll()
    p.register(fifo, select.POLLIN)
    p.register(pidfd, select.POLLIN)
    data = b""
    init_dead = False
    while True:
        events = dict(p.poll())
        if events.get(fifo):
            while True:
                try:
                    chunk = os.read(fifo, 4096)
                except BlockingIOError:
                    break
                if not chunk:
                    return data  # every writer gone: exec'd (or died)
                data += chunk
        if events.get(pidfd):
            if init_dead:
                return data
            # The init died: drain what it may have written, then stop
            # (POLLHUP may never come if it died before opening the FIFO).
            init_dead = True
            p.unregister(pidfd)
            p.register(fifo, select.POLLIN)
            if not events.get(fifo):
                try:
                    data += os.read(fifo, 4096)
                except BlockingIOError:
                    pass
                return data


def run_poststart(st: ContainerState) -> None:
    hooks = st.hooks.get("poststart")
    if not hooks:
        return
    from ocirun.hooks import run_hooks
    try:
        run_hooks(hooks, st.hook_state(RUNNING, st.pid), "poststart")
    except errors.HookError as e:
        # v1.3.0: a failing poststart hook is an error; start() stops and
        # destroys the container
        raise errors.HookError(f"{e.msg} (the container was stopped and destroyed)",
                               stage="poststart") from e
