"""launcher.direct_shebang: bin/ocirun's #!/bin/sh prelude replaced by the
interpreter itself, only where that is plainly safe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ocirun.launcher import SH, direct_shebang

BODY = b'"""": # sh part\nexec python3 -IS "$0" "$@"\n"""\nprint("hi")\n'


def _venv(tmp_path: Path) -> Path:
    b = tmp_path / "venv" / "bin"
    b.mkdir(parents=True)
    os.symlink(sys.executable, b / "python3")
    (b / "ocirun").write_bytes(SH + BODY)
    os.chmod(b / "ocirun", 0o755)
    return b / "ocirun"


def test_rewrites_once_to_the_real_interpreter(tmp_path: Path) -> None:
    launcher = _venv(tmp_path)
    assert direct_shebang(str(launcher))
    data = launcher.read_bytes()
    assert data == b"#!" + os.path.realpath(sys.executable).encode() + b" -IS\n" + BODY
    assert launcher.stat().st_mode & 0o7777 == 0o755
    assert not direct_shebang(str(launcher))  # already done
    assert [p.name for p in launcher.parent.iterdir() if p.name.startswith(".")] == []


def test_leaves_unusual_installs_alone(tmp_path: Path) -> None:
    launcher = _venv(tmp_path)
    (launcher.parent / "python3").unlink()  # no interpreter beside it
    assert not direct_shebang(str(launcher))
    assert launcher.read_bytes() == SH + BODY
    os.symlink(sys.executable, launcher.parent / "python3")
    assert not direct_shebang("relative/ocirun")
    link = tmp_path / "link"
    os.symlink(launcher, link)
    assert not direct_shebang(str(link))  # a symlink: its target's line is not ours to guess
    launcher.write_bytes(b"#!/usr/bin/env python3\n" + BODY)
    assert not direct_shebang(str(launcher))  # not the sh prelude


def test_leaves_a_too_long_interpreter_path_alone(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    launcher = _venv(deep)
    long_py = deep / "venv" / "bin" / "python3"
    long_py.unlink()
    real = deep / "venv" / "bin" / "real-python"
    os.symlink(sys.executable, real)
    # a copy-style venv: python3 a regular file whose path is the line
    long_py.write_bytes(b"")
    os.chmod(long_py, 0o755)
    assert len(str(long_py)) + 7 > 127
    assert not direct_shebang(str(launcher))
    assert launcher.read_bytes() == SH + BODY
