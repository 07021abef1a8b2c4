"""ocirun/codecache.py: modules served from the cache file behave as normal imports,
and a missing, stale, corrupt or unwritable cache only falls back to the standard path.

Each case runs in a fresh ``python -I -S`` on a throw-away package (``ccpkg``), as
bin/ocirun runs: install(), imports, then save() as the launcher does on its way out.
"""

from __future__ import annotations

import json
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# install, import every module named on the command line, report, then save()
RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from ocirun import codecache
sys.path.insert(0, sys.argv[2])
codecache.install(sys.argv[2] + "/ccpkg")
out = {}
for name in sys.argv[3:]:
    m = __import__(name, fromlist=["x"])
    out[name] = {"loader": type(m.__spec__.loader).__name__, "value": getattr(m, "VALUE", None),
                 "file": m.__file__}
try:
    sys.modules["ccpkg.sub.deep"].boom()
except ZeroDivisionError:
    import traceback
    out["traceback"] = traceback.format_exc()
codecache.save()
print(json.dumps(out))
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    py_compile.compile(str(path), doraise=True)  # what pip does at install


@pytest.fixture
def pkg(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    _write(root / "ccpkg" / "__init__.py", "VALUE = 'pkg'\n")
    _write(root / "ccpkg" / "a.py", "VALUE = 'a1'\n")
    _write(root / "ccpkg" / "sub" / "__init__.py", "")
    _write(root / "ccpkg" / "sub" / "deep.py",
           "VALUE = 'deep'\n\n\ndef boom():\n    return 1 / 0  # the line a traceback shows\n")
    return root


def _run(root: Path, *names: str) -> dict[str, dict[str, str]]:
    r = subprocess.run([sys.executable, "-I", "-S", "-c", RUNNER, str(REPO), str(root), *names],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


MODS = ("ccpkg", "ccpkg.a", "ccpkg.sub.deep")


def _cache(root: Path) -> Path:
    from ocirun.codecache import NAME
    return root / "ccpkg" / "__pycache__" / NAME


def test_first_run_writes_the_cache_and_the_next_reads_it(pkg: Path) -> None:
    first = _run(pkg, *MODS)
    assert {first[m]["loader"] for m in MODS} == {"SourceFileLoader"}
    assert _cache(pkg).is_file()
    second = _run(pkg, *MODS)
    # the package itself was imported before install() (as ocirun is): the rest from the cache
    assert {second[m]["loader"] for m in MODS[1:]} == {"_Loader"}
    assert [second[m]["value"] for m in MODS] == ["pkg", "a1", "deep"]
    assert second["ccpkg.a"]["file"] == str(pkg / "ccpkg" / "a.py")
    # tracebacks read the source as for any import
    assert "return 1 / 0  # the line a traceback shows" in second["traceback"]
    assert str(pkg / "ccpkg" / "sub" / "deep.py") in second["traceback"]


def test_an_edited_module_is_imported_from_its_source(pkg: Path) -> None:
    _run(pkg, *MODS)
    before = _cache(pkg).stat().st_mtime_ns
    src = pkg / "ccpkg" / "a.py"
    src.write_text("VALUE = 'a2, a longer value'\n")  # no new .pyc: as an edit leaves it
    got = _run(pkg, *MODS)
    assert got["ccpkg.a"]["value"] == "a2, a longer value"
    assert got["ccpkg.a"]["loader"] == "SourceFileLoader"
    assert got["ccpkg.sub.deep"]["loader"] == "_Loader"
    # the stale entry made save() write the file anew, from the .pyc the import just wrote
    assert _cache(pkg).stat().st_mtime_ns != before
    again = _run(pkg, *MODS)
    assert again["ccpkg.a"] == {**got["ccpkg.a"], "loader": "_Loader"}


@pytest.mark.parametrize("content", [b"", b"garbage that is not a cache at all",
                                     b"\xa7\r\r\n\xff\xff\xff\x7f"])
def test_a_corrupt_cache_is_ignored_and_rewritten(pkg: Path, content: bytes) -> None:
    _cache(pkg).parent.mkdir(exist_ok=True)
    _cache(pkg).write_bytes(content)
    got = _run(pkg, *MODS)
    assert [got[m]["value"] for m in MODS] == ["pkg", "a1", "deep"]
    assert _cache(pkg).read_bytes() != content
    assert _run(pkg, *MODS)["ccpkg.a"]["loader"] == "_Loader"


def test_a_package_without_a_writable_pycache_runs_without_a_cache(pkg: Path) -> None:
    # a file where __pycache__ should be: nothing can be written there, even by
    # root (a read-only install gives the same: no cache, the standard imports)
    pycache = pkg / "ccpkg" / "__pycache__"
    for f in pycache.iterdir():
        f.unlink()
    pycache.rmdir()
    pycache.write_text("")
    for _ in range(2):
        got = _run(pkg, *MODS)
        assert [got[m]["value"] for m in MODS] == ["pkg", "a1", "deep"]
        assert {got[m]["loader"] for m in MODS} == {"SourceFileLoader"}
    assert pycache.read_text() == ""
    assert sorted(p.name for p in (pkg / "ccpkg").iterdir()) == \
        ["__init__.py", "__pycache__", "a.py", "sub"]


def test_a_removed_module_is_not_served(pkg: Path) -> None:
    _run(pkg, *MODS)
    (pkg / "ccpkg" / "a.py").unlink()
    r = subprocess.run([sys.executable, "-I", "-S", "-c", RUNNER, str(REPO), str(pkg), "ccpkg.a"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0
    assert "ModuleNotFoundError" in r.stderr


def test_something_else_in_its_place_is_left_alone(pkg: Path) -> None:
    # a directory where the file goes: no rebuild (reading every .pyc) on each run
    _cache(pkg).parent.mkdir(exist_ok=True)
    _cache(pkg).mkdir()
    for _ in range(2):
        got = _run(pkg, *MODS)
        assert [got[m]["value"] for m in MODS] == ["pkg", "a1", "deep"]
    assert _cache(pkg).is_dir() and not list(_cache(pkg).iterdir())
    assert not [p for p in _cache(pkg).parent.iterdir() if p.name.endswith(".tmp")]
