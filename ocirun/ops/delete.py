"""``delete``: runtime.md "Delete" and lifecycle steps 11-13.

Without ``--force`` only a stopped container may be deleted (the spec; runc
1.1.5 also kills a created one, which we do not).  Destroy undoes what
create made and nothing else (a joined namespace, a pre-existing cgroup
parent, a bind source stay), then poststop hooks run; their failures are
warnings only.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer (posixpaths.py): a lean delete
import select

from ocirun import errors, log, steps
from ocirun.posixpaths import exists, join
from ocirun.state import STOPPED, ContainerState, StateStore


def wait_gone(pid: int, timeout_ms: int = 10_000) -> bool:
    """Wait for ``pid`` to exit on a pidfd (never a fixed sleep)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        p = select.poll()
        p.register(fd, select.POLLIN)
        return bool(p.poll(timeout_ms))
    finally:
        os.close(fd)


def stop_container(st: ContainerState) -> None:
    """SIGKILL the init and everything in the cgroup, and wait for the init."""
    if st.cgroup_paths:
        from ocirun.cgroups import load_manager
        try:
            load_manager(st.cgroup_paths).kill_all(9)
        except errors.OciRunError as e:
            log.warning(f"kill the processes of the cgroup: {e}")
    if st.alive():
        try:
            os.kill(st.pid, 9)
        except ProcessLookupError:
            pass
        # reap it if it is our child (run, or a failed start in this process)
        try:
            os.waitpid(st.pid, os.WNOHANG)
        except ChildProcessError:
            pass
        wait_gone(st.pid)


def destroy(store: StateStore, st: ContainerState) -> None:
    """Step 12: remove what create made."""
    if st.cgroup_paths:
        from ocirun.cgroups import load_manager
        mgr = load_manager(st.cgroup_paths)
        # Without a pid namespace of its own the init's children outlive it:
        # they are the container's too.
        mgr.kill_all(9)
        mgr.destroy()
    if exists(join(st.dir, "resctrl")):
        from ocirun.ops.hostside import remove_rdt
        remove_rdt(st.dir)
    store.remove(st.id)


def run_poststop(st: ContainerState, hooks: list[dict]) -> None:  # type: ignore[type-arg]
    from ocirun.hooks import run_hooks_warn
    for w in run_hooks_warn(hooks, st.hook_state(STOPPED, None), "poststop"):
        log.warning(w)


def destroy_after_hook_failure(store: StateStore, st: ContainerState) -> None:
    """runtime.md "Lifecycle": a failing hook stops the container and the
    lifecycle continues at step 12 (destroy), then 13 (poststop hooks).
    The caller holds the container's lock."""
    hooks = st.hooks.get("poststop") or []
    stop_container(st)
    try:
        destroy(store, st)
    except errors.OciRunError as e:
        log.warning(f"destroy after a failed hook: {e}")
    if hooks:
        run_poststop(st, hooks)


def delete(store: StateStore, cid: str, *, force: bool = False) -> None:
    try:
        lock = store.lock(cid)
    except errors.NotFoundError:
        if force:
            return
        raise
    try:
        try:
            st = store.load(cid)
        except errors.NotFoundError:
            # a directory without state: a create that died half-way
            store.remove(cid)
            if force:
                return
            raise
        status = st.status()
        t = steps.begin()
        if not status.can_delete():
            if not force:
                status.require("delete", cid)
            stop_container(st)
        steps.end("D1", "stop", t)
        t = steps.begin()
        hooks = st.hooks.get("poststop") or []
        destroy(store, st)
        steps.end("D2", "destroy: cgroup, state dir", t)
        if hooks:
            run_poststop(st, hooks)
    finally:
        os.close(lock)
