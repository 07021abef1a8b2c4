"""The nursery: a lean child forked before the config is read, later the intermediate.

A forked child shares its parent's heap, and ``RssAnon`` counts every page of
it: an init forked after the runtime loaded the schema, the meaning checks,
the planner and the cgroup code, and parsed the config, carries all of that
while it waits for ``start`` (about 5 MiB against runc's 1.8).  So ``create``
and ``run`` fork the nursery first, from the command line's few modules.  It
imports what the children run (the process step, rootfs, the syscall seam)
while the runtime loads and checks the config on the other CPU, then waits.
When the runtime is ready to launch it sends the container plan (as
process/wire.py bytes in a memfd) and the launch's fds over the sync channel,
and the nursery goes on exactly as a freshly forked intermediate (I1-I5), its
init forked from this lean heap.

The nursery holds nothing of the container until ``launch``: no namespace,
mount, cgroup or state.  Any failure before that kills and reaps it (the
runtime's rollback, or :meth:`Nursery.close`); a runtime that dies leaves it
an EOF on the channel, and it exits.  It runs in a process group of its
own, so a terminal's ^C meant for ``run`` (which forwards it to the
container) does not kill it; the init leaves that group with setsid (N2).

Steps: I0 (in the nursery, before the plan arrives): import the child side,
wipe the caller's argv and environment from our memory (I1's wipe, early).
With ``plan`` (send_plan) it takes I1-I4 before the launch, and with
``fork`` (send_fork) it forks the init before the launch too; the init then
reads the launch itself, and the nursery waits to be killed (_linger).
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun import steps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.plantypes import ContainerPlan, Handles
    from ocirun.process.channel import Channel
    from ocirun.process.intermediate import Entry
    from ocirun.syscalls.api import Syscalls

# what every launch runs in the children (process/init.py ``preload`` adds
# the modules a particular plan needs)
CHILD_SIDE = ("ocirun.process.init", "ocirun.process.intermediate", "ocirun.process.setup",
              "ocirun.process.wire", "ocirun.capabilities", "ocirun.namespaces",
              "ocirun.pathres", "ocirun.rlimits", "ocirun.rootfs", "ocirun.sched",
              "ocirun.user", "ocirun.syscalls.linux")


class Nursery:
    """The runtime's handle on its nursery: the pid and the sync channel."""

    __slots__ = ("chan", "forked", "pid", "planned")

    def __init__(self, pid: int, chan: Channel) -> None:
        self.pid = pid
        self.chan = chan
        self.planned = False  # it has the plan (send_plan): the launch carries the fds only
        self.forked = False  # it forked the init (send_fork): the init reads the launch

    def close(self) -> None:
        """Kill and reap it: it was never used (create failed first)."""
        if self.pid:
            try:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        self.chan.close()


_early: list[Nursery] = []


def start_early() -> None:
    """Fork the nursery from the launcher (quick.launch), before even the
    command line is imported; ``create``/``run`` take it with :func:`take`.
    The launcher discards it (:func:`discard`) if the command never does.
    A plain fork, before the syscall seam is loaded (cffi, ~1.2 ms): both
    sides then load the seam at once, one on each CPU."""
    n = start(None)
    if n is not None:
        _early.append(n)


def take() -> Nursery | None:
    return _early.pop() if _early else None


def take_or_start(sys: Syscalls) -> Nursery | None:
    """The nursery the launcher forked, else one forked now, before create
    imports the config layer: the container's init is forked from it, lean."""
    return take() or start(sys)


def discard() -> None:
    while _early:
        _early.pop().close()


def start(sys: Syscalls | None) -> Nursery | None:
    """Fork the nursery; None when it cannot be (create then forks its
    intermediate itself, later, as a library caller's create does)."""
    from ocirun.process import channel, fork
    chan, child_chan, parent_fds = channel.pair()
    try:
        pid = fork.spawn(lambda: _serve(child_chan), child_chan, parent_fds, "nursery", sys)
    except OSError:
        chan.close()
        child_chan.close()
        return None
    child_chan.close()
    return Nursery(pid, chan)


def fits(handles: Handles) -> bool:
    """The launch's fds fit in one message (else create forks its own intermediate)."""
    from ocirun.process.channel import MAX_FDS
    return len(handles.all_fds()) < MAX_FDS


def can_enter_early(plan: ContainerPlan) -> bool:
    """Whether the nursery may take I1-I4 before the launch (:func:`send_plan`):
    no namespace to join (their fds are opened at C3) and no new user
    namespace (its id maps are a round trip with the runtime)."""
    return not plan.ns.joins and not plan.ns.new_user


