"""config-linux.md#cgroups-path and #control-groups: the container's cgroup
and each resource that can be observed in cgroupfs or through its effect.
Works on cgroup v1 (per-controller hierarchies) and on a unified v2 host;
a resource whose controller the host lacks is skipped with the reason."""
from __future__ import annotations


from conformance.context import proc_cgroup
from conformance.registry import Fail, Skip, check, check_eq, conformance_test

SLEEP = ["/bin/sleep", "30"]


def _with_cg(ctx, resources: dict | None = None, args=None):
    cg = ctx.cgroup_path()

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = cg
        if resources:
            cfg["linux"]["resources"].update(resources)
    return cg, ctx.created(mut, args or SLEEP)


V2_NAME = {"blkio": "io"}  # v1 controller name -> its v2 counterpart


def _v1_or_v2(ctx, ctrl, *files):
    """Host probe, before anything is created: the controller and, when given,
    each of ``files`` in a fresh cgroup of it.  Skip if the host lacks one."""
    if ctx.host.cgroup_v2_unified:
        ctrl = V2_NAME.get(ctrl, ctrl)
        if ctrl not in ctx.host.v2_controllers:
            raise Skip(f"cgroup v2 controller {ctrl} not available")
        mode = "v2"
    else:
        if ctrl not in ctx.host.cgroup_v1:
            raise Skip(f"cgroup v1 controller {ctrl} not mounted")
        mode = "v1"
    have = ctx.host.cgroup_files(ctrl) if files else set()
    missing = [f for f in files if f not in have]
    if missing:
        raise Skip(f"this host's {ctrl} cgroups have no {', '.join(missing)} (kernel/controller feature missing)")
    return mode


def _pick(ctx, ctrl, candidates):
    """First (file, want) of ``candidates`` this host's cgroups offer, or Skip."""
    if ctx.host.cgroup_v2_unified:
        ctrl = V2_NAME.get(ctrl, ctrl)
    have = ctx.host.cgroup_files(ctrl)
    for fname, want in candidates:
        if fname in have:
            return fname, want
    raise Skip(f"this host's {ctrl} cgroups have none of {', '.join(f for f, _ in candidates)}")


def _read(ctx, ctrl, cg, fname):
    """Read a cgroup file of the container: the host probe said it exists, so
    a missing file (no cgroup, wrong place) is the runtime's failure."""
    p = ctx.host.controller_file(ctrl, cg, fname)
    try:
        with open(p) as f:
            return f.read().strip()
    except OSError as e:
        raise Fail(f"cannot read {p} after create: {e.strerror} (cgroupsPath not honoured?)") from e


_SECTION = {"memory": "memory", "cpu": "cpu", "pids": "pids", "blockIO": "block-io",
            "hugepageLimits": "huge-page-limits", "network": "network", "rdma": "rdma"}


def _value_test(tid, ctrl, resources, v1file, v1want, v2file, v2want, level="MUST", summary=""):
    """``v1file``/``v2file`` is a file name (``want`` its content) or a list of
    (file, want) candidates of which the first one the host has is checked."""
    ref = "config-linux.md#" + _SECTION.get(next(iter(resources)), "control-groups")

    @conformance_test(tid, ref, level, summary or f"{tid[3:]} reaches cgroupfs")
    def t(ctx):
        mode = _v1_or_v2(ctx, ctrl)
        fname, want = (v1file, v1want) if mode == "v1" else (v2file, v2want)
        if fname is None:
            raise Skip(f"no {mode} equivalent for this resource")
        fname, want = _pick(ctx, ctrl, fname if isinstance(fname, list) else [(fname, want)])
        cg, _ = _with_cg(ctx, resources)
        got = _read(ctx, ctrl, cg, fname)
        check_eq(got, want, f"{fname}")
    return t


MB = 1024 * 1024
_value_test("cg-memory-limit", "memory", {"memory": {"limit": 64 * MB}},
            "memory.limit_in_bytes", str(64 * MB), "memory.max", str(64 * MB))
