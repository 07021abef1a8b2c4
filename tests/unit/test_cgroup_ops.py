"""update / events / ps / stats as library code (no root, no containers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.cgroups import stats
from ocirun.errors import NotSupportedError, UsageError
from ocirun.ops import events, ps, update

# --- update ---


@pytest.mark.parametrize("text,n", [("512", 512), ("1k", 1024), ("64m", 64 << 20), ("64MiB", 64 << 20),
                                    ("1.5g", 3 << 29), ("2GB", 2 << 30), ("100b", 100)])
def test_ram_in_bytes(text: str, n: int) -> None:
    assert update.ram_in_bytes(text) == n


def test_from_flags() -> None:
    got = update.from_flags({"memory": "200M", "memory-swap": "-1", "cpu-share": "512",
                             "cpu-quota": "-1", "cpuset-cpus": "0", "pids-limit": "0",
                             "blkio-weight": "0", "cpu-period": None})  # type: ignore[dict-item]
    assert got == {"memory": {"limit": 200 << 20, "swap": -1},
                   "cpu": {"shares": 512, "quota": -1, "cpus": "0"}, "pids": {"limit": 0}}


@pytest.mark.parametrize("opts,msg", [
    ({"memory": "abc"}, "invalid value for memory: invalid size: 'abc'"),
    ({"cpu-quota": "x"}, "invalid value for cpu-quota: 'x' is not an integer"),
    ({"cpu-period": "-5"}, "invalid value for cpu-period"),
])
def test_from_flags_errors(opts: dict[str, str], msg: str) -> None:
    with pytest.raises(UsageError, match=msg):
        update.from_flags(opts)


def test_rdt_flags_refused() -> None:
    with pytest.raises(NotSupportedError, match="Intel RDT"):
        update.from_flags({"l3-cache-schema": "L3:0=f"})


def test_merge() -> None:
    base = {"memory": {"limit": 100, "swap": 200}, "cpu": {"shares": 2}, "hugepageLimits": [1]}
    got = update.merge(base, {"memory": {"limit": 150}, "pids": {"limit": 3}})
    assert got == {"memory": {"limit": 150, "swap": 200}, "cpu": {"shares": 2},
                   "hugepageLimits": [1], "pids": {"limit": 3}}
    assert base["memory"] == {"limit": 100, "swap": 200}  # not modified


def test_read_resources_file(tmp_path: Path) -> None:
    f = tmp_path / "r.json"
    f.write_text('{"memory": {"limit": 5}}')
    assert update.read_resources_arg(str(f)) == {"memory": {"limit": 5}}
    f.write_text("[1]")
    with pytest.raises(Exception, match="expected a JSON object"):
        update.read_resources_arg(str(f))
    with pytest.raises(Exception, match="open /nonexistent/x: No such file"):
        update.read_resources_arg("/nonexistent/x")


# --- events ---

@pytest.mark.parametrize("text,secs", [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5s", 1.5),
                                       ("0", 0.0)])
def test_parse_duration(text: str, secs: float) -> None:
    assert events.parse_duration(text) == pytest.approx(secs)


@pytest.mark.parametrize("text", ["5", "abc", "5x", "s"])
def test_parse_duration_errors(text: str) -> None:
    with pytest.raises(UsageError, match="flag -interval"):
        events.parse_duration(text)


# --- ps ---

def test_ps_json() -> None:
    assert ps.format_json([]) == "null\n"
    assert ps.format_json([5, 7]) == "[5,7]\n"


def test_ps_table_filters_by_pid() -> None:
    me = os.getpid()
    out = ps.format_table([me], ["-ef"]).splitlines()
    assert out[0].split()[1] == "PID"
    assert [int(line.split()[1]) for line in out[1:]] == [me]


# --- stats ---

def _w(d: Path, files: dict[str, str]) -> str:
    d.mkdir(parents=True, exist_ok=True)
    for k, v in files.items():
        (d / k).write_text(v)
    return str(d)


def test_stats_v1(tmp_path: Path) -> None:
    v1 = {
        "cpuacct": _w(tmp_path / "cpuacct", {"cpuacct.usage": "900", "cpuacct.usage_percpu": "400 500 ",
                                               "cpuacct.usage_all": "cpu user system\n0 300 100\n1 500 0\n",
                                               "cpuacct.stat": "user 2\nsystem 1\n"}),
        "cpu": _w(tmp_path / "cpu", {"cpu.stat": "nr_periods 4\nnr_throttled 1\nthrottled_time 77\n"}),
        "memory": _w(tmp_path / "memory", {"memory.stat": "cache 8\nrss 3\n",
                                             "memory.usage_in_bytes": "11",
                                             "memory.max_usage_in_bytes": "12", "memory.failcnt": "0",
                                             "memory.limit_in_bytes": "1000"}),
        "pids": _w(tmp_path / "pids", {"pids.current": "2", "pids.max": "max"}),
        "blkio": _w(tmp_path / "blkio", {"blkio.throttle.io_serviced_recursive": "8:0 Read 3\nTotal 3\n",
                                         "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n"}),
    }
    s = stats.collect(v1, None)
    assert s["cpu"] == {"usage": {"total": 900, "percpu": [400, 500], "percpu_kernel": [100, 0],
                                  "percpu_user": [300, 500], "kernel": 10_000_000, "user": 20_000_000},
                        "throttling": {"periods": 4, "throttledPeriods": 1, "throttledTime": 77}}
    mem = s["memory"]
    assert isinstance(mem, dict)
    assert mem["cache"] == 8 and mem["raw"] == {"cache": 8, "rss": 3}
    assert mem["usage"] == {"limit": 1000, "usage": 11, "max": 12, "failcnt": 0}
    assert mem["kernelTCP"] == {"limit": 0, "failcnt": 0}
    assert s["pids"] == {"current": 2}
    assert s["blkio"] == {"ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 4096}],
                          "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 3}]}
    assert s["hugetlb"] == {} and s["network_interfaces"] is None


def test_stats_v2(tmp_path: Path) -> None:
    d = _w(tmp_path / "v2", {
        "cpu.stat": "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 1\nnr_throttled 1\n"
                    "throttled_usec 4\n",
        "memory.stat": "anon 10\nfile 20\n", "memory.current": "30", "memory.max": "max",
        "memory.swap.current": "1", "memory.swap.max": "max", "memory.events": "max 2\noom_kill 1\n",
        "pids.current": "3", "pids.max": "10",
        "io.stat": "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n",
        "hugetlb.2MB.current": "0", "hugetlb.2MB.events": "max 0\n"})
    s = stats.collect({}, d)
    assert s["cpu"] == {"usage": {"total": 5000, "kernel": 2000, "user": 3000},
                        "throttling": {"periods": 1, "throttledPeriods": 1, "throttledTime": 4000}}
    mem = s["memory"]
    assert isinstance(mem, dict)
    assert mem["cache"] == 20
    assert mem["usage"] == {"limit": (1 << 64) - 1, "usage": 30, "failcnt": 2}
    assert mem["swap"] == {"limit": (1 << 64) - 1, "usage": 31, "failcnt": 0}
    assert s["pids"] == {"current": 3, "limit": 10}
    assert s["blkio"] == {
        "ioServiceBytesRecursive": [{"major": 8, "op": "Read", "value": 100},
                                    {"major": 8, "op": "Write", "value": 200}],
        "ioServicedRecursive": [{"major": 8, "op": "Read", "value": 1},
                                {"major": 8, "op": "Write", "value": 2}]}
    assert s["hugetlb"] == {"2MB": {"failcnt": 0}}
