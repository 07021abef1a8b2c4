"""Race-free paths below the rootfs (pathres.open_in_root, rootfs.Pinned) and
the runtime's children wiping the caller's argv and environment (issue 8
item 5: what test_attacks.py found)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ocirun import procfs
from ocirun.pathres import mkdir_all_in_root, open_in_root
from ocirun.rootfs import Pinned


def test_open_in_root_walks_without_following(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    fd = open_in_root(str(root), f"{root}/a/b")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == f"{root}/a/b"
    finally:
        os.close(fd)


def test_a_symlink_swapped_in_is_refused(tmp_path: Path) -> None:
    """The resolution said a/b is a directory; meanwhile `a` became a link to
    a host directory: the walk stops instead of following it."""
    root, host = tmp_path / "root", tmp_path / "host"
    (host / "b").mkdir(parents=True)
    root.mkdir()
    os.symlink(str(host), str(root / "a"))
    with pytest.raises(OSError) as ei:
        open_in_root(str(root), f"{root}/a/b")
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(OSError) as ei:
        open_in_root(str(root), f"{root}/a")  # the last component too
    assert ei.value.errno == errno.ELOOP


def test_paths_outside_the_root_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OSError) as ei:
        open_in_root(str(tmp_path / "root"), str(tmp_path / "rootx" / "a"))
    assert ei.value.errno == errno.EXDEV


def test_create_dirs_makes_missing_components(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fd = open_in_root(str(root), f"{root}/x/y", create_dirs=True, mode=0o700)
    os.close(fd)
    assert stat.S_IMODE(os.stat(root / "x" / "y").st_mode) == 0o700 & ~_umask()
    assert mkdir_all_in_root(str(root), "/x/y/z") == f"{root}/x/y/z"
    (root / "f").write_text("")
    with pytest.raises(NotADirectoryError):
        mkdir_all_in_root(str(root), "/f")


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_pinned_names_the_place_and_closes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    with Pinned(str(root), f"{root}/d") as target:
        fd = int(target.rsplit("/", 1)[1])
        assert os.readlink(target) == f"{root}/d"
        with open(f"{target}/made", "w"):  # a name created through the pin
            pass
    assert (root / "d" / "made").exists()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_wipe_args_and_env_in_a_child() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            ok = procfs.wipe_args_and_env(b"ocirun init")
            with open("/proc/self/cmdline", "rb") as f:
                cmdline = f.read()
            with open("/proc/self/environ", "rb") as f:
                environ = f.read()
            ok = ok and cmdline.rstrip(b"\0") == b"ocirun init" and not environ.strip(b"\0")
            ok = ok and os.environ.get("PATH") is not None  # Python's copy is untouched
            os.write(w, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"
