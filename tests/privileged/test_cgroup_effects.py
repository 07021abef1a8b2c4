"""Cgroup resources shown by their EFFECT on real containers (issue 9, point 5).

Every test drives the runtime's CLI (pause, resume, ps, events, update,
kill --all, delete) on busybox containers and looks at what the container
felt: an OOM kill, a fork refused, CPU time withheld, a CPU set, a counter
that stops, a device open denied.  The same file runs on this host's cgroup
v1 controllers and, through ``../shared/tools/v2vm``, on a pure cgroup v2
kernel (``.ci/run``); a test whose controller the host lacks is skipped
with the reason.  Every container's cgroupsPath is ``/<id>``, so the files
are at ``/sys/fs/cgroup/<ctrl>/<id>`` (v1) or ``/sys/fs/cgroup/<id>`` (v2).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

import pytest

ROOT = "/sys/fs/cgroup"
V2 = os.path.exists(f"{ROOT}/cgroup.controllers")
MB = 1 << 20

pytestmark = pytest.mark.skipif(not os.path.isdir(ROOT), reason="no cgroup filesystem")


def _v1_mounted(ctrl: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and ctrl in fields[sep + 3].split(","):
                return True
    return False


def have(ctrl: str) -> bool:
    if V2:
        with open(f"{ROOT}/cgroup.controllers") as f:
            return ctrl in f.read().split()
    return _v1_mounted(ctrl)


def need(ctrl: str) -> None:
    if not have(ctrl):
        pytest.skip(f"the {ctrl} controller is not available on this host")


def cg_file(cid: str, ctrl: str, name: str) -> str:
    return f"{ROOT}/{cid}/{name}" if V2 else f"{ROOT}/{ctrl}/{cid}/{name}"


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def wait_for(pred: Any, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        time.sleep(0.05)


def container(lab: Any, script: str, resources: dict[str, Any] | None = None,
              mutate: Any = None, start: bool = True) -> tuple[str, Any]:
    """A detached container running ``script``; (id, the run/create Result)."""
    cid = lab.new_id()

    def mut(cfg: dict[str, Any]) -> None:
        cfg["linux"]["cgroupsPath"] = "/" + cid
        if resources:
            cfg["linux"]["resources"] = resources
        if mutate:
            mutate(cfg)

    b = lab.bundle(["sh", "-c", script], mut)
    r = lab.run(b, cid, "-d") if start else lab.create(b, cid)
    assert r.returncode == 0, r
    return cid, r


def stats(lab: Any, cid: str) -> dict[str, Any]:
    r = lab.cli("events", "--stats", cid).ok()
    ev = json.loads(r.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    return ev["data"]


def test_oom_kill_and_events_reports_it(lab: Any) -> None:
    need("memory")
    mem = {"limit": 32 * MB}
    if os.path.exists(cg_file("", "memory", "memory.memsw.limit_in_bytes")) or V2:
        mem["swap"] = 32 * MB  # no escape into swap
    cid, _ = container(lab, "sleep 3; dd if=/dev/zero of=/dev/null bs=96M count=1; echo survived",
                       {"memory": mem}, start=False)
    out_p = os.path.join(lab.workdir, "events.out")
    with open(out_p, "wb") as out:
        ev = lab.popen("events", "--interval", "1s", cid, stdout=out, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    lab.cli("start", cid).ok()
    lab.wait_status(cid, "stopped", timeout=60)

    def oom_seen() -> bool:
        with open(out_p) as f:
            return any(json.loads(x).get("type") == "oom" for x in f if x.startswith("{"))
    wait_for(oom_seen, 20, "an oom event")
    lab.cli("delete", cid).ok()
    assert ev.wait(timeout=20) == 0  # events ends with the container's cgroup
    with open(out_p) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    assert {"type": "oom", "id": cid} in lines
    assert all(e["id"] == cid and e["type"] in ("oom", "stats") for e in lines)


def test_pids_limit_stops_a_fork_bomb(lab: Any) -> None:
    need("pids")
    # ash gives up at the first failed fork: the loop runs in a subshell, and
    # the shell then execs (a fork would be refused once the limit is reached)
    script = "(i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done) 2>&1; echo ready; exec sleep 60"
    cid, r = container(lab, script, {"pids": {"limit": 8}})
    wait_for(lambda: "ready" in r.stdout_now(), what="the loop to finish")
    assert "can't fork" in r.stdout_now() or "Resource temporarily unavailable" in r.stdout_now()
    assert read(cg_file(cid, "pids", "pids.max")) == "8"
    assert int(read(cg_file(cid, "pids", "pids.current"))) <= 8
    pids = json.loads(lab.cli("ps", "--format", "json", cid).ok().stdout)
    assert 1 < len(pids) <= 8
    # the same loop without a limit starts every child
    cid2, r2 = container(lab, script)
    wait_for(lambda: "ready" in r2.stdout_now(), what="the unlimited loop")
    assert len(json.loads(lab.cli("ps", "--format", "json", cid2).ok().stdout)) == 31


def _cpu_seconds(lab: Any, cid: str) -> float:
    return float(stats(lab, cid)["cpu"]["usage"].get("total", 0)) / 1e9


def test_cpu_quota_slows_a_busy_loop(lab: Any) -> None:
    need("cpu")
    busy = "while :; do :; done"
    # 5% of a CPU: far below what a busy loop gets even on a loaded 2-CPU machine
    slow, _ = container(lab, busy, {"cpu": {"quota": 5000, "period": 100000}})
    fast, _ = container(lab, busy)
    time.sleep(0.5)
    s0, f0, t0 = _cpu_seconds(lab, slow), _cpu_seconds(lab, fast), time.monotonic()
    time.sleep(2)
    s1, f1, t1 = _cpu_seconds(lab, slow), _cpu_seconds(lab, fast), time.monotonic()
    wall = t1 - t0
    slow_share, fast_share = (s1 - s0) / wall, (f1 - f0) / wall
    assert slow_share < 0.12, f"5% quota but the loop got {slow_share:.0%} of a CPU"
    assert fast_share > 1.5 * slow_share, (slow_share, fast_share)
    throttling = stats(lab, slow)["cpu"]["throttling"]
    assert throttling.get("throttledPeriods", 0) > 0 and throttling.get("throttledTime", 0) > 0


def test_cpuset_pins(lab: Any) -> None:
    need("cpuset")
    cid, r = container(lab, "grep Cpus_allowed_list /proc/self/status; sleep 60",
                       {"cpu": {"cpus": "0", "mems": "0"}})
    wait_for(lambda: "Cpus_allowed_list" in r.stdout_now())
    assert r.stdout_now().split()[-1] == "0"
    assert read(cg_file(cid, "cpuset", "cpuset.cpus")) == "0"
    assert stats(lab, cid)["cpuset"]["cpus"] == [0]


def _count(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def test_freezer_stops_a_counter_and_resume_restarts_it(lab: Any) -> None:
    if not V2:
        need("freezer")
    cid, r = container(lab, "i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done")
    wait_for(lambda: _count(r.stdout_path) > 3, what="the counter to run")
    lab.cli("pause", cid).ok()
    assert lab.status(cid) == "paused"
    n = _count(r.stdout_path)
    time.sleep(1)
    assert _count(r.stdout_path) == n, "the counter moved while paused"
    bad = lab.cli("pause", cid)  # runc: "container not running"
    assert bad.returncode == 1 and ("already paused" in bad.stderr or "not running" in bad.stderr)
    lab.cli("resume", cid).ok()
    assert lab.status(cid) == "running"
    wait_for(lambda: _count(r.stdout_path) > n + 3, what="the counter to move again")
    bad = lab.cli("resume", cid)
    assert bad.returncode == 1 and "container not paused" in bad.stderr


def test_kill_all_reaps_a_tree(lab: Any) -> None:
    # no pid namespace: killing the init alone would leave its children running
    def host_pids(cfg: dict[str, Any]) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "pid"]

    cid, r = container(lab, "sleep 100 & (sleep 100 & sleep 100 & wait) & echo ready; wait",
                       mutate=host_pids)
    wait_for(lambda: "ready" in r.stdout_now())

    def tree() -> list[int]:
        pids = json.loads(lab.cli("ps", "--format", "json", cid).ok().stdout) or []
        return pids if len(pids) >= 5 else []

    pids = wait_for(tree, what="the tree")
    lab.cli("kill", "--all", cid, "KILL").ok()

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(") ", 1)[1][0] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    wait_for(lambda: not any(alive(p) for p in pids), what="every process of the tree to die")
    assert lab.cli("ps", "--format", "json", cid).ok().stdout.strip() == "null"
    lab.wait_status(cid, "stopped")
    lab.cli("delete", cid).ok()
    assert lab.leftovers(cid) == []


def test_update_changes_a_live_limit(lab: Any, tmp_path: Any) -> None:
    need("pids")
    shared = tmp_path / "shared"
    shared.mkdir()

    def mount(cfg: dict[str, Any]) -> None:
        cfg["mounts"].append({"destination": "/shared", "type": "bind", "source": str(shared),
                              "options": ["rbind", "rw"]})

    script = ("while [ ! -e /shared/go ]; do sleep 0.05; done; "
              "(i=0; while [ $i -lt 10 ]; do sleep 60 & i=$((i+1)); done) 2>&1; echo ready; "
              "exec sleep 60")
    cid, r = container(lab, script, {"pids": {"limit": 50}}, mutate=mount)
    lab.cli("update", "--pids-limit", "4", cid).ok()
    assert read(cg_file(cid, "pids", "pids.max")) == "4"
    (shared / "go").write_text("")
    wait_for(lambda: "ready" in r.stdout_now(), what="the loop")
    assert "can't fork" in r.stdout_now() or "Resource temporarily unavailable" in r.stdout_now()
    assert int(read(cg_file(cid, "pids", "pids.current"))) <= 4
    if have("memory"):
        # what containerd's shim sends: the resources JSON on stdin
        p = subprocess.run(lab.argv("update", "--resources", "-", cid), input=b'{"memory": '
                           b'{"limit": 67108864}}', env=lab.env, capture_output=True, check=False)
        assert p.returncode == 0, p
        want = str(64 * MB)
        assert read(cg_file(cid, "memory", "memory.max" if V2 else "memory.limit_in_bytes")) == want
        assert stats(lab, cid)["memory"]["usage"]["limit"] == 64 * MB
        if have("cpu"):
            # memory is written, then the realtime value is refused: memory goes back
            bad = lab.cli("update", "--memory", "32m", "--cpu-rt-runtime", "99999999", cid)
            assert bad.returncode == 1 and "resources.cpu.realtimeRuntime" in bad.stderr, bad
            assert read(cg_file(cid, "memory", "memory.max" if V2 else "memory.limit_in_bytes")) == want
    # a value the kernel refuses names the field and changes nothing
    bad = lab.cli("update", "--cpuset-cpus", "4095", cid)
    assert bad.returncode == 1 and "resources.cpu.cpus" in bad.stderr and "4095" in bad.stderr


def test_device_open_denied(lab: Any) -> None:
    def caps(cfg: dict[str, Any]) -> None:
        for k in ("bounding", "effective", "permitted"):
            cfg["process"]["capabilities"][k].append("CAP_MKNOD")

    # /dev/kmsg (c 1:11) is not in the allowed list; /dev/null (c 1:3) is a default
    script = ("mknod /dev/n2 c 1 3 && echo x > /dev/n2 && echo null-ok; "
              "mknod /dev/k2 c 1 11 && echo mknod-ok; head -c1 /dev/k2 2>&1 || echo kmsg-denied; sleep 60")
    _, r = container(lab, script, {"devices": [{"allow": False, "access": "rwm"}]}, mutate=caps)
    wait_for(lambda: "kmsg-denied" in r.stdout_now() or "sleep" in r.stdout_now(), what="probe")
    out = r.stdout_now()
    assert "null-ok" in out and "mknod-ok" in out
    assert "kmsg-denied" in out and "Operation not permitted" in out, out


def test_delete_force_paused_and_dead_init_leave_no_cgroup(lab: Any) -> None:
    cid, _ = container(lab, "sleep 60")
    lab.cli("pause", cid).ok()
    lab.cli("delete", "--force", cid).ok()
    assert lab.leftovers(cid) == []
    cid2, _ = container(lab, "echo bye")
    lab.wait_status(cid2, "stopped")
    lab.cli("delete", cid2).ok()
    assert lab.leftovers(cid2) == []


def test_bad_value_fails_create_and_leaves_nothing(lab: Any) -> None:
    need("cpuset")
    cid = lab.new_id()
    b = lab.bundle(["true"], lambda c: c["linux"].update(
        cgroupsPath="/" + cid, resources={"cpu": {"cpus": "4095"}}))
    r = lab.create(b, cid)
    assert r.returncode == 1
    assert "linux.resources.cpu.cpus: write `4095` to `" in r.stderr and "cpuset.cpus" in r.stderr
    assert lab.leftovers(cid) == []


def test_hugetlb_limit(lab: Any) -> None:
    # on a hybrid host hugetlb lives only in the unified mount: ocirun uses it there
    unified = V2 or os.path.exists(f"{ROOT}/unified/cgroup.controllers")
    offered = ""
    if V2:
        offered = read(f"{ROOT}/cgroup.controllers")
    elif unified:
        offered = read(f"{ROOT}/unified/cgroup.controllers")
    if not (_v1_mounted("hugetlb") or "hugetlb" in offered.split()):
        pytest.skip("no hugetlb controller")
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2MB huge pages")
    cid, _ = container(lab, "sleep 60", {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]})
    if _v1_mounted("hugetlb"):
        path = cg_file(cid, "hugetlb", "hugetlb.2MB.limit_in_bytes")
    else:
        path = f"{ROOT}/{cid}/hugetlb.2MB.max" if V2 else f"{ROOT}/unified/{cid}/hugetlb.2MB.max"
    assert read(path) == str(4 * MB)


def test_ps_table_and_errors(lab: Any) -> None:
    cid, _ = container(lab, "sleep 60")
    out = lab.cli("ps", cid).ok().stdout.splitlines()
    assert out[0].split()[1] == "PID" and len(out) == 2 and out[1].endswith("sleep 60")
    out = lab.cli("ps", cid, "-o", "pid,comm").ok().stdout.splitlines()
    assert out[0].split() == ["PID", "COMMAND"] and out[1].split()[1] == "sleep"
    bad = lab.cli("ps", "--format", "xml", cid)
    assert bad.returncode == 1 and "invalid format option" in bad.stderr
    bad = lab.cli("ps", lab.new_id())
    assert bad.returncode == 1 and "container does not exist" in bad.stderr


@pytest.mark.requires_runc
def test_events_stats_shape_matches_runc(make_lab: Any, runtime_cmd: list[str]) -> None:
    """The same container under runc and ocirun: the same JSON shape (keys), and
    the limits both report agree."""
    shapes = []
    for cmd in (["runc"], runtime_cmd):
        lab = make_lab(cmd)
        cid, _ = container(lab, "sleep 60", {"memory": {"limit": 64 * MB}, "pids": {"limit": 20}})
        data = stats(lab, cid)
        shapes.append(data)
    runc, ours = shapes
    assert list(ours) == list(runc)
    for part in ("cpu", "memory", "pids"):
        assert set(runc[part]) <= set(ours[part]) | {"cache"}, part
    assert set(ours["cpu"]["usage"]) >= {"kernel", "user"}
    assert ours["memory"]["usage"]["limit"] == runc["memory"]["usage"]["limit"]
    assert ours["pids"]["limit"] == runc["pids"]["limit"] == 20
    assert ours["network_interfaces"] is None and ours["intel_rdt"] == {}


def test_unified_values(lab: Any) -> None:
    hybrid = not V2 and os.path.exists(f"{ROOT}/unified/cgroup.controllers")
    if not (V2 or hybrid):
        cid = lab.new_id()
        b = lab.bundle(["true"], lambda c: c["linux"].update(
            cgroupsPath="/" + cid, resources={"unified": {"cgroup.max.descendants": "5"}}))
        r = lab.create(b, cid)
        assert r.returncode == 1 and "cgroup v2 values need a unified hierarchy" in r.stderr
        assert lab.leftovers(cid) == []
        return
    values = {"cgroup.max.descendants": "5"}
    if V2 and have("pids"):
        values["pids.max"] = "17"
    cid, _ = container(lab, "sleep 60", {"unified": values})
    base = f"{ROOT}/{cid}" if V2 else f"{ROOT}/unified/{cid}"
    for k, v in values.items():
        assert read(f"{base}/{k}") == v
    lab.cli("delete", "--force", cid).ok()
    # a controller the hierarchy does not offer is an error naming it, and nothing is left
    cid2 = lab.new_id()
    b = lab.bundle(["true"], lambda c: c["linux"].update(
        cgroupsPath="/" + cid2, resources={"unified": {"nosuch.max": "1"}}))
    r = lab.create(b, cid2)
    assert r.returncode == 1 and "the `nosuch` controller is not available" in r.stderr, r
    assert lab.leftovers(cid2) == []


def test_bpf_device_filter_is_replaced_for_real() -> None:
    """The v2 device filter through bpf(2) on this kernel (a hybrid host's unified
    mount works too): a second filter replaces the first, one program stays
    attached, and a process in the cgroup feels each."""
    import uuid

    from ocirun.cgroups import bpf, devices
    from ocirun.syscalls.linux import LinuxSyscalls

    mount = ROOT if V2 else f"{ROOT}/unified"
    if not os.path.exists(f"{mount}/cgroup.controllers"):
        pytest.skip("no cgroup2 mount")
    node = "/dev/kmsg"  # c 1:11: not a default device (and /tmp may be mounted nodev)
    if not os.path.exists(node):
        pytest.skip("no /dev/kmsg")
    d = f"{mount}/ocirun-test-bpf-{uuid.uuid4().hex[:8]}"
    os.mkdir(d)
    sys = LinuxSyscalls()

    def opens() -> bool:
        r = subprocess.run(["sh", "-c", f"echo $$ > {d}/cgroup.procs; exec 3<{node}"],
                           capture_output=True, check=False)
        return r.returncode == 0

    def attached() -> list[int]:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return sys.bpf_prog_query(fd, bpf.BPF_CGROUP_DEVICE)[1]
        finally:
            os.close(fd)

    try:
        assert opens()
        devices.apply_v2(d, [], sys)  # deny all but the defaults
        first = attached()
        assert len(first) == 1 and not opens()
        devices.apply_v2(d, [{"allow": True, "type": "c", "major": 1, "minor": 11,
                              "access": "r"}], sys)
        second = attached()
        assert len(second) == 1 and second != first and opens()
    finally:
        for _ in range(100):
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.02)
