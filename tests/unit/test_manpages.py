"""The committed man pages (man/man8) are the ones the command table gives, and valid roff."""

import configparser
import pathlib
import shutil
import subprocess

import pytest

from ocirun import cmdtable, manpage

REPO = pathlib.Path(__file__).resolve().parents[2]
MAN8 = REPO / "man" / "man8"
PAGES = manpage.pages()


def test_committed_pages_match_the_table():
    committed = {p.name: p.read_text() for p in MAN8.glob("*.8")}
    stale = sorted(n for n in set(PAGES) | set(committed) if PAGES.get(n) != committed.get(n))
    assert not stale, f"man pages out of date: {stale}; run python3 tools/gen_manpages.py"


def test_one_page_per_command():
    assert set(PAGES) == {"ocirun.8"} | {f"ocirun-{row[0]}.8" for row in cmdtable.COMMANDS}


@pytest.mark.parametrize("name", sorted(PAGES))
def test_page_lists_its_flags(name):
    text = PAGES[name]
    cmd = name.removesuffix(".8").partition("-")[2]
    flags = cmdtable.find(cmd)[cmdtable.C_FLAGS] if cmd else cmdtable.GLOBAL_FLAGS
    for f in flags:
        if f[cmdtable.F_DESC]:
            assert "\\fB\\-\\-" + manpage.esc(f[0]) + "\\fR" in text, f[0]
        else:
            assert manpage.esc(f[0]) not in text


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("name", sorted(PAGES))
def test_roff_is_clean(name):
    """groff with every warning on: no unknown request, no bad escape."""
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=PAGES[name],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_prose_examples_are_verbatim():
    text = manpage.prose("Run it:\n\n    ocirun run -d c1\n    ocirun kill c1\n\n.dot first")
    assert text == (".PP\nRun it:\n.PP\n.RS 4\n.nf\nocirun run \\-d c1\nocirun kill c1\n.fi\n.RE\n"
                    ".PP\n\\&.dot first\n")


def test_pages_are_installed_as_wheel_data():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["options.data_files"]["share/man/man8"].strip() == "man/man8/*.8"
