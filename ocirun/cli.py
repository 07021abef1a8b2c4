"""The ``ocirun`` command line: runc's grammar, a thin layer over ``ops``.

``ocirun [global flags] COMMAND [command flags] ID [args]``.  Flags take
``--flag value``, ``--flag=value`` and Go's single-dash ``-flag``; booleans
also take ``=true``/``=false`` (RUNC-CLI.md §1).  A hand-written parser
because argparse costs ~8 ms per command.  This module is the one place
errors are printed: a line ``ocirun: <what>: <why>`` on stderr (and the
``--log`` entry), exit 1, and a traceback only with ``--debug``.
"""

from __future__ import annotations

import os
import sys

from ocirun import SPEC_VERSION, __version__, log
from ocirun.errors import NotSupportedError, OciRunError, UsageError

DEFAULT_ROOT = "/run/ocirun"

# name -> (dest, kind); kind: "bool", "str" or "int".  Aliases share a dest.
GLOBAL_FLAGS = {
    "root": ("root", "str"), "log": ("log", "str"), "log-format": ("log_format", "str"),
    "debug": ("debug", "bool"), "systemd-cgroup": ("systemd_cgroup", "bool"),
    "rootless": ("rootless", "str"), "criu": ("criu", "str"),
    "help": ("help", "bool"), "h": ("help", "bool"),
    "version": ("version", "bool"), "v": ("version", "bool"),
}
_CREATE_FLAGS = {
    "bundle": ("bundle", "str"), "b": ("bundle", "str"),
    "console-socket": ("console_socket", "str"), "pid-file": ("pid_file", "str"),
    "no-pivot": ("no_pivot", "bool"), "no-new-keyring": ("no_new_keyring", "bool"),
    "preserve-fds": ("preserve_fds", "int"),
}
_HELP = {"help": ("help", "bool"), "h": ("help", "bool")}

# command -> (flags, positional min, positional max, usage, summary)
COMMANDS: dict[str, tuple[dict[str, tuple[str, str]], int, int, str, str]] = {
    "create": ({**_CREATE_FLAGS, **_HELP}, 1, 1, "create [command options] <container-id>",
               "create a container (the process waits, not yet started)"),
    "start": (_HELP, 1, 1, "start <container-id>", "run the user process of a created container"),
    "state": (_HELP, 1, 1, "state <container-id>", "print the state of a container as JSON"),
    "kill": ({"all": ("all", "bool"), "a": ("all", "bool"), **_HELP}, 1, 2,
             "kill [--all] <container-id> [signal]",
             "send a signal (default SIGTERM) to the container's init process"),
    "delete": ({"force": ("force", "bool"), "f": ("force", "bool"), **_HELP}, 1, 1,
               "delete [--force] <container-id>", "delete a stopped container and what it holds"),
    "run": ({**_CREATE_FLAGS, "detach": ("detach", "bool"), "d": ("detach", "bool"),
             "keep": ("keep", "bool"), "no-subreaper": ("no_subreaper", "bool"), **_HELP}, 1, 1,
            "run [command options] <container-id>",
            "create and start a container, wait for it, delete it"),
    "list": ({"format": ("format", "str"), "f": ("format", "str"), "quiet": ("quiet", "bool"),
              "q": ("quiet", "bool"), **_HELP}, 0, 0, "list [--format table|json] [--quiet]",
             "list the containers under --root"),
    "spec": ({"bundle": ("bundle", "str"), "b": ("bundle", "str"),
              "rootless": ("rootless", "bool"), **_HELP}, 0, 0, "spec [--bundle DIR] [--rootless]",
             "write a starter config.json"),
}
# cgroup commands (issue 9)
_UPDATE_FLAGS = {f: (f, "str") for f in (
    "memory", "memory-reservation", "memory-swap", "cpu-share", "cpu-shares", "cpu-quota",
    "cpu-period", "cpu-burst", "cpu-rt-runtime", "cpu-rt-period", "cpuset-cpus", "cpuset-mems",
    "cpu-idle", "pids-limit", "blkio-weight", "kernel-memory", "kernel-memory-tcp",
    "l3-cache-schema", "mem-bw-schema")}
COMMANDS.update({
    "pause": (_HELP, 1, 1, "pause <container-id>", "freeze every process of a container"),
    "resume": (_HELP, 1, 1, "resume <container-id>", "thaw a paused container"),
    "ps": ({"format": ("format", "str"), "f": ("format", "str"), **_HELP}, 1, 1 << 16,
           "ps [--format table|json] <container-id> [ps options]",
           "show the processes running in a container"),
    "events": ({"interval": ("interval", "str"), "stats": ("stats", "bool"), **_HELP}, 1, 1,
               "events [--stats] [--interval 5s] <container-id>",
               "print a container's OOM events and resource statistics"),
    "update": ({"resources": ("resources", "str"), "r": ("resources", "str"), **_UPDATE_FLAGS,
                **_HELP}, 1, 1, "update [command options] <container-id>",
               "change the resource limits of a running container"),
})
NOT_YET = ("exec", "features", "checkpoint", "restore")


