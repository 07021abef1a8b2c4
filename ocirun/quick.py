"""The launcher's fast path: the lifecycle commands without the command table.

containerd, podman and scripts call ``state`` and ``kill`` over and over; a
Python start-up is already slower than runc's whole ``state``, so these
commands must cost little more than the interpreter.  ``create`` in the
form containerd and podman use goes straight to ops/create.py, sparing the
command table and its handlers.  ``bin/ocirun`` (and
``python -m ocirun``) call :func:`main` before importing anything else; it
understands only the plain forms of these commands:

    [--root DIR] [--log FILE] [--log-format text|json] state ID
    ...                                               list [-q|--quiet] [-f|--format table|json]
    ...                                               kill ID [SIGNAL]
    ...                                               start ID     (no poststart hooks)
    ...                                               delete [-f|--force] ID
    ...                                               create [--bundle DIR] [--pid-file F]
                                                          [--console-socket S] [--no-pivot]
                                                          [--no-new-keyring] [--preserve-fds N] ID

and returns None for anything else (other commands or flags, ``--debug``,
``--trace``/``OCIRUN_TRACE``, an unknown container, a status the verb does
not allow, a record it cannot read): the full command line (cli.py) then
runs from the start and reports in its own words.  Falling back is only
allowed before any effect: ``kill`` signals last, ``start`` releases the
init last.  An error after that point is printed by ``cli.report``.
``delete`` runs the library's own delete (state.py, ops/delete.py and the
cgroup manager do without ``os`` too) and prints its errors the same way.

State is read and derived by ground.py, the implementation state.py uses,
so both paths print the same bytes (tests/unit/test_quick.py compares them).
"""

from __future__ import annotations

import posix

from ocirun import ground, log, posixpaths
from ocirun.plainargs import Fallback as _Fallback
from ocirun.plainargs import parse_globals as _parse_globals


def _plain(args: list[str], lo: int, hi: int) -> list[str]:
    """Positional arguments only, between lo and hi of them."""
    if not lo <= len(args) <= hi or any(a.startswith("-") for a in args):
        raise _Fallback
    return args


def _record(root: str, cid: str) -> ground.Record:
    if not ground.valid_id(cid):
        raise _Fallback
    d = ground.join(root, cid)
    try:
        rec = ground.load_record(d)
        if rec is None:
            raise _Fallback
        return ground.Record(rec, d)
    except _Fallback:
        raise
    except Exception:  # noqa: BLE001 - corrupt: the full path words it
        raise _Fallback from None


def _status(r: ground.Record) -> str:
    try:
        return ground.status(r.pid, r.pid_start, r.dir, r.cgroup_paths)
    except Exception:  # noqa: BLE001 - whatever it is, the full path reports it
        raise _Fallback from None


def _state(root: str, args: list[str]) -> int:
    r = _record(root, _plain(args, 1, 1)[0])
    doc = ground.state_doc(r, _status(r))
    from ocirun import jsonio
    posix.write(1, jsonio.dumps(doc, indent=2).encode())
    return 0


def _list(root: str, args: list[str]) -> int:
    fmt, quiet = "table", False
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-f", "--format") and i + 1 < len(args):
            fmt = args[i + 1]
            i += 1
        elif a.startswith("--format="):
            fmt = a[len("--format="):]
        else:
            raise _Fallback
        i += 1
    if fmt not in ("table", "json"):
        raise _Fallback
    try:
        names = posix.listdir(root)
    except FileNotFoundError:
        names = []
    except OSError:
        raise _Fallback from None
    states: list[dict[str, object]] = []
    owners: dict[int, str] = {}
    for cid in sorted(names):
        d = ground.join(root, cid)  # not a directory: load_record says None
        try:
            if not ground.valid_id(cid):
                raise _Fallback  # the full path warns about it
            rec = ground.load_record(d)
            if rec is None:
                continue  # being created, or not a container: the full path skips it too
            r = ground.Record(rec, d)
        except Exception:  # noqa: BLE001 - a broken entry: the full path warns about it
            raise _Fallback from None
        doc = ground.state_doc(r, _status(r))
        doc["owner"] = ground.owner_name(d, owners)
        states.append(doc)
    posix.write(1, ground.format_list(states, fmt, quiet).encode())
    return 0


def _kill(root: str, args: list[str]) -> int:
    args = _plain(args, 1, 2)
    sig = ground.signal_number(args[1] if len(args) > 1 else "SIGTERM")
    if sig is None:
        raise _Fallback
    r = _record(root, args[0])
    if _status(r) not in (ground.CREATED, ground.RUNNING, ground.PAUSED):
        raise _Fallback
    import _signal
    try:
        pidfd = posix.pidfd_open(r.pid)
    except (OSError, ValueError):
        raise _Fallback from None
    try:
        # the pidfd pins the process: a recycled pid cannot be signalled
        if not ground.alive(r.pid, r.pid_start):
            raise _Fallback
        _signal.pidfd_send_signal(pidfd, sig)
    except OSError:
        raise _Fallback from None  # nothing was sent
    finally:
        posix.close(pidfd)
    return 0


