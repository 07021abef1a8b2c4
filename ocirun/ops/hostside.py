"""What the runtime itself does on the host for a container, beside its cgroup:
``linux.intelRdt`` (ocirun/resctrl.py) and ``linux.netDevices``
(ocirun/netdev.py).

:func:`plan` checks both before any fork (None when the config has neither,
which keeps create's hot path free of them).  Around the launch the runtime
then calls :meth:`HostSide.prepare` (make the resctrl group), and, once the
new process has a pid (process/parent.py P3, before ``cgroup_ready``),
:meth:`HostSide.on_pid` (put it in the resctrl group, move the network
devices into its namespace).  Every step pushes its undo on the launch's
rollback.  :meth:`HostSide.save` leaves a small record in the state dir, so
that ``exec`` (whose processes join the resctrl group) and ``delete``
(which removes it) need no config parsing.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.netdev import NetDevPlan
    from ocirun.process.parent import Rollback
    from ocirun.resctrl import RdtPlan
    from ocirun.syscalls.api import Syscalls

RECORD = "resctrl"  # file in the container's state dir


class HostSide:
    __slots__ = ("netdev", "rdt")

    def __init__(self, rdt: RdtPlan | None, netdev: NetDevPlan | None) -> None:
        self.rdt = rdt
        self.netdev = netdev

    def prepare(self, rb: Rollback) -> None:
        if self.rdt is not None:
            from ocirun import resctrl
            resctrl.setup(self.rdt)
            rdt = self.rdt
            rb.push(lambda: resctrl.destroy(rdt))

    def on_pid(self, pid: int, rb: Rollback, sys: Syscalls) -> None:
        if self.rdt is not None:
            from ocirun import resctrl
            resctrl.add(self.rdt, pid)
        if self.netdev is not None:
            from ocirun.netdev import Mover
            mover = Mover(self.netdev, pid, sys)
            # pushed before moving: the undo runs first (before the init is
            # killed), while the namespace still exists
            rb.push(mover.close)
            rb.push(mover.undo)
            mover.move_all()
            mover.moved.clear()  # moved for good: nothing to undo any more
            mover.close()

    def save(self, state_dir: str) -> None:
        if self.rdt is not None:
            from ocirun import resctrl
            with open(os.path.join(state_dir, RECORD), "w", encoding="utf-8") as f:
                f.write(resctrl.record(self.rdt))


def plan(cid: str, spec: dict[str, Any]) -> HostSide | None:
    linux = spec.get("linux") or {}
    rdt_cfg, devs = linux.get("intelRdt"), linux.get("netDevices")
    if not rdt_cfg and not devs:
        return None
    rdt = netdev = None
    if rdt_cfg:
        from ocirun.resctrl import plan_rdt
        rdt = plan_rdt(rdt_cfg, cid)
    if devs:
        from ocirun.netdev import plan_netdevices
        netdev = plan_netdevices(devs, spec)
    return HostSide(rdt, netdev)


def saved_rdt(state_dir: str) -> RdtPlan | None:
    """The resctrl group a container was put in (None: it has none)."""
    try:
        with open(os.path.join(state_dir, RECORD), encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    from ocirun.resctrl import from_record
    return from_record(text)


def join_rdt(state_dir: str, pid: int) -> None:
    """``exec``: a process joining the container joins its resctrl group."""
    rdt = saved_rdt(state_dir)
    if rdt is not None:
        from ocirun import resctrl
        resctrl.add(rdt, pid)


def remove_rdt(state_dir: str) -> None:
    """``delete``: remove the MON group, and the group if the runtime made it."""
    rdt = saved_rdt(state_dir)
    if rdt is not None:
        from ocirun import resctrl
        resctrl.destroy(rdt)
