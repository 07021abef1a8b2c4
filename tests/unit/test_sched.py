"""ocirun/sched.py and ocirun/mempolicy.py: process.scheduler, ioPriority,
execCPUAffinity and linux.memoryPolicy, planned in the parent (every config
error named by its JSON path, before any fork) and applied through the
syscall seam in the shared process step."""

from __future__ import annotations

import json
import os
from typing import Any

import bundle as bundle_mod
import pytest

from ocirun.errors import ConfigError, SyscallError
from ocirun.mempolicy import KNOWN_MPOL_FLAGS, KNOWN_MPOL_MODES, plan_mempolicy
from ocirun.ops.create import CreateOptions, create
from ocirun.plantypes import ProcessPlan
from ocirun.process import setup
from ocirun.process.plan import LaunchOptions, build_process_plan
from ocirun.sched import (
    KNOWN_IOPRIO_CLASSES,
    KNOWN_SCHED_FLAGS,
    KNOWN_SCHED_POLICIES,
    parse_cpu_list,
    plan_affinity,
    plan_ioprio,
    plan_scheduler,
)
from ocirun.state import StateStore
from ocirun.syscalls.recording import RecordingSyscalls

W = "$.process.scheduler"


def test_tables_match_the_spec_and_schema() -> None:
    with open(os.path.join(os.path.dirname(__file__), "../../specs/config-schema.json")) as f:
        spec = json.load(f)
    d = spec["definitions"]
    assert set(KNOWN_SCHED_POLICIES) == set(d["Scheduler"]["properties"]["policy"]["enum"])
    assert set(KNOWN_SCHED_FLAGS) == set(d["Scheduler"]["properties"]["flags"]["items"]["enum"])
    assert set(KNOWN_MPOL_MODES) == set(d["MemoryPolicy"]["properties"]["mode"]["enum"])
    assert set(KNOWN_MPOL_FLAGS) == set(d["MemoryPolicy"]["properties"]["flags"]["items"]["enum"])
    io = d["Process"]["properties"]["ioPriority"]["properties"]["class"]["enum"]
    assert set(KNOWN_IOPRIO_CLASSES) == set(io)


def test_scheduler_plans() -> None:
    p = plan_scheduler({"policy": "SCHED_BATCH", "nice": 7}, W)
    assert p is not None and (p.policy, p.nice, p.priority, p.flags) == (3, 7, 0, 0)
    p = plan_scheduler({"policy": "SCHED_FIFO", "priority": 10,
                        "flags": ["SCHED_FLAG_RESET_ON_FORK"]}, W)
    assert p is not None and (p.policy, p.priority, p.flags) == (1, 10, 1)
    p = plan_scheduler({"policy": "SCHED_DEADLINE", "runtime": 10_000_000,
                        "deadline": 20_000_000, "period": 30_000_000}, W)
    assert p is not None and (p.policy, p.runtime, p.deadline, p.period) == (
        6, 10_000_000, 20_000_000, 30_000_000)
    assert plan_scheduler(None, W) is None


@pytest.mark.parametrize("obj,phrase", [
    ({"policy": "SCHED_ISO"}, "$.process.scheduler.policy: SCHED_ISO is reserved"),
    ({"policy": "SCHED_OTHER", "nice": 20}, "$.process.scheduler.nice: 20 is outside -20..19"),
    ({"policy": "SCHED_FIFO"}, "$.process.scheduler.priority: SCHED_FIFO needs a priority"),
    ({"policy": "SCHED_RR", "priority": 100}, "from 1 to 99, not 100"),
    ({"policy": "SCHED_OTHER", "priority": 5}, "only SCHED_FIFO and SCHED_RR take a priority"),
    ({"policy": "SCHED_BATCH", "runtime": 5}, "for SCHED_DEADLINE only"),
    ({"policy": "SCHED_DEADLINE", "runtime": 100, "deadline": 2000},
     "$.process.scheduler.runtime: SCHED_DEADLINE needs a runtime of at least 1024"),
    ({"policy": "SCHED_DEADLINE", "runtime": 5000, "deadline": 2000},
     "$.process.scheduler.deadline: 2000 is below the runtime"),
    ({"policy": "SCHED_DEADLINE", "runtime": 5000, "deadline": 6000, "period": 5500},
     "$.process.scheduler.period: 5500 is below the deadline"),
    ({"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_X"]}, "$.process.scheduler.flags[0]"),
])
def test_scheduler_errors(obj: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ConfigError) as ei:
        plan_scheduler(obj, W)
    assert phrase in ei.value.msg


