"""The runtime side of a launch: fork, feed the children, roll back.

Two kinds of launch (youki calls them container types):

* :data:`INIT`: a new container's init (``create``);
* :data:`TENANT`: a process joining a running container (``exec``): it
  enters the container's namespaces and cgroup and runs the shared process
  step, with no rootfs work and no exec FIFO.

Parent steps (numbered to match process/intermediate.py and init.py):
  P1 become a child subreaper, so the final process, orphaned when the
     intermediate exits, is re-parented to us and stays reapable (after an
     early fork, nursery.send_fork, the intermediate waits for our kill,
     and P1 comes after P3: the init goes on meanwhile);
  P2 fork the intermediate; answer ``userns_map_request`` by writing the
     id maps into /proc/<intermediate>/;
  P3 on ``init_pid``: reap the intermediate, put the process in the
     cgroups it did not enter itself (it was born in the v2 one by clone3
     and moved itself into the v1 ones where it could), send
     ``cgroup_ready`` (an init builds its rootfs meanwhile and waits for it
     only before its first cgroup mount);
  P4 (init) on ``hooks_request``: run prestart then createRuntime hooks in
     the runtime namespace, answer ``hooks_done``;
  P5 (init) on ``ready``: the init is parked at the exec FIFO.
     (tenant) EOF on the channel: the socket is close-on-exec, so the
     process has exec'd; an ``error`` message instead is why it could not.
Every resource is pushed on a :class:`Rollback`; a failure anywhere undoes
them in reverse order (runtime.md "Errors": as if never attempted).
"""

from __future__ import annotations

import posix as os  # the lean exec path never imports os (posixpaths.py)

from ocirun import steps
from ocirun.errors import ChildDiedError, OciRunError
from ocirun.process.fork import kill_and_reap
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.cgroups import CgroupManager
    from ocirun.plantypes import ContainerPlan, Handles
    from ocirun.process.channel import Channel
    from ocirun.process.intermediate import Entry
    from ocirun.process.nursery import Nursery

INIT = "init"
TENANT = "tenant"


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


