"""posixpaths.py behaves as os.path / os for str paths, and the lean side never imports os.

The lean side: what the launcher runs before its fast path, and what the
nursery and the container's init run (process/nursery.py); importing ``os``
there costs the waiting init ~160 KiB (issue 11).  Child-side modules use
``import posix as os`` (``os`` re-exports posix's functions) and posixpaths.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from ocirun import posixpaths

REPO = pathlib.Path(__file__).resolve().parents[2]

PATHS = ["", ".", "..", "/", "//", "///", "a", "/a/b/", "a/../..", "/../a", "//a/./b/../c",
         "a//b", "./a/.", "../../x/y/..", "/a/b/../../..", "a/b//", "/a", "//a//b//"]


@pytest.mark.parametrize("path", PATHS)
def test_like_os_path(path: str) -> None:
    assert posixpaths.normpath(path) == os.path.normpath(path)
    assert posixpaths.split(path) == os.path.split(path)
    assert posixpaths.dirname(path) == os.path.dirname(path)
    if path:
        assert posixpaths.abspath(path) == os.path.abspath(path)
    for other in ("b", "/b", "", "b/"):
        assert posixpaths.join(path, other) == os.path.join(path, other)
    assert posixpaths.exists(path) == os.path.exists(path)
    assert posixpaths.lexists(path) == os.path.lexists(path)
    assert posixpaths.isdir(path) == os.path.isdir(path)


def test_fs_coding() -> None:
    for name in ("plain", "ü", "bad\udcff"):
        assert posixpaths.fsencode(name) == os.fsencode(name)
        assert posixpaths.fsdecode(os.fsencode(name)) == name
    assert posixpaths.fsencode(b"x") == b"x" and posixpaths.fsdecode("x") == "x"


def test_makedirs(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    posixpaths.makedirs(str(target), 0o700)
    assert target.is_dir() and target.stat().st_mode & 0o777 == 0o700
    with pytest.raises(FileExistsError):
        posixpaths.makedirs(str(target))
    posixpaths.makedirs(str(target), exist_ok=True)
    posixpaths.makedirs(str(tmp_path / "x") + "//", exist_ok=True)
    assert (tmp_path / "x").is_dir()
    (tmp_path / "f").write_text("")
    with pytest.raises(FileExistsError):
        posixpaths.makedirs(str(tmp_path / "f"), exist_ok=True)


LEAN = ["ocirun.launcher", "ocirun.process.nursery", "ocirun.process.channel",
        "ocirun.process.fork", "ocirun.syscalls.linux"]


def test_the_lean_side_never_imports_os() -> None:
    """What the nursery has when it is forked, and everything it imports for
    the container's init, without ``os`` (a frozen module: an init that needs
    it for a rare path can still import it, even after pivot_root)."""
    from ocirun.process.nursery import CHILD_SIDE
    site = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]  # cffi, as the launcher
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); sys.path += {site!r}\n"
            f"for m in {LEAN + list(CHILD_SIDE)!r}: __import__(m)\n"
            "print(' '.join(sorted(m for m in sys.modules if m in ('os', 'posixpath', 'genericpath', "
            "'_collections_abc') or m.startswith('ocirun.config'))))")
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                       check=False, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == []


def test_getenv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCIRUN_TEST_GETENV", "a=b é")
    monkeypatch.delenv("OCIRUN_TEST_UNSET", raising=False)
    assert posixpaths.getenv("OCIRUN_TEST_GETENV") == os.environ["OCIRUN_TEST_GETENV"]
    assert posixpaths.getenv("OCIRUN_TEST_UNSET") is None


def test_realpath_like_os_path(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Links absolute and relative, chains, `..` after a link, a missing
    component, loops (to themselves and through each other), a dangling
    link: as os.path.realpath (not strict) resolves them."""
    t = tmp_path.resolve()
    (t / "d" / "e").mkdir(parents=True)
    (t / "abs").symlink_to(t / "d")
    (t / "rel").symlink_to("d/e")
    (t / "chain").symlink_to("rel")
    (t / "d" / "up").symlink_to("..")
    (t / "self").symlink_to("self")
    (t / "ping").symlink_to("pong")
    (t / "pong").symlink_to("ping")
    (t / "dangling").symlink_to("nowhere/x")
    (t / "d" / "root").symlink_to("/")
    cases = ["abs", "abs/e", "rel/..", "chain", "chain/../..", "d/up/abs/e", "missing/x/../y",
             "self", "self/x", "ping/a", "dangling", "dangling/z", "d/root/tmp", "abs/./e/",
             "../" + t.name + "/abs", "d//e/../up/rel"]
    for c in cases:
        assert posixpaths.realpath(str(t / c)) == os.path.realpath(str(t / c)), c
    monkeypatch.chdir(t)
    for c in ("", ".", "abs/e", "chain", "ping"):
        assert posixpaths.realpath(c) == os.path.realpath(c), c
