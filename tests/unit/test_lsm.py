"""ocirun.lsm: AppArmor/SELinux labels planned in the parent (refused where the host has
no such LSM, as runc 1.1.5 fails there too) and written to /proc/thread-self/attr in the
child; linux.mountLabel as a context= mount option. The /sys and /proc roots are
parameters, so both the enabled and the disabled host are tested here; tests/privileged
runs the disabled case for real (this VM has no LSM).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ocirun import lsm
from ocirun.errors import ConfigError, SyscallError
from ocirun.process.plan import build_mounts


def fake_sys(tmp_path: Path, apparmor: bool = False, selinux: bool = False) -> str:
    root = tmp_path / "sys"
    root.mkdir()
    if apparmor:
        (root / "kernel/security/apparmor").mkdir(parents=True)
        (root / "module/apparmor/parameters").mkdir(parents=True)
        (root / "module/apparmor/parameters/enabled").write_text("Y\n")
    if selinux:
        (root / "fs/selinux").mkdir(parents=True)
        (root / "fs/selinux/enforce").write_text("1")
    return str(root)


def test_detection(tmp_path: Path) -> None:
    both = fake_sys(tmp_path, apparmor=True, selinux=True)
    assert lsm.apparmor_enabled(both) and lsm.selinux_enabled(both)
    none = str(tmp_path / "empty")
    assert not lsm.apparmor_enabled(none) and not lsm.selinux_enabled(none)


def test_apparmor_module_present_but_disabled(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, apparmor=True)
    Path(root, "module/apparmor/parameters/enabled").write_text("N\n")
    assert not lsm.apparmor_enabled(root)


def test_labels_planned_on_a_host_with_the_lsms(tmp_path: Path) -> None:
    root = fake_sys(tmp_path, apparmor=True, selinux=True)
    assert lsm.plan_labels("docker-default", "system_u:system_r:container_t:s0", sys_root=root) \
        == ("docker-default", "system_u:system_r:container_t:s0")
    assert lsm.plan_labels(None, "", sys_root=root) == (None, None)
    assert lsm.plan_mount_label("system_u:object_r:container_file_t:s0", root) \
        == "system_u:object_r:container_file_t:s0"


@pytest.mark.parametrize("apparmor,selinux,path,words", [
    ("docker-default", None, "$.process.apparmorProfile", "AppArmor is not enabled on this host"),
    ("unconfined", None, "$.process.apparmorProfile", "profile `unconfined`"),
    (None, "system_u:system_r:container_t:s0", "$.process.selinuxLabel",
     "SELinux is not enabled on this host"),
])
def test_labels_refused_without_the_lsm(tmp_path: Path, apparmor: str | None, selinux: str | None,
                                        path: str, words: str) -> None:
    with pytest.raises(ConfigError) as ei:
        lsm.plan_labels(apparmor, selinux, sys_root=fake_sys(tmp_path))
    assert ei.value.msg.startswith(f"config.json: {path}: ") and words in ei.value.msg
    assert ei.value.msg.endswith("(runc 1.1.5 fails too)")


def test_mount_label_refused_without_selinux(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config\.json: \$\.linux\.mountLabel: SELinux is not "):
        lsm.plan_mount_label("system_u:object_r:container_file_t:s0", fake_sys(tmp_path))
    assert lsm.plan_mount_label("", str(tmp_path / "nothing")) is None


def test_mount_data() -> None:
    label = "system_u:object_r:container_file_t:s0:c1,c2"
    assert lsm.mount_data("", "tmpfs", label) == f'context="{label}"'
    assert lsm.mount_data("mode=755,size=65536k", "tmpfs", label) == \
        f'mode=755,size=65536k,context="{label}"'
    for fstype in ("proc", "sysfs", "mqueue", "cgroup", "cgroup2", "bind"):
        assert lsm.mount_data("x=1", fstype, label) == "x=1"
    assert lsm.mount_data("x=1", "tmpfs", None) == "x=1"


def test_build_mounts_labels_what_runc_labels() -> None:
    label = "system_u:object_r:container_file_t:s0"
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["gid=5"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
        {"destination": "/data", "type": "none", "source": "/srv", "options": ["rbind"]},
    ]
    plans = build_mounts(mounts, "/bundle", in_userns=False, own_netns=True, mount_label=label)
    data = {m.destination: m.options.data for m in plans}
    ctx = f'context="{label}"'
    assert data == {"/proc": "", "/dev": f"mode=755,{ctx}", "/dev/pts": f"gid=5,{ctx}",
                    "/dev/mqueue": "", "/sys": "", "/data": ""}
    unlabelled = build_mounts(mounts, "/bundle", in_userns=False, own_netns=True)
    assert [m.options.data for m in unlabelled] == ["", "mode=755", "gid=5", "", "", ""]


def fake_proc(tmp_path: Path, apparmor_dir: bool) -> str:
    attr = tmp_path / "proc/thread-self/attr"
    attr.mkdir(parents=True)
    for name in ("exec", "keycreate", "current"):
        (attr / name).write_text("")
    if apparmor_dir:
        (attr / "apparmor").mkdir()
        (attr / "apparmor/exec").write_text("")
    return str(tmp_path / "proc")


def test_exec_labels_are_written_for_the_next_execve(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, apparmor_dir=True)
    lsm.apply_exec_labels("docker-default", None, proc)
    assert Path(proc, "thread-self/attr/apparmor/exec").read_text() == "exec docker-default"
    assert Path(proc, "thread-self/attr/exec").read_text() == ""


def test_apparmor_falls_back_to_the_old_attr_file(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, apparmor_dir=False)
    lsm.apply_exec_labels("docker-default", None, proc)
    assert Path(proc, "thread-self/attr/exec").read_text() == "exec docker-default"


def test_selinux_exec_and_keycreate_labels(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, apparmor_dir=True)
    label = "system_u:system_r:container_t:s0:c1,c2"
    lsm.apply_exec_labels(None, label, proc)
    lsm.apply_keycreate_label(label, proc)
    assert Path(proc, "thread-self/attr/exec").read_text() == label
    assert Path(proc, "thread-self/attr/keycreate").read_text() == label
    assert Path(proc, "thread-self/attr/apparmor/exec").read_text() == ""


def test_a_failed_write_names_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(SyscallError) as ei:
        lsm.apply_exec_labels("p", None, str(tmp_path / "noproc"))
    assert ei.value.msg == (f"process.apparmorProfile `p`: write `{tmp_path}/noproc/thread-self/attr/"
                            "exec`: No such file or directory")
    assert ei.value.stage == "lsm"

