"""Resource usage of a container's cgroup in runc's ``events`` shapes.

The ``data`` of a ``{"type": "stats"}`` event, as runc 1.1 prints it (its
``types/events.go``): ``cpu``, ``cpuset``, ``memory``, ``pids``, ``blkio``,
``hugetlb``, ``intel_rdt``, ``network_interfaces``; zero values of the
fields runc marks ``omitempty`` are left out the way Go's encoder does, so
tools written against runc's output read ours.

Each part comes from the v1 controller when one is mounted for it,
otherwise from the unified hierarchy (v2 files, converted as runc does:
microseconds to nanoseconds, v2 swap reported as memory+swap like v1).
Missing files are zeros, never errors: a container whose cgroup is gone
mid-read reports what was there.
"""

from __future__ import annotations

import os

U64_MAX = (1 << 64) - 1
USER_HZ = 100  # cpuacct.stat counts clock ticks (sysconf(_SC_CLK_TCK) is 100 on Linux)


def _read(path: str) -> str | None:
    # os.open/os.read, not open(): no buffered file object per file (a stats
    # sample reads ~40 files)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")


def _num(text: str | None) -> int:
    if not text:
        return 0
    word = text.split()[0] if text.split() else ""
    if word == "max":
        return U64_MAX
    try:
        return int(word)
    except ValueError:
        return 0


def _file_num(d: str, name: str) -> int:
    return _num(_read(os.path.join(d, name)))


def _kv(d: str, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read(os.path.join(d, name)) or "").splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def _omit(d: dict[str, object], *keys: str) -> dict[str, object]:
    """Go's ``omitempty``: drop zero numbers and empty lists/maps of ``keys``."""
    for k in keys:
        if d.get(k) in (0, None, [], {}):
            d.pop(k, None)
    return d