def test_ioprio() -> None:
    assert plan_ioprio({"class": "IOPRIO_CLASS_BE", "priority": 4}, "w") == ((2 << 13) | 4,
                                                                              "IOPRIO_CLASS_BE 4")
    assert plan_ioprio({"class": "IOPRIO_CLASS_IDLE", "priority": 7}, "w")[0] == (3 << 13) | 7  # type: ignore[index]
    for bad in ({"class": "IOPRIO_CLASS_BE", "priority": 8}, {"class": "IOPRIO_CLASS_BE"},
                {"class": "BE", "priority": 1}):
        with pytest.raises(ConfigError, match=r"\$\.process\.ioPriority\.(class|priority)"):
            plan_ioprio(bad, "$.process.ioPriority")


def test_cpu_lists() -> None:
    assert parse_cpu_list("0-3,7", "w") == (0, 1, 2, 3, 7)
    assert parse_cpu_list(" 1 , 0 ", "w") == (0, 1)
    for bad, phrase in (("1-0", "runs backwards"), ("a", "not a number"), ("0,,1", "empty item"),
                        ("9000", "out of range")):
        with pytest.raises(ConfigError, match=phrase):
            parse_cpu_list(bad, "$.x")


def test_affinity() -> None:
    assert plan_affinity({"initial": "0", "final": "0-1"}, "w") == ((0,), (0, 1))
    assert plan_affinity({"final": "0"}, "w") == (None, (0,))
    assert plan_affinity({"initial": "", "final": ""}, "w") is None
    with pytest.raises(ConfigError, match=r"\.final: '4000': none of these CPUs exist"):
        plan_affinity({"final": "4000"}, "$.process.execCPUAffinity")


def test_mempolicy_plans() -> None:
    p = plan_mempolicy({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]},
                       online=(0,))
    assert p is not None and (p.mode, p.nodes) == (2 | (1 << 15), (0,))
    p = plan_mempolicy({"mode": "MPOL_PREFERRED"}, online=(0,))
    assert p is not None and (p.mode, p.nodes) == (1, ())
    p = plan_mempolicy({"mode": "MPOL_PREFERRED", "nodes": "5", "flags": ["MPOL_F_RELATIVE_NODES"]},
                       online=(0,))
    assert p is not None and p.nodes == (5,)  # relative: any number is fine
    assert plan_mempolicy({}) is None


