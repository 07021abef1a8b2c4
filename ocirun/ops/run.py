"""``run``: create + start, then (in the foreground) wait and clean up.

In the foreground the runtime stays the init's parent (it is a child
subreaper since create), forwards the signals it receives to the init, reaps
orphans re-parented to it, deletes the container (unless ``--keep``) and
exits with the container's status: the exit code, or 128+signal.
"""

from __future__ import annotations

import _signal
import os

from ocirun.ops.create import CreateOptions, create
from ocirun.state import StateStore

FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM",
             "SIGCONT", "SIGPWR", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGXFSZ")


def run(store: StateStore, cid: str, opts: CreateOptions, *, detach: bool = False,
        keep: bool = False) -> int:
    from ocirun.ops.delete import delete
    from ocirun.ops.start import start
    st = create(store, cid, opts)
    try:
        start(store, cid)
    except BaseException:
        delete(store, cid, force=True)
        raise
    if detach:
        return 0
    status = wait_init(st.pid)
    if not keep:
        delete(store, cid, force=True)
    return status


def wait_init(pid: int) -> int:
    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    for name in FORWARDED:
        sig = getattr(_signal, name, None)
        if sig is not None:
            _signal.signal(sig, forward)
    try:
        while True:
            try:
                got, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 255  # cannot happen: the init is our child
            if got == pid:
                break
    finally:
        for name in FORWARDED:
            sig = getattr(_signal, name, None)
            if sig is not None:
                _signal.signal(sig, _signal.SIG_DFL)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
