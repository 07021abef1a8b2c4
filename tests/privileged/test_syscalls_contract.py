"""Contract tier of the syscall seam: the scenarios of the unit tests, on the real kernel.

Each scenario runs in a forked child that first unshares its mount namespace
through LinuxSyscalls; whatever it mounts dies with that namespace when the
child exits, so nothing can leak to the host even if an assertion fails.  The
child reports a JSON dict over a pipe; the parent asserts on it.
"""

from __future__ import annotations

import json
import os
import stat
import traceback
from collections.abc import Callable
from typing import Any

import bundle as bundle_mod
import pytest

from planhelp import finish_rootfs, prepare_rootfs
from ocirun.syscalls import api as k
from ocirun.syscalls.linux import LinuxSyscalls

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def in_private_mount_ns(fn: Callable[[LinuxSyscalls], dict[str, Any]]) -> dict[str, Any]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            os.close(r)
            sys_ = LinuxSyscalls()
            sys_.unshare(k.CLONE_NEWNS)
            out = fn(sys_)
        except BaseException:  # noqa: BLE001 - a forked child must report, then _exit
            out = {"error": traceback.format_exc()}
            code = 1
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 1 << 16):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    res: dict[str, Any] = json.loads(b"".join(chunks) or b'{"error": "child died"}')
    assert "error" not in res, res["error"]
    return res


def mountinfo() -> dict[str, tuple[str, str, str]]:
    """mount point -> (per-mount options, fstype, super options); the last mount wins."""
    out = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            p = line.split()
            sep = p.index("-")
            out[p[4]] = (p[5], p[sep + 1], p[sep + 3])
    return out


def test_mount_tmpfs_and_setattr(tmp_path: Any) -> None:
    target = str(tmp_path / "mnt")
    os.mkdir(target)

    def child(s: LinuxSyscalls) -> dict[str, Any]:
        s.mount(None, "/", None, k.MS_REC | k.MS_PRIVATE, None)
        s.mount("ocitest", target, "tmpfs", k.MS_NOSUID | k.MS_NODEV, "size=1m,mode=700")
        first = mountinfo()[target]
        os.mkdir(target + "/sub")
        s.mount("ocitest2", target + "/sub", "tmpfs", 0, None)
        s.mount_setattr(k.AT_FDCWD, target, k.AT_RECURSIVE, k.MOUNT_ATTR_RDONLY, 0)
        after = mountinfo()
        try:
            s.mount("x", target + "/nonexistent", "tmpfs", 0, None)
            err = None
        except OSError as e:
            err = [e.errno, e.filename]
        s.umount2(target, k.MNT_DETACH)
        return {"first": first, "top": after[target], "sub": after[target + "/sub"],
                "err": err, "gone": target not in mountinfo()}

    res = in_private_mount_ns(child)
    opts, fstype, sopts = res["first"]
    assert fstype == "tmpfs" and {"nosuid", "nodev"} <= set(opts.split(","))
    assert "size=1024k" in sopts and "mode=700" in sopts
    assert res["top"][0].startswith("ro,") and res["sub"][0].startswith("ro,")
    assert res["err"] == [2, target + "/nonexistent"]
    assert res["gone"]
    assert target not in mountinfo()  # and the host never saw it


