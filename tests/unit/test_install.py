"""Every install path gives the fast package (issue 7, item 1): names and paths, no timings.

For each way a user installs ocirun (a wheel, an sdist, ``pip install DIR``,
``pip install -e DIR``, ``pip install git+file://...``) this builds from a copy of the
tracked files, installs into a fresh venv and checks, through the installed launcher:

- it runs with no PATH at all (as podman calls runtimes) and answers ``state nosuch``;
- the ocirun it imports is the venv's own (the source tree for an editable install);
- ``state nosuch`` imports nothing beyond the hot-path set;
- the syscall seam uses the committed prebuilt cffi module: no pycparser, no cffi package.

Select with ``-m install``. Builds use ``--no-build-isolation`` when the test's
interpreter can (setuptools >= 70.1, as .ci/setup installs), and the fresh venvs get
their only dependency (cffi, with pycparser so that "not imported" means something)
from a wheel cache in ``.cache/wheels`` filled once from the index.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import wheelenv

pytestmark = pytest.mark.install

# "syssite": the wheel into a venv made with --system-site-packages, whose launcher must
# still put the venv's own site-packages before the system's.
METHODS = ["wheel", "sdist", "dir", "editable", "git", "syssite"]

# Pure-Python stdlib modules `state nosuch` may import beyond a bare `python -I -S`;
# C modules of the stdlib (builtin or lib-dynload) are allowed besides.
STDLIB_HOT = {"os", "os.path", "posixpath", "genericpath", "stat", "_collections_abc",
              "__future__"}

# Run in the fresh venv's interpreter as `python -I -S -c PROBE LAUNCHER ROOT`: execute the
# installed launcher's own code in-process (its sh prelude only picks this interpreter
# and passes -IS), then report what it imported and from where.
PROBE = r"""
import sys
before = set(sys.modules)
launcher, root = sys.argv[1], sys.argv[2]
sys.argv = [launcher, "--root", root, "state", "nosuch"]
with open(launcher, encoding="utf-8") as f:
    code = compile(f.read(), launcher, "exec")
status = None
try:
    exec(code, {"__name__": "__main__", "__file__": launcher})
except SystemExit as e:
    status = e.code
state_mods = {n: getattr(m, "__file__", None) for n, m in sys.modules.items() if n not in before}
from ocirun.syscalls import _ffi, linux
import json
print(json.dumps({
    "status": status,
    "state_mods": state_mods,
    "seam": {"prebuilt": _ffi.PREBUILT, "ffi_out": sys.modules["ocirun.syscalls._ffi_out"].__file__,
             "pycparser": "pycparser" in sys.modules, "cffi": "cffi" in sys.modules},
    "path": sys.path,
    "loaders": {n: type(m.__spec__.loader).__name__ for n, m in sys.modules.items()
                if n.startswith("ocirun.")},
}))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("install")


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    """A copy of the tracked files: what a clone has, nothing generated locally."""
    try:
        return Path(wheelenv.copy_tracked(str(work / "src")))
    except wheelenv.BuildError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def dep_wheels() -> tuple[str, list[str], list[str]]:
    """Wheels of cffi and pycparser (the run-time dependency) and of setuptools (for the
    installs that build from source without isolation), fetched once into a cache."""
    cache = os.path.join(wheelenv.CACHE, "wheels")
    runtime = [f"{name}=={importlib.metadata.version(name)}" for name in ("cffi", "pycparser")]
    st = importlib.metadata.version("setuptools")
    build = [f"setuptools=={st}" if wheelenv.can_build_without_isolation() else "setuptools>=70.1"]
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "-d", cache]
    try:  # all in the cache already: no network
        wheelenv.run([*pip, "--no-index", "--find-links", cache, *runtime, *build])
    except wheelenv.BuildError:
        try:
            wheelenv.run([*pip, *runtime, *build])
        except wheelenv.BuildError as e:
            pytest.fail(f"cannot fetch {runtime + build} into {cache} (PyPI reachable?): {e}")
    return cache, runtime, build


def install(method: str, source: Path, work: Path, venv: Path) -> str:
    """Install ocirun by ``method`` into the fresh venv; return the ocirun directory expected."""
    py = str(venv / "bin" / "python3")
    # pip --python builds in the target venv, which got setuptools for that
    iso = ["--no-build-isolation"]
    if method in ("wheel", "syssite"):
        target = [wheelenv.build_wheel(str(source), str(work / "dist-wheel"))]
    elif method == "sdist":
        target = [*iso, wheelenv.build_sdist(str(source), str(work / "dist-sdist"))]
    elif method == "dir":
        target = [*iso, str(source)]
    elif method == "editable":
        target = [*iso, "-e", str(source)]
    elif method == "git":
        repo = work / "gitrepo"
        wheelenv.copy_tracked(str(repo))
        git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost"]
        wheelenv.run([*git, "init", "-q"])
        wheelenv.run([*git, "add", "-A"])
        wheelenv.run([*git, "commit", "-q", "-m", "snapshot"])
        target = [*iso, f"git+file://{repo}"]
    else:
        raise AssertionError(method)
    wheelenv.pip(py, "install", "-q", "--no-deps", *target)
    if method == "editable":
        return str(source / "ocirun")
    return str(venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
               / "site-packages" / "ocirun")


