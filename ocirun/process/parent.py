"""The runtime side of ``create``: fork, feed the children, roll back.

Parent steps (numbered to match process/intermediate.py and init.py):
  P1 become a child subreaper, so the init, orphaned when the intermediate
     exits, is re-parented to us and stays reapable until create returns;
  P2 fork the intermediate; answer ``userns_map_request`` by writing the
     id maps into /proc/<intermediate>/;
  P3 on ``init_pid``: reap the intermediate, put the init in the cgroup
     (it builds its rootfs meanwhile and waits for ``cgroup_ready`` only
     before its first cgroup mount), send ``cgroup_ready``;
  P4 on ``hooks_request``: run prestart then createRuntime hooks in the
     runtime namespace, answer ``hooks_done``;
  P5 on ``ready``: the init is parked at the exec FIFO.
Every resource is pushed on a :class:`Rollback`; a failure anywhere undoes
them in reverse order (runtime.md "Errors": as if never attempted).
"""

from __future__ import annotations

import os

from ocirun.errors import ChildDiedError, OciRunError
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.cgroups import CgroupManager
    from ocirun.process.plan import InitPlan


class Rollback:
    """A stack of undo actions; ``commit()`` drops them."""

    __slots__ = ("_undo",)

    def __init__(self) -> None:
        self._undo: list[Callable[[], object]] = []

    def push(self, fn: Callable[[], object]) -> None:
        self._undo.append(fn)

    def commit(self) -> None:
        self._undo.clear()

    def __enter__(self) -> Rollback:
        return self

    def __exit__(self, et: object, e: object, tb: object) -> None:
        if et is None:
            return
        while self._undo:
            fn = self._undo.pop()
            try:
                fn()
            except Exception as err:  # undo must go on; the first error is what matters
                from ocirun import log
                log.warning(f"rollback: {err}")


def kill_and_reap(pid: int) -> None:
    """SIGKILL a child of ours and reap it (it may already be gone)."""
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def describe_exit(pid: int) -> str:
    """``exit status 1`` / ``killed by signal 9`` of a child that has (or will have) died."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


def launch(plan: InitPlan, mgr: CgroupManager | None, rb: Rollback, sys: api.Syscalls,
           run_runtime_hooks: Callable[[int], None]) -> int:
    """Run the create handshake; returns the init's host pid (parked at the FIFO)."""
    from ocirun.process import channel, fork
    from ocirun.process.intermediate import run_intermediate

    sys.prctl(api.PR_SET_CHILD_SUBREAPER, 1)                                   # P1
    chan, child_chan, parent_fds = channel.pair()
    rb.push(chan.close)
    import gc
    gc.freeze()  # keep the children's copy-on-write pages shared
    inter = fork.spawn(lambda: run_intermediate(plan, child_chan, sys), child_chan,
                       parent_fds, "intermediate")                             # P2
    rb.push(lambda: kill_and_reap(inter))
    child_chan.close()
    init_pid: int = 0
    try:
        msg = chan.expect("userns_map_request", "init_pid")
        if msg["type"] == "userns_map_request":
            _write_maps(plan, inter)
            chan.send("userns_mapped")
            msg = chan.expect("init_pid")
        init_pid = int(msg["pid"])  # type: ignore[call-overload]
        rb.push(lambda: kill_and_reap(init_pid))
        os.waitpid(inter, 0)                                                   # P3
        if mgr is not None:
            mgr.add(init_pid)
        chan.send("cgroup_ready")
        msg = chan.expect("hooks_request", "ready")
        if msg["type"] == "hooks_request":                                     # P4
            run_runtime_hooks(init_pid)
            chan.send("hooks_done")
            chan.expect("ready")                                               # P5
    except ChildDiedError as e:
        who = init_pid or inter
        raise ChildDiedError(f"{e.msg} ({describe_exit(who)})") from None
    except OciRunError:
        raise
    chan.close()
    return init_pid


def _write_maps(plan: InitPlan, pid: int) -> None:
    from ocirun.user import write_id_maps
    linux = plan.spec.get("linux") or {}
    write_id_maps(pid, linux.get("uidMappings") or [], linux.get("gidMappings") or [],
                  deny_setgroups=False)
