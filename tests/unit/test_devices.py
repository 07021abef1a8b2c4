"""devices: default and configured nodes, through RecordingSyscalls (no root needed)."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from ocirun.devices import DEFAULT_DEVICES, create_devices, device_list
from ocirun.errors import SyscallError
from ocirun.syscalls.api import MS_BIND
from ocirun.syscalls.recording import RecordingSyscalls


@pytest.fixture()
def rootfs(tmp_path: os.PathLike[str]) -> str:
    r = os.path.join(str(tmp_path), "rootfs")
    os.makedirs(r + "/dev")
    return r


def test_default_devices(rootfs: str) -> None:
    rec = RecordingSyscalls()
    create_devices(device_list({}), rootfs, rec, in_userns=False)
    assert rec.calls == [
        ("mknod", rootfs + p, stat.S_IFCHR | 0o666, os.makedev(ma, mi))
        for p, ma, mi in DEFAULT_DEVICES]
    assert [p for p, _, _ in DEFAULT_DEVICES] == [
        "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]
    # the exact mode is set after mknod, whatever the umask
    assert stat.S_IMODE(os.stat(rootfs + "/dev/null").st_mode) == 0o666


def test_configured_devices(rootfs: str) -> None:
    spec = {"linux": {"devices": [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600},
        {"path": "/dev/sda", "type": "b", "major": 8, "minor": 0},
        {"path": "/run/fifo", "type": "p"},
        {"path": "/dev/raw", "type": "u", "major": 1, "minor": 2,
         "uid": os.getuid(), "gid": os.getgid()},
    ]}}
    rec = RecordingSyscalls()
    create_devices(device_list(spec), rootfs, rec, in_userns=False)
    tail = rec.calls[len(DEFAULT_DEVICES):]
    assert tail == [
        ("mknod", rootfs + "/dev/fuse", stat.S_IFCHR | 0o600, os.makedev(10, 229)),
        ("mknod", rootfs + "/dev/sda", stat.S_IFBLK | 0o666, os.makedev(8, 0)),
        ("mknod", rootfs + "/run/fifo", stat.S_IFIFO | 0o666, 0),
        ("mknod", rootfs + "/dev/raw", stat.S_IFCHR | 0o666, os.makedev(1, 2)),
    ]
    assert os.path.isdir(rootfs + "/run")  # paths outside /dev get their parents
    assert stat.S_IMODE(os.stat(rootfs + "/dev/fuse").st_mode) == 0o600


def test_configured_device_replaces_default() -> None:
    spec = {"linux": {"devices": [{"path": "/dev/null", "type": "c", "major": 1,
                                   "minor": 3, "fileMode": 0o620}]}}
    devs = device_list(spec)
    nulls = [d for d in devs if d.path == "/dev/null"]
    assert len(nulls) == 1 and nulls[0].mode == 0o620
    assert len(devs) == len(DEFAULT_DEVICES)


def test_userns_binds_host_nodes(rootfs: str) -> None:
    rec = RecordingSyscalls()
    spec = {"linux": {"devices": [{"path": "/dev/p", "type": "p"}]}}
    create_devices(device_list(spec), rootfs, rec, in_userns=True)
    binds = [("mount", p, rootfs + p, "bind", MS_BIND, None) for p, _, _ in DEFAULT_DEVICES]
    assert rec.calls == [*binds, ("mknod", rootfs + "/dev/p", stat.S_IFIFO | 0o666, 0)]
    # the bind targets are empty files
    assert os.path.isfile(rootfs + "/dev/null")


def test_existing_matching_node_is_kept(rootfs: str) -> None:
    os.mkfifo(rootfs + "/dev/pipe")
    rec = RecordingSyscalls()
    create_devices(device_list({"linux": {"devices": [{"path": "/dev/pipe", "type": "p"}]}}),
                   rootfs, rec, in_userns=False)
    assert ("mknod", rootfs + "/dev/pipe", stat.S_IFIFO | 0o666, 0) not in rec.calls


def test_existing_other_file_is_an_error(rootfs: str) -> None:
    with open(rootfs + "/dev/zero", "w") as f:
        f.write("not a device")
    with pytest.raises(SyscallError) as ei:
        create_devices(device_list({}), rootfs, RecordingSyscalls(), in_userns=False)
    assert ei.value.errno == errno.EEXIST and ei.value.stage == "devices"
    assert "`/dev/zero`" in str(ei.value)


def test_symlinked_dev_stays_inside(rootfs: str, tmp_path: os.PathLike[str]) -> None:
    os.rmdir(rootfs + "/dev")
    os.symlink("/../../../../tmp/evil", rootfs + "/dev")
    rec = RecordingSyscalls()
    create_devices(device_list({}), rootfs, rec, in_userns=False)
    assert rec.calls[0][1] == rootfs + "/tmp/evil/null"


def test_mknod_failure_names_the_device(rootfs: str) -> None:
    rec = RecordingSyscalls(fail={"mknod": errno.EPERM})
    with pytest.raises(SyscallError) as ei:
        create_devices(device_list({}), rootfs, rec, in_userns=False)
    assert str(ei.value) == "create device `/dev/null`: Operation not permitted"
    assert ei.value.errno == errno.EPERM


def test_bad_type() -> None:
    with pytest.raises(SyscallError, match="unknown type `x`"):
        device_list({"linux": {"devices": [{"path": "/dev/x", "type": "x"}]}})
