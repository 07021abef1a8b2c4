"""One handler per command: map parsed flags onto ``ops`` calls.

Kept apart from cli.py so that ``--help`` and usage errors import nothing
from the library.  The command table (cmdtable.py) names each handler
(``"ocirun.commands:cmd_NAME"``); a handler takes the global options, the
command's options and its positional arguments, and returns the exit status.
"""

from __future__ import annotations

import posix as os  # the lean exec path never imports os (posixpaths.py)

from ocirun import posixpaths
from ocirun.cmdtable import DEFAULT_ROOT
from ocirun.errors import NotSupportedError, OciRunError, UsageError
from ocirun.state import StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.process.nursery import Nursery
    from ocirun.syscalls.api import Syscalls

Opts = dict[str, object]


def default_root(euid: int | None = None, environ: dict[str, str] | None = None) -> str:
    """The state root without --root: /run/ocirun for root, and for anyone
    else ``$XDG_RUNTIME_DIR/ocirun`` when that is set (runc's rule)."""
    if (os.geteuid() if euid is None else euid) == 0:
        return DEFAULT_ROOT
    xdg = (posixpaths.getenv("XDG_RUNTIME_DIR") if environ is None
           else environ.get("XDG_RUNTIME_DIR")) or ""
    return xdg.rstrip("/") + "/ocirun" if xdg.startswith("/") else DEFAULT_ROOT


def _store(g: Opts) -> StateStore:
    return StateStore(str(g.get("root") or default_root()))


def rootless_flag(value: object, euid: int | None = None) -> bool:
    """``--rootless true|false|auto``: use the rootless cgroup rules
    (ocirun/rootless.py); ``auto`` (the default) when not running as root."""
    v = str(value if value is not None else "auto").lower()
    if v == "auto":
        return (os.geteuid() if euid is None else euid) != 0
    if v in ("true", "1", "t", "yes"):
        return True
    if v in ("false", "0", "f", "no"):
        return False
    raise UsageError(f"invalid --rootless value `{value}`: want true, false or auto")


def _create_options(g: Opts, o: Opts):  # type: ignore[no-untyped-def]
    from ocirun.ops.create import options_from
    if g.get("systemd_cgroup"):
        raise NotSupportedError("--systemd-cgroup: the systemd cgroup driver is not supported yet")
    return options_from(o, rootless=rootless_flag(g.get("rootless")))


def _syscalls() -> Syscalls:
    """The real syscall seam; ops and process take it as a parameter, so their
    tests run them on the recording double instead.  Loaded at its first
    call (syscalls/lazy.py): ``create`` makes none before its init is forked."""
    from ocirun.syscalls.lazy import lazy_syscalls
    return lazy_syscalls()


def _nursery(sys: Syscalls) -> Nursery | None:
    from ocirun.process import nursery
    return nursery.take_or_start(sys)


def cmd_create(g: Opts, o: Opts, a: list[str]) -> int:
    opts = _create_options(g, o)
    sys = _syscalls()
    opts.nursery = _nursery(sys)
    from ocirun.ops.create import create
    create(_store(g), a[0], opts, sys)  # it kills and reaps the nursery on failure
    return 0


