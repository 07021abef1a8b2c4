"""``linux.resources`` written to the cgroup v2 (unified) hierarchy
(config-linux.md "Control groups" and "Unified"; kernel
Documentation/admin-guide/cgroup-v2.rst).

The spec's fields are v1-shaped; they are converted the way runc and crun do
(``convert.py``): shares -> ``cpu.weight``, blkio weight -> ``io.weight`` (or
``io.bfq.weight`` unconverted where BFQ is active), memory+swap ->
``memory.swap.max``.  A field with no v2 counterpart (realtime CPU, swappiness,
disabling the OOM killer, leaf weights, net_cls/net_prio) is an error naming
the field and the layout it needs, never silently dropped.  ``unified``
values are written last, so they override the converted ones.
"""

from __future__ import annotations

import errno

from ocirun.cgroups import convert
from ocirun.cgroups.res_v1 import check_usage, hugetlb_name, missing_page_size, rdma_lines
from ocirun.cgroups.target import (
    Dir,
    boolean,
    cpu_list,
    device_id,
    i64,
    items,
    text,
    u16,
    u64,
)
from ocirun.errors import CgroupError, ConfigError

NEEDS_V1 = "has no cgroup v2 equivalent (it needs a cgroup v1 hierarchy)"


def memory(m: dict[str, object], d: Dir, field: str, *, update: bool = False) -> None:
    limit = i64(m, "limit", field) or 0
    swap = i64(m, "swap", field) or 0
    try:
        swap2 = convert.swap_to_v2(swap, limit)
    except ValueError as e:
        raise ConfigError(f"{field}.swap: {e}") from None
    if update and limit > 0 and boolean(m, "checkBeforeUpdate", field):
        # v2 would OOM-kill instead of refusing: the spec's reason for the flag.
        check_usage(d, field, limit, "memory.current")
    if swap2:
        text2 = convert.limit_text(swap2)
        # No swap accounting (no memory.swap.max): asking for "max" or 0 is moot.
        quiet = (errno.ENOENT,) if swap2 == -1 else ()
        if not d.exists("memory.swap.max") and swap2 != -1:
            raise CgroupError(f"{field}.swap: this host has no swap accounting "
                              f"(`{d.file('memory.swap.max')}` is missing)")
        d.write(f"{field}.swap", "memory.swap.max", text2, quiet=quiet)
    if limit:
        d.write(f"{field}.limit", "memory.max", convert.limit_text(limit))
    reservation = i64(m, "reservation", field)
    if reservation:
        d.write(f"{field}.reservation", "memory.low", convert.limit_text(reservation))
    for key in ("kernel", "kernelTCP"):
        if i64(m, key, field):
            d.warn(f"{field}.{key}: ignored: cgroup v2 has no separate kernel memory limit "
                   "(kernel memory counts against memory.max)")
    if u64(m, "swappiness", field) is not None:
        raise CgroupError(f"{field}.swappiness: {NEEDS_V1}")
    if boolean(m, "disableOOMKiller", field):
        raise CgroupError(f"{field}.disableOOMKiller: {NEEDS_V1}")
    if boolean(m, "useHierarchy", field) is False:
        raise CgroupError(f"{field}.useHierarchy: false cannot be applied: cgroup v2 always "
                          "accounts memory hierarchically")


def cpu(c: dict[str, object], d: Dir, field: str) -> None:
    for key in ("realtimeRuntime", "realtimePeriod"):
        if c.get(key):
            raise CgroupError(f"{field}.{key}: realtime CPU time {NEEDS_V1} `cpu` controller")
    idle = i64(c, "idle", field)
    if idle is not None:
        d.write(f"{field}.idle", "cpu.idle", str(idle))
    shares = u64(c, "shares", field)
    if shares:
        if not 2 <= shares <= 262144:
            raise ConfigError(f"{field}.shares: {shares} is out of range [2, 262144]")
        d.write(f"{field}.shares", "cpu.weight", str(convert.shares_to_weight(shares)))
    quota = i64(c, "quota", field) or 0
    period = u64(c, "period", field) or 0
    burst = u64(c, "burst", field)
    if burst is not None and quota > 0 and burst > quota:
        raise ConfigError(f"{field}.burst: {burst} is larger than quota {quota}")
    if quota or period:
        d.write(f"{field}.quota" if quota else f"{field}.period", "cpu.max",
                convert.cpu_max(quota, period))
    if burst is not None:
        d.write(f"{field}.burst", "cpu.max.burst", str(burst))


