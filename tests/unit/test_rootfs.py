"""rootfs: the exact ordered kernel calls for typical configs, via RecordingSyscalls."""

from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from ocirun import rootfs as rfs
from ocirun.errors import ConfigError, SyscallError
from planhelp import finish_rootfs, prepare_rootfs
from ocirun.syscalls import api as k
from ocirun.syscalls.recording import RecordingSyscalls

NSD = k.MS_NOSUID | k.MS_NOEXEC | k.MS_NODEV

# {cg} is the fake host cgroup root (a tmp dir, so its symlinks are ours)
HYBRID_MOUNTINFO = """\
31 23 0:28 / {cg} rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {cg}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
40 31 0:37 / {cg}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / {cg}/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/with\\040space rw - ext4 /dev/x rw
"""

RUNC_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
]


@pytest.fixture()
def env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(bundle, rootfs) plus a fake host cgroup layout; cwd restored after pivot."""
    bundle = str(tmp_path / "bundle")
    rootfs = bundle + "/rootfs"
    os.makedirs(rootfs)
    host = tmp_path / "host"
    (host / "cg").mkdir(parents=True)
    (host / "mountinfo").write_text(HYBRID_MOUNTINFO.format(cg=host / "cg"))
    (host / "cgroup").write_text("2:name=systemd:/x\n1:cpu,cpuacct:/x\n0::/x\n")
    os.symlink("cpu,cpuacct", str(host / "cg" / "cpu"))
    monkeypatch.setattr(rfs, "MOUNTINFO", str(host / "mountinfo"))
    monkeypatch.setattr(rfs, "PROC_SELF_CGROUP", str(host / "cgroup"))
    monkeypatch.setattr(rfs, "CGROUP_ROOT", str(host / "cg"))
    monkeypatch.setattr(rfs, "mount_flags_of", lambda path: k.MS_NOSUID | k.MS_RELATIME)
    monkeypatch.chdir(str(tmp_path))
    return bundle, rootfs


def _spec(mounts: list[dict[str, Any]], **linux: Any) -> dict[str, Any]:
    return {"mounts": mounts, "linux": linux}


def test_runc_template(env: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, r = env
    rec = RecordingSyscalls()
    # with a cgroup namespace a fresh cgroup mount shows the container's own cgroup
    prepare_rootfs(_spec(RUNC_MOUNTS, namespaces=[{"type": "cgroup"}]), bundle, r, rec,
                   in_userns=False)
    cg = r + "/sys/fs/cgroup"
    mounts = [c for c in rec.calls if c[0] == "mount"]
    assert mounts == [
        ("mount", None, "/", None, k.MS_SLAVE | k.MS_REC, None),
        ("mount", r, r, "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", "proc", r + "/proc", "proc", 0, None),
        ("mount", "tmpfs", r + "/dev", "tmpfs", k.MS_NOSUID | k.MS_STRICTATIME,
         "mode=755,size=65536k"),
        ("mount", "devpts", r + "/dev/pts", "devpts", k.MS_NOSUID | k.MS_NOEXEC,
         "newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ("mount", "shm", r + "/dev/shm", "tmpfs", NSD, "mode=1777,size=65536k"),
        ("mount", "mqueue", r + "/dev/mqueue", "mqueue", NSD, None),
        ("mount", "sysfs", r + "/sys", "sysfs", NSD | k.MS_RDONLY, None),
        # cgroup: a tmpfs, then each host hierarchy, then read-only
        ("mount", "tmpfs", cg, "tmpfs", NSD | k.MS_RELATIME, "mode=755"),
        ("mount", "cgroup", cg + "/cpu,cpuacct", "cgroup", NSD | k.MS_RELATIME | k.MS_RDONLY,
         "cpu,cpuacct"),
        ("mount", "cgroup", cg + "/systemd", "cgroup", NSD | k.MS_RELATIME | k.MS_RDONLY,
         "xattr,name=systemd"),
        ("mount", "cgroup", cg + "/unified", "cgroup2", NSD | k.MS_RELATIME | k.MS_RDONLY,
         None),
        ("mount", None, cg, None, k.MS_REMOUNT | NSD | k.MS_RELATIME | k.MS_RDONLY, None),
    ]
    # then the default devices, after every mount
    assert rec.names()[len(mounts):] == ["mknod"] * 6
    assert os.readlink(cg + "/cpu") == "cpu,cpuacct"  # the host's co-mount link
    assert os.readlink(r + "/dev/ptmx") == "pts/ptmx"
    assert os.readlink(r + "/dev/fd") == "/proc/self/fd"
    assert os.readlink(r + "/dev/stderr") == "/proc/self/fd/2"
    for d in ("proc", "dev/pts", "dev/shm", "dev/mqueue", "sys/fs/cgroup/unified"):
        assert os.path.isdir(r + "/" + d)


def test_bind_mounts(env: tuple[str, str]) -> None:
    bundle, r = env
    os.makedirs(bundle + "/data")
    with open(bundle + "/file.txt", "w") as f:
        f.write("x")
    spec = _spec([
        {"destination": "/mnt/data", "type": "bind", "source": "data",
         "options": ["rbind", "ro", "nosuid", "rprivate"]},
        {"destination": "/etc/file.txt", "type": "none", "source": bundle + "/file.txt",
         "options": ["bind"]},
        {"destination": "/rec", "source": "data", "options": ["bind", "rro", "rnoatime"]},
    ])
    rec = RecordingSyscalls()
    prepare_rootfs(spec, bundle, r, rec, in_userns=False)
    calls = [c for c in rec.calls if c[0] != "mknod"][2:]
    assert calls == [
        ("mount", bundle + "/data", r + "/mnt/data", "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", None, r + "/mnt/data", None,
         k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID, None),
        ("mount", None, r + "/mnt/data", None, k.MS_PRIVATE | k.MS_REC, None),
        ("mount", bundle + "/file.txt", r + "/etc/file.txt", "bind", k.MS_BIND, None),
        ("mount", bundle + "/data", r + "/rec", "bind", k.MS_BIND, None),
        ("mount_setattr", k.AT_FDCWD, r + "/rec", k.AT_RECURSIVE,
         k.MOUNT_ATTR_RDONLY | k.MOUNT_ATTR_NOATIME, k.MOUNT_ATTR__ATIME, 0, 0),
    ]
    assert os.path.isfile(r + "/etc/file.txt") and os.path.isdir(r + "/mnt/data")


def test_bind_remount_in_userns_keeps_locked_flags(env: tuple[str, str]) -> None:
    bundle, r = env
    os.makedirs(bundle + "/data")
    seen: list[int] = []

    def fail(name: str, args: tuple[object, ...]) -> int | None:
        if name == "mount" and args[3] == k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY:
            seen.append(1)
            return errno.EPERM
        return None

    rec = RecordingSyscalls(fail=fail)
    spec = _spec([{"destination": "/d", "source": "data", "options": ["bind", "ro"]}])
    prepare_rootfs(spec, bundle, r, rec, in_userns=True)
    remounts = [c for c in rec.calls if c[0] == "mount" and int(c[4]) & k.MS_REMOUNT]  # type: ignore[call-overload]
    assert [c[4] for c in remounts] == [
        k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY,
        k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID | k.MS_RELATIME]


def test_sysfs_in_userns_without_netns_binds_host_sys(env: tuple[str, str]) -> None:
    bundle, r = env
    rec = RecordingSyscalls()
    spec = _spec([RUNC_MOUNTS[5]])
    prepare_rootfs(spec, bundle, r, rec, in_userns=True)
    assert rec.calls[2:4] == [
        ("mount", "/sys", r + "/sys", "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", None, r + "/sys", None, k.MS_BIND | k.MS_REMOUNT | NSD | k.MS_RDONLY, None)]
    rec = RecordingSyscalls()
    spec["linux"]["namespaces"] = [{"type": "network"}]
    prepare_rootfs(spec, bundle, r, rec, in_userns=True)
    assert rec.calls[2] == ("mount", "sysfs", r + "/sys", "sysfs", NSD | k.MS_RDONLY, None)


def test_failure_names_the_mount(env: tuple[str, str]) -> None:
    bundle, r = env

    def fail(name: str, args: tuple[object, ...]) -> int | None:
        return errno.ENODEV if name == "mount" and args[1] == r + "/dev/shm" else None

    with pytest.raises(SyscallError) as ei:
        prepare_rootfs(_spec(RUNC_MOUNTS), bundle, r, RecordingSyscalls(fail=fail),
                       in_userns=False)
    assert str(ei.value) == "mount `tmpfs` on `/dev/shm` (mounts[3]): No such device"
    assert ei.value.errno == errno.ENODEV and ei.value.stage == "mounts"


def test_eperm_on_proc(env: tuple[str, str]) -> None:
    bundle, r = env
    rec = RecordingSyscalls(fail=lambda n, a: errno.EPERM if a[2:3] == ("proc",) else None)
    with pytest.raises(SyscallError, match=r"^mount `proc` on `/proc` \(mounts\[0\]\): "
                                           "Operation not permitted$"):
        prepare_rootfs(_spec(RUNC_MOUNTS), bundle, r, rec, in_userns=False)


def test_missing_bind_source(env: tuple[str, str]) -> None:
    bundle, r = env
    spec = _spec([{"destination": "/x", "source": "nope", "options": ["bind"]}])
    with pytest.raises(SyscallError, match="nope.*No such file"):
        prepare_rootfs(spec, bundle, r, RecordingSyscalls(), in_userns=False)


def test_symlinked_destination_stays_in_rootfs(env: tuple[str, str]) -> None:
    bundle, r = env
    os.symlink("/../../../../etc", r + "/evil")
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([{"destination": "/evil/x", "type": "tmpfs", "source": "tmpfs"}]),
                   bundle, r, rec, in_userns=False)
    assert rec.calls[2] == ("mount", "tmpfs", r + "/etc/x", "tmpfs", 0, None)
    assert os.path.isdir(r + "/etc/x")


@pytest.mark.parametrize("dest,typ,ok", [
    ("/proc", "proc", True), ("/proc/cpuinfo", "bind", True), ("/proc", "tmpfs", False),
    ("/proc/sys", "tmpfs", False), ("/proc/self/../sys", "bind", False)])
def test_mounts_inside_proc(env: tuple[str, str], dest: str, typ: str, ok: bool) -> None:
    bundle, r = env
    os.makedirs(r + "/proc")
    spec = _spec([{"destination": dest, "type": typ, "source": "/etc/hostname"
                   if typ == "bind" else typ}])
    if ok:
        prepare_rootfs(spec, bundle, r, RecordingSyscalls(), in_userns=False)
    else:
        with pytest.raises(ConfigError, match="inside /proc"):
            prepare_rootfs(spec, bundle, r, RecordingSyscalls(), in_userns=False)


def test_idmap_without_a_mapping_is_refused(env: tuple[str, str]) -> None:
    bundle, r = env
    with pytest.raises(ConfigError, match=r"mounts\[0\]\.options: idmap needs uidMappings"):
        prepare_rootfs(_spec([{"destination": "/x", "source": "/tmp",
                               "options": ["rbind", "idmap"]}]),
                       bundle, r, RecordingSyscalls(), in_userns=False)


@pytest.mark.parametrize("prop,flag,tree", [("private", k.MS_PRIVATE, k.MS_PRIVATE),
                                            ("slave", k.MS_SLAVE, k.MS_SLAVE),
                                            ("unbindable", k.MS_UNBINDABLE, k.MS_PRIVATE),
                                            ("shared", k.MS_SHARED, k.MS_SHARED)])
def test_rootfs_propagation(env: tuple[str, str], prop: str, flag: int, tree: int) -> None:
    bundle, r = env
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([], rootfsPropagation=prop), bundle, r, rec, in_userns=False)
    # the tree is shaped before the rootfs bind (unbindable could not be bound) ...
    assert rec.calls[0] == ("mount", None, "/", None, tree | k.MS_REC, None)
    # ... and the value itself lands on the new "/" right after the pivot
    rec = RecordingSyscalls()
    finish_rootfs(_spec([], rootfsPropagation=prop), r, rec, no_pivot=True)
    assert ("mount", None, "/", None, flag, None) in rec.calls


def test_shared_propagation_privatises_the_parent(env: tuple[str, str]) -> None:
    bundle, r = env
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([], rootfsPropagation="shared"), bundle, r, rec, in_userns=False)
    assert rec.calls[:2] == [("mount", None, "/", None, k.MS_SHARED | k.MS_REC, None),
                             ("mount", None, "/", None, k.MS_PRIVATE, None)]


def test_bad_propagation(env: tuple[str, str]) -> None:
    bundle, r = env
    with pytest.raises(ConfigError):
        prepare_rootfs(_spec([], rootfsPropagation="bogus"), bundle, r,
                       RecordingSyscalls(), in_userns=False)


def test_bind_dev_skips_devices(env: tuple[str, str]) -> None:
    bundle, r = env
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([{"destination": "/dev", "source": "/dev", "options": ["rbind"]}]),
                   bundle, r, rec, in_userns=False)
    assert "mknod" not in rec.names()
    assert not os.path.lexists(r + "/dev/fd")


def test_cgroup2_only_host(env: tuple[str, str], tmp_path: Any,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, r = env
    mi = tmp_path / "mi2"
    cgroot = str(tmp_path / "host" / "cg")
    mi.write_text(f"30 23 0:26 / {cgroot} rw - cgroup2 cgroup2 rw,nsdelegate\n")
    monkeypatch.setattr(rfs, "MOUNTINFO", str(mi))
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([RUNC_MOUNTS[6]], namespaces=[{"type": "cgroup"}]), bundle, r, rec,
                   in_userns=False)
    assert rec.calls[2] == ("mount", "cgroup", r + "/sys/fs/cgroup", "cgroup2",
                            NSD | k.MS_RELATIME | k.MS_RDONLY, None)
    # without one: the container's own cgroup directory is bind-mounted (as runc)
    import shutil
    shutil.rmtree(r + "/dev")  # the recording double's device placeholders
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([RUNC_MOUNTS[6]]), bundle, r, rec, in_userns=False)
    assert rec.calls[2] == ("mount", cgroot + "/x", r + "/sys/fs/cgroup", "bind",
                            k.MS_BIND | k.MS_REC, None)
    # EPERM (user namespace without its own cgroup namespace): bind own cgroup
    rec = RecordingSyscalls(fail=lambda n, a: errno.EPERM if a[2:3] == ("cgroup2",) else None)
    prepare_rootfs(_spec([RUNC_MOUNTS[6]], namespaces=[{"type": "cgroup"}]), bundle, r, rec,
                   in_userns=True)
    assert rec.calls[3:5] == [
        ("mount", cgroot + "/x", r + "/sys/fs/cgroup", "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", None, r + "/sys/fs/cgroup", None,
         k.MS_BIND | k.MS_REMOUNT | NSD | k.MS_RELATIME | k.MS_RDONLY, None)]


def test_ro_dev_is_remounted_after_pivot(env: tuple[str, str]) -> None:
    bundle, r = env
    dev = {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
           "options": ["nosuid", "ro", "mode=755"]}
    rec = RecordingSyscalls()
    prepare_rootfs(_spec([dev]), bundle, r, rec, in_userns=False)
    assert rec.calls[2] == ("mount", "tmpfs", r + "/dev", "tmpfs", k.MS_NOSUID, "mode=755")
    rec = RecordingSyscalls()
    finish_rootfs(_spec([dev]), r, rec, no_pivot=True)
    assert ("mount", None, "/dev", None, k.MS_REMOUNT | k.MS_NOSUID | k.MS_RDONLY,
            "mode=755") in rec.calls


def test_finish_pivot(env: tuple[str, str]) -> None:
    _, r = env
    spec = {"root": {"path": r, "readonly": True},
            "linux": {"readonlyPaths": ["/proc/sys"], "maskedPaths": ["/proc/kcore"]}}
    rec = RecordingSyscalls()
    finish_rootfs(spec, r, rec, no_pivot=False)
    keep = k.MS_NOSUID | k.MS_RELATIME
    assert rec.calls == [
        ("pivot_root", ".", "."),
        ("mount", None, ".", None, k.MS_SLAVE | k.MS_REC, None),
        ("umount2", ".", k.MNT_DETACH),
        ("mount", "/proc/sys", "/proc/sys", "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", None, "/proc/sys", None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | keep, None),
        ("mount", "/dev/null", "/proc/kcore", "bind", k.MS_BIND, None),
        ("mount", None, "/", None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | keep, None),
    ]


def test_finish_no_pivot(env: tuple[str, str]) -> None:
    _, r = env
    rec = RecordingSyscalls()
    finish_rootfs({}, r, rec, no_pivot=True)
    assert rec.calls == [("mount", r, "/", None, k.MS_MOVE, None), ("chroot", ".")]


def test_masked_and_readonly_paths_errors(env: tuple[str, str]) -> None:
    _, r = env
    spec = {"linux": {"maskedPaths": ["/gone", "/a/dir"], "readonlyPaths": ["/missing"]}}

    def fail(name: str, args: tuple[object, ...]) -> int | None:
        if args[:2] == ("/dev/null", "/a/dir"):
            return errno.ENOTDIR
        if "/gone" in args or "/missing" in args:
            return errno.ENOENT
        return None

    rec = RecordingSyscalls(fail=fail)
    finish_rootfs(spec, r, rec, no_pivot=True)
    assert rec.calls[2:] == [
        ("mount", "/missing", "/missing", "bind", k.MS_BIND | k.MS_REC, None),
        ("mount", "/dev/null", "/gone", "bind", k.MS_BIND, None),
        ("mount", "/dev/null", "/a/dir", "bind", k.MS_BIND, None),
        ("mount", "tmpfs", "/a/dir", "tmpfs", k.MS_RDONLY, None),
    ]
    rec = RecordingSyscalls(fail=lambda n, a: errno.EACCES if a[:1] == ("/dev/null",) else None)
    with pytest.raises(SyscallError) as ei:
        finish_rootfs(spec, r, rec, no_pivot=True)
    assert ei.value.stage == "masked_paths" and "`/gone`" in str(ei.value)


def test_pivot_failure(env: tuple[str, str]) -> None:
    _, r = env
    with pytest.raises(SyscallError) as ei:
        finish_rootfs({}, r, RecordingSyscalls(fail={"pivot_root": errno.EINVAL}),
                      no_pivot=False)
    assert ei.value.stage == "pivot_root" and "Invalid argument" in str(ei.value)


def test_tmpcopyup(env: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    bundle, r = env
    copied: list[str] = []
    # the copy goes through a pinned fd on the new tmpfs (rootfs.Pinned): record where it names
    monkeypatch.setattr(rfs, "_copy_up", lambda fd, host: copied.append(os.readlink(host)))
    os.makedirs(r + "/etc")
    with open(r + "/etc/a", "w") as f:
        f.write("a")
    rec = RecordingSyscalls()
    spec = _spec([{"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                   "options": ["tmpcopyup", "ro"]}])
    prepare_rootfs(spec, bundle, r, rec, in_userns=False)
    # rw first (to copy), then read-only; the copy itself is checked in the privileged tier
    assert rec.calls[2:4] == [("mount", "tmpfs", r + "/etc", "tmpfs", 0, None),
                              ("mount", None, r + "/etc", None, k.MS_REMOUNT | k.MS_RDONLY, None)]
    assert copied == [r + "/etc"]
