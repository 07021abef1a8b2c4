"""ocirun.cgroups against the host's real cgroup filesystems (root only).

Every cgroup made here is named ``ocirun-test-<random>...`` directly below a
hierarchy's mount point; the ``host`` fixture kills the ``sleep`` processes the
test started and removes every such directory, whatever the test outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

import ocirun.cgroups as cg
from ocirun.cgroups import detect
from ocirun.errors import CgroupError

ROOT = "/sys/fs/cgroup"


def _mode() -> str | None:
    try:
        return detect.cgroup_mode(ROOT)
    except CgroupError:
        return None


MODE = _mode()
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(MODE is None, reason="no cgroup filesystem at /sys/fs/cgroup"),
]


class Host:
    """Names, processes and cleanup for one test."""

    def __init__(self) -> None:
        self.prefix = f"ocirun-test-{uuid.uuid4().hex[:10]}"
        self.children: list[subprocess.Popen[bytes]] = []

    def name(self, suffix: str = "") -> str:
        return self.prefix + suffix

    def sleeper(self) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(["sleep", "60"])
        self.children.append(p)
        return p

    def cleanup(self) -> None:
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        for m in detect.read_cgroup_mounts(ROOT):
            try:
                entries = os.listdir(m.mountpoint)
            except OSError:
                continue
            for e in entries:
                if e.startswith(self.prefix):
                    _rmtree(os.path.join(m.mountpoint, e))


def _rmtree(path: str) -> None:
    for dirpath, dirs, _files in os.walk(path, topdown=False):
        for d in dirs:
            _rmdir_retry(os.path.join(dirpath, d))
    _rmdir_retry(path)


def _rmdir_retry(path: str) -> None:
    for _ in range(200):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)
    os.rmdir(path)


@pytest.fixture
def host() -> Iterator[Host]:
    h = Host()
    try:
        yield h
    finally:
        h.cleanup()


def _leftovers(h: Host) -> list[str]:
    return [os.path.join(m.mountpoint, e) for m in detect.read_cgroup_mounts(ROOT)
            for e in os.listdir(m.mountpoint) if e.startswith(h.prefix)]


def _proc_cgroups(pid: int) -> dict[frozenset[str], str]:
    with open(f"/proc/{pid}/cgroup") as f:
        out = {}
        for line in f.read().splitlines():
            _, ctrls, path = line.split(":", 2)
            out[frozenset(c for c in ctrls.split(",") if c)] = path
        return out


def _wait_signalled(p: subprocess.Popen[bytes], sig: int) -> None:
    assert p.wait(timeout=10) == -sig


def test_full_cycle_default_mode(host: Host) -> None:
    name = host.name()
    m = cg.open_manager(None, name)
    m.create()
    saved = m.paths()
    p = host.sleeper()
    m.add(p.pid)
    # the process is in the container's cgroup in every hierarchy we manage
    seen = _proc_cgroups(p.pid)
    for hier in m.hierarchies:
        key = frozenset() if hier.version == 2 else frozenset(hier.keys)
        assert seen[key] == "/" + name, hier
    assert m.pids() == [p.pid]

    # pause / resume through a manager re-opened from the saved paths
    again = cg.load_manager(saved)
    again.freeze(True)
    assert again.frozen()
    again.freeze(False)
    assert not again.frozen()

    again.kill_all(signal.SIGKILL)
    _wait_signalled(p, signal.SIGKILL)
    again.destroy()
    assert _leftovers(host) == []
    again.kill_all(signal.SIGKILL)  # the cgroup is gone: still fine
    again.destroy()


def test_unified_driver(host: Host) -> None:
    # On a hybrid host the controller-less cgroup2 at /sys/fs/cgroup/unified is
    # a complete v2 hierarchy of its own: drive it as a "unified" host.
    root = ROOT if MODE == "unified" else ROOT + "/unified"
    if MODE == "legacy" or not os.path.isdir(root):
        pytest.skip("no cgroup2 hierarchy")
    m = cg.open_manager(None, host.name(), root=root)
    assert [h.version for h in m.hierarchies] == [2]
    m.create()
    path = m.paths()["unified"]
    if not os.path.exists(path + "/cgroup.freeze"):
        pytest.skip("kernel without cgroup.freeze")
    a, b = host.sleeper(), host.sleeper()
    m.add(a.pid)
    m.add(b.pid)
    assert m.pids() == sorted([a.pid, b.pid])

    m.freeze(True)
    assert m.frozen()
    with open(path + "/cgroup.events") as f:
        assert "frozen 1" in f.read()
    m.freeze(False)
    assert not m.frozen()

    m.kill_all(signal.SIGTERM)  # pid walk (cgroup.kill sends only SIGKILL)
    _wait_signalled(a, signal.SIGTERM)
    _wait_signalled(b, signal.SIGTERM)
    assert not m.frozen()

    c = host.sleeper()
    m.add(c.pid)
    m.kill_all(signal.SIGKILL)  # cgroup.kill when the kernel has it
    _wait_signalled(c, signal.SIGKILL)
    m.destroy()
    assert _leftovers(host) == []


def test_legacy_freezer(host: Host) -> None:
    if MODE == "unified":
        pytest.skip("no cgroup v1 hierarchies")
    m = cg.open_manager(None, host.name(), mode="legacy")
    assert all(h.version == 1 for h in m.hierarchies)
    m.create()
    p = host.sleeper()
    m.add(p.pid)
    m.freeze(True)
    with open(m.paths()["freezer"] + "/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    assert m.frozen()
    # paused + SIGTERM: signalled, and left paused
    m.kill_all(signal.SIGTERM)
    assert m.frozen()
    # SIGKILL to a paused container thaws it so the processes can die
    m.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) in (-signal.SIGTERM, -signal.SIGKILL)
    assert not m.frozen()
    m.destroy()
    assert _leftovers(host) == []


def test_destroy_right_after_kill(host: Host) -> None:
    m = cg.open_manager(None, host.name())
    m.create()
    p = host.sleeper()
    m.add(p.pid)
    m.kill_all(signal.SIGKILL)
    m.destroy()  # may meet EBUSY while the task exits: retried
    _wait_signalled(p, signal.SIGKILL)
    assert _leftovers(host) == []


def test_busy_cgroup_is_unfit_and_kept(host: Host) -> None:
    first = cg.open_manager(None, host.name())
    first.create()
    p = host.sleeper()
    first.add(p.pid)
    second = cg.open_manager(None, host.name())
    with pytest.raises(CgroupError, match="already exists and has processes"):
        second.create()
    assert first.pids() == [p.pid]  # the failed create removed nothing
    first.kill_all(signal.SIGKILL)
    _wait_signalled(p, signal.SIGKILL)
    first.destroy()
    assert _leftovers(host) == []


def test_preexisting_parent_is_kept(host: Host) -> None:
    parent = host.name("-parent")
    probe = cg.open_manager("/" + parent, "x")
    for h in probe.hierarchies:
        os.mkdir(h.path)
    m = cg.open_manager(f"/{parent}/mid/leaf", "x")
    m.create()
    p = host.sleeper()
    m.add(p.pid)  # cpuset.cpus/mems were filled in on create, or this fails with ENOSPC
    m.kill_all(signal.SIGKILL)
    _wait_signalled(p, signal.SIGKILL)
    cg.load_manager(m.paths()).destroy()
    for h in probe.hierarchies:
        assert os.path.isdir(h.path)
        assert os.listdir(h.path) == [] or not any(
            os.path.isdir(os.path.join(h.path, e)) for e in os.listdir(h.path))


def test_frozen_parent_makes_new_leaf_unfit(host: Host) -> None:
    parent = host.name("-frozen")
    pm = cg.open_manager("/" + parent, "x")
    pm.create()
    pm.freeze(True)
    try:
        child = cg.open_manager(f"/{parent}/leaf", "x")
        with pytest.raises(CgroupError, match="is frozen: thaw it"):
            child.create()
        # the failed create removed the leaf it had made
        assert not any(os.path.exists(h.path) for h in child.hierarchies)
    finally:
        pm.freeze(False)
    pm.destroy()
    assert _leftovers(host) == []


def test_sigkill_reaches_paused_container(host: Host) -> None:
    m = cg.open_manager(None, host.name())
    m.create()
    p = host.sleeper()
    m.add(p.pid)
    m.freeze(True)
    assert m.frozen()
    m.kill_all(signal.SIGKILL)  # cgroup.kill or pid walk, then thaw so the kill lands
    _wait_signalled(p, signal.SIGKILL)
    assert not m.frozen()
    m.destroy()
    assert _leftovers(host) == []