@pytest.mark.parametrize("obj,phrase", [
    ({"nodes": "0-7"}, ".mode: required"),
    ({"mode": "INTERLEAVE", "nodes": "0"}, "invalid memory policy mode"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES", "badflag"]},
     ".flags[1]: invalid memory policy flag"),
    ({"mode": "MPOL_DEFAULT", "nodes": "0-7"}, ".nodes: MPOL_DEFAULT takes no nodes"),
    ({"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]}, "MPOL_LOCAL takes no static"),
    ({"mode": "MPOL_BIND"}, ".nodes: MPOL_BIND needs at least one node"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "exclude each other"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "MPOL_F_NUMA_BALANCING goes with MPOL_BIND"),
    ({"mode": "MPOL_BIND", "nodes": "0-9876543210"}, "memory node 9876543210 is out of range"),
    ({"mode": "MPOL_BIND", "nodes": "3"}, "none of these memory nodes exist on this host (online: 0)"),
    ({"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_STATIC_NODES"]}, "MPOL_PREFERRED without nodes"),
])
def test_mempolicy_errors(obj: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ConfigError) as ei:
        plan_mempolicy(obj, online=(0,))
    assert "$.linux.memoryPolicy" in ei.value.msg and phrase in ei.value.msg


def _plan(**proc: Any) -> ProcessPlan:
    base = {"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["HOME=/"]}
    base.update(proc)
    linux = base.pop("linux", {})
    return build_process_plan(base, rootfs="/", linux=linux, opts=LaunchOptions(), keyring=None)


def test_process_plan_carries_the_scheduling() -> None:
    p = _plan(scheduler={"policy": "SCHED_IDLE"}, ioPriority={"class": "IOPRIO_CLASS_IDLE",
                                                              "priority": 0},
              execCPUAffinity={"initial": "0", "final": "0"},
              linux={"memoryPolicy": {"mode": "MPOL_LOCAL"}})
    assert p.scheduler is not None and p.scheduler.policy == 5
    assert p.io_priority == (3 << 13, "IOPRIO_CLASS_IDLE 0")
    assert p.cpu_affinity == ((0,), (0,))
    assert p.mem_policy is not None and p.mem_policy.mode == 4
    bare = _plan()
    assert (bare.scheduler, bare.io_priority, bare.cpu_affinity, bare.mem_policy) == (
        None, None, None, None)


def test_process_step_applies_in_order() -> None:
    p = _plan(scheduler={"policy": "SCHED_BATCH", "nice": 3},
              ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 2},
              linux={"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}})
    rec = RecordingSyscalls()
    setup.apply_scheduling(p, rec)
    assert rec.calls == [("set_mempolicy", 2, (0,)), ("ioprio_set", (2 << 13) | 2),
                         ("sched_setattr", 3, 0, 3, 0, 0, 0, 0)]
    rec = RecordingSyscalls()
    setup.apply_scheduling(_plan(), rec)
    assert rec.calls == []


@pytest.mark.parametrize("call,field", [("sched_setattr", "process.scheduler"),
                                        ("ioprio_set", "process.ioPriority"),
                                        ("set_mempolicy", "linux.memoryPolicy")])
def test_apply_errors_name_the_field(call: str, field: str) -> None:
    p = _plan(scheduler={"policy": "SCHED_FIFO", "priority": 1},
              ioPriority={"class": "IOPRIO_CLASS_RT", "priority": 0},
              linux={"memoryPolicy": {"mode": "MPOL_LOCAL"}})
    with pytest.raises(SyscallError) as ei:
        setup.apply_scheduling(p, RecordingSyscalls({call: 1}))
    assert ei.value.msg.startswith(field + ": ")
    assert "Operation not permitted" in ei.value.msg


BAD = {
    "sched-nice": (lambda c: c["process"].update(scheduler={"policy": "SCHED_OTHER", "nice": -21}),
                   "$.process.scheduler.nice"),
    "sched-iso": (lambda c: c["process"].update(scheduler={"policy": "SCHED_ISO"}),
                  "$.process.scheduler.policy"),
    "ioprio-level": (lambda c: c["process"].update(ioPriority={"class": "IOPRIO_CLASS_BE",
                                                               "priority": 9}),
                     "$.process.ioPriority.priority"),
    "affinity-range": (lambda c: c["process"].update(execCPUAffinity={"initial": "3-1"}),
                       "$.process.execCPUAffinity.initial"),
    "mempolicy-nodes": (lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_BIND"}),
                        "$.linux.memoryPolicy.nodes"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_errors_come_before_any_fork(case: str, tmp_path: Any) -> None:
    mutate, phrase = BAD[case]
    rootfs = bundle_mod.build_rootfs(str(tmp_path / "rootfs"))
    cfg = bundle_mod.base_config(["true"], rootfs)
    mutate(cfg)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    rec = RecordingSyscalls()
    with pytest.raises(ConfigError) as ei:
        create(StateStore(str(tmp_path / "state")), "c1",
               CreateOptions(bundle=str(tmp_path), cgroup_root=str(tmp_path / "cg")), sys=rec)
    assert phrase in ei.value.msg
    assert "fork" not in rec.names()
    assert not os.path.exists(tmp_path / "state" / "c1")
