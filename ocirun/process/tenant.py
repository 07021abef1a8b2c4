"""A process joining a running container (``exec``): the tenant's final process.

The intermediate has entered every namespace of the container (user first)
and forked us inside its pid namespace; the runtime has put us in the
container's cgroup.  What is left is the shared process step
(process/setup.py) and execve.  An error before execve reaches the runtime
over the channel; a successful execve closes the channel (it is
close-on-exec), which the runtime reads as success.
"""

from __future__ import annotations

import os

from ocirun import steps
from ocirun.process import setup
from ocirun.process.init import close_inherited_fds

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.process.channel import Channel
    from ocirun.plantypes import ProcessPlan
    from ocirun.syscalls.api import Syscalls


def run_tenant(p: ProcessPlan, chan: Channel, sys: Syscalls) -> None:
    from ocirun.process.intermediate import debug_sink
    steps.in_child("tenant", debug_sink(chan))
    t = steps.begin()
    close_inherited_fds({chan.fileno(), *range(3, 3 + p.keep_fds), steps.trace_fd()})  # T1
    for fd in range(3, 3 + p.keep_fds):
        os.set_inheritable(fd, True)
    steps.end("T1", "close inherited fds", t)
    t = steps.begin()
    # Nothing of the user's runs before the runtime has put us in the cgroup.
    chan.expect("cgroup_ready")                                                # T2
    steps.end("T2", "wait for the cgroup", t)
    t = steps.begin()
    exe = setup.prepare_process(                                               # T3 (S1-S9)
        p, sys, lambda fd: chan.send("seccomp_listener", fds=(fd,)))
    steps.end("T3", "process step S1-S9", t)
    setup.exec_process(p, exe)                                                 # T4 (S10)