def _start(root: str, args: list[str]) -> int:
    cid = _plain(args, 1, 1)[0]
    if not ground.valid_id(cid):
        raise _Fallback
    import fcntl
    try:
        lock = posix.open(ground.join(root, cid), posix.O_RDONLY | posix.O_DIRECTORY
                          | posix.O_CLOEXEC)
    except OSError:
        raise _Fallback from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = _record(root, cid)
        if r.hooks.get("poststart") or _status(r) != ground.CREATED:
            raise _Fallback
        from ocirun.errors import HookError
        try:
            ground.release_init(ground.join(r.dir, ground.FIFO), r.pid)
        except HookError:
            # a failing startContainer hook: what ops.start does
            from ocirun.ops.delete import destroy_after_hook_failure
            from ocirun.state import StateStore
            store = StateStore(root)
            destroy_after_hook_failure(store, store.load(cid))
            raise
    finally:
        posix.close(lock)  # before a fallback takes the lock again
    return 0


def _delete(root: str, args: list[str]) -> int:
    """The library's delete itself (ops/delete.py and what it uses avoid
    ``os``); its errors are printed by cli.report, as by the full path."""
    force = False
    ids = []
    for a in args:
        if a in ("-f", "--force"):
            force = True
        elif a.startswith("-"):
            raise _Fallback
        else:
            ids.append(a)
    if len(ids) != 1:
        raise _Fallback
    from ocirun.ops.delete import delete
    from ocirun.state import StateStore
    delete(StateStore(root), ids[0], force=force)
    return 0


# create's flags as cli.parse_flags reads them (dashes stripped): name -> option
_CREATE_VALUES = {"bundle": "bundle", "b": "bundle", "pid-file": "pid_file",
                  "console-socket": "console_socket", "preserve-fds": "preserve_fds"}
_CREATE_BOOLS = {"no-pivot": "no_pivot", "no-new-keyring": "no_new_keyring"}


def create_request(args: list[str]) -> tuple[str, dict[str, str | bool]]:
    """The id and the options of create's plain form (the flags containerd
    and podman pass); anything else raises Fallback."""
    opts: dict[str, str | bool] = {}
    ids = []
    i = 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("-") or tok == "-":
            ids.append(tok)
            continue
        name, eq, value = tok.lstrip("-").partition("=")
        if name in _CREATE_BOOLS and not eq:
            opts[_CREATE_BOOLS[name]] = True
            continue
        if name not in _CREATE_VALUES:
            raise _Fallback  # --, --help, --no-pivot=false, ...: the full parser's words
        if not eq:
            if i >= len(args):
                raise _Fallback
            value = args[i]
            i += 1
        opts[_CREATE_VALUES[name]] = value
    fds = opts.get("preserve_fds", "0")
    if len(ids) != 1 or not (isinstance(fds, str) and fds and fds.isascii() and fds.isdigit()):
        raise _Fallback
    return ids[0], opts


def _create(root: str, args: list[str]) -> int:
    """create without the command table: what commands.cmd_create does."""
    if posix.geteuid() != 0:
        raise _Fallback  # --rootless auto: the full path decides
    cid, o = create_request(args)
    from ocirun.ops.create import create, options_from
    from ocirun.process import nursery
    from ocirun.state import StateStore
    from ocirun.syscalls.lazy import lazy_syscalls
    opts = options_from(o)
    sys = lazy_syscalls()
    opts.nursery = nursery.take_or_start(sys)  # the launcher forked it already
    create(StateStore(root), cid, opts, sys)  # it kills and reaps the nursery on failure
    return 0


# launcher._QUICK names these verbs too
_VERBS = {"state": _state, "list": _list, "kill": _kill, "start": _start, "delete": _delete,
          "create": _create}


def main(argv: list[str]) -> int | None:
    """The exit status, or None: run the full command line instead."""
    try:
        opts, i = _parse_globals(argv)
        verb = _VERBS.get(argv[i])
        fmt = opts.get("log-format", "text")
        if verb is None or fmt not in ("text", "json") or posix.environ.get(b"OCIRUN_TRACE"):
            return None
        if not opts.get("root") and posix.geteuid() != 0:
            return None  # the rootless default root ($XDG_RUNTIME_DIR): commands.default_root
        try:
            log.configure(opts.get("log"), fmt, False)
        except OSError:
            return None
        root = posixpaths.abspath(opts.get("root") or ground.DEFAULT_ROOT)
        try:
            return verb(root, argv[i + 1:])
        except _Fallback:
            log.close()
            return None
        except KeyboardInterrupt:
            return 130
        except Exception as e:  # noqa: BLE001 - after the effect: the full path's words
            from ocirun.cli import report
            return report(e, argv[i])
    except _Fallback:
        return None
