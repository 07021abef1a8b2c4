"""The init forked before the launch (process/nursery.py send_fork): when
the plan joins no namespace and makes no user namespace, the nursery forks
the init as soon as the cgroup's v2 directory exists, the init builds its
rootfs up to the first cgroup mount while the runtime finishes the cgroup,
and reads the launch itself.  Whatever fails on either side meanwhile,
create reports it and leaves nothing behind."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest


@pytest.fixture
def ocirun_only(lab: Any) -> None:
    if lab.is_runc:
        pytest.skip("ocirun's own launch")


def _records(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_the_init_is_forked_before_the_launch(lab: Any, tmp_path: Any,
                                              ocirun_only: None) -> None:
    trace = str(tmp_path / "trace.jsonl")
    b = lab.bundle(["true"])
    r = lab.cli("run", "--bundle", b.path, lab.new_id(), global_args=("--trace", trace))
    assert r.returncode == 0, r
    by = {(rec["proc"], rec["step"]): rec for rec in _records(trace)}
    assert "before the launch" in by[("intermediate", "I5")]["name"]
    # the runtime became a subreaper only after it told the init to go on
    assert by[("runtime", "P1")]["start_ns"] >= by[("runtime", "P3")]["start_ns"]


def test_a_joined_namespace_keeps_the_fork_after_the_launch(lab: Any, tmp_path: Any,
                                                            ocirun_only: None) -> None:
    trace = str(tmp_path / "trace.jsonl")
    b = lab.bundle(["true"], lambda c: c["linux"]["namespaces"].__setitem__(
        1, {"type": "network", "path": "/proc/self/ns/net"}))
    r = lab.cli("run", "--bundle", b.path, lab.new_id(), global_args=("--trace", trace))
    assert r.returncode == 0, r
    by = {(rec["proc"], rec["step"]): rec for rec in _records(trace)}
    assert "before the launch" not in by[("intermediate", "I5")]["name"]


def test_a_mount_failing_in_the_early_init_is_reported(lab: Any, ocirun_only: None) -> None:
    """The init fails while the runtime is still making the cgroup: the
    init's own error is what create says, and nothing is left."""
    def bad_mount(c: dict[str, Any]) -> None:
        c["mounts"].insert(1, {"destination": "/mnt", "type": "nosuchfs", "source": "none"})
    for _ in range(3):
        cid = lab.new_id()
        r = lab.create(lab.bundle(["true"], bad_mount), cid)
        assert r.returncode == 1, r
        assert "nosuchfs" in r.stderr and "/mnt" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert lab.leftovers(cid) == []


def test_a_cgroup_failure_after_the_fork_leaves_nothing(lab: Any, ocirun_only: None) -> None:
    """The runtime fails after the init was forked (a cpuset the kernel
    refuses): the rollback finds the init through the intermediate's
    message and kills it before it removes the cgroup, every time."""
    if not os.path.isdir("/sys/fs/cgroup/cpuset") and not os.path.exists(
            "/sys/fs/cgroup/cpuset.cpus.effective"):
        pytest.skip("no cpuset controller")
    for _ in range(5):
        cid = lab.new_id()
        b = lab.bundle(["true"], lambda c, cid=cid: c["linux"].update(
            cgroupsPath="/" + cid, resources={"cpu": {"cpus": "4095"}}))
        r = lab.create(b, cid)
        assert r.returncode == 1, r
        assert "cpuset.cpus" in r.stderr, r.stderr
        assert lab.leftovers(cid) == []


def test_an_existing_cgroup_is_not_forked_into_early(lab: Any, ocirun_only: None) -> None:
    """A cgroup that already exists (empty) may be someone's: the init is
    forked into it only at the launch, as before, and still ends up there."""
    cid = lab.new_id()
    unified = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") \
        else "/sys/fs/cgroup"
    if not os.path.exists(unified + "/cgroup.procs"):
        pytest.skip("no cgroup v2 hierarchy")
    d = f"{unified}/{cid}-pre"
    os.mkdir(d)
    try:
        b = lab.bundle(["sleep", "30"], lambda c: c["linux"].update(cgroupsPath=f"/{cid}-pre"))
        pid_file = os.path.join(lab.workdir, f"{cid}.pid")
        lab.create(b, cid, "--pid-file", pid_file).ok()
        with open(pid_file) as f:
            pid = int(f.read())
        with open(f"/proc/{pid}/cgroup") as f:
            assert f"0::/{cid}-pre\n" in f.read()
        lab.cli("delete", "--force", cid).ok()
    finally:
        deadline = time.monotonic() + 5
        while os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_the_lingering_intermediate_dies_with_the_runtime(ocirun_only: None) -> None:
    """nursery._linger: should the runtime die before it kills the
    intermediate, the kernel does (PR_SET_PDEATHSIG)."""
    from ocirun.process.nursery import _linger
    from ocirun.syscalls.linux import LinuxSyscalls
    r, w = os.pipe()
    runtime = os.fork()
    if runtime == 0:  # the "runtime": forks the lingerer, reports it, dies
        try:
            os.close(r)
            inter = os.fork()
            if inter == 0:
                os.close(w)
                _linger(LinuxSyscalls(), os.getppid())
                os._exit(3)
            os.write(w, str(inter).encode())
            time.sleep(0.2)  # the lingerer has set its death signal
        finally:
            os._exit(0)
    os.close(w)
    inter = int(os.read(r, 32))
    os.close(r)
    os.waitpid(runtime, 0)
    deadline = time.monotonic() + 5
    try:
        while True:
            try:
                with open(f"/proc/{inter}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state == "Z":
                break
            assert time.monotonic() < deadline, f"the lingering intermediate {inter} lives on"
            time.sleep(0.02)
    finally:
        try:
            os.kill(inter, 9)
        except ProcessLookupError:
            pass
