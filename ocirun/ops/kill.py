"""``kill``: runtime.md "Kill".

The signal goes to the init through a pidfd opened before the start time is
re-checked, so a recycled pid can never be signalled.  ``--all`` signals
every process of the container's cgroup.
"""

from __future__ import annotations

import _signal
import os

from ocirun import errors
from ocirun.ground import signal_number
from ocirun.state import ContainerState, StateStore


def parse_signal(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL``, ``sigkill`` (runc's forms); ``0`` is kill(2)'s
    liveness probe: nothing is delivered, only existence is checked."""
    n = signal_number(text)
    if n is None:
        raise errors.OciRunError(f"unknown signal {text!r}")
    return n


def signal_init(st: ContainerState, sig: int) -> None:
    """Signal the init if it is still the process we started."""
    try:
        pidfd = os.pidfd_open(st.pid)
    except (ProcessLookupError, ValueError):
        raise errors.StateError("container not running") from None
    try:
        if not st.alive():
            raise errors.StateError("container not running")
        _signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        raise errors.StateError("container not running") from None
    finally:
        os.close(pidfd)


def kill(store: StateStore, cid: str, sig: int, *, all_processes: bool = False) -> None:
    st = store.load(cid)
    status = st.status()
    if all_processes:
        # runc 1.1.5 answers 0 on a stopped container: there is nothing left
        # to signal, which is what --all asked for.
        if sig == 0:
            if status.can_kill():
                signal_init(st, 0)
            return
        if st.cgroup_paths:
            from ocirun.cgroups import load_manager
            load_manager(st.cgroup_paths).kill_all(sig)
        elif status.can_kill():
            signal_init(st, sig)
        return
    status.require("kill", cid)
    signal_init(st, sig)
