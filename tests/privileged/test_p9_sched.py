"""process.scheduler, process.ioPriority, process.execCPUAffinity and
linux.memoryPolicy on real containers (issue 13 items 1 and 2): what the
container's process reports about itself in /proc, what the host sees of it,
and that exec'd processes get the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

EXEC = r"""
import json, sys
from ocirun.ops.exec import ExecOptions, exec_process
from ocirun.state import StateStore
sys.exit(exec_process(StateStore(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), ExecOptions()))
"""


def _exec(lab: Any, cid: str, proc: dict[str, Any],
          pre: list[str] = ()) -> subprocess.CompletedProcess[str]:  # type: ignore[assignment]
    return subprocess.run([*pre, sys.executable, "-c", EXEC, lab.root, cid, json.dumps(proc)],
                          capture_output=True, text=True, timeout=30, env=lab.env, check=False)


def _proc(args: list[str], **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                         "env": ["PATH=/bin:/usr/bin"]}
    p.update(extra)
    return p


def _stat(text: str) -> list[str]:
    """/proc/<pid>/stat fields, 1-based like proc(5) (comm may hold spaces)."""
    head, _, rest = text.strip().rpartition(")")
    return ["", head.split(" (", 1)[0], head.split(" (", 1)[1], *rest.split()]


def _sched(lab: Any, sched: dict[str, Any]) -> list[str]:
    out = lab.run_args(["cat", "/proc/self/stat"],
                       lambda c: c["process"].update(scheduler=sched)).ok().stdout
    return _stat(out)


def test_scheduler_batch_and_nice(lab: Any) -> None:
    f = _sched(lab, {"policy": "SCHED_BATCH", "nice": 7})
    assert (f[41], f[19]) == ("3", "7")  # policy SCHED_BATCH, nice 7


def _rt_needs_cgroup_budget() -> bool:
    """A v1 cpu hierarchy with RT group scheduling gives a new cgroup no realtime
    budget (cpu.rt_runtime_us 0): realtime policies then need
    linux.resources.cpu.realtimeRuntime."""
    return os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us")


def _rt_budget(c: dict[str, Any]) -> None:
    if _rt_needs_cgroup_budget():
        from ocirun.config.checks import NOT_YET
        if "linux.resources.cpu" in NOT_YET:
            pytest.skip("RT group scheduling here needs linux.resources.cpu.realtimeRuntime, "
                        "which this ocirun does not apply yet")
        c["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 50000,
                                                         "realtimePeriod": 1000000}


def test_scheduler_fifo_priority(lab: Any) -> None:
    out = lab.run_args(["cat", "/proc/self/stat"], lambda c: (
        c["process"].update(scheduler={"policy": "SCHED_FIFO", "priority": 12}),
        _rt_budget(c))).ok().stdout
    f = _stat(out)
    assert (f[41], f[40]) == ("1", "12")  # policy SCHED_FIFO, rt_priority 12


def test_scheduler_deadline(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"], lambda c: c["process"].update(scheduler={
        "policy": "SCHED_DEADLINE", "runtime": 2_000_000, "deadline": 10_000_000,
        "period": 20_000_000}))
    cid = lab.new_id()
    r = lab.run(b, cid, "--detach")
    if r.returncode != 0 and "Device or resource busy" in r.stderr:
        pytest.skip("no deadline bandwidth left here (sched_rt_runtime_us / RT groups)")
    r.ok()
    out = subprocess.run(["chrt", "-p", str(lab.state(cid)["pid"])], capture_output=True,
                         text=True, check=True).stdout
    assert "SCHED_DEADLINE" in out and "2000000/10000000/20000000" in out, out


def test_scheduler_refused_in_a_user_namespace_names_the_field(lab: Any) -> None:
    import shutil
    import tempfile

    import bundle as bundle_mod

    def userns(c: dict[str, Any]) -> None:
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 5}
    # the mapped root must reach the rootfs: not under pytest's 0700 tmp dir
    top = tempfile.mkdtemp(prefix="ocirun-p9-")
    try:
        os.chmod(top, 0o755)
        bundle_mod.build_rootfs(os.path.join(top, "rootfs"))
        bundle_mod.write_bundle(top, os.path.join(top, "rootfs"), ["true"], userns)
        cid = lab.new_id()
        r = lab.cli("create", "--bundle", top, cid)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert r.returncode != 0
    assert "process.scheduler: sched_setattr(SCHED_FIFO, priority 5): Operation not permitted" \
        in r.stderr
    assert lab.leftovers(cid) == []


def test_io_priority_seen_from_the_host(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"], lambda c: c["process"].update(
        ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6}))
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    pid = lab.state(cid)["pid"]
    out = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "best-effort: prio 6"
    # exec'd processes get it too (the shared process step)
    r = _exec(lab, cid, _proc(["ionice"], ioPriority={"class": "IOPRIO_CLASS_IDLE",
                                                       "priority": 0}))
    assert r.returncode == 0, r
    assert r.stdout.strip() == "idle"


def _numa_first(text: str) -> str:
    return text.splitlines()[0].split()[1]


@pytest.mark.parametrize("policy,want", [
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]},
     "prefer=relative:0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
])
def test_memory_policy(lab: Any, policy: dict[str, Any], want: str) -> None:
    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("this kernel has no NUMA support (/proc/self/numa_maps)")
    out = lab.run_args(["head", "-n", "1", "/proc/self/numa_maps"],
                       lambda c: c["linux"].update(memoryPolicy=policy)).ok().stdout
    assert _numa_first(out) == want


def test_memory_policy_for_exec(lab: Any) -> None:
    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("this kernel has no NUMA support (/proc/self/numa_maps)")
    b = lab.bundle(["sleep", "100"], lambda c: c["linux"].update(
        memoryPolicy={"mode": "MPOL_BIND", "nodes": "0"}))
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    r = _exec(lab, cid, _proc(["head", "-n", "1", "/proc/self/numa_maps"]))
    assert r.returncode == 0, r
    assert _numa_first(r.stdout) == "bind:0"


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _cpus_allowed(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split()[1]
    raise AssertionError(text)


def test_exec_cpu_affinity_final(lab: Any) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    for initial, final in (("0", "1"), ("1", "0"), ("0-1", "1")):
        r = _exec(lab, cid, _proc(["grep", "Cpus_allowed_list", "/proc/self/status"],
                                  execCPUAffinity={"initial": initial, "final": final}))
        assert r.returncode == 0, r
        assert _cpus_allowed(r.stdout) == final


def test_cpu_affinity_reset_for_init_and_exec(lab: Any) -> None:
    """A runtime pinned to one CPU does not pin the container (runc 1.2)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    mine = _cpus_allowed(_read("/proc/self/status"))
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    argv = lab.argv("run", "--detach", "--bundle", b.path, cid)
    subprocess.run(["taskset", "-c", "0", *argv], env=lab.env, check=True, timeout=30,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    pid = lab.state(cid)["pid"]
    assert _cpus_allowed(_read(f"/proc/{pid}/status")) == mine
    r = _exec(lab, cid, _proc(["grep", "Cpus_allowed_list", "/proc/self/status"]),
              pre=["taskset", "-c", "1"])
    assert r.returncode == 0, r
    assert _cpus_allowed(r.stdout) == mine
