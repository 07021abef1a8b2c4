"""Build ocirun from a checkout the way users get it, and install it into fresh venvs.

Shared by ``bench/bench.py`` (which measures the installed artifact, never the working
tree) and ``tests/unit/test_install.py`` (which checks every install path ships the fast
package). Standard library only.

Builds start from a copy of the files git tracks (their working-tree content), so an
untracked file that happens to lie in the checkout (a locally generated module, a stale
``build/``) can never make the artifact look better than what a clone gives.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, ".cache")

# What goes into the package: a change anywhere else (tests, bench, docs) leaves the
# built artifact, and the bench's cached venv, as they were.
PACKAGE_INPUTS = ("setup.cfg", "pyproject.toml", "README.md", "bin/", "ocirun/", "specs/")


class BuildError(Exception):
    """A build or install step failed; the message holds its output."""


def run(argv: Sequence[str], cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BuildError(f"`{' '.join(argv)}` exited {r.returncode}:\n{r.stdout[-3000:]}\n"
                         f"{r.stderr[-3000:]}")
    return r.stdout


def tracked_files(repo: str = REPO) -> list[str]:
    """Paths (relative to ``repo``) git tracks and that exist in the working tree."""
    if not os.path.isdir(os.path.join(repo, ".git")) and not os.path.isfile(
            os.path.join(repo, ".git")):
        raise BuildError(f"{repo} is not a git checkout: cannot tell which files are tracked")
    out = run(["git", "-C", repo, "ls-files", "-z", "--cached"])
    return sorted(p for p in out.split("\0") if p and os.path.isfile(os.path.join(repo, p)))


def copy_tracked(dest: str, repo: str = REPO, only: Iterable[str] | None = None) -> str:
    """Copy the tracked files (or those under the ``only`` prefixes) into ``dest``."""
    prefixes = tuple(only) if only is not None else None
    for rel in tracked_files(repo):
        if prefixes is not None and not rel.startswith(prefixes):
            continue
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(repo, rel), target, follow_symlinks=False)
    return dest


def source_digest(repo: str = REPO) -> str:
    """A hash of everything the package is built from, plus the interpreter's identity."""
    h = hashlib.sha256()
    h.update(f"{sys.version}\0{os.path.realpath(base_python())}\0".encode())
    for rel in tracked_files(repo):
        if rel.startswith(PACKAGE_INPUTS):
            h.update(rel.encode() + b"\0")
            with open(os.path.join(repo, rel), "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def base_python() -> str:
    """The interpreter new venvs are made from (the base one, even when run from a venv)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def can_build_without_isolation(python: str = sys.executable) -> bool:
    """Whether ``python`` has a setuptools that builds wheels by itself (>= 70.1, or wheel)."""
    code = ("import importlib.metadata as m, importlib.util as u\n"
            "v = tuple(int(x) for x in m.version('setuptools').split('.')[:2])\n"
            "print(v >= (70, 1) or u.find_spec('wheel') is not None)")
    try:
        return run([python, "-c", code]).strip() == "True"
    except BuildError:
        return False


def pip(python: str, *args: str) -> str:
    """``pip`` of the interpreter running this module, acting on the environment of ``python``."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return run([sys.executable, "-m", "pip", "--python", python, *args], env=env)


def build_wheel(src: str, outdir: str, python: str = sys.executable) -> str:
    """``pip wheel`` (of ``python``) of the project at ``src``; return the wheel's path."""
    os.makedirs(outdir, exist_ok=True)
    iso = ["--no-build-isolation"] if can_build_without_isolation(python) else []
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", *iso, "-w", outdir, src])
    wheels = [f for f in os.listdir(outdir) if f.startswith("ocirun-") and f.endswith(".whl")]
    if len(wheels) != 1:
        raise BuildError(f"expected one ocirun wheel in {outdir}, found {wheels}")
    return os.path.join(outdir, wheels[0])


def build_sdist(src: str, outdir: str) -> str:
    """The sdist of the project at ``src`` (setuptools' PEP 517 hook); return its path."""
    os.makedirs(outdir, exist_ok=True)
    code = "import sys\nfrom setuptools import build_meta\nprint(build_meta.build_sdist(sys.argv[1]))"
    name = run([sys.executable, "-c", code, outdir], cwd=src).strip().splitlines()[-1]
    return os.path.join(outdir, name)


def make_venv(path: str, with_pip: bool = False, system_site: bool = False) -> str:
    """A fresh venv at ``path`` (from the base interpreter); return its python."""
    argv = [base_python(), "-m", "venv", path]
    if not with_pip:
        argv.insert(3, "--without-pip")
    if system_site:
        argv.insert(3, "--system-site-packages")
    run(argv)
    return os.path.join(path, "bin", "python3")
