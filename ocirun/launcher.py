"""What ``bin/ocirun`` runs once ocirun is importable: one command, start to exit.

1. ``create`` and ``run``: fork the nursery (process/nursery.py) first, before
   anything else is imported, so the container's init is forked from a lean
   heap (its memory while it waits for ``start`` is the heap it was forked
   from).
2. The fast path (quick.py) for the plain forms of ``state``, ``list``,
   ``kill``, ``start``, ``delete`` and ``create``; the full command line
   (cli.py) for everything else.
3. Leave with ``_exit``: the interpreter's teardown frees every module, about
   2 ms for nothing.  What it would still do (flush sys.stdout and
   sys.stderr) is done here; with atexit callbacks registered, or when a test
   harness execs the launcher's code, it exits normally.

The cyclic garbage collector is off from the script's first line (each
pass over the thousands of start-up objects costs time and finds nothing);
the long waits, ``run`` in the foreground and ``events``, turn it back on.

Builtin modules only until the fork: ``posix``, ``log`` (itself on posix).
"""

from __future__ import annotations

import posix

from ocirun import log
from ocirun.plainargs import Fallback, parse_globals

# the verbs quick.py may handle (its _VERBS): any other skips its import
_QUICK = ("state", "list", "kill", "start", "delete", "create")


def _verb(argv: list[str]) -> tuple[dict[str, str], str | None]:
    """The global flags and the command, when the globals are plain."""
    try:
        opts, i = parse_globals(argv)
    except Fallback:
        return {}, None
    return opts, argv[i]


def _early_nursery(opts: dict[str, str], verb: str | None) -> bool:
    """``create`` and ``run`` in the plain global forms: fork the nursery now.
    The log is configured first, as cli.main will (the children log through
    it); with --debug, --trace or OCIRUN_TRACE, create forks it later itself
    (the children then inherit those settings)."""
    fmt = opts.get("log-format", "text")
    if verb not in ("create", "run") or fmt not in ("text", "json") \
            or posix.environ.get(b"OCIRUN_TRACE"):
        return False
    try:
        log.configure(opts.get("log"), fmt, False)
    except OSError:
        return False
    from ocirun.process import nursery
    nursery.start_early()
    return True


def run(argv: list[str], script: dict[str, object]) -> None:
    """The whole command; never returns.  ``script``: the launcher's globals."""
    import sys
    opts, verb = _verb(argv)
    early = _early_nursery(opts, verb)
    try:
        status = None
        if verb in _QUICK:  # exec, run...: spare its import
            from ocirun.quick import main
            status = main(argv)
        if status is None:
            from ocirun.cli import main as full
            status = full(argv)
    finally:
        if early:
            from ocirun.process import nursery
            nursery.discard()  # the command failed before create took it
    from ocirun import codecache
    codecache.save()  # after an import found the cache missing or stale
    import atexit
    entry = sys.modules.get("__main__")
    if (atexit._ncallbacks() or sys.flags.interactive or entry is None
            or getattr(entry, "__dict__", None) is not script):
        sys.exit(status)
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:  # noqa: BLE001, S110 - as at a normal exit
            pass
    posix._exit(status & 0xFF)