def cpu_list(text: str | None) -> list[int]:
    """``0-2,5`` -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in (text or "").strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit():
            out.extend(range(int(lo), int(hi if hi.isdigit() else lo) + 1))
    return out


# --- cgroup v1 ---

def cpu_v1(cpuacct: str | None, cpu: str | None) -> dict[str, object]:
    usage: dict[str, object] = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [],
                                "kernel": 0, "user": 0}
    if cpuacct:
        usage["total"] = _file_num(cpuacct, "cpuacct.usage")
        usage["percpu"] = [int(x) for x in (_read(cpuacct + "/cpuacct.usage_percpu") or "").split()]
        rows = (_read(cpuacct + "/cpuacct.usage_all") or "").splitlines()[1:]
        cols = [r.split() for r in rows if len(r.split()) == 3]
        usage["percpu_user"] = [int(c[1]) for c in cols]
        usage["percpu_kernel"] = [int(c[2]) for c in cols]
        st = _kv(cpuacct, "cpuacct.stat")
        usage["kernel"] = st.get("system", 0) * 1_000_000_000 // USER_HZ
        usage["user"] = st.get("user", 0) * 1_000_000_000 // USER_HZ
    throttling: dict[str, object] = {}
    if cpu:
        st = _kv(cpu, "cpu.stat")
        throttling = {"periods": st.get("nr_periods", 0),
                      "throttledPeriods": st.get("nr_throttled", 0),
                      "throttledTime": st.get("throttled_time", 0)}
    return {"usage": _omit(usage, "total", "percpu", "percpu_kernel", "percpu_user"),
            "throttling": _omit(throttling, "periods", "throttledPeriods", "throttledTime")}


CPUSET_FLAGS = ("cpu_exclusive", "mems", "mem_hardwall", "mem_exclusive", "memory_migrate",
                "memory_spread_page", "memory_spread_slab", "memory_pressure",
                "sched_load_balance", "sched_relax_domain_level")


def cpuset_v1(d: str | None) -> dict[str, object]:
    out: dict[str, object] = {"cpus": [], "cpu_exclusive": 0, "mems": [], "mem_hardwall": 0,
                              "mem_exclusive": 0, "memory_migrate": 0, "memory_spread_page": 0,
                              "memory_spread_slab": 0, "memory_pressure": 0,
                              "sched_load_balance": 0, "sched_relax_domain_level": 0}
    if d:
        out["cpus"] = cpu_list(_read(d + "/cpuset.cpus"))
        out["mems"] = cpu_list(_read(d + "/cpuset.mems"))
        for k in CPUSET_FLAGS:
            if k != "mems":
                text = (_read(f"{d}/cpuset.{k}") or "0").strip()
                out[k] = int(text) if text.lstrip("-").isdigit() else 0
    return _omit(out, "cpus", "mems")


def _mem_entry(d: str, prefix: str) -> dict[str, object]:
    return _omit({"limit": _file_num(d, prefix + ".limit_in_bytes"),
                  "usage": _file_num(d, prefix + ".usage_in_bytes"),
                  "max": _file_num(d, prefix + ".max_usage_in_bytes"),
                  "failcnt": _file_num(d, prefix + ".failcnt")}, "usage", "max")


def memory_v1(d: str | None) -> dict[str, object]:
    if not d:
        return _empty_memory()
    raw = dict(sorted(_kv(d, "memory.stat").items()))
    return _omit({"cache": raw.get("cache", 0), "usage": _mem_entry(d, "memory"),
                  "swap": _mem_entry(d, "memory.memsw"), "kernel": _mem_entry(d, "memory.kmem"),
                  "kernelTCP": _mem_entry(d, "memory.kmem.tcp"), "raw": raw}, "cache", "raw")


def _empty_memory() -> dict[str, object]:
    zero = {"limit": 0, "failcnt": 0}
    return {"usage": dict(zero), "swap": dict(zero), "kernel": dict(zero),
            "kernelTCP": dict(zero)}


def pids_stats(d: str | None) -> dict[str, object]:
    if not d:
        return {}
    limit = _file_num(d, "pids.max")
    return _omit({"current": _file_num(d, "pids.current"),
                  "limit": 0 if limit == U64_MAX else limit}, "current", "limit")


def _blkio_entries(text: str | None) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) == 3 and ":" in f[0]:
            ma, _, mi = f[0].partition(":")
            out.append(_omit({"major": int(ma), "minor": int(mi), "op": f[1], "value": int(f[2])},
                             "major", "minor", "op", "value"))
    return out


def blkio_v1(d: str | None) -> dict[str, object]:
    if not d:
        return {}
    out: dict[str, object] = {}
    # CFQ's per-cgroup files, else BFQ's, else the throttling layer's (runc's order)
    for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
        if _read(f"{d}/{prefix}io_serviced_recursive") is not None:
            out["ioServiceBytesRecursive"] = _blkio_entries(
                _read(f"{d}/{prefix}io_service_bytes_recursive"))
            out["ioServicedRecursive"] = _blkio_entries(_read(f"{d}/{prefix}io_serviced_recursive"))
            break
    return _omit(out, "ioServiceBytesRecursive", "ioServicedRecursive")


def hugetlb_v1(d: str | None) -> dict[str, object]:
    out: dict[str, object] = {}
    if not d:
        return out
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith("hugetlb.") and n.endswith(".limit_in_bytes") and ".rsvd." not in n:
            size = n.split(".")[1]
            out[size] = _omit({"usage": _file_num(d, f"hugetlb.{size}.usage_in_bytes"),
                               "max": _file_num(d, f"hugetlb.{size}.max_usage_in_bytes"),
                               "failcnt": _file_num(d, f"hugetlb.{size}.failcnt")}, "usage", "max")
    return out


# --- cgroup v2 ---

def cpu_v2(d: str) -> dict[str, object]:
    st = _kv(d, "cpu.stat")
    usage = {"total": st.get("usage_usec", 0) * 1000, "kernel": st.get("system_usec", 0) * 1000,
             "user": st.get("user_usec", 0) * 1000}
    throttling = {"periods": st.get("nr_periods", 0), "throttledPeriods": st.get("nr_throttled", 0),
                  "throttledTime": st.get("throttled_usec", 0) * 1000}
    return {"usage": _omit(dict(usage), "total"),
            "throttling": _omit(dict(throttling), "periods", "throttledPeriods", "throttledTime")}


def memory_v2(d: str) -> dict[str, object]:
    raw = dict(sorted(_kv(d, "memory.stat").items()))
    usage = {"limit": _file_num(d, "memory.max"), "usage": _file_num(d, "memory.current"),
             "max": _file_num(d, "memory.peak"),
             "failcnt": _kv(d, "memory.events").get("max", 0)}
    swap_limit = _file_num(d, "memory.swap.max")
    swap = {"limit": swap_limit, "usage": _file_num(d, "memory.swap.current"), "failcnt": 0}
    # v1 reports memory+swap: do the same for tools reading both
    swap["usage"] += usage["usage"]
    if swap_limit != U64_MAX and usage["limit"] != U64_MAX:
        swap["limit"] = swap_limit + usage["limit"]
    zero = {"limit": 0, "failcnt": 0}
    return _omit({"cache": raw.get("file", 0), "usage": _omit(dict(usage), "usage", "max"),
                  "swap": _omit(dict(swap), "usage", "max"), "kernel": dict(zero),
                  "kernelTCP": dict(zero), "raw": raw}, "cache", "raw")


def io_v2(d: str) -> dict[str, object]:
    nbytes: list[dict[str, object]] = []
    nios: list[dict[str, object]] = []
    for line in (_read(d + "/io.stat") or "").splitlines():
        f = line.split()
        if not f or ":" not in f[0]:
            continue
        ma, _, mi = f[0].partition(":")
        kv = dict(x.split("=", 1) for x in f[1:] if "=" in x)
        for key, op, out in (("rbytes", "Read", nbytes), ("wbytes", "Write", nbytes),
                             ("rios", "Read", nios), ("wios", "Write", nios)):
            if key in kv:
                out.append(_omit({"major": int(ma), "minor": int(mi), "op": op,
                                  "value": int(kv[key])}, "major", "minor", "op", "value"))
    return _omit({"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": nios},
                 "ioServiceBytesRecursive", "ioServicedRecursive")


def hugetlb_v2(d: str) -> dict[str, object]:
    out: dict[str, object] = {}
    try:
        names = os.listdir(d)
    except OSError:
        return out
    for n in sorted(names):
        if n.startswith("hugetlb.") and n.endswith(".current") and ".rsvd." not in n:
            size = n.split(".")[1]
            out[size] = _omit({"usage": _file_num(d, n),
                               "failcnt": _kv(d, f"hugetlb.{size}.events").get("max", 0)}, "usage")
    return out


def collect(v1: dict[str, str], v2: str | None) -> dict[str, object]:
    """Stats from the v1 controller dirs (name -> dir) and the unified dir."""
    def has2(name: str) -> bool:
        return v2 is not None and os.path.exists(os.path.join(v2, name))

    if "cpuacct" in v1 or "cpu" in v1 or not has2("cpu.stat"):
        cpu = cpu_v1(v1.get("cpuacct"), v1.get("cpu"))
    else:
        assert v2 is not None
        cpu = cpu_v2(v2)
    memory = (memory_v1(v1.get("memory")) if "memory" in v1 or not has2("memory.current")
              else memory_v2(v2))  # type: ignore[arg-type]
    pids = pids_stats(v1.get("pids") or (v2 if has2("pids.current") else None))
    blkio = blkio_v1(v1.get("blkio")) if "blkio" in v1 or not has2("io.stat") else io_v2(v2)  # type: ignore[arg-type]
    hugetlb = hugetlb_v1(v1.get("hugetlb")) if "hugetlb" in v1 or v2 is None else hugetlb_v2(v2)
    cpuset = cpuset_v1(v1.get("cpuset"))
    if "cpuset" not in v1 and has2("cpuset.cpus.effective"):
        assert v2 is not None
        cpus = cpu_list(_read(v2 + "/cpuset.cpus.effective"))
        mems = cpu_list(_read(v2 + "/cpuset.mems.effective"))
        cpuset = _omit({"cpus": cpus, **cpuset, "mems": mems}, "cpus", "mems")
        cpuset = {k: cpuset[k] for k in ("cpus", "cpu_exclusive", "mems", *CPUSET_FLAGS[2:])
                  if k in cpuset}
    return {"cpu": cpu, "cpuset": cpuset, "memory": memory, "pids": pids,
            "blkio": blkio, "hugetlb": hugetlb, "intel_rdt": {}, "network_interfaces": None}
