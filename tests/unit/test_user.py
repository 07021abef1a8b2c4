"""user.py: id maps into a fake /proc, passwd lookup, apply_user in a child."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ocirun.errors import ConfigError, SyscallError
from ocirun.syscalls.api import PR_SET_KEEPCAPS
from ocirun.syscalls.recording import RecordingSyscalls
from ocirun.user import apply_user, lookup_home, setgroups_allowed, write_id_maps

UIDS = [{"containerID": 0, "hostID": 100000, "size": 65536}]
GIDS = [{"containerID": 0, "hostID": 200000, "size": 1000}, {"containerID": 1000, "hostID": 5000, "size": 1}]


def fake_proc(tmp_path: Path, pid: int = 77) -> Path:
    d = tmp_path / str(pid)
    d.mkdir()
    for name in ("setgroups", "uid_map", "gid_map"):
        (d / name).write_text("")
    return d


def test_write_id_maps(tmp_path: Path) -> None:
    d = fake_proc(tmp_path)
    write_id_maps(77, UIDS, GIDS, deny_setgroups=False, proc=str(tmp_path))
    assert (d / "uid_map").read_text() == "0 100000 65536\n"
    assert (d / "gid_map").read_text() == "0 200000 1000\n1000 5000 1\n"
    assert (d / "setgroups").read_text() == ""  # not denied unless asked


def test_write_id_maps_deny_setgroups(tmp_path: Path) -> None:
    d = fake_proc(tmp_path)
    write_id_maps(77, UIDS, UIDS, deny_setgroups=True, proc=str(tmp_path))
    assert (d / "setgroups").read_text() == "deny"


def test_write_id_maps_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(SyscallError) as ei:
        write_id_maps(78, UIDS, GIDS, deny_setgroups=False, proc=str(tmp_path))
    assert str(ei.value) == (f"write linux.uidMappings to `{tmp_path}/78/uid_map`: "
                             f"No such file or directory")
    assert ei.value.errno == errno.ENOENT


def test_write_id_maps_bad_entry(tmp_path: Path) -> None:
    fake_proc(tmp_path)
    with pytest.raises(ConfigError, match=r"linux.gidMappings\[0\]: needs integer containerID"):
        write_id_maps(77, UIDS, [{"containerID": 0}], deny_setgroups=False, proc=str(tmp_path))


def make_rootfs(tmp_path: Path, passwd: str) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(passwd)
    return root


PASSWD = ("# comment\nroot:x:0:0:root:/root:/bin/sh\nbroken line\n"
          "bob:x:1000:1000::/home/bob:/bin/sh\nnohome:x:1001:1001:::/bin/sh\nbad:x:abc:0::/x:/bin/sh\n")


def test_lookup_home(tmp_path: Path) -> None:
    root = str(make_rootfs(tmp_path, PASSWD))
    assert lookup_home(root, 0) == "/root"
    assert lookup_home(root, 1000) == "/home/bob"
    assert lookup_home(root, 1001) == "/"
    assert lookup_home(root, 4242) == "/"


def test_lookup_home_no_passwd(tmp_path: Path) -> None:
    assert lookup_home(str(tmp_path), 0) == "/"
    assert lookup_home(str(tmp_path / "missing"), 0, default="/x") == "/x"


def test_lookup_home_symlinks_stay_in_root(tmp_path: Path) -> None:
    # An absolute link must resolve inside the rootfs, never to the host file.
    host = tmp_path / "hostpasswd"
    host.write_text("root:x:0:0::/HOST:/bin/sh\n")
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "real").mkdir()
    (root / "real" / "passwd").write_text("root:x:0:0::/INSIDE:/bin/sh\n")
    (root / "etc" / "passwd").symlink_to(str(host))  # dangling inside the root
    assert lookup_home(str(root), 0) == "/"
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("/real/passwd")
    assert lookup_home(str(root), 0) == "/INSIDE"
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("../../../../../../real/passwd")
    assert lookup_home(str(root), 0) == "/INSIDE"


def test_lookup_home_symlink_loop(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("passwd")
    assert lookup_home(str(root), 0) == "/"


def test_lookup_home_etc_is_a_symlink(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "data").mkdir(parents=True)
    (root / "data" / "passwd").write_text("u:x:5:5::/five:/bin/sh\n")
    (root / "etc").symlink_to("/data")
    assert lookup_home(str(root), 5) == "/five"


def test_setgroups_allowed(tmp_path: Path) -> None:
    p = tmp_path / "setgroups"
    p.write_text("allow\n")
    assert setgroups_allowed(str(p))
    p.write_text("deny\n")
    assert not setgroups_allowed(str(p))
    assert setgroups_allowed(str(tmp_path / "missing"))
    assert setgroups_allowed() in (True, False)


def test_apply_user_refuses_groups_when_denied(tmp_path: Path) -> None:
    p = tmp_path / "setgroups"
    p.write_text("deny\n")
    rec = RecordingSyscalls()
    with pytest.raises(ConfigError, match=r"additionalGids \[5\]: supplementary groups cannot be set"):
        apply_user(os.getuid(), os.getgid(), [5], rec,
                   setgroups_path=str(p))
    assert rec.calls == []


def _in_child(fn) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = fn()
        except BaseException:  # noqa: BLE001 - a forked child reports any failure, then _exits
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_apply_user_same_ids_as_now(tmp_path: Path) -> None:
    """Setting our own ids works unprivileged; setgroups skipped via deny."""
    p = tmp_path / "setgroups"
    p.write_text("deny\n")
    uid, gid = os.getuid(), os.getgid()

    def child() -> int:
        rec = RecordingSyscalls()
        apply_user(uid, gid, (), rec, setgroups_path=str(p))
        ok = os.getresuid() == (uid,) * 3 and os.getresgid() == (gid,) * 3
        return 0 if ok and rec.calls == [("prctl", PR_SET_KEEPCAPS, 1, 0, 0, 0)] else 3
    assert _in_child(child) == 0


def test_apply_user_error_message(tmp_path: Path) -> None:
    def child() -> int:
        if os.geteuid() == 0:
            os.setresuid(65534, 65534, 65534)
        try:
            # no setgroups file: allowed, so setgroups runs and fails unprivileged
            apply_user(0, os.getgid(), [1, 2], RecordingSyscalls(),
                       setgroups_path="/nonexistent/ocirun-test/setgroups")
        except SyscallError as e:
            if str(e) == "setgroups [1, 2]: Operation not permitted":
                return 0
            print(e)
            return 4
        return 5
    assert _in_child(child) == 0


def test_unreadable_setgroups_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(SyscallError, match=r"read `.*/f/x`: Not a directory"):
        setgroups_allowed(str(tmp_path / "f" / "x"))


def test_apply_user_keepcaps_failure(tmp_path: Path) -> None:
    p = tmp_path / "setgroups"
    p.write_text("deny\n")

    def child() -> int:
        try:
            apply_user(os.getuid(), os.getgid(), (),
                       RecordingSyscalls(fail={"prctl": errno.EINVAL}), setgroups_path=str(p))
        except SyscallError as e:
            return 0 if "PR_SET_KEEPCAPS: Invalid argument" in str(e) else 4
        return 5
    assert _in_child(child) == 0
