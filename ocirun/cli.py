"""The ``ocirun`` command line: runc's grammar, a thin layer over ``ops``.

``ocirun [global flags] COMMAND [command flags] ID [args]``.  Flags take
``--flag value``, ``--flag=value`` and Go's single-dash ``-flag``; booleans
also take ``=true``/``=false`` (RUNC-CLI.md §1).  Commands, flags and
handlers come from the one command table (cmdtable.py).  A hand-written
parser because argparse costs ~8 ms per command; help text (cmdhelp.py) is
imported only when help is asked for or a usage error prints it.  This module
is the one place errors are printed: a line ``ocirun: <what>: <why>`` on
stderr (and the ``--log`` entry), exit 1, and a traceback only with ``--debug``.
"""

from __future__ import annotations

import posix as os  # the lean exec path never imports os (posixpaths.py)
import sys

from ocirun import SPEC_VERSION, __version__, cmdtable, log, posixpaths
from ocirun.errors import NotSupportedError, OciRunError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cmdtable import Flag


class Parsed:
    __slots__ = ("args", "opts")

    def __init__(self) -> None:
        self.opts: dict[str, object] = {}
        self.args: list[str] = []


class _BadUsage(UsageError):
    """A usage error after which the help of ``topic`` goes to stdout, as runc does."""

    def __init__(self, msg: str, topic: str | None, header: str) -> None:
        super().__init__(msg)
        self.topic = topic
        self.header = header


def flag_index(flags: tuple[Flag, ...]) -> dict[str, Flag]:
    """Long and short names -> flag row."""
    index: dict[str, Flag] = {}
    for f in flags:
        index[f[0]] = f
        if f[1]:
            index[f[1]] = f
    return index


def _bool(value: str, flag: str) -> bool:
    v = value.lower()
    if v in ("true", "1", "t", "yes"):
        return True
    if v in ("false", "0", "f", "no"):
        return False
    raise UsageError(f'invalid boolean value "{value}" for flag -{flag}')


def parse_flags(argv: list[str], i: int, flags: dict[str, Flag], out: Parsed,
                stop_at_positional: bool) -> int:
    """Parse flags from argv[i:] into ``out``; returns the index where parsing stopped.

    With ``stop_at_positional`` parsing stops at the first positional (or after
    ``--``); otherwise positionals collect in ``out.args`` and everything after
    ``--`` is positional."""
    n = len(argv)
    while i < n:
        tok = argv[i]
        if tok == "--":
            if stop_at_positional:
                return i + 1
            out.args.extend(argv[i + 1:])
            return n
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
        kind = spec[2]
        dest = spec[0].replace("-", "_")
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
        elif kind == "list":
            prev = out.opts.get(dest)
            if isinstance(prev, list):
                prev.append(value)
            else:
                out.opts[dest] = [value]
        else:
            out.opts[dest] = value
    return i


def _arity_error(name: str, lo: int, hi: int, got: int) -> str | None:
    if lo == hi and got != lo:
        return f'"{name}" requires exactly {lo} argument(s)'
    if got < lo:
        return f'"{name}" requires a minimum of {lo} argument(s)'
    if 0 <= hi < got:
        return f'"{name}" requires a maximum of {hi} argument(s)'
    return None


def _show_help(topic: str | None) -> int:
    from ocirun import cmdhelp
    os.write(1, cmdhelp.render(topic).encode())
    return 0


def _dispatch(handler: str, g: Parsed, c: Parsed) -> int:
    module, _, func = handler.partition(":")
    __import__(module)
    status: int = getattr(sys.modules[module], func)(g.opts, c.opts, c.args)
    return status


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    g = Parsed()
    cmd = "ocirun"
    usage_status = 1
    try:
        try:
            i = parse_flags(argv, 0, flag_index(cmdtable.GLOBAL_FLAGS), g, stop_at_positional=True)
        except UsageError as e:
            raise _BadUsage(e.msg, None, f"Incorrect Usage. {e.msg}") from None
        fmt = str(g.opts.get("log_format", "text"))
        if fmt not in ("text", "json"):
            raise UsageError(f"invalid log-format: {fmt}")
        try:
            log.configure(g.opts.get("log"), fmt, bool(g.opts.get("debug")))  # type: ignore[arg-type]
        except OSError as e:
            raise OciRunError(f"open log file `{g.opts.get('log')}`: {e.strerror}") from e
        trace = g.opts.get("trace") or posixpaths.getenv("OCIRUN_TRACE")
        if trace or g.opts.get("debug"):
            from ocirun import steps
            try:
                steps.configure(str(trace) if trace else None, bool(g.opts.get("debug")),
                                log.debug)
            except OSError as e:
                raise OciRunError(f"open trace file `{trace}`: {e.strerror}") from e
        if g.opts.get("version"):
            os.write(1, f"ocirun version {__version__}\nspec: {SPEC_VERSION}\n"
                        f"python: {sys.version.split()[0]}\n".encode())
            return 0
        if i >= len(argv) or g.opts.get("help"):
            return _show_help(None)
        cmd = argv[i]
        row = cmdtable.find(cmd)
        if row is None:
            raise UsageError(f"No help topic for '{cmd}'")
        name, _, lo, hi, handler, _, flags = row
        usage_status = cmdtable.USAGE_STATUS.get(name, 1)
        c = Parsed()
        try:
            j = parse_flags(argv, i + 1, flag_index(flags + (cmdtable.HELP_FLAG,)), c,
                            stop_at_positional=hi < 0)
        except UsageError as e:
            if not handler:
                raise NotSupportedError(f"`{name}` is not supported yet") from None
            raise _BadUsage(e.msg, name, f"Incorrect Usage: {e.msg}") from None
        if hi < 0:
            c.args = argv[j:]
        if c.opts.get("help"):
            return _show_help(name)
        if not handler:
            raise NotSupportedError(f"`{name}` is not supported yet")
        bad = _arity_error(name, lo, hi, len(c.args))
        if bad:
            raise _BadUsage(bad, name, "Incorrect Usage.")
        return _dispatch(handler, g, c)
    except OciRunError as e:
        return report(e, cmd, usage_status)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 -- a bug: still one line unless --debug
        return report(e, cmd, usage_status)


def report(e: Exception, cmd: str, usage_status: int = 1) -> int:
    """Print the error a command failed with, the one way (also for the
    launcher's fast path, quick.py); returns the exit status.  Called while
    ``e`` is being handled, so --debug prints its traceback."""
    if isinstance(e, OciRunError):
        if isinstance(e, _BadUsage):
            from ocirun import cmdhelp
            os.write(1, f"{e.header}\n\n{cmdhelp.render(e.topic)}".encode())
        log.error(e.msg)
        status = usage_status if isinstance(e, UsageError) else e.exit_code
    else:  # a bug: still one line unless --debug
        log.error(f"{cmd}: internal error: {type(e).__name__}: {e}")
        status = 1
    if log.is_debug():
        import traceback
        traceback.print_exc()
    return status
