"""README.md cannot drift (issue 12): its by-hand block runs as written, with ocirun built
as a wheel and installed into a fresh venv, as a user would get it; and what the README
promises of that install works: `man ocirun`, `ocirun help run`, bash completion.

The block is run from the repository's top directory with the venv's bin first on PATH.
Only names are made unique, so that runs on a shared machine do not meet: `/tmp/` becomes
this test's temp dir and the container IDs get this session's token in front (the leak
check at the end of the session looks for that token).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MARK = "<!-- tests/privileged/test_readme.py runs this block"
IDS = ("hello", "sleeper")


def by_hand_block() -> str:
    text = (REPO / "README.md").read_text()
    after = text.split(MARK, 1)[1]
    m = re.match(r"[^\n]*\n```sh\n(.*?)```", after, re.S)
    assert m, "the marked README block is not a ```sh block right after the mark"
    return m.group(1)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this tree (built from a copy, so the tree gets no build/), in a fresh venv."""
    base = tmp_path_factory.mktemp("readme-venv")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".cache", ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base / "wheels"),
                    str(src)], check=True, capture_output=True, timeout=600)
    wheels = list((base / "wheels").glob("ocirun-*.whl"))
    assert len(wheels) == 1
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, timeout=120)
    subprocess.run([str(base / "venv" / "bin" / "pip"), "install", "-q", str(wheels[0])],
                   check=True, capture_output=True, timeout=600)
    return base / "venv"


def _env(venv: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env["PATH"] = f"{venv / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env.update(extra)
    return env


def test_by_hand_block_runs_as_written(venv: Path, tmp_path: Path, session_token: str) -> None:
    block = by_hand_block()
    for name in IDS:
        assert re.search(rf"\b{name}\b", block), f"README block no longer uses the ID {name}"
    script = block.replace("/tmp/", f"{tmp_path}/")
    for name in IDS:
        script = re.sub(rf"\b{name}\b", f"{session_token}-{name}", script)
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    ocirun = str(venv / "bin" / "ocirun")
    try:
        # files, not pipes: a detached container holds the runtime's stdio open
        with open(out_path, "w") as out, open(err_path, "w") as err:
            r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=REPO, stdout=out,
                               stderr=err, stdin=subprocess.DEVNULL, timeout=300, check=False,
                               env=_env(venv, OCITEST=f"{session_token}-readme"))
        stdout, stderr = out_path.read_text(), err_path.read_text()
        assert r.returncode == 0, f"README block failed ({r.returncode}):\n{stdout}\n{stderr}"
        sleeper = f"{session_token}-sleeper"
        assert "hello from a container\n" in stdout
        # `list` while it ran shows it running; the last `list` no longer has it (other
        # containers under the default root may show up in both)
        lines = stdout.splitlines()
        headers = [i for i, line in enumerate(lines) if re.match(r"ID\s+PID\s+STATUS\s+BUNDLE", line)]
        assert len(headers) == 2, stdout
        first = lines[headers[0] + 1:]
        assert any(re.match(rf"{sleeper}\s+\d+\s+running\s", line) for line in first), stdout
        assert not any(line.startswith(sleeper) for line in lines[headers[1] + 1:]), stdout
        assert f'"id": "{sleeper}"' in stdout and '"status": "running"' in stdout
        assert "state.json" in stdout
        assert not os.path.exists(f"/run/ocirun/{sleeper}")
        assert not os.path.exists(tmp_path / "sleeper") and not os.path.exists(tmp_path / "hello")
    finally:
        for name in IDS:
            subprocess.run([ocirun, "delete", "--force", f"{session_token}-{name}"], capture_output=True,
                           timeout=60, check=False)


def test_installed_man_pages(venv: Path) -> None:
    """man-db finds <prefix>/share/man for <prefix>/bin on PATH."""
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed")
    for argv, page in ((["ocirun"], "ocirun.8"), (["ocirun", "run"], "ocirun-run.8")):
        r = subprocess.run(["man", "-w", *argv], capture_output=True, text=True, timeout=60, check=False,
                           env=_env(venv, MANPATH=""))
        assert r.stdout.strip() == str(venv / "share" / "man" / "man8" / page), r.stderr
    r = subprocess.run(["man", "-P", "cat", "ocirun", "kill"], capture_output=True, text=True, timeout=60,
                       check=False, env=_env(venv, MANPATH="", MANWIDTH="100"))
    assert "OCIRUN-KILL(8)" in r.stdout and "--all, -a" in r.stdout


def test_installed_help_and_completion(venv: Path) -> None:
    r = subprocess.run(["ocirun", "help", "run"], capture_output=True, text=True, timeout=60, check=False,
                       env=_env(venv))
    assert r.returncode == 0 and r.stdout.startswith("NAME:\n   ocirun run - ")
    assert "--bundle DIR, -b DIR" in r.stdout
    r = subprocess.run(["bash", "-c", "source <(ocirun completion bash); complete -p ocirun"],
                       capture_output=True, text=True, timeout=60, check=False, env=_env(venv))
    assert r.stdout == "complete -F _ocirun ocirun\n", r.stderr

