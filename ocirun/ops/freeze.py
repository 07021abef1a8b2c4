"""``pause`` and ``resume``: freeze and thaw every process of a container
(runc's commands; the spec has no pause operation).  The v1 freezer or v2
``cgroup.freeze`` does the work (``CgroupManager.freeze``); ``state`` then
derives ``paused`` from the frozen cgroup.

Like runc, a created container can be paused too (its parked init is frozen
with the rest); ``Status.require`` words the refusals ("container not
running", "container not paused", "container already paused").
"""

from __future__ import annotations

import os

from ocirun.errors import CgroupError
from ocirun.state import ContainerState, StateStore


def _manager(st: ContainerState):  # type: ignore[no-untyped-def]
    if not st.cgroup_paths:
        raise CgroupError(f"container {st.id} has no cgroup to freeze")
    from ocirun.cgroups import load_manager
    return load_manager(st.cgroup_paths)


def pause(store: StateStore, cid: str) -> None:
    lock = store.lock(cid)
    try:
        st = store.load(cid)
        st.status().require("pause", cid)
        _manager(st).freeze(True)
    finally:
        os.close(lock)


def resume(store: StateStore, cid: str) -> None:
    lock = store.lock(cid)
    try:
        st = store.load(cid)
        st.status().require("resume", cid)
        _manager(st).freeze(False)
    finally:
        os.close(lock)
