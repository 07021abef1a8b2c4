"""``linux.resources`` written to cgroup v1 controllers (config-linux.md
"Memory", "CPU", "Block IO", "Huge page limits", "Network", "PIDs", "RDMA";
kernel Documentation/admin-guide/cgroup-v1/).

Pure writers: each takes the resource object, the controller's :class:`Dir`
and the field's JSON path, and writes control files in the order runc does,
including its two ordering rules:

* memory + swap: ``memory.memsw.limit_in_bytes`` must stay >= the memory
  limit at every moment, so when the new swap value is above the current
  memory limit (or unlimited) it is written first;
* quota/period: a shorter period can be refused (EINVAL) while the old quota
  is in place; it is retried after the quota.

Value conventions follow the spec, not runc, where they differ: ``pids.limit``
0 is a limit of zero (v1.3.0 "SHOULD be treated as such"; runc writes max).
Zero elsewhere means "leave unset", as for runc.
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create

from ocirun.cgroups import convert
from ocirun.cgroups.target import (
    Dir,
    boolean,
    cpu_list,
    device_id,
    i64,
    items,
    mapping,
    text,
    u16,
    u32,
    u64,
)
from ocirun.errors import CgroupError, ConfigError

MEMSW = "memory.memsw.limit_in_bytes"
LIMIT = "memory.limit_in_bytes"


def memory(m: dict[str, object], d: Dir, field: str, *, update: bool = False) -> None:
    limit = i64(m, "limit", field) or 0
    swap = i64(m, "swap", field) or 0
    if limit == -1 and swap == 0 and d.exists(MEMSW):
        swap = -1  # "unlimited memory" also lifts the memory+swap limit
    if update and limit > 0 and boolean(m, "checkBeforeUpdate", field):
        check_usage(d, field, limit, "memory.usage_in_bytes")
    swap_first = False
    if limit and swap:
        cur = d.read_int(f"{field}.limit", LIMIT)
        swap_first = swap == -1 or cur < swap
    if swap_first:
        _swap(d, field, swap)
    _limit(d, field, limit)
    if not swap_first:
        _swap(d, field, swap)
    reservation = i64(m, "reservation", field)
    if reservation:
        d.write(f"{field}.reservation", "memory.soft_limit_in_bytes", str(reservation))
    for key, name in (("kernel", "memory.kmem.limit_in_bytes"),
                      ("kernelTCP", "memory.kmem.tcp.limit_in_bytes")):
        value = i64(m, key, field)
        # NOT RECOMMENDED fields: written where the kernel still has the
        # file, otherwise a warning (runc 1.1 ignores both silently).
        if value and not d.write(f"{field}.{key}", name, str(value),
                                 quiet=(errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL)):
            d.warn(f"{field}.{key}: ignored, this kernel no longer limits it (`{name}`)")
    if boolean(m, "disableOOMKiller", field):
        d.write(f"{field}.disableOOMKiller", "memory.oom_control", "1")
    swappiness = u64(m, "swappiness", field)
    if swappiness is not None:
        if swappiness > 100:
            raise ConfigError(f"{field}.swappiness: {swappiness} is out of range [0, 100]")
        d.write(f"{field}.swappiness", "memory.swappiness", str(swappiness))
    hierarchy = boolean(m, "useHierarchy", field)
    if hierarchy is not None:
        try:
            d.write(f"{field}.useHierarchy", "memory.use_hierarchy", "1" if hierarchy else "0")
        except CgroupError as e:
            if hierarchy or e.errno != errno.EINVAL:
                raise
            raise CgroupError(f"{field}.useHierarchy: false cannot be applied: this kernel "
                              "always accounts memory hierarchically", errno=e.errno) from e


def check_usage(d: Dir, field: str, limit: int, usage_file: str) -> None:
    """checkBeforeUpdate: refuse a limit below the current usage (the spec's MUST)."""
    usage = d.read_int(f"{field}.limit", usage_file)
    if limit < usage:
        raise CgroupError(f"{field}.limit: {limit} is below the current usage {usage} "
                          "(checkBeforeUpdate is set)")


def _limit(d: Dir, field: str, limit: int) -> None:
    if not limit:
        return
    try:
        d.write(f"{field}.limit", LIMIT, str(limit))
    except CgroupError as e:
        if e.errno != errno.EBUSY:
            raise
        # The kernel could not reclaim down to the new limit.
        usage = d.read(f"{field}.limit", "memory.usage_in_bytes").strip()
        peak = d.read(f"{field}.limit", "memory.max_usage_in_bytes").strip()
        raise CgroupError(f"{field}.limit: unable to set memory limit to {limit} "
                          f"(current usage: {usage}, peak usage: {peak})", errno=e.errno) from e


def _swap(d: Dir, field: str, swap: int) -> None:
    if not swap:
        return
    if not d.exists(MEMSW):
        raise CgroupError(f"{field}.swap: this host's memory controller has no swap accounting "
                          f"(`{d.file(MEMSW)}` is missing; boot with swapaccount=1)")
    d.write(f"{field}.swap", MEMSW, str(swap))


def cpu(c: dict[str, object], d: Dir, field: str) -> None:
    # Realtime first: a cgroup with rt_runtime 0 cannot take realtime tasks.
    rt_period = u64(c, "realtimePeriod", field)
    if rt_period:
        d.write(f"{field}.realtimePeriod", "cpu.rt_period_us", str(rt_period))
    rt_runtime = i64(c, "realtimeRuntime", field)
    if rt_runtime:
        d.write(f"{field}.realtimeRuntime", "cpu.rt_runtime_us", str(rt_runtime))
    shares = u64(c, "shares", field)
    if shares:
        d.write(f"{field}.shares", "cpu.shares", str(shares))
        got = d.read_int(f"{field}.shares", "cpu.shares")
        if got != shares:
            # The kernel clamps instead of refusing: report it as runc does.
            side = "maximum" if shares > got else "minimum"
            raise CgroupError(f"{field}.shares: {shares} is out of range: the {side} "
                              f"allowed cpu-shares is {got}")
    quota = i64(c, "quota", field) or 0
    period = u64(c, "period", field) or 0
    burst = u64(c, "burst", field)
    if burst is not None and quota > 0 and burst > quota:
        raise ConfigError(f"{field}.burst: {burst} is larger than quota {quota}")
    retry_period = False
    if period:
        quiet = (errno.EINVAL,) if quota else ()
        retry_period = not d.write(f"{field}.period", "cpu.cfs_period_us", str(period),
                                   quiet=quiet)
    if quota:
        d.write(f"{field}.quota", "cpu.cfs_quota_us", str(quota))
        if retry_period:
            d.write(f"{field}.period", "cpu.cfs_period_us", str(period))
    if burst is not None:
        d.write(f"{field}.burst", "cpu.cfs_burst_us", str(burst))
    idle = i64(c, "idle", field)
    if idle is not None:
        d.write(f"{field}.idle", "cpu.idle", str(idle))


def cpuset(c: dict[str, object], d: Dir, field: str) -> None:
    for key in ("cpus", "mems"):
        value = text(c, key, field)
        if value:
            d.write(f"{field}.{key}", f"cpuset.{key}", cpu_list(value, f"{field}.{key}"))


def pids(p: dict[str, object], d: Dir, field: str) -> None:
    limit = i64(p, "limit", field)
    if limit is not None:
        d.write(f"{field}.limit", "pids.max", convert.limit_text(limit))


def _weight_file(d: Dir, field: str) -> str:
    # BFQ (blk-mq) exposes blkio.bfq.weight; the old CFQ had blkio.weight.
    for name in ("blkio.bfq.weight", "blkio.weight"):
        if d.exists(name):
            return name
    raise CgroupError(f"{field}: this host's blkio controller has no weight file "
                      "(blkio.weight needs the BFQ or CFQ I/O scheduler); only throttling works")


def blkio(b: dict[str, object], d: Dir, field: str) -> None:
    weight = u16(b, "weight", field)
    if weight:
        _range(field + ".weight", weight, 10, 1000)
        d.write(f"{field}.weight", _weight_file(d, f"{field}.weight"), str(weight))
    leaf = u16(b, "leafWeight", field)
    if leaf:
        _range(field + ".leafWeight", leaf, 10, 1000)
        d.write(f"{field}.leafWeight", "blkio.leaf_weight", str(leaf))
    for i, entry in enumerate(items(b.get("weightDevice"), f"{field}.weightDevice")):
        f = f"{field}.weightDevice[{i}]"
        dev = device_id(entry, f)
        w = u16(entry, "weight", f)
        lw = u16(entry, "leafWeight", f)
        if w is None and lw is None:
            raise ConfigError(f"{f}: at least one of `weight` and `leafWeight` is required")
        if w is not None:
            name = _weight_file(d, f + ".weight") + "_device"
            d.write(f"{f}.weight", name, f"{dev} {w}")
        if lw is not None:
            d.write(f"{f}.leafWeight", "blkio.leaf_weight_device", f"{dev} {lw}")
    for key, name in THROTTLE_V1:
        for i, entry in enumerate(items(b.get(key), f"{field}.{key}")):
            f = f"{field}.{key}[{i}]"
            rate = u64(entry, "rate", f)
            if rate is None:
                raise ConfigError(f"{f}.rate: required")
            d.write(f, name, f"{device_id(entry, f)} {rate}")


THROTTLE_V1 = (("throttleReadBpsDevice", "blkio.throttle.read_bps_device"),
               ("throttleWriteBpsDevice", "blkio.throttle.write_bps_device"),
               ("throttleReadIOPSDevice", "blkio.throttle.read_iops_device"),
               ("throttleWriteIOPSDevice", "blkio.throttle.write_iops_device"))


def _range(field: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ConfigError(f"{field}: {value} is out of range [{lo}, {hi}]")


def hugetlb_name(entry: dict[str, object], field: str) -> tuple[str, int]:
    """(kernel page size name, limit) of one hugepageLimits entry."""
    size = text(entry, "pageSize", field)
    limit = u64(entry, "limit", field)
    if size is None or limit is None:
        raise ConfigError(f"{field}: `pageSize` and `limit` are required")
    try:
        return convert.page_size_name(convert.page_size_bytes(size)), limit
    except ValueError as e:
        raise ConfigError(f"{field}.pageSize: {e}") from None


def missing_page_size(d: Dir, field: str, name: str, suffix: str) -> CgroupError:
    sizes = sorted({f.split(".")[1] for f in os.listdir(d.path)
                    if f.startswith("hugetlb.") and f.endswith(suffix)})
    return CgroupError(f"{field}.pageSize: `{name}` is not a huge page size of this host "
                       f"(it has: {', '.join(sizes) or 'none'})")


def hugetlb(limits: object, d: Dir, field: str) -> None:
    for i, entry in enumerate(items(limits, field)):
        f = f"{field}[{i}]"
        name, limit = hugetlb_name(entry, f)
        if not d.exists(f"hugetlb.{name}.limit_in_bytes"):
            raise missing_page_size(d, f, name, ".limit_in_bytes")
        # Reservation accounting where the kernel has it (the spec prefers it),
        # and the fault-time limit in any case.
        if d.exists(f"hugetlb.{name}.rsvd.limit_in_bytes"):
            d.write(f"{f}.limit", f"hugetlb.{name}.rsvd.limit_in_bytes", str(limit))
        d.write(f"{f}.limit", f"hugetlb.{name}.limit_in_bytes", str(limit))


def net_cls(n: dict[str, object], d: Dir, field: str) -> None:
    class_id = u32(n, "classID", field)
    if class_id is not None:
        d.write(f"{field}.classID", "net_cls.classid", str(class_id))


def net_prio(n: dict[str, object], d: Dir, field: str) -> None:
    for i, entry in enumerate(items(n.get("priorities"), f"{field}.priorities")):
        f = f"{field}.priorities[{i}]"
        name = text(entry, "name", f)
        prio = u32(entry, "priority", f)
        if not name or prio is None:
            raise ConfigError(f"{f}: `name` and `priority` are required")
        d.write(f, "net_prio.ifpriomap", f"{name} {prio}")


def rdma_lines(r: object, field: str) -> list[tuple[str, str]]:
    """(field, ``dev hca_handle=N hca_object=M``) per device; same format on v1 and v2."""
    out = []
    for dev, limits in mapping(r, field).items():
        f = f"{field}.{dev}"
        lim = mapping(limits, f)
        parts = [dev]
        handles = u32(lim, "hcaHandles", f)
        objects = u32(lim, "hcaObjects", f)
        if handles is None and objects is None:
            raise ConfigError(f"{f}: at least one of `hcaHandles` and `hcaObjects` is required")
        if handles is not None:
            parts.append(f"hca_handle={handles}")
        if objects is not None:
            parts.append(f"hca_object={objects}")
        if not dev or any(c.isspace() for c in dev):
            raise ConfigError(f"{f}: {dev!r} is not a device name")
        out.append((f, " ".join(parts)))
    return out


def rdma(r: object, d: Dir, field: str) -> None:
    for f, line in rdma_lines(r, field):
        d.write(f, "rdma.max", line)
