"""What ``bin/ocirun`` runs once ocirun is importable: one command, start to exit.

1. ``create`` and ``run``: fork the nursery (process/nursery.py) first, before
   anything else is imported, so the container's init is forked from a lean
   heap (its memory while it waits for ``start`` is the heap it was forked
   from).
2. The fast path (quick.py) for the plain forms of ``state``, ``list``,
   ``kill``, ``start``, ``delete`` and ``create``; the full command line
   (cli.py) for everything else.
3. After the first run of an install, point ``bin/ocirun``'s ``#!`` line at
   the interpreter (:func:`direct_shebang`): no shell in between any more.
4. Leave with ``_exit``: the interpreter's teardown frees every module, about
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


SH = b"#!/bin/sh\n"


def direct_shebang(path: str) -> bool:
    """Point the installed launcher's ``#!`` line at the interpreter itself.

    pip keeps no flags on a ``#!python`` line, so ``bin/ocirun`` comes as a
    ``#!/bin/sh`` prelude that execs ``python3 -IS`` on itself: one more
    ``execve`` and a shell start-up (about 0.5 ms) on every command.  On its
    first run after an install (when the code cache is written) it rewrites
    that line to ``#!<interpreter> -IS`` and the kernel starts Python
    directly; the rest of the file is the same (the sh lines are a Python
    string).  The interpreter is the venv's ``python3`` resolved to the real
    binary, so a copied or moved venv keeps working (the launcher finds its
    packages from its own path, not from the interpreter's).  Left as it is
    when anything is unusual: not a plain venv ``bin`` (no ``python3``
    beside it, a symlinked path), not owned by us, not writable, or a line
    the kernel would cut (127 bytes).  True when it rewrote the file."""
    tmp = ""
    try:
        d, _, name = path.rpartition("/")
        if not d.startswith("/") or not name:
            return False
        st = posix.lstat(path)
        if st.st_mode & 0o170000 != 0o100000 or st.st_uid != posix.geteuid():
            return False
        from ocirun.posixpaths import realpath
        py = realpath(d + "/python3")
        line = b"#!" + py.encode() + b" -IS\n"
        if (len(line) > 127 or b" " in line[2:-5] or b"\t" in line
                or not posix.access(py, posix.X_OK) or not posix.access(d, posix.W_OK)):
            return False
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
        try:
            data = posix.read(fd, st.st_size + 1)
        finally:
            posix.close(fd)
        if not data.startswith(SH) or len(data) != st.st_size:
            return False
        tmp = f"{d}/.{name}.{posix.getpid()}.tmp"
        fd = posix.open(tmp, posix.O_WRONLY | posix.O_CREAT | posix.O_EXCL | posix.O_CLOEXEC,
                        st.st_mode & 0o7777)
        try:
            view = memoryview(line + data[len(SH):])
            while view:
                view = view[posix.write(fd, view):]
            posix.fchmod(fd, st.st_mode & 0o7777)
        finally:
            posix.close(fd)
        posix.rename(tmp, path)
        return True
    except OSError:
        if tmp:
            try:
                posix.unlink(tmp)
            except OSError:
                pass
        return False


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
    if codecache.save():  # after an import found the cache missing or stale
        direct_shebang(str(script.get("__file__") or ""))  # first run after an install
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
