"""linux.intelRdt (ocirun/resctrl.py, ocirun/ops/hostside.py) applied to a
fixture directory laid out like a mounted resctrl filesystem: this host has
none, so the real thing is only checked for its error."""

from __future__ import annotations

import json
import os
from typing import Any

import bundle as bundle_mod
import pytest

from ocirun import resctrl
from ocirun.errors import ConfigError, OciRunError
from ocirun.ops import hostside
from ocirun.ops.create import CreateOptions, create
from ocirun.process.parent import Rollback
from ocirun.state import StateStore
from ocirun.syscalls.recording import RecordingSyscalls

DEFAULT = "    L3:0=7ff;1=7ff\n    MB:0=100;1=100\n"


@pytest.fixture
def root(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A resctrl-like tree: schemata and tasks at the top, info/, mon_groups/.
    mkdir and rmdir below it behave as on resctrl: a new group comes with its
    files (and mon_groups/ for a control group); rmdir takes them away."""
    r = tmp_path / "resctrl"
    for d in ("info/L3", "info/L3_MON", "mon_groups"):
        (r / d).mkdir(parents=True)
    (r / "schemata").write_text(DEFAULT)
    (r / "tasks").write_text("")
    (r / "info" / "last_cmd_status").write_text("ok\n")
    top = str(r)
    real_mkdir, real_rmdir = os.mkdir, os.rmdir

    def mkdir(path: Any, mode: int = 0o777, **kw: Any) -> None:
        real_mkdir(path, mode, **kw)
        path = str(path)
        if path.startswith(top + "/"):
            ctrl = os.path.dirname(path) == top
            if ctrl:
                real_mkdir(os.path.join(path, "mon_groups"))
            for f in ("tasks",) + (("schemata",) if ctrl else ()):
                with open(os.path.join(path, f), "w"):
                    pass  # (a real schemata file is never empty; writes replace lines)

    def rmdir(path: Any, **kw: Any) -> None:
        path = str(path)
        if path.startswith(top + "/") and os.path.isdir(path):
            for f in ("tasks", "schemata"):
                if os.path.isfile(os.path.join(path, f)):
                    os.unlink(os.path.join(path, f))
            mg = os.path.join(path, "mon_groups")
            if os.path.isdir(mg) and not os.listdir(mg):
                real_rmdir(mg)
        real_rmdir(path, **kw)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "rmdir", rmdir)
    return top


def test_no_resctrl_mounted_is_an_error_naming_the_field(tmp_path: Any) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text("22 1 0:21 / /proc rw - proc proc rw\n")
    assert resctrl.find_mount(str(mi)) is None
    mi.write_text("22 1 0:21 / /sys/fs/resctrl rw - resctrl resctrl rw\n")
    assert resctrl.find_mount(str(mi)) == "/sys/fs/resctrl"
    if resctrl.find_mount() is None:  # this host: no resctrl
        with pytest.raises(ConfigError, match=r"\$\.linux\.intelRdt: no resctrl filesystem is "
                                              r"mounted in the runtime's mount namespace"):
            resctrl.plan_rdt({"closID": "x"}, "c1")


def test_group_named_after_the_container(root: str) -> None:
    p = resctrl.plan_rdt({"l3CacheSchema": "L3:0=f;1=f", "memBwSchema": "MB:0=20;1=70",
                          "schemata": ["L2:0=f"], "enableMonitoring": True}, "c1", root=root)
    assert p.group == os.path.join(root, "c1") and p.create and p.remove
    # the spec's order: l3CacheSchema, memBwSchema, then schemata
    assert p.lines == ("L3:0=f;1=f", "MB:0=20;1=70", "L2:0=f")
    resctrl.setup(p)
    with open(os.path.join(p.group, "schemata")) as f:
        assert f.read() == "L3:0=f;1=f\nMB:0=20;1=70\nL2:0=f\n"
    assert os.path.isdir(os.path.join(p.group, "mon_groups", "c1"))
    resctrl.add(p, 4242)
    for d in (p.group, p.mon):
        with open(os.path.join(str(d), "tasks")) as f:
            assert f.read() == "4242"


def test_setup_creates_and_destroy_removes(root: str) -> None:
    p = resctrl.plan_rdt({"enableMonitoring": True}, "c2", root=root)
    resctrl.setup(p)
    assert os.path.isdir(p.group) and p.mon and os.path.isdir(p.mon)
    resctrl.destroy(p)
    assert not os.path.exists(p.group)


def test_closid_rules(root: str) -> None:
    # a missing closID group without schemata: an error
    with pytest.raises(ConfigError, match=r"intelRdt\.closID: resctrl group .*gold` does not exist"):
        resctrl.plan_rdt({"closID": "gold"}, "c1", root=root)
    # with schemata it is created, and never removed (closID set)
    p = resctrl.plan_rdt({"closID": "gold", "memBwSchema": "MB:0=50"}, "c1", root=root)
    assert p.create and not p.remove
    resctrl.setup(p)
    resctrl.destroy(p)
    assert os.path.isdir(os.path.join(root, "gold"))
    # an existing group: joined as it is, schemata compared
    with open(os.path.join(root, "gold", "schemata"), "w") as f:
        f.write("    L3:0=7ff;1=7ff\n    MB:0= 50\n")
    p = resctrl.plan_rdt({"closID": "gold", "memBwSchema": "MB:0=50"}, "c1", root=root)
    assert not p.create and p.lines == ()
    with pytest.raises(ConfigError, match=r"exists with other schemata than 'MB:0=60'"):
        resctrl.plan_rdt({"closID": "gold", "memBwSchema": "MB:0=60"}, "c1", root=root)
    # "/" is the default group, the root
    assert resctrl.plan_rdt({"closID": "/"}, "c1", root=root).group == root
    for bad in ("a/b", "info", "..", ""):
        with pytest.raises(ConfigError, match=r"intelRdt\.closID: .* is not a group name"):
            resctrl.plan_rdt({"closID": bad}, "c1", root=root)


def test_line_and_monitoring_errors(root: str) -> None:
    with pytest.raises(ConfigError, match=r"intelRdt\.schemata\[1\]: must not contain a newline"):
        resctrl.plan_rdt({"schemata": ["L3:0=f", "MB:0=1\nL3:0=f"]}, "c1", root=root)
    with pytest.raises(ConfigError, match=r"intelRdt\.memBwSchema: must start with `MB:`"):
        resctrl.plan_rdt({"memBwSchema": "L3:0=f"}, "c1", root=root)
    os.rmdir(os.path.join(root, "info", "L3_MON"))
    with pytest.raises(ConfigError, match=r"intelRdt\.enableMonitoring: resctrl here has no "
                                          "monitoring"):
        resctrl.plan_rdt({"enableMonitoring": True}, "c1", root=root)
    os.mkdir(os.path.join(root, "c1"))
    with pytest.raises(ConfigError, match=r"group .*c1` \(named after the container\) already"):
        resctrl.plan_rdt({}, "c1", root=root)


def test_kernel_refusal_is_explained(root: str) -> None:
    p = resctrl.plan_rdt({"closID": "g", "schemata": ["L3:0=zz"]}, "c1", root=root)
    os.mkdir(p.group)
    os.unlink(os.path.join(p.group, "schemata"))
    os.mkdir(os.path.join(p.group, "schemata"))  # writing it fails (EISDIR)
    with open(os.path.join(root, "info", "last_cmd_status"), "w") as f:
        f.write("Bad mask zz for L3\n")
    p2 = resctrl.RdtPlan(p.group, p.lines, None, create=False, remove=False)
    with pytest.raises(OciRunError, match=r"linux.intelRdt: write schemata of .*\(Bad mask zz "
                                          r"for L3\)"):
        resctrl.setup(p2)


def test_record_and_hostside(root: str, tmp_path: Any) -> None:
    p = resctrl.plan_rdt({"enableMonitoring": True}, "c3", root=root)
    back = resctrl.from_record(resctrl.record(p))
    assert (back.group, back.mon, back.remove) == (p.group, p.mon, True)
    hs = hostside.HostSide(p, None)
    assert p.mon is not None
    with Rollback() as rb:
        hs.prepare(rb)
        hs.on_pid(77, rb, RecordingSyscalls())
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        hs.save(str(state_dir))
        rb.commit()
    hostside.join_rdt(str(state_dir), 78)  # exec
    with open(os.path.join(p.mon, "tasks")) as f:
        assert f.read() == "78"
    hostside.remove_rdt(str(state_dir))  # delete
    assert not os.path.exists(p.group)


def test_rollback_removes_the_group(root: str) -> None:
    p = resctrl.plan_rdt({}, "c4", root=root)
    hs = hostside.HostSide(p, None)
    with pytest.raises(RuntimeError), Rollback() as rb:
        hs.prepare(rb)
        assert os.path.isdir(p.group)
        raise RuntimeError("later step failed")
    assert not os.path.exists(p.group)


def test_create_refuses_before_any_fork_without_resctrl(tmp_path: Any) -> None:
    if resctrl.find_mount() is not None:
        pytest.skip("this host has resctrl mounted")
    rootfs = bundle_mod.build_rootfs(str(tmp_path / "rootfs"))
    cfg = bundle_mod.base_config(["true"], rootfs)
    cfg["linux"]["intelRdt"] = {"closID": "gold", "schemata": ["L3:0=f"]}
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    rec = RecordingSyscalls()
    with pytest.raises(ConfigError, match=r"\$\.linux\.intelRdt: no resctrl"):
        create(StateStore(str(tmp_path / "state")), "c1",
               CreateOptions(bundle=str(tmp_path), cgroup_root=str(tmp_path / "cg")), sys=rec)
    assert "fork" not in rec.names()
    assert not os.path.exists(tmp_path / "state" / "c1")
