"""linux.resources writers against tmp dirs of fixture files (no root).

A fixture directory holds the control files a real cgroup would have, with
their usual initial contents; a plain file keeps only the last value
written, so each test also looks at ``Dir.written`` (every write, in order).
A missing file plays a kernel or controller without that feature.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from ocirun.cgroups import convert, res_v1, res_v2
from ocirun.cgroups.apply import Router, apply_resources, wants
from ocirun.cgroups.target import Dir
from ocirun.cgroups.v1 import Hierarchy1
from ocirun.cgroups.v2 import Hierarchy2
from ocirun.errors import CgroupError, ConfigError
from ocirun.syscalls.recording import RecordingSyscalls

MB = 1 << 20
BIG = "9223372036854771712"

V1_FILES = {
    "memory": {"memory.limit_in_bytes": BIG, "memory.memsw.limit_in_bytes": BIG,
               "memory.soft_limit_in_bytes": BIG, "memory.kmem.limit_in_bytes": BIG,
               "memory.kmem.tcp.limit_in_bytes": BIG, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
               "memory.use_hierarchy": "1", "memory.usage_in_bytes": str(5 * MB),
               "memory.max_usage_in_bytes": str(6 * MB)},
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
            "cpu.cfs_burst_us": "0", "cpu.rt_period_us": "1000000", "cpu.rt_runtime_us": "0",
            "cpu.idle": "0"},
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0"},
    "pids": {"pids.max": "max", "pids.current": "0"},
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": ""},
    "hugetlb": {"hugetlb.2MB.limit_in_bytes": BIG, "hugetlb.1GB.limit_in_bytes": BIG},
    "net_cls": {"net_cls.classid": "0"},
    "net_prio": {"net_prio.ifpriomap": "lo 0\n"},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm\n"},
}
V2_FILES = {"memory.max": "max", "memory.low": "0", "memory.swap.max": "max",
            "memory.current": str(5 * MB), "cpu.weight": "100", "cpu.max": "max 100000",
            "cpu.max.burst": "0", "cpu.idle": "0", "cpuset.cpus": "", "cpuset.mems": "",
            "pids.max": "max", "io.weight": "default 100", "io.max": "",
            "hugetlb.2MB.max": "max", "hugetlb.1GB.max": "max", "rdma.max": "",
            "memory.high": "max", "cgroup.max.depth": "max", "cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma"}


def make_dir(tmp: Path, files: dict[str, str], version: int, drop: tuple[str, ...] = ()) -> Dir:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if name not in drop:
            (tmp / name).write_text(content)
    return Dir(str(tmp), version)


def v1(tmp: Path, ctrl: str, drop: tuple[str, ...] = ()) -> Dir:
    return make_dir(tmp / ctrl, V1_FILES[ctrl], 1, drop)


def v2(tmp: Path, drop: tuple[str, ...] = ()) -> Dir:
    return make_dir(tmp / "v2", V2_FILES, 2, drop)


F = "linux.resources"


# --- conversions (the numbers runc and crun use) ---

@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (512, 20), (262144, 10000)])
def test_shares_to_weight(shares: int, weight: int) -> None:
    assert convert.shares_to_weight(shares) == weight


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (500, 4950), (1000, 10000)])
def test_blkio_to_io_weight(blkio: int, io: int) -> None:
    assert convert.blkio_to_io_weight(blkio) == io


@pytest.mark.parametrize("swap,limit,out", [(0, 0, 0), (0, -1, -1), (-1, 64, -1), (96, 64, 32),
                                            (64, 64, 0)])
def test_swap_to_v2(swap: int, limit: int, out: int) -> None:
    assert convert.swap_to_v2(swap, limit) == out


@pytest.mark.parametrize("swap,limit,msg", [(96, 0, "needs a memory limit"),
                                            (32, 64, "at least the memory limit")])
def test_swap_to_v2_refuses(swap: int, limit: int, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        convert.swap_to_v2(swap, limit)


def test_page_sizes() -> None:
    assert convert.page_size_name(convert.page_size_bytes("2048KB")) == "2MB"
    assert convert.page_size_name(convert.page_size_bytes("1GB")) == "1GB"
    assert convert.page_size_name(convert.page_size_bytes("64KB")) == "64KB"
    with pytest.raises(ValueError):
        convert.page_size_bytes("2XB")


def test_cpu_max() -> None:
    assert convert.cpu_max(50000, 100000) == "50000 100000"
    assert convert.cpu_max(-1, 100000) == "max 100000"
    assert convert.cpu_max(20000, 0) == "20000"


# --- v1 ---

def test_v1_memory_order_new_container(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    res_v1.memory({"limit": 64 * MB, "swap": 96 * MB, "reservation": 32 * MB, "swappiness": 0,
                   "disableOOMKiller": True, "useHierarchy": True}, d, F + ".memory")
    # swap (96M) is above the current limit (unlimited? no: BIG > 96M): limit first
    assert d.written == [("memory.limit_in_bytes", str(64 * MB)),
                         ("memory.memsw.limit_in_bytes", str(96 * MB)),
                         ("memory.soft_limit_in_bytes", str(32 * MB)),
                         ("memory.oom_control", "1"), ("memory.swappiness", "0"),
                         ("memory.use_hierarchy", "1")]


def test_v1_memory_swap_first_when_raising(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    Path(d.file("memory.limit_in_bytes")).write_text(str(64 * MB))
    res_v1.memory({"limit": 128 * MB, "swap": 256 * MB}, d, F + ".memory", update=True)
    assert [n for n, _ in d.written] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_memory_unlimited_lifts_swap(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    res_v1.memory({"limit": -1}, d, F + ".memory")
    assert d.written == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_v1_memory_no_swap_accounting(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory", drop=("memory.memsw.limit_in_bytes",))
    with pytest.raises(CgroupError, match=r"linux.resources.memory.swap: .*no swap accounting"):
        res_v1.memory({"limit": 64 * MB, "swap": 96 * MB}, d, F + ".memory")


def test_v1_memory_kernel_fields_warn_when_gone(tmp_path: Path) -> None:
    warned: list[str] = []
    d = v1(tmp_path, "memory", drop=("memory.kmem.limit_in_bytes",))
    d.warn = warned.append
    res_v1.memory({"kernel": 1 << 30, "kernelTCP": 1 << 20}, d, F + ".memory")
    assert d.written == [("memory.kmem.tcp.limit_in_bytes", str(1 << 20))]
    assert warned and "memory.kernel: ignored" in warned[0]


def test_v1_check_before_update(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    with pytest.raises(CgroupError, match=r"memory.limit: 1048576 is below the current usage 5242880"):
        res_v1.memory({"limit": MB, "checkBeforeUpdate": True}, d, F + ".memory", update=True)
    assert d.written == []


def test_v1_swappiness_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"memory.swappiness: 101 is out of range"):
        res_v1.memory({"swappiness": 101}, v1(tmp_path, "memory"), F + ".memory")


def test_v1_cpu(tmp_path: Path) -> None:
    d = v1(tmp_path, "cpu")
    res_v1.cpu({"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
                "realtimeRuntime": 950, "realtimePeriod": 1000, "idle": 0}, d, F + ".cpu")
    assert d.written == [("cpu.rt_period_us", "1000"), ("cpu.rt_runtime_us", "950"),
                         ("cpu.shares", "1024"), ("cpu.cfs_period_us", "100000"),
                         ("cpu.cfs_quota_us", "50000"), ("cpu.cfs_burst_us", "1000"),
                         ("cpu.idle", "0")]


def test_v1_cpu_shares_clamped_by_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = v1(tmp_path, "cpu")
    monkeypatch.setattr(Dir, "read_int", lambda self, field, name: 262144)
    with pytest.raises(CgroupError, match=r"cpu.shares: 999999 is out of range: the maximum"):
        res_v1.cpu({"shares": 999999}, d, F + ".cpu")


def test_v1_cpu_burst_above_quota(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cpu.burst: 9 is larger than quota 5"):
        res_v1.cpu({"quota": 5, "burst": 9}, v1(tmp_path, "cpu"), F + ".cpu")


def test_v1_cpu_period_retried_after_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = v1(tmp_path, "cpu")
    real = Dir.write
    calls: list[str] = []

    def flaky(self: Dir, field: str, name: str, value: str, *, quiet: tuple[int, ...] = ()) -> bool:
        calls.append(name)
        if name == "cpu.cfs_period_us" and calls.count(name) == 1:
            assert errno.EINVAL in quiet
            return False  # the kernel refused the shorter period under the old quota
        return real(self, field, name, value, quiet=quiet)

    monkeypatch.setattr(Dir, "write", flaky)
    res_v1.cpu({"quota": 1000, "period": 10000}, d, F + ".cpu")
    assert calls == ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.cfs_period_us"]


def test_v1_cpuset_pids(tmp_path: Path) -> None:
    d = v1(tmp_path, "cpuset")
    res_v1.cpuset({"cpus": "0", "mems": "0"}, d, F + ".cpu")
    assert d.written == [("cpuset.cpus", "0"), ("cpuset.mems", "0")]
    with pytest.raises(ConfigError, match=r"cpu.cpus: '0-a' is not a list"):
        res_v1.cpuset({"cpus": "0-a"}, d, F + ".cpu")
    p = v1(tmp_path, "pids")
    for limit, text in ((42, "42"), (-1, "max"), (0, "0")):
        res_v1.pids({"limit": limit}, p, F + ".pids")
        assert p.written[-1] == ("pids.max", text)


def test_v1_blkio(tmp_path: Path) -> None:
    d = v1(tmp_path, "blkio")
    with pytest.raises(CgroupError, match=r"blockIO.weight: .*no weight file"):
        res_v1.blkio({"weight": 300}, d, F + ".blockIO")
    (tmp_path / "blkio" / "blkio.bfq.weight").write_text("100")
    (tmp_path / "blkio" / "blkio.bfq.weight_device").write_text("")
    res_v1.blkio({"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
                  "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                  "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 300}]},
                 d, F + ".blockIO")
    assert d.written == [("blkio.bfq.weight", "300"), ("blkio.bfq.weight_device", "8:0 500"),
                         ("blkio.throttle.read_bps_device", "8:0 600"),
                         ("blkio.throttle.write_iops_device", "8:16 300")]
    with pytest.raises(ConfigError, match=r"weightDevice\[0\]: at least one"):
        res_v1.blkio({"weightDevice": [{"major": 8, "minor": 0}]}, d, F + ".blockIO")


def test_v1_hugetlb_net_rdma(tmp_path: Path) -> None:
    d = v1(tmp_path, "hugetlb")
    res_v1.hugetlb([{"pageSize": "2048KB", "limit": 4 * MB}], d, F + ".hugepageLimits")
    assert d.written == [("hugetlb.2MB.limit_in_bytes", str(4 * MB))]
    with pytest.raises(CgroupError, match=r"hugepageLimits\[0\].pageSize: `64KB` is not a huge "
                                          r"page size of this host \(it has: 1GB, 2MB\)"):
        res_v1.hugetlb([{"pageSize": "64KB", "limit": 1}], d, F + ".hugepageLimits")
    n = v1(tmp_path, "net_cls")
    res_v1.net_cls({"classID": 1048577}, n, F + ".network")
    assert n.written == [("net_cls.classid", "1048577")]
    p = v1(tmp_path, "net_prio")
    res_v1.net_prio({"priorities": [{"name": "eth0", "priority": 5}]}, p, F + ".network")
    assert p.written == [("net_prio.ifpriomap", "eth0 5")]
    r = make_dir(tmp_path / "rdma", {"rdma.max": ""}, 1)
    res_v1.rdma({"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 9}},
                r, F + ".rdma")
    assert r.written == [("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"),
                         ("rdma.max", "rxe3 hca_object=9")]


def test_write_error_names_field_file_and_value(tmp_path: Path) -> None:
    d = v1(tmp_path, "cpuset")
    Path(d.file("cpuset.cpus")).unlink()
    Path(d.file("cpuset.cpus")).mkdir()  # any write now fails (EISDIR)
    with pytest.raises(CgroupError) as e:
        res_v1.cpuset({"cpus": "4095"}, d, F + ".cpu")
    assert str(e.value).startswith("linux.resources.cpu.cpus: write `4095` to `")
    assert "cpuset.cpus`: Is a directory" in str(e.value)


def test_bad_types_from_update_json(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    with pytest.raises(ConfigError, match=r"resources.memory.limit: '1G' is not an integer"):
        res_v1.memory({"limit": "1G"}, d, "resources.memory")
    with pytest.raises(ConfigError, match=r"resources.memory.limit: True is not an integer"):
        res_v1.memory({"limit": True}, d, "resources.memory")


# --- v2 ---

def test_v2_memory(tmp_path: Path) -> None:
    d = v2(tmp_path)
    res_v2.memory({"limit": 64 * MB, "swap": 96 * MB, "reservation": 32 * MB}, d, F + ".memory")
    assert d.written == [("memory.swap.max", str(32 * MB)), ("memory.max", str(64 * MB)),
                         ("memory.low", str(32 * MB))]


def test_v2_memory_unlimited_without_swap_file(tmp_path: Path) -> None:
    d = v2(tmp_path, drop=("memory.swap.max",))
    res_v2.memory({"limit": -1}, d, F + ".memory")
    assert d.written == [("memory.max", "max")]
    with pytest.raises(CgroupError, match=r"memory.swap: this host has no swap accounting"):
        res_v2.memory({"limit": 64, "swap": 128}, d, F + ".memory")


@pytest.mark.parametrize("mem,msg", [
    ({"swappiness": 10}, r"memory.swappiness: has no cgroup v2 equivalent"),
    ({"disableOOMKiller": True}, r"memory.disableOOMKiller: has no cgroup v2 equivalent"),
    ({"useHierarchy": False}, r"memory.useHierarchy: false cannot be applied"),
    ({"limit": 0, "swap": 64}, r"memory.swap: a swap limit needs a memory limit"),
])
def test_v2_memory_refuses(tmp_path: Path, mem: dict[str, object], msg: str) -> None:
    with pytest.raises((CgroupError, ConfigError), match=msg):
        res_v2.memory(mem, v2(tmp_path), F + ".memory")


def test_v2_check_before_update(tmp_path: Path) -> None:
    with pytest.raises(CgroupError, match=r"below the current usage 5242880"):
        res_v2.memory({"limit": MB, "checkBeforeUpdate": True}, v2(tmp_path), "resources.memory",
                      update=True)


def test_v2_cpu(tmp_path: Path) -> None:
    d = v2(tmp_path)
    res_v2.cpu({"shares": 512, "quota": 50000, "period": 100000, "burst": 100, "idle": 1},
               d, F + ".cpu")
    assert d.written == [("cpu.idle", "1"), ("cpu.weight", "20"), ("cpu.max", "50000 100000"),
                         ("cpu.max.burst", "100")]
    with pytest.raises(CgroupError, match=r"cpu.realtimeRuntime: realtime CPU time has no cgroup "
                                          r"v2 equivalent"):
        res_v2.cpu({"realtimeRuntime": 5}, d, F + ".cpu")


def test_v2_io_pids_hugetlb(tmp_path: Path) -> None:
    d = v2(tmp_path)
    res_v2.io({"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
               "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}]},
              d, F + ".blockIO")
    assert d.written == [("io.weight", "4950"), ("io.max", "8:0 rbps=600"),
                         ("io.max", "8:16 wiops=30")]
    (tmp_path / "v2" / "io.bfq.weight").write_text("default 100")
    res_v2.io({"weight": 300}, d, F + ".blockIO")
    assert d.written[-1] == ("io.bfq.weight", "300")
    res_v2.pids({"limit": 0}, d, F + ".pids")
    assert d.written[-1] == ("pids.max", "0")
    res_v2.hugetlb([{"pageSize": "1GB", "limit": 1 << 30}], d, F + ".hugepageLimits")
    assert d.written[-1] == ("hugetlb.1GB.max", str(1 << 30))


def test_v2_unified(tmp_path: Path) -> None:
    d = v2(tmp_path)
    res_v2.unified({"memory.high": "1000000", "cgroup.max.depth": "3"}, d, F + ".unified",
                   frozenset({"memory"}))
    assert d.written == [("memory.high", "1000000"), ("cgroup.max.depth", "3")]
    with pytest.raises(CgroupError, match=r"unified\['pids.max'\]: the `pids` controller is not"):
        res_v2.unified({"pids.max": "5"}, d, F + ".unified", frozenset({"memory"}))
    for bad in ("../x.y", "memory", "a/b.c"):
        with pytest.raises(ConfigError, match="must be a control file name"):
            res_v2.unified({bad: "1"}, d, F + ".unified", frozenset({"memory"}))


# --- routing ---

def test_wants() -> None:
    assert not wants({"limit": 0, "swap": 0, "disableOOMKiller": False}, group="memory")
    assert wants({"limit": 0}, group="pids")
    assert wants({"swappiness": 0}, group="memory")
    assert not wants({"shares": 0, "cpus": ""}, group="cpu")
    assert wants([{"pageSize": "2MB", "limit": 0}])


def _hybrid(tmp_path: Path, v1_ctrls: tuple[str, ...], v2_offered: str) -> list[object]:
    hs: list[object] = []
    for c in v1_ctrls:
        d = v1(tmp_path / "v1", c)
        hs.append(Hierarchy1((c,), d.path, None))
    root = tmp_path / "unified"
    leaf = root / "c1"
    leaf.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(v2_offered)
    (root / "cgroup.subtree_control").write_text("")
    (leaf / "cgroup.controllers").write_text("")
    hs.append(Hierarchy2(("unified",), str(leaf), str(root)))
    return hs


def test_apply_routes_v1_and_falls_back_to_unified(tmp_path: Path) -> None:
    hs = _hybrid(tmp_path, ("memory", "pids", "devices"), "hugetlb")
    with pytest.raises(CgroupError) as e:
        apply_resources(hs, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MB}]})  # type: ignore[arg-type]
    # the unified mount offers hugetlb: ocirun enabled it in the root's subtree_control
    assert (tmp_path / "unified" / "cgroup.subtree_control").read_text() == "+hugetlb"
    # ...and the fixture leaf has no hugetlb files (a real kernel would make them)
    assert "hugepageLimits[0].pageSize: `2MB` is not a huge page size" in str(e.value)
    apply_resources(hs, {"memory": {"limit": 64 * MB}, "pids": {"limit": 7}})  # type: ignore[arg-type]
    assert (tmp_path / "v1" / "memory" / "memory.limit_in_bytes").read_text() == str(64 * MB)
    assert (tmp_path / "v1" / "pids" / "pids.max").read_text() == "7"


@pytest.mark.parametrize("res,msg", [
    ({"cpu": {"shares": 512}}, (r"linux.resources.cpu: needs the `cpu` cgroup controller, which this "
                                r"host lacks \(no cgroup v1 `cpu` hierarchy is mounted; the unified "
                                r"hierarchy at `.*` does not offer `cpu`; layout: hybrid")),
    ({"network": {"classID": 1}}, r"network.classID: needs the `net_cls` cgroup controller"),
    ({"unified": {"memory.high": "1"}}, (r"linux.resources.unified: the `memory` controller is not "
                                         r"available on the unified hierarchy")),
])
def test_apply_names_what_the_host_lacks(tmp_path: Path, res: dict[str, object], msg: str) -> None:
    hs = _hybrid(tmp_path, ("memory",), "hugetlb")
    with pytest.raises(CgroupError, match=msg):
        apply_resources(hs, res, sys=RecordingSyscalls())  # type: ignore[arg-type]


def test_apply_zero_values_need_no_controller(tmp_path: Path) -> None:
    hs = _hybrid(tmp_path, ("memory",), "")
    apply_resources(hs, {"cpu": {"shares": 0, "cpus": ""}, "blockIO": {"weight": 0}},  # type: ignore[arg-type]
                    sys=RecordingSyscalls())


def test_unified_on_legacy_host(tmp_path: Path) -> None:
    d = v1(tmp_path, "memory")
    with pytest.raises(CgroupError, match=r"unified: cgroup v2 values need a unified hierarchy, "
                                          r"and this host is cgroup v1 only"):
        apply_resources([Hierarchy1(("memory",), d.path, None)], {"unified": {"memory.high": "1"}})


def test_network_on_pure_v2(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    (root / "c1").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("memory pids")
    (root / "c1" / "cgroup.controllers").write_text("memory pids")
    r = Router([Hierarchy2(("unified",), str(root / "c1"), str(root))], lambda m: None)
    with pytest.raises(CgroupError, match=r"the `net_prio` controller exists only in cgroup v1, "
                                          r"and this host is cgroup v2 only"):
        r.dir_for("net_prio", None, "linux.resources.network.priorities")


def test_v2_enable_chain(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    leaf = root / "a" / "b" / "c1"
    leaf.mkdir(parents=True)
    for d in (root, root / "a", root / "a" / "b"):
        (d / "cgroup.controllers").write_text("memory pids")
        (d / "cgroup.subtree_control").write_text("")
    h = Hierarchy2(("unified",), str(leaf), None)
    assert h.mount_root() == str(root)
    h.enable(frozenset({"pids"}))
    for d in (root, root / "a", root / "a" / "b"):
        assert (d / "cgroup.subtree_control").read_text() == "+pids"
    with pytest.raises(CgroupError, match="the `cpu` controller is not available"):
        h.enable(frozenset({"cpu"}))
