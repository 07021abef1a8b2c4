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

import posix as os  # os's calls without its Python layer (posixpaths.py)

from ocirun import errors, ground, steps
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
    """ground.release_init: the one implementation (the launcher's fast path
    uses it too)."""
    ground.release_init(st.fifo_path, st.pid)


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
