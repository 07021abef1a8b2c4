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