def send_plan(n: Nursery, plan: ContainerPlan) -> None:
    """Send the plan as soon as it is made (after C2): the nursery loads it and
    takes I1-I4 (non-dumpable, CPU affinity, the new namespaces) while the
    runtime makes the state dir and the cgroup (C3, C4); the launch then
    brings only the fds.  For plans :func:`can_enter_early` accepts."""
    _send_body(n, "plan", {"plan": plan, "ns": plan.ns, "time_offsets": plan.time_offsets}, [])
    n.planned = True


def can_fork_early(plan: ContainerPlan, handles: Handles) -> bool:
    """Whether the nursery, having entered early, may fork the init before
    the launch (:func:`send_fork`): the init then needs nothing of the
    launch until its first cgroup mount.  Not with bind sources cloned by
    the runtime (id-mapped mounts: the init needs them from its first
    mount).  ops/create.py also keeps the late fork for host-side set-up
    done on the pid (network devices, intelRdt: ops/hostside.py), which
    must precede the init's mounts, and for a cgroup v2 directory it did
    not make."""
    return not handles.mount_fds and not handles.join_fds


def send_fork(n: Nursery, cgroup_fd: int) -> None:
    """After :func:`send_plan`, once the cgroup directories exist: the
    nursery forks the init now (I5: clone3 into ``cgroup_fd``, the v2
    directory, where there is one), and the init builds its rootfs up to
    the first cgroup mount while the runtime applies the resources and
    saves the rest of the state; the launch then goes to the init itself
    (:func:`read_launch`).  The intermediate stays until the runtime, a
    child subreaper by then, kills it at P3 (:func:`_linger`)."""
    n.chan.send("fork", fds=[cgroup_fd] if cgroup_fd >= 0 else [])
    n.forked = True


def abort_fork(n: Nursery) -> None:
    """Roll back a :func:`send_fork` that no launch followed: kill the init
    (its pid is the intermediate's ``init_pid``, sent right after the
    clone), then the intermediate.  Killing the intermediate first could
    catch it between its clone and that message, leaving the init alive
    and unknown to us."""
    import time

    from ocirun.process.fork import kill_and_reap
    deadline = time.monotonic() + 2.0
    while (got := n.chan.recv_within(deadline - time.monotonic())) is not None:
        msg, fds = got
        for fd in fds:
            os.close(fd)
        if msg.get("type") == "init_pid":
            kill_and_reap(int(msg["pid"]))  # type: ignore[call-overload]
            break
    if n.pid:
        kill_and_reap(n.pid)
        n.pid = 0


def _send_body(n: Nursery, mtype: str, d: dict[str, object], fds: list[int]) -> None:
    """``d`` as process/wire.py bytes in a memfd (a plan can exceed a
    message), sent with ``fds``."""
    from ocirun.process import wire
    body = wire.dumps(d)
    blob = os.memfd_create("ocirun-plan", os.MFD_CLOEXEC)
    try:
        os.write(blob, body)
        n.chan.send(mtype, fds=[blob, *fds], size=len(body))
    finally:
        os.close(blob)


def launch(n: Nursery, plan: ContainerPlan, handles: Handles, entry: Entry, stage: str) -> None:
    """Send the launch: the plan (unless :func:`send_plan` did), and the fds
    of ``handles`` and ``entry``."""
    fds: list[int] = []
    index: dict[int, int] = {}

    def ref(fd: int) -> int:
        if fd < 0:
            return -1
        if fd not in index:
            index[fd] = len(fds)
            fds.append(fd)
        return index[fd]

    d: dict[str, object] = {
        "stage": stage, "fifo": ref(handles.fifo_fd),
        # an init forked already (send_fork) reads this at N3: no cgroup fd
        "cgroup": -1 if n.forked else ref(entry.cgroup_fd),
        "mounts": {i: ref(fd) for i, fd in handles.mount_fds.items()},
        "joins": [(ref(fd), kind) for fd, kind in handles.join_fds],
        "entry_joins": [(ref(fd), kind) for fd, kind in entry.join_fds],
        "tasks": [(ref(fd), path) for fd, path in handles.tasks]}
    if n.planned:
        if handles.join_fds or entry.join_fds or entry.cpus:
            from ocirun.errors import OciRunError
            raise OciRunError("internal error: a nursery that entered early given namespaces "
                              "to join or CPUs")
    else:
        d.update(plan=plan, ns=entry.ns, time_offsets=entry.time_offsets, cpus=entry.cpus)
    _send_body(n, "launch", d, fds)


