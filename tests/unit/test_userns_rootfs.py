"""Rootfs and devices in a user namespace (issue 8 item 2), on the recording
double: bind sources by path first (the kernel locks the host's flags), the
runtime's clone only when out of reach and with the host's flags kept;
device nodes bound from the host only when they are that very device; the
mqueue and unreachable-rootfs errors.  tests/privileged/test_userns.py runs
the same paths for real."""

from __future__ import annotations

import errno
import os
import stat
from typing import Any

import pytest
from planhelp import prepare_rootfs

from ocirun import devices as devmod
from ocirun import rootfs as rfs
from ocirun.errors import SyscallError
from ocirun.syscalls import api as k
from ocirun.syscalls.recording import RecordingSyscalls

BIND_RO = {"destination": "/mnt", "type": "bind", "source": "/srv/data", "options": ["bind", "ro"]}


@pytest.fixture()
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, int]:
    bundle = str(tmp_path / "bundle")
    rootfs = bundle + "/rootfs"
    os.makedirs(rootfs + "/mnt")
    monkeypatch.chdir(str(tmp_path))
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(str(src), os.O_PATH | os.O_CLOEXEC)  # stands for the runtime's clone
    monkeypatch.setattr(rfs, "mount_flags_of", lambda p: k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
    yield bundle, rootfs, fd
    os.close(fd)


def _mounts(rec: RecordingSyscalls) -> list[tuple[object, ...]]:
    return [c for c in rec.calls if c[0] in ("mount", "move_mount")][2:]  # after / and the rootfs


def test_bind_by_path_first_in_a_user_namespace(env: tuple[str, str, int]) -> None:
    bundle, r, fd = env
    rec = RecordingSyscalls()
    prepare_rootfs({"mounts": [BIND_RO], "linux": {}}, bundle, r, rec, in_userns=True,
                   mount_fds={0: fd})
    assert _mounts(rec)[:2] == [
        ("mount", "/srv/data", r + "/mnt", "bind", k.MS_BIND, None),
        # the kernel keeps what it locked; no flags of ours added
        ("mount", None, r + "/mnt", None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY, None),
    ]


@pytest.mark.parametrize("err", [errno.EACCES, errno.EPERM, errno.EINVAL])
def test_clone_when_the_path_is_out_of_reach_keeps_host_flags(env: tuple[str, str, int],
                                                               err: int) -> None:
    bundle, r, fd = env
    first = [True]

    def fail(name: str, args: tuple[object, ...]) -> int | None:
        if name == "mount" and args[0] == "/srv/data" and first[0]:
            first[0] = False
            return err
        return None

    rec = RecordingSyscalls(fail)
    prepare_rootfs({"mounts": [BIND_RO], "linux": {}}, bundle, r, rec, in_userns=True,
                   mount_fds={0: fd})
    calls = _mounts(rec)
    assert calls[1] == ("move_mount", fd, "", k.AT_FDCWD, r + "/mnt",
                        k.MOVE_MOUNT_F_EMPTY_PATH | k.MOVE_MOUNT_T_SYMLINKS)
    assert calls[2] == ("mount", None, r + "/mnt", None,
                        k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV
                        | k.MS_NOEXEC, None)


def test_other_bind_errors_are_not_papered_over(env: tuple[str, str, int]) -> None:
    bundle, r, fd = env
    rec = RecordingSyscalls(lambda name, args: errno.ENOENT if name == "mount"
                            and args[0] == "/srv/data" else None)
    with pytest.raises(SyscallError, match="mount `/srv/data` on `/mnt`"):
        prepare_rootfs({"mounts": [BIND_RO], "linux": {}}, bundle, r, rec, in_userns=True,
                       mount_fds={0: fd})


def test_root_without_user_namespace_binds_the_path(env: tuple[str, str, int]) -> None:
    bundle, r, _ = env
    rec = RecordingSyscalls()
    src = os.path.abspath("src")
    prepare_rootfs({"mounts": [{**BIND_RO, "source": src}], "linux": {}}, bundle, r, rec,
                   in_userns=False)
    assert _mounts(rec)[:2] == [
        ("mount", src, r + "/mnt", "bind", k.MS_BIND, None),
        ("mount", None, r + "/mnt", None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY, None)]


def test_unreachable_rootfs_names_the_mapped_root(env: tuple[str, str, int]) -> None:
    bundle, r, _ = env
    rec = RecordingSyscalls(lambda name, args: errno.EACCES if name == "mount"
                            and args[0] == r else None)
    spec = {"mounts": [], "linux": {"namespaces": [{"type": "user"}, {"type": "mount"}],
                                    "uidMappings": [{"containerID": 0, "hostID": 100000,
                                                     "size": 65536}]}}
    with pytest.raises(SyscallError) as ei:
        prepare_rootfs(spec, bundle, r, rec, in_userns=True)
    assert "onto itself (the container's root" in ei.value.msg
    assert "must be able to reach it" in ei.value.msg


def test_reach_hint() -> None:
    assert "(host uid 100005)" in rfs.reach_hint(b"1 100006 10\n0 100005 1\n")
    assert "host uid" not in rfs.reach_hint(b"")  # a joined user namespace


def test_mqueue_without_host_mqueue_says_what_to_do(env: tuple[str, str, int],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, r, _ = env
    mq = {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"}
    rec = RecordingSyscalls(lambda name, args: errno.EPERM if name == "mount"
                            and args[2] == "mqueue" else None)
    real = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/dev/mqueue" else real(p))
    with pytest.raises(SyscallError, match="add an ipc namespace"):
        prepare_rootfs({"mounts": [mq], "linux": {}}, bundle, r, rec, in_userns=True)


# -- devices ----------------------------------------------------------------------------


def dev(path: str, major: int, minor: int, kind: int = stat.S_IFCHR) -> devmod.Device:
    return devmod.Device(path, kind, major, minor, 0o666, None, None)


def test_host_node_is_the_same_device_or_udevs_link(tmp_path: Any) -> None:
    d = tmp_path / "dev"
    (d / "char").mkdir(parents=True)
    os.symlink("/dev/null", str(d / "mynull"))        # a node 1:3 under the configured name
    os.symlink("/dev/zero", str(d / "char" / "1:5"))  # udev's link by numbers
    os.symlink("/dev/zero", str(d / "wrong"))
    rdev = os.makedev
    assert devmod.host_node(dev("/dev/mynull", 1, 3), rdev(1, 3), str(d)) == f"{d}/mynull"
    assert devmod.host_node(dev("/dev/other", 1, 5), rdev(1, 5), str(d)) == f"{d}/char/1:5"
    with pytest.raises(OSError) as ei:
        devmod.host_node(dev("/dev/wrong", 1, 3), rdev(1, 3), str(d))
    assert ei.value.errno == errno.ENODEV
    assert "host has no char device 1:3" in str(ei.value.strerror)
    assert "`" + f"{d}/wrong` is c 1:5, not char 1:3" in str(ei.value.strerror)