@pytest.fixture(scope="module", params=METHODS)
def installed(request: pytest.FixtureRequest, source: Path, work: Path,
              dep_wheels: tuple[str, list[str], list[str]]) -> tuple[str, Path, str]:
    method = request.param
    venv = work / f"venv-{method}"
    wheelenv.make_venv(str(venv), system_site=method == "syssite")
    cache, runtime, build = dep_wheels
    reqs = runtime if method in ("wheel", "syssite") else runtime + build
    wheelenv.pip(str(venv / "bin" / "python3"), "install", "-q", "--no-deps", "--no-index",
                 "--find-links", cache, *reqs)
    pkg = install(method, source, work, venv)
    return method, venv, pkg


def probe(venv: Path, root: Path) -> dict[str, Any]:
    r = subprocess.run([str(venv / "bin" / "python3"), "-I", "-S", "-c", PROBE,
                        str(venv / "bin" / "ocirun"), str(root)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    return out


def test_launcher_runs_with_no_path(installed: tuple[str, Path, str], tmp_path: Path) -> None:
    _method, venv, _pkg = installed
    r = subprocess.run([str(venv / "bin" / "ocirun"), "--root", str(tmp_path), "state", "nosuch"],
                       env={}, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1, r.stderr
    assert "does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_imports_the_venvs_own_ocirun(installed: tuple[str, Path, str], tmp_path: Path) -> None:
    method, venv, pkg = installed
    got = probe(venv, tmp_path)
    assert got["status"] == 1
    files = {n: f for n, f in got["state_mods"].items() if n == "ocirun" or n.startswith("ocirun.")}
    assert files, "ocirun was not imported"
    wrong = {n: f for n, f in files.items() if not (f or "").startswith(pkg + os.sep)}
    assert not wrong, f"{method}: ocirun modules not from {pkg}: {wrong}"
    # Site directories: the venv's own first; the system's only when the venv asks for them.
    sites = [p for p in got["path"] if p.endswith("-packages")]
    assert sites and sites[0].startswith(str(venv) + os.sep), sites
    others = [p for p in sites if not p.startswith(str(venv) + os.sep)]
    assert bool(others) == (method == "syssite"), sites


def test_seam_uses_the_prebuilt_cffi_module(installed: tuple[str, Path, str], tmp_path: Path) -> None:
    method, venv, pkg = installed
    seam = probe(venv, tmp_path)["seam"]
    assert seam["prebuilt"] is True, f"{method}: the installed package has no current _ffi_out"
    assert seam["ffi_out"].startswith(pkg + os.sep), seam
    assert not seam["pycparser"], f"{method}: importing the syscall seam imported pycparser"
    assert not seam["cffi"], f"{method}: importing the syscall seam imported the cffi package"


def test_every_install_serves_the_package_from_its_code_cache(
        installed: tuple[str, Path, str], tmp_path: Path) -> None:
    """The launcher writes ocirun/__pycache__/ocirun-hot.*.bin on its first run
    (ocirun/codecache.py); the next run loads every module but the cache's own
    from it."""
    method, venv, _pkg = installed
    probe(venv, tmp_path)
    # a command that loads the syscall seam (exec does, before it finds no
    # container): modules first imported after the cache was written join it
    r = subprocess.run([str(venv / "bin" / "ocirun"), "--root", str(tmp_path), "exec", "nosuch",
                        "true"], capture_output=True, text=True, timeout=60, check=False)
    assert "does not exist" in r.stderr
    loaders = probe(venv, tmp_path)["loaders"]
    other = {n: ld for n, ld in loaders.items() if ld != "_Loader" and n != "ocirun.codecache"}
    assert not other, f"{method}: not from the code cache: {other}"
    assert "ocirun.launcher" in loaders


def test_state_imports_only_the_hot_path_set(installed: tuple[str, Path, str],
                                             tmp_path: Path) -> None:
    method, venv, _pkg = installed
    mods = probe(venv, tmp_path)["state_mods"]
    # site.getsitepackages() knows where a distribution keeps the system's site dirs.
    allowed = STDLIB_HOT | ({"site", "_sitebuiltins"} if method == "syssite" else set())
    extra = {}
    for name, path in mods.items():
        if name == "ocirun" or name.startswith("ocirun."):
            continue
        if name in allowed:
            continue
        if (path is None or path.endswith(".so")) and "-packages" not in (path or ""):
            continue  # a C module of the standard library
        extra[name] = path
    assert not extra, f"{method}: `state nosuch` imported beyond the hot-path set: {extra}"


def test_the_launcher_starts_the_interpreter_itself_after_its_first_run(
        installed: tuple[str, Path, str], tmp_path: Path) -> None:
    """launcher.direct_shebang: after the first run, bin/ocirun's #! line names
    the real interpreter with -IS (no sh in between), and the launcher still
    works from a copy of the venv (the line names no venv path)."""
    method, venv, _pkg = installed
    launcher = venv / "bin" / "ocirun"
    for _ in range(2):
        r = subprocess.run([str(launcher), "--root", str(tmp_path), "state", "nosuch"],
                           capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    first = launcher.read_bytes().split(b"\n", 1)[0]
    assert first == b"#!" + os.path.realpath(venv / "bin" / "python3").encode() + b" -IS", \
        (method, first)
    copy = tmp_path / "copied-venv"
    shutil.copytree(venv, copy, symlinks=True)
    r = subprocess.run([str(copy / "bin" / "ocirun"), "--root", str(tmp_path), "state", "nosuch"],
                       env={}, capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