def describe_exit(pid: int) -> str:
    """``exit status 1`` / ``killed by signal 9`` of a child that has (or will have) died."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return "already reaped"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"


class Launch:
    """One launch: what to start and how the parent answers its requests."""

    __slots__ = ("direct", "entry", "final", "gid_map", "kind", "mgr", "nursery", "on_fds",
                 "on_pid", "run_runtime_hooks", "self_join", "uid_map")

    def __init__(self, kind: str, entry: Entry, final: Callable[[Channel], None], *,
                 mgr: CgroupManager | None = None, uid_map: bytes = b"", gid_map: bytes = b"",
                 run_runtime_hooks: Callable[[int], None] | None = None,
                 on_fds: Callable[[dict[str, object]], None] | None = None,
                 on_pid: Callable[[int], None] | None = None, direct: bool = False,
                 nursery: tuple[Nursery, ContainerPlan, Handles] | None = None,
                 self_join: bool = False) -> None:
        self.kind = kind
        self.entry = entry
        self.final = final  # runs in the final process, given the child channel
        self.mgr = mgr
        self.uid_map = uid_map
        self.gid_map = gid_map
        self.run_runtime_hooks = run_runtime_hooks
        # A message carrying fds (seccomp listener, terminal master): the
        # parent's handler takes them before the launch goes on.
        self.on_fds = on_fds
        # P3, after the cgroup: what else the runtime does with the new pid
        # before the process goes on (resctrl group, network devices).
        self.on_pid = on_pid
        # TENANT only, set by exec when it may (process/tenant.py
        # can_fork_direct): no intermediate, the runtime forks the process
        # straight into the container's pid namespace (tenant.fork_direct).
        self.direct = direct
        # INIT: a nursery (process/nursery.py) forked before the config was
        # read becomes the intermediate, sent this plan and these handles,
        # instead of a child forked now (whose init would carry our heap).
        self.nursery = nursery
        # The final process moves itself into the v1 hierarchies' cgroups
        # (CgroupManager.self_join_fds): the entry's `tasks` fds (a tenant,
        # first thing) or the handles' (an init, at N3).
        self.self_join = self_join or bool(entry.tasks)


def launch(spec: Launch, rb: Rollback, sys: api.Syscalls) -> int:
    """Run the handshake; returns the final process's host pid.

    INIT: the init is parked at the exec FIFO on return.  TENANT: the
    process has exec'd on return.
    """
    from ocirun.process import channel, fork
    from ocirun.process.intermediate import joining_v1_cgroups, run_intermediate

    # An intermediate that forked the init early (nursery.send_fork) waits
    # for our kill at P3: P1 can wait until then, past cgroup_ready, so the
    # init goes on while the syscall seam loads (syscalls/lazy.py).
    lingering = spec.nursery is not None and spec.nursery[0].forked
    if not lingering:
        _subreaper(sys)                                                        # P1
    t = steps.begin()
    stage = "init" if spec.kind == INIT else "exec"
    pid: int = 0
    inter = 0
    born = False
    if spec.nursery is not None:
        from ocirun.process import nursery
        n, plan, handles = spec.nursery
        chan, inter = n.chan, n.pid
        n.pid = 0  # the launch owns it now: the rollback below kills it
        rb.push(chan.close)
        rb.push(lambda: kill_and_reap(inter))
        nursery.launch(n, plan, handles, spec.entry, stage)                    # P2
    else:
        chan, child_chan, parent_fds = channel.pair()
        rb.push(chan.close)
        import gc
        gc.freeze()  # keep the children's copy-on-write pages shared
        final: Callable[[], None] = lambda: spec.final(child_chan)
        if spec.entry.tasks:  # the final process moves itself into the v1 cgroups first
            final = joining_v1_cgroups(spec.entry.tasks, final)
        if spec.direct and spec.kind == TENANT:
            from ocirun.process.tenant import fork_direct
            pid, born = fork_direct(spec.entry, child_chan, parent_fds, final, sys)  # P2
            rb.push(lambda: kill_and_reap(pid))
        else:
            inter = fork.spawn(lambda: run_intermediate(spec.entry, child_chan, sys, final,
                                                        stage),
                               child_chan, parent_fds, "intermediate", sys)    # P2
            rb.push(lambda: kill_and_reap(inter))
        child_chan.close()
    try:
        msg = {"type": "init_pid", "pid": pid, "in_cgroup": born} if pid else chan.expect(
            "userns_map_request", "init_pid")
        if msg["type"] == "userns_map_request":
            if os.geteuid() == 0:
                from ocirun.user import write_id_map_text
                write_id_map_text(inter, spec.uid_map, spec.gid_map, deny_setgroups=False)
            else:  # rootless: the user's own id, or newuidmap/newgidmap
                from ocirun.rootless import write_maps
                write_maps(inter, spec.uid_map, spec.gid_map)
            chan.send("userns_mapped")
            msg = chan.expect("init_pid")
        if not pid:
            pid = int(msg["pid"])  # type: ignore[call-overload]
            rb.push(lambda: kill_and_reap(pid))
        steps.end("P2", "fork the intermediate, id maps, wait for the pid", t)
        t = steps.begin()
        if inter and not lingering:
            os.waitpid(inter, 0)                                               # P3
        if spec.mgr is not None:
            try:
                # born in the v2 one by clone3 (I5), in the v1 ones by its
                # own writes (enter_v1_cgroups): what is left, if anything
                spec.mgr.add(pid, except_v2=bool(msg.get("in_cgroup")),
                             except_v1=spec.self_join)
            except OciRunError:
                # A tenant does its process step meanwhile: if it died of an
                # error, that error is the one to report, not the cgroup's.
                chan.raise_pending_error()
                raise
        if spec.on_pid is not None:
            spec.on_pid(pid)
        chan.send("cgroup_ready")
        steps.end("P3", "reap the intermediate, join the cgroup", t)
        if lingering:
            _subreaper(sys)                                                    # P1
            kill_and_reap(inter)  # the init, orphaned, is ours: a subreaper's
        if spec.kind == INIT:
            _finish_init(spec, chan, pid)
        else:
            _finish_tenant(spec, chan, pid)
    except ChildDiedError as e:
        who = pid or inter
        raise ChildDiedError(f"{e.msg} ({describe_exit(who)})") from None
    except OciRunError:
        raise
    chan.close()
    return pid


def _subreaper(sys: api.Syscalls) -> None:
    t = steps.begin()
    sys.prctl(api.PR_SET_CHILD_SUBREAPER, 1)
    steps.end("P1", "subreaper", t)


def _expect(spec: Launch, chan: Channel, pid: int, *types: str) -> dict[str, object]:
    """chan.expect, handing any fd-carrying side message to ``spec.on_fds``
    (with ``pid``, the sender's host pid, added to it)."""
    side = ("seccomp_listener", "console_master")
    while True:
        msg = chan.expect(*types, *side)
        if msg["type"] not in side:
            return msg
        if spec.on_fds is None:
            for fd in msg["fds"]:  # type: ignore[attr-defined]
                os.close(fd)
            raise OciRunError(f"sync protocol: unexpected `{msg['type']}`")
        msg["pid"] = pid
        spec.on_fds(msg)


def _finish_init(spec: Launch, chan: Channel, pid: int) -> None:
    t = steps.begin()
    msg = _expect(spec, chan, pid, "hooks_request", "ready")
    if msg["type"] == "hooks_request":                                         # P4
        steps.end("P5", "wait for the init (until hooks_request)", t)
        t = steps.begin()
        if spec.run_runtime_hooks is not None:
            spec.run_runtime_hooks(pid)
        chan.send("hooks_done")
        steps.end("P4", "prestart and createRuntime hooks", t)
        t = steps.begin()
        _expect(spec, chan, pid, "ready")                                      # P5
    steps.end("P5", "wait for the init's ready", t)


def _finish_tenant(spec: Launch, chan: Channel, pid: int) -> None:
    t = steps.begin()
    try:
        _expect(spec, chan, pid, "exec_done")
    except ChildDiedError:
        # EOF: the close-on-exec socket closed, i.e. execve succeeded
        steps.end("P5", "wait for the process's execve", t)
        return
    raise OciRunError("sync protocol: unexpected `exec_done`")