class Parsed:
    __slots__ = ("args", "opts")

    def __init__(self) -> None:
        self.opts: dict[str, object] = {}
        self.args: list[str] = []


def _bool(value: str, flag: str) -> bool:
    v = value.lower()
    if v in ("true", "1", "t", "yes"):
        return True
    if v in ("false", "0", "f", "no"):
        return False
    raise UsageError(f'invalid boolean value "{value}" for flag -{flag}')


def parse_flags(argv: list[str], i: int, flags: dict[str, tuple[str, str]], out: Parsed,
                stop_at_positional: bool) -> int:
    """Parse flags from argv[i:]; returns the index of the first positional."""
    n = len(argv)
    while i < n:
        tok = argv[i]
        if tok == "--":
            return i + 1
        if not tok.startswith("-") or tok == "-":
            if stop_at_positional:
                return i
            out.args.append(tok)
            i += 1
            continue
        name, eq, value = tok.lstrip("-").partition("=")
        spec = flags.get(name)
        if spec is None:
            raise UsageError(f"flag provided but not defined: -{name}")
        dest, kind = spec
        i += 1
        if kind == "bool":
            out.opts[dest] = _bool(value, name) if eq else True
            continue
        if not eq:
            if i >= n:
                raise UsageError(f"flag needs an argument: -{name}")
            value = argv[i]
            i += 1
        if kind == "int":
            try:
                out.opts[dest] = int(value)
            except ValueError:
                raise UsageError(f'invalid value "{value}" for flag -{name}: parse error') from None
        else:
            out.opts[dest] = value
    return i


def usage(cmd: str | None = None) -> str:
    if cmd and cmd in COMMANDS:
        flags, _, _, line, summary = COMMANDS[cmd]
        names = sorted({d for d, _ in flags.values()} - {"help"})
        opts = "".join(f"   --{d.replace('_', '-')}\n" for d in names)
        return f"NAME:\n   ocirun {cmd} - {summary}\n\nUSAGE:\n   ocirun {line}\n" + (
            f"\nOPTIONS:\n{opts}" if opts else "")
    cmds = "".join(f"   {c:<8} {v[4]}\n" for c, v in COMMANDS.items())
    return (f"NAME:\n   ocirun - an OCI runtime-spec {SPEC_VERSION} container runtime\n\n"
            "USAGE:\n   ocirun [global options] command [command options] [arguments...]\n\n"
            f"COMMANDS:\n{cmds}   (not yet: {', '.join(NOT_YET)})\n\n"
            "GLOBAL OPTIONS:\n"
            f"   --root DIR              state directory (default {DEFAULT_ROOT})\n"
            "   --log FILE              log file (default stderr)\n"
            "   --log-format text|json  log format (default text)\n"
            "   --debug                 debug log lines; tracebacks on errors\n"
            "   --systemd-cgroup        systemd cgroup driver (not supported yet)\n"
            "   --version, -v           print the version\n")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    g = Parsed()
    cmd = "ocirun"
    try:
        i = parse_flags(argv, 0, GLOBAL_FLAGS, g, stop_at_positional=True)
        fmt = str(g.opts.get("log_format", "text"))
        if fmt not in ("text", "json"):
            raise UsageError(f"invalid log-format: {fmt}")
        try:
            log.configure(g.opts.get("log"), fmt, bool(g.opts.get("debug")))  # type: ignore[arg-type]
        except OSError as e:
            raise OciRunError(f"open log file `{g.opts.get('log')}`: {e.strerror}") from e
        if g.opts.get("version"):
            os.write(1, f"ocirun version {__version__}\nspec: {SPEC_VERSION}\n"
                        f"python: {sys.version.split()[0]}\n".encode())
            return 0
        if i >= len(argv) or g.opts.get("help"):
            os.write(1, usage().encode())
            return 0 if g.opts.get("help") or i >= len(argv) else 1
        cmd = argv[i]
        if cmd in NOT_YET:
            raise NotSupportedError(f"`{cmd}` is not supported yet")
        if cmd not in COMMANDS:
            raise UsageError(f"No help topic for '{cmd}'")
        flags, lo, hi, _, _ = COMMANDS[cmd]
        c = Parsed()
        j = parse_flags(argv, i + 1, flags, c, stop_at_positional=cmd == "ps")
        if cmd == "ps":  # runc: flags end at the id; what follows goes to ps(1)
            c.args = argv[j:]
        if c.opts.get("help"):
            os.write(1, usage(cmd).encode())
            return 0
        if not lo <= len(c.args) <= hi:
            os.write(1, b"Incorrect Usage.\n\n" + usage(cmd).encode())
            want = f"exactly {lo}" if lo == hi else f"{lo} to {hi}"
            raise UsageError(f'"{cmd}" requires {want} argument(s)')
        from ocirun import commands
        return commands.HANDLERS[cmd](g.opts, c.opts, c.args)
    except OciRunError as e:
        log.error(e.msg)
        if log.is_debug():
            import traceback
            traceback.print_exc()
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line unless --debug
        log.error(f"{cmd}: internal error: {type(e).__name__}: {e}")
        if log.is_debug():
            import traceback
            traceback.print_exc()
        return 1
