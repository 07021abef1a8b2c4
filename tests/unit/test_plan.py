"""process/plan.py: the typed plan, and every config error raised before any fork.

The runtime is run on the recording syscall double: its fork() records the
call and then fails the test, so a config error that only showed up in a
child (as rlimits, id-mapped mounts, a /proc mount at the wrong place did)
would show up here as an AssertionError or a recorded "fork".
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import pytest

import bundle as bundle_mod
from ocirun.errors import ConfigError, NotSupportedError, OciRunError
from ocirun.ops.create import CreateOptions, create
from ocirun.plantypes import ContainerPlan
from ocirun.process.plan import LaunchOptions, build_container_plan
from ocirun.state import StateStore
from ocirun.syscalls.recording import RecordingSyscalls

BAD: dict[str, tuple[Any, str]] = {
    "rlimit-too-big": (lambda c: c["process"]["rlimits"].append(
        {"type": "RLIMIT_CORE", "soft": 1 << 63, "hard": 1 << 63}), "$.process.rlimits[1]"),
    "idmapped-mount-not-bind": (lambda c: c["mounts"].append(
        {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
         "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}), "id-mapped"),
    "proc-mount-elsewhere": (lambda c: c["mounts"].append(
        {"destination": "/proc/sys", "type": "proc", "source": "proc"}), "inside /proc"),
    "env-without-equals": (lambda c: c["process"]["env"].append("NOEQ"), "$.process.env[2]"),
    "empty-annotation-key": (lambda c: c.update(annotations={"": "v"}), "annotations"),
    "hook-env-without-equals": (lambda c: c.update(hooks={"poststop": [
        {"path": "/bin/true", "env": ["BAD"]}]}), "$.hooks.poststop[0].env[0]"),
    "no-mount-namespace": (lambda c: (c["linux"].update(namespaces=[{"type": "pid"}]),
                                      c.pop("hostname")), "mount namespace"),
}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return bundle_mod.build_rootfs(str(tmp_path_factory.mktemp("plan") / "rootfs"))


def _bundle(tmp_path: Any, rootfs: str, mutate: Any = None) -> str:
    cfg = bundle_mod.base_config(["true"], rootfs)
    if mutate is not None:
        mutate(cfg)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    return str(tmp_path)


@pytest.mark.parametrize("case", sorted(BAD))
def test_config_errors_are_raised_before_any_fork(case: str, tmp_path: Any, rootfs: str) -> None:
    mutate, phrase = BAD[case]
    bundle = _bundle(tmp_path, rootfs, mutate)
    store = StateStore(str(tmp_path / "state"))
    rec = RecordingSyscalls()
    with pytest.raises((ConfigError, NotSupportedError)) as ei:
        create(store, "c1", CreateOptions(bundle=bundle, cgroup_root=str(tmp_path / "cg")), sys=rec)
    assert phrase in ei.value.msg
    assert "fork" not in rec.names()
    assert not os.path.exists(tmp_path / "state" / "c1")


def test_rootfs_proc_symlink_is_a_config_error(tmp_path: Any, rootfs: str) -> None:
    import shutil
    own = tmp_path / "rootfs"
    shutil.copytree(rootfs, own, symlinks=True)
    os.rmdir(own / "proc")
    os.symlink("/etc", own / "proc")
    bundle = _bundle(tmp_path, str(own))
    rec = RecordingSyscalls()
    with pytest.raises(ConfigError, match=r"`/proc` in the rootfs .* is a symlink"):
        create(StateStore(str(tmp_path / "state")), "c1", CreateOptions(bundle=bundle), sys=rec)
    assert rec.calls == []


def test_valid_config_plans(tmp_path: Any, rootfs: str) -> None:
    """The positive control: the base config plans fine, into frozen objects."""
    cfg = bundle_mod.base_config(["sh", "-c", "true"], rootfs)
    cfg["process"]["env"].append("A=b=c")
    plan = build_container_plan("c1", copy.deepcopy(cfg), str(tmp_path), LaunchOptions())
    assert isinstance(plan, ContainerPlan)
    p = plan.process
    assert p.args == ("sh", "-c", "true")
    assert "HOME=/root" in p.env and p.env_dict()["A"] == "b=c"
    assert p.rlimits == ((7, 1024, 1024, "RLIMIT_NOFILE"),)
    assert p.keyring == "_ses.c1" and p.no_new_privileges
    assert [m.destination for m in plan.mounts][:2] == ["/proc", "/dev"]
    assert plan.mounts[6].kind == "cgroup" and plan.mounts[6].shows_cgroups
    with pytest.raises(AttributeError, match="frozen"):
        p.cwd = "/tmp"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen"):
        plan.rootfs = "/"  # type: ignore[misc]


def test_preserve_fds_must_be_open(tmp_path: Any, rootfs: str) -> None:
    bundle = _bundle(tmp_path, rootfs)
    rec = RecordingSyscalls()
    with pytest.raises(OciRunError, match=r"--preserve-fds: fd \d+ is not open"):
        create(StateStore(str(tmp_path / "s")), "c1",
               CreateOptions(bundle=bundle, preserve_fds=898), sys=rec)
    assert "fork" not in rec.names()
