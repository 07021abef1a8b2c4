"""pathres: container paths resolved inside the rootfs, whatever the image's symlinks say."""

from __future__ import annotations

import errno
import os

import pytest

from ocirun.pathres import mkdir_all_in_root, resolve_in_root


@pytest.fixture()
def root(tmp_path: os.PathLike[str]) -> str:
    r = os.path.join(str(tmp_path), "rootfs")
    os.makedirs(r + "/etc")
    os.makedirs(r + "/usr/lib")
    return r


def test_plain_paths(root: str) -> None:
    assert resolve_in_root(root, "/etc") == root + "/etc"
    assert resolve_in_root(root, "etc/") == root + "/etc"
    assert resolve_in_root(root, "/") == root
    assert resolve_in_root(root, "") == root
    assert resolve_in_root(root, "/./etc/./x") == root + "/etc/x"


def test_missing_components_are_kept(root: str) -> None:
    assert resolve_in_root(root, "/new/dir/file") == root + "/new/dir/file"
    assert resolve_in_root(root, "/new/../etc") == root + "/etc"


def test_dotdot_cannot_leave_the_root(root: str) -> None:
    assert resolve_in_root(root, "/../../../etc") == root + "/etc"
    assert resolve_in_root(root, "/usr/../../..") == root


def test_absolute_symlink_is_rerooted(root: str) -> None:
    os.symlink("/etc", root + "/evil")
    assert resolve_in_root(root, "/evil/passwd") == root + "/etc/passwd"
    os.symlink("/", root + "/slash")
    assert resolve_in_root(root, "/slash/usr") == root + "/usr"


def test_relative_symlink_escape_is_clamped(root: str) -> None:
    os.symlink("../../../../../../etc", root + "/usr/lib/up")
    assert resolve_in_root(root, "/usr/lib/up/shadow") == root + "/etc/shadow"


def test_relative_symlink_inside(root: str) -> None:
    os.symlink("lib", root + "/usr/lib64")
    assert resolve_in_root(root, "/usr/lib64/x") == root + "/usr/lib/x"
    # ".." after a link applies to the link's target, as in the kernel
    os.symlink("usr/lib", root + "/l")
    assert resolve_in_root(root, "/l/../x") == root + "/usr/x"


def test_symlink_chain_and_dangling(root: str) -> None:
    os.symlink("/b", root + "/a")
    os.symlink("/c/d", root + "/b")
    assert resolve_in_root(root, "/a/e") == root + "/c/d/e"


def test_final_symlink_is_followed(root: str) -> None:
    os.symlink("/etc", root + "/dest")
    assert resolve_in_root(root, "/dest") == root + "/etc"


def test_symlink_loop_is_eloop(root: str) -> None:
    os.symlink("/loop2", root + "/loop1")
    os.symlink("/loop1", root + "/loop2")
    with pytest.raises(OSError) as ei:
        resolve_in_root(root, "/loop1/x")
    assert ei.value.errno == errno.ELOOP
    os.symlink("self", root + "/self")
    with pytest.raises(OSError):
        resolve_in_root(root, "/self")


def test_component_under_a_file(root: str) -> None:
    open(root + "/etc/file", "w").close()
    assert resolve_in_root(root, "/etc/file/x") == root + "/etc/file/x"


def test_mkdir_all_stays_inside(root: str, tmp_path: os.PathLike[str]) -> None:
    outside = os.path.join(str(tmp_path), "outside")
    os.mkdir(outside)
    os.symlink(outside, root + "/escape")  # absolute host path: re-rooted
    os.symlink("../../../..", root + "/up")
    got = mkdir_all_in_root(root, "/escape/a/b")
    assert got == root + outside + "/a/b"
    assert os.path.isdir(got)
    assert os.listdir(outside) == []
    got = mkdir_all_in_root(root, "/up/tmp/c", 0o700)
    assert got == root + "/tmp/c" and os.path.isdir(got)
    assert mkdir_all_in_root(root, "/etc") == root + "/etc"  # existing: no error


def test_mkdir_all_refuses_a_file(root: str) -> None:
    open(root + "/etc/file", "w").close()
    with pytest.raises(OSError) as ei:
        mkdir_all_in_root(root, "/etc/file/x")
    assert ei.value.errno == errno.ENOTDIR
