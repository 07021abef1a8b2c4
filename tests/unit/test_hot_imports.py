"""The hot commands import only what they need (no timing, just names).

Runs each command in a fresh ``python -I -S -X importtime`` (as the
launcher does) and fails when a heavy module shows up.
"""

import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

HEAVY = {"jsonschema", "argparse", "logging", "subprocess", "dataclasses", "typing", "socket",
         "asyncio", "pycparser", "ptrace", "seccomp", "pyseccomp", "fastjsonschema", "json",
         "contextlib", "enum"}


def imported(argv, tmp_path, want_rc):
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from ocirun.cli import main; "
            f"sys.exit(main({argv!r}))")
    r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                       capture_output=True, text=True, cwd=tmp_path)
    # a crash must not pass as "imported little": the command has to end the
    # way it does for a user (status, no traceback)
    errors = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("import time:"))
    assert "Traceback" not in errors, f"{argv}: crashed:\n{errors}"
    assert r.returncode == want_rc, f"{argv}: exit status {r.returncode}, want {want_rc}:\n{errors}"
    mods = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return mods


@pytest.mark.parametrize("argv, want_rc", [
    (["state", "nosuch"], 1), (["kill", "nosuch", "KILL"], 1), (["delete", "nosuch"], 1),
    (["start", "nosuch"], 1), (["delete", "-f", "nosuch"], 0), (["list"], 0), (["--version"], 0),
])
def test_hot_commands_stay_lean(argv, want_rc, tmp_path):
    mods = imported(["--root", str(tmp_path / "root")] + argv, tmp_path, want_rc)
    assert "ocirun" in mods
    assert not (mods & HEAVY), f"{argv}: heavy imports {sorted(mods & HEAVY)}"


# Help, man pages and completion are loaded only when asked for (issue 12): the parser
# reads the command table, never the modules that render it.
HELP_CODE = {"ocirun.cmdhelp", "ocirun.manpage", "ocirun.completion",
             "ocirun.ops.check", "ocirun.ops.hostcheck", "ocirun.config.explain"}  # and `check`


def ocirun_modules(argv, tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from ocirun.cli import main; "
            f"sys.exit(main({argv!r}))")
    r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                       capture_output=True, text=True, cwd=tmp_path)
    errors = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("import time:"))
    assert "Traceback" not in errors, f"{argv}: crashed:\n{errors}"
    return r.returncode, {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
                          if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("argv", [
    ["state", "nosuch"], ["run", "--bundle", "/nonexistent", "c1"], ["create", "-b", "/nonexistent", "c1"],
    ["kill", "nosuch", "KILL"], ["delete", "nosuch"], ["start", "nosuch"], ["list"], ["--version"],
])
def test_commands_import_no_help_code(argv, tmp_path):
    rc, mods = ocirun_modules(["--root", str(tmp_path / "root")] + argv, tmp_path)
    assert rc == (0 if argv in (["list"], ["--version"]) else 1), f"{argv}: exit status {rc}"
    assert "ocirun.cmdtable" in mods and "ocirun.commands" in mods or argv == ["--version"]
    assert not (mods & HELP_CODE), f"{argv}: imports {sorted(mods & HELP_CODE)}"


def test_help_imports_help_code(tmp_path):
    """The check above is not vacuous: asking for help does load the help module."""
    rc, mods = ocirun_modules(["state", "--help"], tmp_path)
    assert rc == 0 and "ocirun.cmdhelp" in mods and "ocirun.commands" not in mods