def _serve(chan: Channel) -> None:
    """The nursery's life: imports, the launch message, then the intermediate."""
    os.setpgid(0, 0)
    t = steps.begin()
    from ocirun.process.intermediate import debug_sink
    steps.in_child("intermediate", debug_sink(chan))
    for name in CHILD_SIDE:
        __import__(name)
    # I1's wipe of the caller's argv and environment, done now that we wait
    # (about 0.5 ms: the pages are copied on write from the runtime's)
    from ocirun.procfs import wipe_args_and_env
    wiped = wipe_args_and_env(b"ocirun init")
    steps.end("I0", "nursery: import the child side, wipe argv and environment", t)
    from ocirun.plantypes import Handles
    from ocirun.process.init import preload, run_init
    from ocirun.process.intermediate import Entry, enter, fork_final, run_intermediate
    from ocirun.syscalls.linux import LinuxSyscalls
    sys = LinuxSyscalls()
    runtime = os.getppid()
    msg = chan.expect("plan", "launch")
    entered = msg["type"] == "plan"
    if entered:  # the runtime makes the state dir and the cgroup meanwhile
        p, _ = _read_body(msg)
        plan: ContainerPlan = p["plan"]  # type: ignore[assignment]
        preload(plan)
        early = Entry([], p["ns"], p["time_offsets"])  # type: ignore[arg-type]
        enter(early, chan, sys, wiped=wiped)                               # I1-I4
        msg = chan.expect("fork", "launch")
        if msg["type"] == "fork":
            # the cgroup directories exist: the init starts its rootfs now
            # and reads the launch itself, at N3 (init.take_launch)
            got: list[int] = msg["fds"]  # type: ignore[assignment]
            early.cgroup_fd = got[0] if got else -1
            handles = Handles()
            fork_final(early, chan, sys, lambda: run_init(                      # I5
                plan, handles, chan, sys, take_launch=lambda: read_launch(chan, handles)),
                "init", before_launch=True)
            _linger(sys, runtime)
            return
    d, fds = _read_body(msg)
    if not entered:
        plan = d["plan"]  # type: ignore[assignment]
        preload(plan)
    else:
        d.update(plan=plan, ns=early.ns, time_offsets=early.time_offsets, cpus=None)
    handles = handles_from(d, fds)
    entry = Entry([(_fd(fds, r), kind) for r, kind in d["entry_joins"]],  # type: ignore[attr-defined]
                  d["ns"], d["time_offsets"], d["cpus"], _fd(fds, d["cgroup"]))  # type: ignore[arg-type]
    run_intermediate(entry, chan, sys, lambda: run_init(plan, handles, chan, sys),
                     str(d["stage"]), wiped=wiped, entered=entered)


def _linger(sys: Syscalls, runtime: int) -> None:
    """After forking the init early (send_fork): stay until the runtime,
    a child subreaper by then (P1), kills and reaps us at P3.  Exiting at
    once would orphan the init before the runtime is a subreaper (it sets
    that only after the fork, when it loads the syscall seam), and the init
    would be re-parented past it.  Should the runtime die first, the kernel
    kills us (PR_SET_PDEATHSIG); the init then reads EOF and exits."""
    import _signal

    from ocirun.syscalls.api import PR_SET_PDEATHSIG
    sys.prctl(PR_SET_PDEATHSIG, 9)
    if os.getppid() != runtime:  # it died before the prctl
        return
    while True:
        _signal.pause()


def _fd(fds: list[int], i: object) -> int:
    return fds[i] if isinstance(i, int) and i >= 0 else -1


def handles_from(d: dict[str, object], fds: list[int]) -> Handles:
    """The launch's handles, their fds numbered as they arrived."""
    from ocirun.plantypes import Handles
    h = Handles()
    h.fifo_fd = _fd(fds, d["fifo"])
    h.mount_fds = {i: _fd(fds, r) for i, r in d["mounts"].items()}  # type: ignore[attr-defined]
    h.join_fds = [(_fd(fds, r), kind) for r, kind in d["joins"]]  # type: ignore[attr-defined]
    h.tasks = [(_fd(fds, r), p) for r, p in d["tasks"]]  # type: ignore[attr-defined]
    return h


def read_launch(chan: Channel, handles: Handles) -> None:
    """An init forked before the launch (:func:`send_fork`) reads it itself,
    at N3 before it needs the cgroup: the exec FIFO and the v1 ``tasks``."""
    d, fds = _read_body(chan.expect("launch"))
    got = handles_from(d, fds)
    used = set(got.all_fds())
    for fd in fds:
        if fd not in used:
            os.close(fd)
    handles.fifo_fd, handles.tasks, handles.mount_fds = got.fifo_fd, got.tasks, got.mount_fds


def _read_body(msg: dict[str, object]) -> tuple[dict[str, object], list[int]]:
    """The wire dict in the message's memfd, and the fds that came after it."""
    from ocirun.process import wire
    got: list[int] = msg["fds"]  # type: ignore[assignment]
    blob, fds = got[0], got[1:]
    try:
        body = os.pread(blob, int(msg["size"]), 0)  # type: ignore[call-overload]
    finally:
        os.close(blob)
    return wire.loads(body), fds  # type: ignore[return-value]