_value_test("cg-memory-reservation", "memory", {"memory": {"limit": 64 * MB, "reservation": 32 * MB}},
            "memory.soft_limit_in_bytes", str(32 * MB), "memory.low", str(32 * MB))
_value_test("cg-memory-swap", "memory", {"memory": {"limit": 64 * MB, "swap": 96 * MB}},
            "memory.memsw.limit_in_bytes", str(96 * MB), "memory.swap.max", str(32 * MB))
_value_test("cg-memory-swappiness", "memory", {"memory": {"swappiness": 17}},
            "memory.swappiness", "17", None, None)
_value_test("cg-cpu-shares", "cpu", {"cpu": {"shares": 512}}, "cpu.shares", "512",
            "cpu.weight", str(1 + ((512 - 2) * 9999) // 262142))
_value_test("cg-cpu-quota", "cpu", {"cpu": {"quota": 50000, "period": 100000}}, "cpu.cfs_quota_us", "50000",
            "cpu.max", "50000 100000")
_value_test("cg-cpu-period", "cpu", {"cpu": {"quota": 20000, "period": 200000}}, "cpu.cfs_period_us",
            "200000", "cpu.max", "20000 200000")
_value_test("cg-cpuset-cpus", "cpuset", {"cpu": {"cpus": "0"}}, "cpuset.cpus", "0", "cpuset.cpus", "0")
_value_test("cg-cpuset-mems", "cpuset", {"cpu": {"mems": "0"}}, "cpuset.mems", "0", "cpuset.mems", "0")
_value_test("cg-pids-limit", "pids", {"pids": {"limit": 42}}, "pids.max", "42", "pids.max", "42")
_value_test("cg-pids-unlimited", "pids", {"pids": {"limit": -1}}, "pids.max", "max", "pids.max", "max",
            summary="pids.limit -1 means no limit (max)")
_value_test("cg-pids-zero", "pids", {"pids": {"limit": 0}}, "pids.max", "0", "pids.max", "0",
            level="SHOULD", summary="pids.limit 0 is a real limit of 0, not 'unset' (v1.3.0)")
# v1: CFQ's blkio.weight or BFQ's blkio.bfq.weight; v2: io.bfq.weight, else
# io.weight with the 10..1000 -> 1..10000 conversion runc and crun both use.
_value_test("cg-blkio-weight", "blkio", {"blockIO": {"weight": 300}},
            [("blkio.weight", "300"), ("blkio.bfq.weight", "300")], None,
            [("io.bfq.weight", "default 300"), ("io.weight", f"default {1 + (300 - 10) * 9999 // 990}")], None)
_value_test("cg-memory-oom-disable", "memory", {"memory": {"limit": 64 * MB, "disableOOMKiller": True}},
            "memory.oom_control", None, None, None)


# memory.oom_control holds several lines; check the relevant one separately.
@conformance_test("cg-memory-oom-killer-disabled", "config-linux.md#memory", "MUST",
                  "disableOOMKiller sets oom_kill_disable (v1)")
def t_oomdis(ctx):
    if ctx.host.cgroup_v2_unified:
        raise Skip("no oom_kill_disable in cgroup v2")
    _v1_or_v2(ctx, "memory", "memory.oom_control")
    cg, _ = _with_cg(ctx, {"memory": {"limit": 64 * MB, "disableOOMKiller": True}})
    check("oom_kill_disable 1" in _read(ctx, "memory", cg, "memory.oom_control"), "oom_kill_disable not 1")


# the generic test above has no single-value expectation; drop it from the registry
from conformance.registry import TESTS as _T  # noqa: E402
_T[:] = [x for x in _T if x.id != "cg-memory-oom-disable"]


@conformance_test("cg-path-absolute", "config-linux.md#cgroups-path", "MUST",
                  "an absolute cgroupsPath is the container's cgroup, relative to the hierarchy root")
def t_path(ctx):
    ctrl = "" if ctx.host.cgroup_v2_unified else "pids"
    if ctrl and ctrl not in ctx.host.cgroup_v1:
        raise Skip("no pids hierarchy")
    cg, c = _with_cg(ctx)
    check_eq(proc_cgroup(c.pid, ctrl), cg, "cgroup of the container process")


@conformance_test("cg-path-all-controllers", "config-linux.md#cgroups-path", "SHOULD",
                  "with cgroup v1 the process is placed at cgroupsPath in every mounted controller")
def t_path_all(ctx):
    if ctx.host.cgroup_v2_unified:
        raise Skip("v1-only check")
    cg, c = _with_cg(ctx)
    wrong = {k: proc_cgroup(c.pid, k) for k in ("memory", "cpu", "pids", "devices", "freezer", "cpuset", "blkio")
             if k in ctx.host.cgroup_v1 and proc_cgroup(c.pid, k) != cg}
    check(not wrong, f"controllers not at {cg}: {wrong}")


@conformance_test("cg-path-stable", "config-linux.md#cgroups-path", "MUST",
                  "the same cgroupsPath maps to the same cgroup every time")
def t_stable(ctx):
    ctrl = "" if ctx.host.cgroup_v2_unified else "pids"
    cg = ctx.cgroup_path()

    def mut(cfg):
        cfg["linux"]["cgroupsPath"] = cg
    seen = []
    for _ in range(2):
        c = ctx.created(mut, SLEEP)
        seen.append(proc_cgroup(c.pid, ctrl))
        c.kill("KILL")
        c.wait_exit(5)
        c.wait_status("stopped", 5)
        c.delete()
    check_eq(seen, [cg, cg], "cgroup of two containers with the same cgroupsPath")


@conformance_test("cg-pids-effect", "config-linux.md#pids", "MUST",
                  "pids.limit stops the container from forking past the limit")
def t_pids_effect(ctx):
    _v1_or_v2(ctx, "pids")
    cg, c = _with_cg(ctx, {"pids": {"limit": 4}}, ["/probe", "fork", "10"])
    check(c.start().ok, "start failed")
    c.wait_exit(20)
    out = c.stdout()
    check("forked=" in out, f"probe output {out!r}")
    n = int(out.split("forked=")[1].split()[0])
    check(n < 10 and "errno=11" in out, f"forked {n} children under a limit of 4 ({out.split()})")


@conformance_test("cg-memory-oom-effect", "config-linux.md#memory", "MUST",
                  "a process exceeding memory.limit is OOM-killed")
def t_oom(ctx):
    mode = _v1_or_v2(ctx, "memory")
    have = ctx.host.cgroup_files("memory")
    mem = {"limit": 32 * MB}
    if "memory.memsw.limit_in_bytes" in have or "memory.swap.max" in have:
        mem["swap"] = 32 * MB  # no swap escape
    events = "memory.oom_control" if mode == "v1" else "memory.events"
    cg, c = _with_cg(ctx, {"memory": mem}, ["/bin/sh", "-c", "/probe alloc 200; echo status=$?"])
    check(c.start().ok, "start failed")
    check(c.wait_exit(30), "container still running 30 s after start")
    out = c.stdout()
    check("done=" not in out, "allocated 200MB under a 32MB limit")
    # evidence of the OOM kill: the probe died of SIGKILL (128 + 9) ...
    check("status=137" in out.split(), f"the probe did not die of SIGKILL: output {out.split()}")
    # ... and the cgroup's own counter says so (kernels >= 4.13)
    if events in have:
        kv = dict(ln.split(None, 1) for ln in _read(ctx, "memory", cg, events).splitlines() if " " in ln)
        if "oom_kill" in kv:
            check(int(kv["oom_kill"]) >= 1, f"{events}: oom_kill {kv['oom_kill']}")


@conformance_test("cg-resources-before-start", "config-linux.md#control-groups", "MUST",
                  "resource limits are in place at create, before the program runs")
def t_before(ctx):
    _v1_or_v2(ctx, "pids", "pids.max")
    cg, c = _with_cg(ctx, {"pids": {"limit": 33}})
    check_eq(_read(ctx, "pids", cg, "pids.max"), "33", "pids.max at create")
    check(str(c.pid) in _read(ctx, "pids", cg, "cgroup.procs").split(), "init not in the cgroup at create")


@conformance_test("cg-devices-v1-rules", "config-linux.md#allowed-device-list", "MUST",
                  "resources.devices rules are applied to the device cgroup")
def t_devlist(ctx):
    if ctx.host.cgroup_v2_unified:
        raise Skip("cgroup v2 uses a BPF program, no devices.list")
    _v1_or_v2(ctx, "devices", "devices.list")
    cg, _ = _with_cg(ctx, {"devices": [{"allow": False, "access": "rwm"},
                                        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "r"}]})
    rules = _read(ctx, "devices", cg, "devices.list").splitlines()
    check("c 1:11 r" in rules, f"devices.list {rules}")
    check("a *:* rwm" not in rules, "everything is allowed despite the deny-all rule")


@conformance_test("cg-unified-v2-only", "config-linux.md#unified", "MUST",
                  "unified (v2) keys are written to the container's v2 cgroup")
def t_unified(ctx):
    if not ctx.host.cgroup_v2_unified:
        raise Skip("host is not on a unified cgroup v2 hierarchy")
    if "pids" not in ctx.host.v2_controllers:
        raise Skip("pids v2 controller not available")
    cg, _ = _with_cg(ctx, {"unified": {"pids.max": "17"}})
    check_eq(_read(ctx, "pids", cg, "pids.max"), "17", "pids.max via unified")


@conformance_test("cg-hugepage-limit", "config-linux.md#huge-page-limits", "MUST",
                  "hugepageLimits reach hugetlb.<size>.limit_in_bytes")
def t_huge(ctx):
    f = "hugetlb.2MB.limit_in_bytes" if not ctx.host.cgroup_v2_unified else "hugetlb.2MB.max"
    _v1_or_v2(ctx, "hugetlb", f)
    cg, _ = _with_cg(ctx, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]})
    check_eq(_read(ctx, "hugetlb", cg, f), str(4 * MB), f)


