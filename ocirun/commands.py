"""One handler per command: map parsed flags onto ``ops`` calls.

Kept apart from cli.py so that ``--help`` and usage errors import nothing
from the library.  Each handler returns the exit status.
"""

from __future__ import annotations

import os

from ocirun.errors import NotSupportedError, OciRunError
from ocirun.state import StateStore

Opts = dict[str, object]


def _store(g: Opts) -> StateStore:
    from ocirun.cli import DEFAULT_ROOT
    return StateStore(str(g.get("root") or DEFAULT_ROOT))


def _create_options(g: Opts, o: Opts):  # type: ignore[no-untyped-def]
    from ocirun.ops.create import CreateOptions
    if g.get("systemd_cgroup"):
        raise NotSupportedError("--systemd-cgroup: the systemd cgroup driver is not supported yet")
    if str(g.get("rootless", "auto")).lower() == "true":
        raise NotSupportedError("--rootless=true: rootless mode is not supported yet")
    return CreateOptions(bundle=str(o.get("bundle") or "."), pid_file=o.get("pid_file"),  # type: ignore[arg-type]
                         console_socket=o.get("console_socket"),  # type: ignore[arg-type]
                         no_pivot=bool(o.get("no_pivot")), no_new_keyring=bool(o.get("no_new_keyring")),
                         preserve_fds=int(o.get("preserve_fds") or 0))  # type: ignore[call-overload]


def cmd_create(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.create import create
    create(_store(g), a[0], _create_options(g, o))
    return 0


def cmd_start(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.start import start
    start(_store(g), a[0])
    return 0


def cmd_run(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.run import run
    return run(_store(g), a[0], _create_options(g, o), detach=bool(o.get("detach")),
               keep=bool(o.get("keep")))


def cmd_state(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.query import state_json
    os.write(1, state_json(_store(g), a[0]).encode())
    return 0


def cmd_kill(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.kill import kill, parse_signal
    sig = parse_signal(a[1] if len(a) > 1 else "SIGTERM")
    kill(_store(g), a[0], sig, all_processes=bool(o.get("all")))
    return 0


def cmd_delete(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.delete import delete
    delete(_store(g), a[0], force=bool(o.get("force")))
    return 0


def cmd_list(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun import log
    from ocirun.ops.query import format_list, list_states
    fmt = str(o.get("format") or "table")
    if fmt not in ("table", "json"):
        raise OciRunError("invalid format option")
    states, errs = list_states(_store(g))
    for e in errs:
        log.warning(e)
    os.write(1, format_list(states, fmt, bool(o.get("quiet"))).encode())
    return 0


def cmd_spec(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.spec import write_spec
    write_spec(str(o.get("bundle") or "."), bool(o.get("rootless")))
    return 0


def cmd_pause(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.freeze import pause
    pause(_store(g), a[0])
    return 0


def cmd_resume(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.freeze import resume
    resume(_store(g), a[0])
    return 0


def cmd_ps(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.ps import container_pids, format_json, format_table
    pids = container_pids(_store(g), a[0])
    fmt = str(o.get("format") or "table")
    if fmt == "json":
        os.write(1, format_json(pids).encode())
    elif fmt == "table":
        os.write(1, format_table(pids, a[1:]).encode())
    else:
        raise OciRunError("invalid format option")
    return 0


def cmd_events(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops import events
    interval = events.parse_duration(str(o.get("interval") or "5s"))
    if o.get("stats"):
        os.write(1, events.stats_line(_store(g), a[0]))
    else:
        events.watch(_store(g), a[0], interval)
    return 0


def cmd_update(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops import update
    res = o.get("resources")
    if res:
        new = update.read_resources_arg(str(res))
    else:
        new = update.from_flags({k.replace("_", "-"): str(v) for k, v in o.items()
                                 if v is not None and k != "help"})
    update.update(_store(g), a[0], new)
    return 0


HANDLERS = {"create": cmd_create, "start": cmd_start, "run": cmd_run, "state": cmd_state,
            "kill": cmd_kill, "delete": cmd_delete, "list": cmd_list, "spec": cmd_spec,
            "pause": cmd_pause, "resume": cmd_resume, "ps": cmd_ps, "events": cmd_events,
            "update": cmd_update}
