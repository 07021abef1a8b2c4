"""The intermediate process: enter the namespaces, fork the init, leave.

Steps are numbered as in specs/sync-protocol.md:
  I1 become non-dumpable (nothing of the runtime can be ptraced or read
     through /proc once it shares namespaces with the container);
  I2 setns into every configured namespace path (user first);
  I3 new user namespace: unshare, ask the parent for the id maps, become root;
  I4 unshare the other new namespaces (not cgroup: the init does that once
     it is in its cgroup); write the time namespace offsets;
  I5 fork the init (pid 1 of a new pid namespace), send its pid, exit.
"""

from __future__ import annotations

import os

from ocirun.errors import SyscallError
from ocirun.process import fork
from ocirun.syscalls import api

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.process.channel import Channel
    from ocirun.process.plan import InitPlan


def run_intermediate(plan: InitPlan, chan: Channel, sys: api.Syscalls) -> None:
    sys.prctl(api.PR_SET_DUMPABLE, 0)                                   # I1
    from ocirun import namespaces
    namespaces.join(plan.join_fds, sys)                                  # I2
    ns = plan.ns
    if ns.new_user:                                                      # I3
        _unshare(sys, api.CLONE_NEWUSER, "user")
        chan.send("userns_map_request")
        chan.expect("userns_mapped")
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as e:
            raise SyscallError(f"become root in the new user namespace: {e.strerror} "
                               "(does linux.uidMappings/gidMappings map container id 0?)",
                               errno=e.errno, stage="user_namespace") from e
    if ns.unshare_flags:                                                 # I4
        _unshare(sys, ns.unshare_flags, "new namespaces")
    if ns.new_time:
        _write_time_offsets(plan.spec["linux"].get("timeOffsets") or {})
    from ocirun.process import init
    pid = fork.spawn(lambda: init.run_init(plan, chan, sys), chan, (), "init")   # I5
    chan.send("init_pid", pid=pid)


def _unshare(sys: api.Syscalls, flags: int, what: str) -> None:
    try:
        sys.unshare(flags)
    except OSError as e:
        raise SyscallError(f"unshare ({what}, flags {flags:#x}): {e.strerror}", errno=e.errno,
                           stage="namespaces") from e


def _write_time_offsets(offsets: dict[str, dict[str, int]]) -> None:
    """config-linux.md "Offset for Time Namespace": before any process enters it."""
    lines = "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n"
                    for clock, o in offsets.items())
    if not lines:
        return
    try:
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, lines.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"write linux.timeOffsets to /proc/self/timens_offsets: {e.strerror}",
                           errno=e.errno, stage="time_namespace") from e