def cpuset(c: dict[str, object], d: Dir, field: str) -> None:
    for key in ("cpus", "mems"):
        value = text(c, key, field)
        if value:
            d.write(f"{field}.{key}", f"cpuset.{key}", cpu_list(value, f"{field}.{key}"))


def pids(p: dict[str, object], d: Dir, field: str) -> None:
    limit = i64(p, "limit", field)
    if limit is not None:
        d.write(f"{field}.limit", "pids.max", convert.limit_text(limit))


def io(b: dict[str, object], d: Dir, field: str) -> None:
    bfq = d.exists("io.bfq.weight")
    weight = u16(b, "weight", field)
    if weight:
        if not 10 <= weight <= 1000:
            raise ConfigError(f"{field}.weight: {weight} is out of range [10, 1000]")
        if bfq:
            d.write(f"{field}.weight", "io.bfq.weight", str(weight))
        else:
            d.write(f"{field}.weight", "io.weight", str(convert.blkio_to_io_weight(weight)))
    if u16(b, "leafWeight", field):
        raise CgroupError(f"{field}.leafWeight: {NEEDS_V1} (CFQ)")
    for i, entry in enumerate(items(b.get("weightDevice"), f"{field}.weightDevice")):
        f = f"{field}.weightDevice[{i}]"
        dev = device_id(entry, f)
        if u16(entry, "leafWeight", f):
            raise CgroupError(f"{f}.leafWeight: {NEEDS_V1} (CFQ)")
        w = u16(entry, "weight", f)
        if w is None:
            raise ConfigError(f"{f}.weight: required on cgroup v2")
        if bfq:
            d.write(f"{f}.weight", "io.bfq.weight", f"{dev} {w}")
        else:
            d.write(f"{f}.weight", "io.weight", f"{dev} {convert.blkio_to_io_weight(w)}")
    for key, name in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                      ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
        for i, entry in enumerate(items(b.get(key), f"{field}.{key}")):
            f = f"{field}.{key}[{i}]"
            rate = u64(entry, "rate", f)
            if rate is None:
                raise ConfigError(f"{f}.rate: required")
            d.write(f, "io.max", f"{device_id(entry, f)} {name}={rate}")


def hugetlb(limits: object, d: Dir, field: str) -> None:
    for i, entry in enumerate(items(limits, field)):
        f = f"{field}[{i}]"
        name, limit = hugetlb_name(entry, f)
        if not d.exists(f"hugetlb.{name}.max"):
            raise missing_page_size(d, f, name, ".max")
        if d.exists(f"hugetlb.{name}.rsvd.max"):
            d.write(f"{f}.limit", f"hugetlb.{name}.rsvd.max", str(limit))
        d.write(f"{f}.limit", f"hugetlb.{name}.max", str(limit))


def rdma(r: object, d: Dir, field: str) -> None:
    for f, line in rdma_lines(r, field):
        d.write(f, "rdma.max", line)


def unified_key(key: str, field: str) -> str:
    """The controller a ``unified`` key belongs to (``memory.high`` -> ``memory``)."""
    ctrl, dot, rest = key.partition(".")
    if "/" in key or "\0" in key or key in (".", "..") or not dot or not ctrl or not rest:
        raise ConfigError(f"{field}[{key!r}]: must be a control file name like `memory.high` "
                          "(CONTROLLER.PARAMETER, no slashes)")
    return ctrl


def unified(u: dict[str, object], d: Dir, field: str, controllers: frozenset[str]) -> None:
    """Write each key/value as it is (spec: unknown keys MUST still be written)."""
    for key, value in u.items():
        f = f"{field}[{key!r}]"
        ctrl = unified_key(key, field)
        if not isinstance(value, str):
            raise ConfigError(f"{f}: {value!r} is not a string")
        if ctrl != "cgroup" and ctrl not in controllers:
            raise CgroupError(f"{f}: the `{ctrl}` controller is not available or not enabled "
                              f"for `{d.path}` (it has: {', '.join(sorted(controllers)) or 'none'})")
        d.write(f, key, value)