def cmd_start(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.start import start
    start(_store(g), a[0])
    return 0


def cmd_run(g: Opts, o: Opts, a: list[str]) -> int:
    # Forward signals from the first moment: ops.run is small; create's
    # imports come after the handlers are in.
    from ocirun.ops.run import Forwarder, run
    fwd = Forwarder()
    fwd.install()
    opts = _create_options(g, o)
    sys = _syscalls()
    opts.nursery = _nursery(sys)
    try:
        return run(_store(g), a[0], opts, detach=bool(o.get("detach")),
                   keep=bool(o.get("keep")), fwd=fwd, sys=sys)
    finally:
        if opts.nursery is not None:  # run failed before create took it
            opts.nursery.close()


def cmd_exec(g: Opts, o: Opts, a: list[str]) -> int:
    """runc's exec; any failure of the runtime's own exits 255 (RUNC-CLI.md §3),
    so callers can tell it from the process's status."""
    from ocirun.ops.run import Forwarder
    fwd = Forwarder()
    fwd.install()  # a signal during set-up is queued for the process, never lost
    import gc
    gc.disable()  # set-up makes no garbage cycles worth a collection pass (~1 ms)
    try:
        from ocirun.ops.exec import exec_process, exec_request
        sys = _syscalls()
        proc, opts = exec_request(_store(g), a[0], a[1:], o)
        return exec_process(_store(g), a[0], proc, opts, sys, fwd=fwd)
    except OciRunError as e:
        e.exit_code = 255
        raise
    finally:
        gc.enable()
        fwd.restore()


def cmd_features(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.features import features_json
    os.write(1, features_json().encode())
    return 0


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


def cmd_check(g: Opts, o: Opts, a: list[str]) -> int:
    """``ocirun check [-b BUNDLE] [--format text|json] [CONFIG]``: 0 would run, 1 would not."""
    from ocirun.ops.check import check_bundle, counts, render_json, render_text
    fmt = str(o.get("format") or "text")
    if fmt not in ("text", "json"):
        raise UsageError(f"check: invalid format {fmt!r} (text or json)")
    config = posixpaths.abspath(a[0]) if a else None
    bundle = posixpaths.abspath(str(o.get("bundle") or (posixpaths.dirname(config) if config else ".")))
    config = config or posixpaths.join(bundle, "config.json")
    found = check_bundle(bundle, config)
    render = render_json if fmt == "json" else render_text
    os.write(1, render(bundle, config, found).encode())
    return 1 if counts(found)["error"] else 0


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


def cmd_checkpoint(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.checkpoint import CheckpointOptions, checkpoint
    sfd = o.get("status_fd")
    checkpoint(_store(g), a[0], CheckpointOptions(
        image_path=str(o.get("image_path") or ""), work_path=str(o.get("work_path") or ""),
        parent_path=str(o.get("parent_path") or ""),
        leave_running=bool(o.get("leave_running")), tcp_established=bool(o.get("tcp_established")),
        ext_unix_sk=bool(o.get("ext_unix_sk")), shell_job=bool(o.get("shell_job")),
        lazy_pages=bool(o.get("lazy_pages")), status_fd=sfd if isinstance(sfd, int) else -1,
        page_server=str(o.get("page_server") or ""), file_locks=bool(o.get("file_locks")),
        pre_dump=bool(o.get("pre_dump")),
        manage_cgroups_mode=str(o.get("manage_cgroups_mode") or ""),
        empty_ns=tuple(o.get("empty_ns") or ()),  # type: ignore[arg-type]
        auto_dedup=bool(o.get("auto_dedup")), criu=str(g.get("criu") or "criu")))
    return 0


def cmd_restore(g: Opts, o: Opts, a: list[str]) -> int:
    from ocirun.ops.restore import RestoreOptions, restore
    if g.get("systemd_cgroup"):
        raise NotSupportedError("--systemd-cgroup: the systemd cgroup driver is not supported yet")
    return restore(_store(g), a[0], RestoreOptions(
        bundle=str(o.get("bundle") or "."), image_path=str(o.get("image_path") or ""),
        work_path=str(o.get("work_path") or ""), tcp_established=bool(o.get("tcp_established")),
        ext_unix_sk=bool(o.get("ext_unix_sk")), shell_job=bool(o.get("shell_job")),
        file_locks=bool(o.get("file_locks")),
        manage_cgroups_mode=str(o.get("manage_cgroups_mode") or ""),
        detach=bool(o.get("detach")), pid_file=o.get("pid_file"),  # type: ignore[arg-type]
        no_subreaper=bool(o.get("no_subreaper")), no_pivot=bool(o.get("no_pivot")),
        empty_ns=tuple(o.get("empty_ns") or ()),  # type: ignore[arg-type]
        auto_dedup=bool(o.get("auto_dedup")), lazy_pages=bool(o.get("lazy_pages")),
        lsm_profile=str(o.get("lsm_profile") or ""),
        lsm_mount_context=str(o.get("lsm_mount_context") or ""),
        console_socket=o.get("console_socket"),  # type: ignore[arg-type]
        criu=str(g.get("criu") or "criu")))
