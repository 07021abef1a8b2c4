"""The plain forms of the command line, read without the command table.

The launcher (launcher.py) and its fast path (quick.py) decide from the
global flags alone whether they can act before the full command line
(cli.py, with the command table) is imported.  They understand ``--root``,
``--log`` and ``--log-format`` exactly as cli.parse_flags reads them, and
raise :class:`Fallback` for anything else: the full command line then runs
and reports in its own words.
"""

from __future__ import annotations


class Fallback(Exception):
    """Not for the fast path: let the full command line run."""


def parse_globals(argv: list[str]) -> tuple[dict[str, str], int]:
    """``--root``, ``--log``, ``--log-format`` as cli.parse_flags reads them;
    (their values, index of the command).  Anything else raises Fallback."""
    opts: dict[str, str] = {}
    i, n = 0, len(argv)
    while i < n:
        tok = argv[i]
        if not tok.startswith("-") or tok == "-":
            return opts, i
        name, eq, value = tok.lstrip("-").partition("=")
        if name not in ("root", "log", "log-format"):
            raise Fallback
        i += 1
        if not eq:
            if i >= n:
                raise Fallback
            value = argv[i]
            i += 1
        opts[name] = value
    raise Fallback  # no command: help
