"""Unit tests for ocirun.cgroups against fake cgroup trees in tmp dirs (no root needed).

A fake host is a directory tree plus a fake /proc/self/mountinfo and
/proc/self/cgroup.  A real cgroupfs creates control files in every new
directory and lets rmdir remove them; the tests play that part with
``populate`` (after create) and ``strip`` (before destroy).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ocirun.cgroups as cg
from ocirun.cgroups import detect, paths
from ocirun.errors import CgroupError, ConfigError, NotSupportedError
from ocirun.syscalls.recording import RecordingSyscalls

# (directory under root, fstype, super options, /proc/self/cgroup controllers)
HYBRID = [
    ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct", "cpu,cpuacct"),
    ("cpuset", "cgroup", "rw,cpuset,clone_children", "cpuset"),
    ("memory", "cgroup", "rw,memory", "memory"),
    ("freezer", "cgroup", "rw,freezer", "freezer"),
    ("systemd", "cgroup", "rw,xattr,name=systemd", "name=systemd"),
    ("unified", "cgroup2", "rw,nsdelegate", ""),
]
LEGACY = HYBRID[:-1]
UNIFIED = [("", "cgroup2", "rw,nsdelegate", "")]


class FakeHost:
    def __init__(self, tmp: Path, layout: list[tuple[str, str, str, str]],
                 own: dict[str, str] | None = None, mount_roots: dict[str, str] | None = None) -> None:
        self.root = str(tmp / "cg")
        self.mountinfo = str(tmp / "mountinfo")
        self.self_cgroup = str(tmp / "self_cgroup")
        os.makedirs(self.root)
        own = own or {}
        mount_roots = mount_roots or {}
        mi = ["22 1 0:20 / /proc rw - proc proc rw",
              f"30 1 0:27 / {self.root} rw - tmpfs tmpfs rw"] if layout is not UNIFIED else [
              "22 1 0:20 / /proc rw - proc proc rw"]
        sc = []
        for i, (d, fstype, opts, ctrls) in enumerate(layout):
            mp = os.path.join(self.root, d) if d else self.root
            os.makedirs(mp, exist_ok=True)
            Path(mp, "cgroup.procs").write_text("")
            mroot = mount_roots.get(ctrls, "/")
            mi.append(f"{40 + i} 30 0:{40 + i} {mroot} {mp} rw,nosuid shared:{i} - {fstype} cgroup {opts}")
            sc.append(f"{i if ctrls else 0}:{ctrls}:{own.get(ctrls, '/')}")
            if ctrls == "cpuset":
                Path(mp, "cpuset.cpus").write_text("0-3\n")
                Path(mp, "cpuset.mems").write_text("0\n")
        Path(self.mountinfo).write_text("\n".join(mi) + "\n")
        Path(self.self_cgroup).write_text("\n".join(reversed(sc)) + "\n")

    def open(self, path: str | None, cid: str = "c1", **kw: object) -> cg.CgroupManager:
        return cg.open_manager(path, cid, root=self.root, mountinfo=self.mountinfo,
                               self_cgroup=self.self_cgroup, **kw)  # type: ignore[arg-type]


def populate(m: cg.CgroupManager) -> None:
    """Play the kernel: control files appear in the new cgroup directories."""
    for h in m.hierarchies:
        Path(h.path, "cgroup.procs").write_text("")
        if "freezer" in h.keys:
            Path(h.path, "freezer.state").write_text("THAWED\n")
        if h.version == 2:
            Path(h.path, "cgroup.freeze").write_text("0\n")
            Path(h.path, "cgroup.events").write_text("populated 0\nfrozen 0\n")


def strip(m: cg.CgroupManager) -> None:
    """Play the kernel: rmdir of a cgroup ignores its control files."""
    for h in m.hierarchies:
        for dirpath, _dirs, files in os.walk(h.path):
            for f in files:
                os.unlink(os.path.join(dirpath, f))


@pytest.fixture
def hybrid(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path, HYBRID)


# --- detect ---

@pytest.mark.parametrize("layout,mode", [(HYBRID, "hybrid"), (LEGACY, "legacy"), (UNIFIED, "unified")])
def test_cgroup_mode(tmp_path: Path, layout: list[tuple[str, str, str, str]], mode: str) -> None:
    host = FakeHost(tmp_path, layout)
    assert detect.cgroup_mode(host.root, mountinfo=host.mountinfo) == mode


def test_cgroup_mode_nothing_mounted(tmp_path: Path) -> None:
    mi = tmp_path / "mi"
    mi.write_text("22 1 0:20 / /proc rw - proc proc rw\n")
    with pytest.raises(CgroupError, match="no cgroup filesystem is mounted at `/nowhere`"):
        detect.cgroup_mode("/nowhere", mountinfo=str(mi))


def test_mountinfo_escapes_and_duplicates(tmp_path: Path) -> None:
    mi = tmp_path / "mi"
    mi.write_text("1 0 0:1 / /a\\040b/memory rw shared:1 - cgroup cgroup rw,memory\n"
                  "2 0 0:1 / /a\\040b/memory2 rw - cgroup cgroup rw,memory\n"
                  "3 0 0:2 / /a\\040b/unified rw - cgroup2 cgroup2 rw\n")
    mounts = detect.read_cgroup_mounts("/a b", str(mi))
    assert [(m.mountpoint, m.version) for m in mounts] == [("/a b/memory", 1), ("/a b/unified", 2)]
    assert detect.mode_of(mounts, "/a b") == "hybrid"


def test_real_host_mode_is_known() -> None:
    assert detect.cgroup_mode() in ("unified", "legacy", "hybrid")


def test_read_own_cgroups(tmp_path: Path) -> None:
    f = tmp_path / "c"
    f.write_text("3:cpu,cpuacct:/a\n2:name=systemd:/b\n0::/c\n")
    own = detect.read_own_cgroups(str(f))
    assert own == {frozenset({"cpu", "cpuacct"}): "/a", frozenset({"name=systemd"}): "/b",
                   frozenset(): "/c"}


# --- paths ---

@pytest.mark.parametrize("given,expected", [
    (None, "/c1"), ("", "/c1"), ("/a/b", "/a/b"), ("//a/./b/", "/a/b"), ("x/y", "x/y")])
def test_check_cgroups_path(given: str | None, expected: str) -> None:
    assert paths.check_cgroups_path(given, "c1") == expected


@pytest.mark.parametrize("bad", ["/a/../b", "../x", "/", "/./"])
def test_check_cgroups_path_refuses(bad: str) -> None:
    with pytest.raises(ConfigError, match="cgroupsPath"):
        paths.check_cgroups_path(bad, "c1")


def test_systemd_path_refused(hybrid: FakeHost) -> None:
    with pytest.raises(NotSupportedError, match="systemd cgroup driver is not supported yet"):
        hybrid.open("system.slice:runc:abc")
    with pytest.raises(NotSupportedError, match="systemd cgroup driver is not supported yet"):
        hybrid.open(None, systemd=True)


def test_resolve_dir() -> None:
    assert paths.resolve_dir("/cg/memory", "/", None, "/x/y") == "/cg/memory/x/y"
    assert paths.resolve_dir("/cg/memory", "/", "/", "x") == "/cg/memory/x"
    assert paths.resolve_dir("/cg/memory", "/", "/me", "x") == "/cg/memory/me/x"
    # mount shows only /lxc/c of the hierarchy, we are in /lxc/c/sub
    assert paths.resolve_dir("/cg/memory", "/lxc/c", "/lxc/c/sub", "x") == "/cg/memory/sub/x"
    with pytest.raises(CgroupError, match="own cgroup `/other` is not visible"):
        paths.resolve_dir("/cg/memory", "/lxc/c", "/other", "x")


# --- open_manager ---

def test_open_manager_hybrid_default_path(hybrid: FakeHost) -> None:
    m = hybrid.open(None, "ctr")
    r = hybrid.root
    assert m.paths() == {
        "cpu": f"{r}/cpu,cpuacct/ctr", "cpuacct": f"{r}/cpu,cpuacct/ctr",
        "cpuset": f"{r}/cpuset/ctr", "memory": f"{r}/memory/ctr", "freezer": f"{r}/freezer/ctr",
        "name=systemd": f"{r}/systemd/ctr", "unified": f"{r}/unified/ctr"}
    assert not os.path.exists(f"{r}/memory/ctr")  # nothing created yet


def test_open_manager_relative_uses_own_cgroup(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, HYBRID, own={"memory": "/jobs/42", "": "/user.slice"})
    m = host.open("pod/ctr")
    p = m.paths()
    assert p["memory"] == f"{host.root}/memory/jobs/42/pod/ctr"
    assert p["unified"] == f"{host.root}/unified/user.slice/pod/ctr"
    assert p["cpuset"] == f"{host.root}/cpuset/pod/ctr"


def test_open_manager_mode_filter(hybrid: FakeHost) -> None:
    assert set(hybrid.open(None, mode="legacy").paths()) == {
        "cpu", "cpuacct", "cpuset", "memory", "freezer", "name=systemd"}
    assert set(hybrid.open(None, mode="unified").paths()) == {"unified"}
    with pytest.raises(CgroupError, match="unknown cgroup mode `v3`"):
        hybrid.open(None, mode="v3")


def test_open_manager_unified(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, UNIFIED)
    os.unlink(host.self_cgroup)  # absolute path on v2: /proc/self/cgroup is not needed
    assert host.open("/k8s/ctr").paths() == {"unified": f"{host.root}/k8s/ctr"}


# --- create / destroy ---

def test_create_and_destroy_only_what_we_made(hybrid: FakeHost) -> None:
    os.makedirs(f"{hybrid.root}/memory/parent")
    m = hybrid.open("/parent/mid/ctr")
    m.create()
    p = m.paths()
    assert p["created:memory"] == f"{hybrid.root}/memory/parent/mid"
    assert p["created:unified"] == f"{hybrid.root}/unified/parent"
    for k in ("memory", "unified", "cpu", "name=systemd"):
        assert os.path.isdir(p[k])
    populate(m)
    os.makedirs(p["unified"] + "/inner")  # a sub-cgroup made inside the container
    strip(m)
    # re-open from the saved dict, as `delete` does
    cg.load_manager(p, root=hybrid.root).destroy()
    assert os.path.isdir(f"{hybrid.root}/memory/parent")  # pre-existing: kept
    assert not os.path.exists(f"{hybrid.root}/memory/parent/mid")
    assert not os.path.exists(f"{hybrid.root}/unified/parent")
    assert sorted(os.listdir(f"{hybrid.root}/cpuset")) == ["cgroup.procs", "cpuset.cpus", "cpuset.mems"]
    cg.load_manager(p, root=hybrid.root).destroy()  # again: everything already gone is fine


def test_existing_empty_leaf_is_used_and_kept(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    for h in m.hierarchies:
        os.makedirs(h.path)
    populate(m)
    m.create()
    assert not any(k.startswith("created:") for k in m.paths())
    m.destroy()
    assert all(os.path.isdir(h.path) for h in m.hierarchies)


def test_existing_leaf_with_processes_is_unfit(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    for h in m.hierarchies:
        os.makedirs(h.path)
    populate(m)
    Path(m.paths()["memory"], "sub").mkdir()
    Path(m.paths()["memory"], "sub", "cgroup.procs").write_text("77\n")
    with pytest.raises(CgroupError, match=r"cgroup `.*/memory/c1` already exists and has processes"):
        m.create()
    assert os.path.isdir(m.paths()["memory"])  # not ours: not removed


@pytest.mark.parametrize("where,file,content", [
    ("freezer", "freezer.state", "FROZEN\n"), ("unified", "cgroup.freeze", "1\n"),
    ("unified", "cgroup.events", "populated 0\nfrozen 1\n")])
def test_existing_frozen_leaf_is_unfit(hybrid: FakeHost, where: str, file: str, content: str) -> None:
    m = hybrid.open(None)
    for h in m.hierarchies:
        os.makedirs(h.path)
    populate(m)
    Path(m.paths()[where], file).write_text(content)
    with pytest.raises(CgroupError, match=r"cgroup `.*` is frozen: thaw it"):
        m.create()


def test_create_failure_rolls_back(hybrid: FakeHost) -> None:
    m = hybrid.open("/a/b")
    # make the freezer hierarchy refuse: its "a" is a file, so mkdir a/b fails
    Path(hybrid.root, "freezer", "a").write_text("")
    with pytest.raises(CgroupError, match=r"create cgroup `.*/freezer/a/b`: Not a directory"):
        m.create()
    for d in ("cpu,cpuacct", "cpuset", "memory"):
        assert not os.path.exists(f"{hybrid.root}/{d}/a"), d


def test_create_missing_mount_dir(hybrid: FakeHost) -> None:
    m = hybrid.open("/a")
    os.unlink(f"{hybrid.root}/systemd/cgroup.procs")
    os.rmdir(f"{hybrid.root}/systemd")
    with pytest.raises(CgroupError, match="cgroup root `.*/systemd` does not exist"):
        m.create()
    assert not os.path.exists(f"{hybrid.root}/memory/a")


def test_cpuset_copied_from_parent(hybrid: FakeHost) -> None:
    m = hybrid.open("/mid/ctr")
    for d in ("mid", "mid/ctr"):
        os.makedirs(f"{hybrid.root}/cpuset/{d}")
        Path(hybrid.root, "cpuset", d, "cpuset.cpus").write_text("\n")
        Path(hybrid.root, "cpuset", d, "cpuset.mems").write_text("")
        Path(hybrid.root, "cpuset", d, "cgroup.procs").write_text("")
    Path(hybrid.root, "cpuset", "mid", "cpuset.mems").write_text("0\n")  # already set: kept
    m.create()
    assert Path(hybrid.root, "cpuset/mid/ctr/cpuset.cpus").read_text() == "0-3"
    assert Path(hybrid.root, "cpuset/mid/cpuset.cpus").read_text() == "0-3"
    assert Path(hybrid.root, "cpuset/mid/ctr/cpuset.mems").read_text() == "0"


def test_destroy_retries_ebusy(hybrid: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    m = hybrid.open(None)
    m.create()
    real = os.rmdir
    fails = {"n": 0}

    def busy_twice(path: str) -> None:
        if path.endswith("/memory/c1") and fails["n"] < 2:
            fails["n"] += 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        real(path)

    monkeypatch.setattr(paths.os, "rmdir", busy_twice)  # posix: the module's os
    m.destroy()
    assert fails["n"] == 2 and not os.path.exists(m.paths()["memory"])


def test_destroy_gives_up_after_timeout(hybrid: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    m = hybrid.open(None)
    m.create()
    real = os.rmdir

    def always_busy(path: str) -> None:
        if path.endswith("/memory/c1"):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), path)
        real(path)

    monkeypatch.setattr(paths.os, "rmdir", always_busy)  # posix: the module's os
    monkeypatch.setattr(cg, "RMDIR_TIMEOUT", 0.05)
    with pytest.raises(CgroupError, match=r"remove cgroup `.*/memory/c1`: Device or resource busy"):
        m.destroy()
    # the other hierarchies were still cleaned up
    assert not os.path.exists(m.paths()["unified"])


# --- membership ---

def test_add_writes_every_hierarchy(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    m.add(1234)
    for h in m.hierarchies:
        assert Path(h.path, "cgroup.procs").read_text() == "1234"
    assert m.pids() == [1234]


def test_add_error_names_the_file(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    with pytest.raises(CgroupError) as ei:
        m.add(1234)
    assert str(ei.value) == (f"write `1234` to `{hybrid.root}/cpu,cpuacct/c1/cgroup.procs`: "
                             "No such file or directory")
    assert ei.value.errno == errno.ENOENT


def test_pids_recursive_and_gone(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    u = m.paths()["unified"]
    Path(u, "cgroup.procs").write_text("10\n11\n")
    os.makedirs(u + "/sub")
    Path(u, "sub", "cgroup.procs").write_text("12\n10\n")
    assert m.pids() == [10, 11, 12]
    assert m.pids(recursive=False) == [10, 11]
    strip(m)
    m.destroy()
    assert m.pids() == []


def test_pids_legacy_reads_freezer(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, LEGACY)
    m = host.open(None)
    m.create()
    populate(m)
    Path(m.paths()["freezer"], "cgroup.procs").write_text("5\n")
    assert m.pids() == [5]


# --- load_manager ---

def test_load_manager_roundtrip(hybrid: FakeHost) -> None:
    m = hybrid.open("/x")
    m.create()
    again = cg.load_manager(m.paths(), root=hybrid.root)
    assert again.paths() == m.paths()
    assert [h.version for h in again.hierarchies].count(2) == 1
    with pytest.raises(CgroupError, match="cannot be created again"):
        again.create()


@pytest.mark.parametrize("saved,msg", [
    ({"memory": "/etc"}, "is not below"),
    ({"memory": "/sys/fs/cgroup/memory/../../../etc"}, "is not below"),
    ({"memory": "/sys/fs/cgroup/memory/a", "created:memory": "/sys/fs/cgroup/memory/b"},
     "is not an ancestor"),
    ({"memory": "/sys/fs/cgroup/x", "unified": "/sys/fs/cgroup/x"}, "shared by `unified`"),
])
def test_load_manager_refuses(saved: dict[str, str], msg: str) -> None:
    with pytest.raises(CgroupError, match=msg):
        cg.load_manager(saved)


# --- apply ---

@pytest.mark.parametrize("res", [None, {}, {"devices": []}, {"memory": {}, "cpu": None}])
def test_apply_nothing(hybrid: FakeHost, res: dict[str, object] | None) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    m.apply(res, sys=RecordingSyscalls())


def test_apply_writes_limits(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    Path(m.paths()["memory"], "memory.limit_in_bytes").write_text("max")
    m.apply({"memory": {"limit": 1 << 20}}, sys=RecordingSyscalls())
    assert Path(m.paths()["memory"], "memory.limit_in_bytes").read_text() == str(1 << 20)
    with pytest.raises(CgroupError, match=r"linux.resources.pids: needs the `pids` cgroup controller"):
        m.apply({"pids": {"limit": 0}}, sys=RecordingSyscalls())


# --- freezer / kill ---

def test_freeze_v1_freezer(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    assert not m.frozen()
    m.freeze(True)
    assert Path(m.paths()["freezer"], "freezer.state").read_text() == "FROZEN"
    assert m.frozen()
    m.freeze(False)
    assert Path(m.paths()["freezer"], "freezer.state").read_text() == "THAWED"
    assert Path(m.paths()["unified"], "cgroup.freeze").read_text() == "0"
    assert not m.frozen()


def test_freeze_unified(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, UNIFIED)
    m = host.open(None)
    m.create()
    populate(m)
    d = m.paths()["unified"]
    Path(d, "cgroup.events").write_text("populated 1\nfrozen 1\n")  # the kernel's answer
    m.freeze(True)
    assert Path(d, "cgroup.freeze").read_text() == "1"
    assert m.frozen()
    m.freeze(False)
    assert Path(d, "cgroup.freeze").read_text() == "0"


def test_freeze_timeout_thaws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ocirun.cgroups import v2
    host = FakeHost(tmp_path, UNIFIED)
    m = host.open(None)
    m.create()
    populate(m)
    monkeypatch.setattr(v2, "FREEZE_TIMEOUT", 0.02)
    with pytest.raises(CgroupError, match="not frozen after"):
        m.freeze(True)
    assert Path(m.paths()["unified"], "cgroup.freeze").read_text() == "0"


def test_freeze_without_freezer(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, [HYBRID[2]])  # memory only
    m = host.open(None)
    with pytest.raises(CgroupError, match="no cgroup freezer is available"):
        m.freeze(True)
    assert not m.frozen()


def test_kill_all_uses_cgroup_kill(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    Path(m.paths()["unified"], "cgroup.kill").write_text("")
    m.kill_all(signal.SIGKILL)
    assert Path(m.paths()["unified"], "cgroup.kill").read_text() == "1"


def test_kill_all_signals_listed_pids(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    # our own child, so the signal goes nowhere else
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        Path(m.paths()["unified"], "cgroup.procs").write_text(f"{child.pid}\n999999999\n")
        Path(m.paths()["freezer"], "freezer.state").write_text("THAWED\n")
        m.kill_all(signal.SIGTERM)
        assert child.wait(timeout=10) == -signal.SIGTERM
        # frozen for the pid walk, thawed again afterwards
        assert Path(m.paths()["freezer"], "freezer.state").read_text() == "THAWED"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_kill_all_keeps_paused_container_paused(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.create()
    populate(m)
    Path(m.paths()["freezer"], "freezer.state").write_text("FROZEN\n")
    m.kill_all(signal.SIGTERM)  # no pids listed: nothing to signal
    assert Path(m.paths()["freezer"], "freezer.state").read_text() == "FROZEN\n"


def test_kill_all_when_cgroup_is_gone(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    m.kill_all(signal.SIGKILL)  # never created
    m.kill_all(signal.SIGTERM)


def test_create_by_version_v2_first(hybrid: FakeHost) -> None:
    """create(2) then create(1), as create does around the early fork: the
    v2 directory alone first; a v1 failure then removes only the v1 ones."""
    m = hybrid.open("/a/b")
    m.create(2)
    assert m.made_v2_dir()
    assert os.path.isdir(f"{hybrid.root}/unified/a/b")
    assert not os.path.exists(f"{hybrid.root}/memory/a")
    Path(hybrid.root, "freezer", "a").write_text("")  # the v1 step fails
    with pytest.raises(CgroupError, match=r"create cgroup `.*/freezer/a/b`"):
        m.create(1)
    assert not os.path.exists(f"{hybrid.root}/memory/a")
    assert os.path.isdir(f"{hybrid.root}/unified/a/b")  # v2's: the caller's rollback removes it
    m.destroy()
    assert not os.path.exists(f"{hybrid.root}/unified/a")


def test_made_v2_dir_only_for_a_new_directory(hybrid: FakeHost) -> None:
    m = hybrid.open(None)
    for h in m.hierarchies:
        os.makedirs(h.path)
    populate(m)
    m.create(2)
    assert not m.made_v2_dir()  # it existed: maybe someone's, no early init there