def test_prepare_and_finish_rootfs(tmp_path: Any) -> None:
    bundle = str(tmp_path / "bundle")
    rootfs = bundle_mod.build_rootfs(os.path.join(bundle, "rootfs"))
    os.makedirs(bundle + "/data")
    with open(bundle + "/data/hello", "w") as f:
        f.write("hi")
    spec = bundle_mod.base_config(["true"])
    spec["root"]["readonly"] = True
    spec["mounts"] += [
        {"destination": "/data", "type": "bind", "source": "data",
         "options": ["rbind", "ro", "nosuid"]},
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
         "options": ["tmpcopyup", "nodev"]},
    ]
    spec["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10,
                                 "minor": 229, "fileMode": 0o600}]
    spec["linux"]["maskedPaths"].append("/etc/group")

    def child(s: LinuxSyscalls) -> dict[str, Any]:
        prepare_rootfs(spec, bundle, rootfs, s, in_userns=False)
        before = {mp[len(rootfs):] or "/": v for mp, v in mountinfo().items()
                  if mp.startswith(rootfs)}
        devs = {}
        for name in ("null", "zero", "full", "random", "urandom", "tty", "fuse"):
            st = os.lstat(rootfs + "/dev/" + name)
            devs[name] = [stat.S_ISCHR(st.st_mode), os.major(st.st_rdev),
                          os.minor(st.st_rdev), stat.S_IMODE(st.st_mode)]
        links = {n: os.readlink(rootfs + "/dev/" + n)
                 for n in ("fd", "stdin", "stdout", "stderr", "ptmx")}
        etc_copied = sorted(os.listdir(rootfs + "/etc"))
        finish_rootfs(spec, rootfs, s, no_pivot=False)
        after = mountinfo()
        try:
            open("/newfile", "w").close()
            root_write = "ok"
        except OSError as e:
            root_write = e.strerror or ""
        with open("/etc/group") as f:
            masked = f.read()
        return {"before": before, "devs": devs, "links": links, "etc": etc_copied,
                "after": after, "root_write": root_write, "masked": masked,
                "bin": os.path.exists("/bin/busybox"), "cwd": os.getcwd(),
                "data": open("/data/hello").read()}

    res = in_private_mount_ns(child)
    b = res["before"]
    assert b["/proc"][1] == "proc"
    assert b["/dev"][1] == "tmpfs" and "nosuid" in b["/dev"][0]
    assert b["/dev/pts"][1] == "devpts" and "ptmxmode=666" in b["/dev/pts"][2]
    assert set(b["/dev/shm"][0].split(",")) >= {"nosuid", "nodev", "noexec"}
    assert b["/dev/mqueue"][1] == "mqueue"
    assert b["/sys"][0].startswith("ro,") and b["/sys"][1] == "sysfs"
    assert b["/sys/fs/cgroup"][0].startswith("ro,")
    host_cg = [mp for mp, v in mountinfo().items()
               if mp.startswith("/sys/fs/cgroup/") and v[1] in ("cgroup", "cgroup2")]
    for mp in host_cg:
        assert b[mp][0].startswith("ro,"), mp  # every hierarchy mirrored, read-only
    assert set(b["/data"][0].split(",")) >= {"ro", "nosuid"}
    assert "nodev" in b["/etc"][0]
    assert res["etc"] == sorted(os.listdir(rootfs + "/etc"))  # tmpcopyup copied the image
    assert res["devs"] == {"null": [True, 1, 3, 0o666], "zero": [True, 1, 5, 0o666],
                           "full": [True, 1, 7, 0o666], "random": [True, 1, 8, 0o666],
                           "urandom": [True, 1, 9, 0o666], "tty": [True, 5, 0, 0o666],
                           "fuse": [True, 10, 229, 0o600]}
    assert res["links"] == {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                            "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
                            "ptmx": "pts/ptmx"}
    a = res["after"]
    assert a["/"][0].startswith("ro,")  # root.readonly
    assert res["root_write"] == "Read-only file system"
    assert a["/proc/sys"][0].startswith("ro,")  # readonlyPaths
    assert a["/sys/firmware"][1] == "tmpfs" and a["/sys/firmware"][0].startswith("ro,")
    assert res["masked"] == ""  # a masked file reads as /dev/null
    assert res["bin"] and res["cwd"] == "/" and res["data"] == "hi"
    # nothing leaked into the host's mount table
    assert not [mp for mp in mountinfo() if mp.startswith(str(tmp_path))]
    assert not os.path.lexists(rootfs + "/dev/null")


def test_no_pivot(tmp_path: Any) -> None:
    rootfs = bundle_mod.build_rootfs(str(tmp_path / "rootfs"))
    spec = bundle_mod.base_config(["true"])

    def child(s: LinuxSyscalls) -> dict[str, Any]:
        prepare_rootfs(spec, str(tmp_path), rootfs, s, in_userns=False)
        finish_rootfs(spec, rootfs, s, no_pivot=True)
        return {"bin": os.path.exists("/bin/busybox"), "proc": os.path.exists("/proc/self")}

    assert in_private_mount_ns(child) == {"bin": True, "proc": True}
