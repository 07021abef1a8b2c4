"""Man pages in roff: ocirun(8) and ocirun-COMMAND(8), from the command table.

The pages are generated, committed under man/man8/ and installed with the
package as wheel data (``share/man/man8``), so ``man ocirun`` works when the
venv's bin directory is on PATH: man-db looks for ``<dir>/../share/man`` of
every PATH entry.  ``man ocirun create`` finds ocirun-create(8) (man-db joins
the first two names with a dash).  Regenerate with
``python3 tools/gen_manpages.py``; tests/unit/test_manpages.py fails when the
committed pages differ from the table.  No date in the pages: the output
depends on the table and the version only, so regenerating is reproducible.
"""

from __future__ import annotations

from ocirun import SPEC_VERSION, __version__, cmdhelp, cmdtable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cmdtable import Command, Flag

SECTION = "8"
_TITLE = f'"" "ocirun {__version__}" "ocirun manual"'


def esc(text: str) -> str:
    """Escape text for roff: backslashes, dashes (so options copy as ASCII '-')."""
    return text.replace("\\", "\\e").replace("-", "\\-")


def _line(text: str) -> str:
    """One input line; a leading '.' or "'" would be read as a request."""
    text = esc(text)
    return f"\\&{text}" if text[:1] in (".", "'") else text


def prose(text: str) -> str:
    """cmdhelp's prose: paragraphs, and 4-space indented examples shown verbatim."""
    out: list[str] = []
    mode = ""  # "", "text" or "example"
    for raw in text.split("\n"):
        example = raw.startswith("    ")
        if mode == "example" and not example:
            out += [".fi", ".RE"]
            mode = ""
        if not raw:
            mode = ""
            continue
        if example and mode != "example":
            out += [".PP", ".RS 4", ".nf"]
            mode = "example"
        elif not example and mode != "text":
            out.append(".PP")
            mode = "text"
        out.append(_line(raw[4:] if example else raw))
    if mode == "example":
        out += [".fi", ".RE"]
    return "\n".join(out) + "\n"


def _flag(f: Flag) -> str:
    value = f" \\fI{esc(f[3])}\\fR" if f[3] else ""
    head = f"\\fB\\-\\-{esc(f[0])}\\fR{value}"
    if f[1]:
        head += f", \\fB\\-{esc(f[1])}\\fR{value}"
    return f".TP\n{head}\n{_line(cmdhelp.flag_text(f))}\n"


def _options(title: str, flags: list[Flag]) -> str:
    return f".SH {title}\n" + "".join(_flag(f) for f in flags) if flags else ""


def _page_name(row: Command) -> str:
    return f"{cmdtable.PROG}-{row[0]}"


def main_page() -> str:
    cmds = "".join(f".TP\n.BR {esc(_page_name(row))} ({SECTION})\n{_line(cmdhelp.summary(row))}\n"
                   for row in cmdtable.COMMANDS)
    see = ",\n".join(f".BR {esc(_page_name(row))} ({SECTION})" for row in cmdtable.COMMANDS)
    return (f'.\\" Generated from ocirun/cmdtable.py by tools/gen_manpages.py; do not edit.\n'
            f".TH OCIRUN {SECTION} {_TITLE}\n.nh\n"
            ".SH NAME\nocirun \\- run containers from OCI bundles, with runc's command line\n"
            ".SH SYNOPSIS\n\\fBocirun\\fR [\\fIglobal options\\fR] \\fIcommand\\fR "
            "[\\fIcommand options\\fR] [\\fIarguments\\fR...]\n"
            f".SH DESCRIPTION\n{prose(cmdhelp.DESCRIPTIONS[''])}"
            f".PP\nocirun {esc(__version__)} implements the OCI runtime specification "
            f"{esc(SPEC_VERSION)}.\n"
            f".SH COMMANDS\n{cmds}"
            f"{_options('GLOBAL OPTIONS', cmdhelp.shown(cmdtable.GLOBAL_FLAGS))}"
            ".SH FILES\n.TP\n"
            f".I {esc(cmdtable.DEFAULT_ROOT)}\n"
            "The default state directory (\\fB\\-\\-root\\fR): one directory per container.\n"
            f".SH SEE ALSO\n{see},\n.BR runc (8)\n")


def command_page(row: Command) -> str:
    name = _page_name(row)
    opts = " [\\fIcommand options\\fR]" if cmdhelp.shown(row[6]) else ""
    args = f" \\fI{esc(row[1])}\\fR" if row[1] else ""
    desc = cmdhelp.description(row[0], row)
    return (f'.\\" Generated from ocirun/cmdtable.py by tools/gen_manpages.py; do not edit.\n'
            f".TH {esc(name.upper())} {SECTION} {_TITLE}\n.nh\n"
            f".SH NAME\n{esc(name)} \\- {_line(row[5])}\n"
            f".SH SYNOPSIS\n\\fBocirun {esc(row[0])}\\fR{opts}{args}\n"
            + (f".SH DESCRIPTION\n{prose(desc)}" if desc else "")
            + _options("OPTIONS", cmdhelp.shown(row[6]))
            + f".SH SEE ALSO\n.BR ocirun ({SECTION})\n")


def pages() -> dict[str, str]:
    """File name -> roff text, for every page."""
    out = {f"ocirun.{SECTION}": main_page()}
    for row in cmdtable.COMMANDS:
        out[f"{_page_name(row)}.{SECTION}"] = command_page(row)
    return out