@conformance_test("cg-net-cls", "config-linux.md#network", "MUST",
                  "network.classID reaches net_cls.classid (v1)")
def t_netcls(ctx):
    if ctx.host.cgroup_v2_unified or "net_cls" not in ctx.host.cgroup_v1:
        raise Skip("no net_cls hierarchy on this host")
    cg, _ = _with_cg(ctx, {"network": {"classID": 1048577}})
    check_eq(_read(ctx, "net_cls", cg, "net_cls.classid"), "1048577", "net_cls.classid")


@conformance_test("cg-invalid-value-error", "config.md#valid-values", "MUST",
                  "an impossible resource value (cpuset.cpus on a CPU that does not exist) is an error")
def t_badcpu(ctx):
    _v1_or_v2(ctx, "cpuset", "cpuset.cpus")
    ok_cg, cg = ctx.cgroup_path(), ctx.cgroup_path()
    ctx.expect_create_error(lambda cfg: (cfg["linux"].update(cgroupsPath=cg),
                                         cfg["linux"]["resources"].update(cpu={"cpus": "4095"})),
                            "cpus 4095",
                            control=lambda cfg: (cfg["linux"].update(cgroupsPath=ok_cg),
                                                 cfg["linux"]["resources"].update(cpu={"cpus": "0"})),
                            control_what="cpuset.cpus 0")


@conformance_test("cg-unified-unknown-key", "config-linux.md#unified", "MUST",
                  "a unified key with no special meaning to the runtime (memory.oom.group) reaches its file")
def t_unified_unknown(ctx):
    if not ctx.host.cgroup_v2_unified:
        raise Skip("host is not on a unified cgroup v2 hierarchy")
    _v1_or_v2(ctx, "memory", "memory.oom.group")
    cg, _ = _with_cg(ctx, {"unified": {"memory.oom.group": "1"}})
    check_eq(_read(ctx, "memory", cg, "memory.oom.group"), "1", "memory.oom.group via unified")
