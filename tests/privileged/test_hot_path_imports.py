"""The hot path of a real container imports only what it needs (names, not times).

Runs create, start, state, kill and delete of a real busybox container, and a
foreground run, each in a fresh ``python -I -S -X importtime`` (as the launcher
runs), and fails when a heavy module shows up, or any of the help, man page and
completion code (issue 12: help is loaded only when asked for).
ARCHITECTURE.md "Speed".
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path
from typing import Any

import pytest

import bundle as bundle_mod

REPO = Path(__file__).resolve().parents[2]

HEAVY = {"jsonschema", "argparse", "logging", "subprocess", "dataclasses", "typing", "socket",
         "asyncio", "pycparser", "ptrace", "seccomp", "pyseccomp", "fastjsonschema", "json",
         "contextlib", "enum", "re", "signal", "shutil", "pathlib", "tempfile", "selectors"}
HELP_CODE = {"ocirun.cmdhelp", "ocirun.manpage", "ocirun.completion",
             "ocirun.ops.check", "ocirun.ops.hostcheck", "ocirun.config.explain"}  # and `check`


def _imports(root: str, argv: list[str], cwd: str) -> set[str]:
    # what bin/ocirun does: -I -S, then the venv's own site-packages (cffi); under -S
    # sys.prefix is the base interpreter's, so take the path from this (site-enabled) process
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            f"sys.path.append({sysconfig.get_path('purelib')!r}); "
            "from ocirun.cli import main; "
            f"sys.exit(main({['--root', root] + argv!r}))")
    # a file, not a pipe: the container inherits the runtime's stdio, and a
    # pipe would not see EOF while the container lives
    err_path = os.path.join(cwd, f"importtime-{argv[0]}.txt")
    with open(err_path, "w+") as err:
        r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           cwd=cwd, timeout=60)
        err.seek(0)
        text = err.read()
    assert r.returncode == 0, (argv, text[-2000:])
    mods = set()
    for line in text.splitlines():
        if line.startswith("import time:") and "|" in line:
            mods.add(line.rsplit("|", 1)[1].strip())
    return mods


def _lean(argv: list[str], mods: set[str]) -> None:
    heads = {m.split(".")[0] for m in mods}
    assert "ocirun" in heads
    assert not (heads & HEAVY), f"{argv[0]}: heavy imports {sorted(heads & HEAVY)}"
    assert not (mods & HELP_CODE), f"{argv[0]}: help code imported {sorted(mods & HELP_CODE)}"


@pytest.fixture
def container(tmp_path: Path) -> Any:
    root = str(tmp_path / "root")
    b = tmp_path / "bundle"
    bundle_mod.write_bundle(str(b), args=["sleep", "60"])
    cid = f"hotpath-{uuid.uuid4().hex[:8]}"
    yield root, str(b), cid
    # clean up whatever the test left, even on failure
    subprocess.run([sys.executable, "-m", "ocirun", "--root", root, "delete", "-f", cid],
                   cwd=str(REPO), capture_output=True, timeout=60)
    shutil.rmtree(root, ignore_errors=True)


def test_lifecycle_commands_stay_lean(container: Any, tmp_path: Path) -> None:
    root, bdir, cid = container
    steps = [["create", "--bundle", bdir, cid], ["start", cid], ["state", cid],
             ["kill", cid, "KILL"], ["delete", "--force", cid]]
    for argv in steps:
        _lean(argv, _imports(root, argv, str(tmp_path)))
    assert not os.path.exists(os.path.join(root, cid))


def test_create_and_exec_stay_lean_without_os(container: Any, tmp_path: Path) -> None:
    """create's (here run -d's) and exec's whole paths, the children's
    included, run on ``posix``, ``_stat`` and posixpaths: ``os`` (with
    posixpath, stat and _collections_abc) would cost each ~1 ms."""
    root, bdir, cid = container
    for argv in (["run", "-d", "--bundle", bdir, cid], ["exec", cid, "/bin/true"]):
        mods = _imports(root, argv, str(tmp_path))
        _lean(argv, mods)
        assert not mods & {"os", "posixpath", "_collections_abc", "stat"}, (argv[0], sorted(mods))


def test_foreground_run_stays_lean(tmp_path: Path) -> None:
    root = str(tmp_path / "root")
    b = tmp_path / "bundle"
    bundle_mod.write_bundle(str(b), args=["true"])
    cid = f"hotpath-run-{uuid.uuid4().hex[:8]}"
    try:
        argv = ["run", "--bundle", str(b), cid]
        _lean(argv, _imports(root, argv, str(tmp_path)))
        assert not os.path.exists(os.path.join(root, cid))  # run deleted it
    finally:
        subprocess.run([sys.executable, "-m", "ocirun", "--root", root, "delete", "-f", cid],
                       cwd=str(REPO), capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def test_launcher_create_skips_the_command_table(container: Any, tmp_path: Path) -> None:
    """The installed launcher serves create's plain form from quick.py:
    no cli, cmdtable or commands module, and no syscall seam (cffi) before
    the init is forked (it loads for the subreaper prctl, after)."""
    launcher = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if not os.path.exists(launcher):
        pytest.skip("no installed launcher beside this interpreter")
    root, bdir, cid = container
    err_path = os.path.join(str(tmp_path), "importtime-launcher.txt")
    with open(err_path, "w+") as err:
        r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", launcher,
                            "--root", root, "create", "--bundle", bdir, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           cwd=str(tmp_path), timeout=60)
        err.seek(0)
        text = err.read()
    assert r.returncode == 0, text[-2000:]
    mods = {line.rsplit("|", 1)[1].strip() for line in text.splitlines()
            if line.startswith("import time:") and "|" in line}
    assert "ocirun.ops.create" in mods and "ocirun.quick" in mods
    assert not mods & {"ocirun.cli", "ocirun.cmdtable", "ocirun.commands"}, sorted(mods)
    _lean(["create"], mods)
