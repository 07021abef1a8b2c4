"""cgroup v1 values expressed in cgroup v2 units (config-linux.md "Unified":
"the runtime MAY attempt a conversion").

The formulas are the ones runc and crun use, so a config moved between a v1
and a v2 host gives the same relative weights under either runtime:

* ``cpu.shares`` [2, 262144] -> ``cpu.weight`` [1, 10000]: linear, 2 -> 1,
  262144 -> 10000 (the default 1024 lands on 39, not on v2's default 100;
  that is what both runtimes do).
* ``blkio.weight`` [10, 1000] -> ``io.weight`` [1, 10000]: linear.
* memory+swap (v1 ``memsw``) -> ``memory.swap.max`` (swap alone): the
  difference, with -1 meaning "max".
"""

from __future__ import annotations

MAX = "max"


def shares_to_weight(shares: int) -> int:
    """v1 ``cpu.shares`` -> v2 ``cpu.weight``; 0 stays 0 (unset)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """v1 ``blkio.weight`` -> v2 ``io.weight``; 0 stays 0 (unset)."""
    if weight == 0:
        return 0
    return 1 + ((weight - 10) * 9999) // 990


def swap_to_v2(swap: int, limit: int) -> int:
    """v1 memory+swap limit -> v2 ``memory.swap.max`` (-1 = max, 0 = leave unset).

    Raises ValueError with a reason when the pair cannot be converted.
    """
    if limit == -1 and swap == 0:
        # v1 compatibility: "unlimited memory" also means unlimited swap.
        return -1
    if swap in (-1, 0):
        return swap
    if limit in (0, -1):
        raise ValueError("a swap limit needs a memory limit (cgroup v2 limits swap "
                         "separately: memory.swap.max = swap - limit)")
    if limit < 0:
        raise ValueError(f"invalid memory limit {limit}")
    if swap < limit:
        raise ValueError(f"swap {swap} must be at least the memory limit {limit} "
                         "(it is memory+swap)")
    return swap - limit


def limit_text(value: int) -> str:
    """A v2 limit file value: negative is ``max``."""
    return MAX if value < 0 else str(value)


def cpu_max(quota: int, period: int) -> str:
    """``cpu.max`` content: ``$QUOTA $PERIOD`` (``max`` for no quota); period 0 keeps the kernel's."""
    text = str(quota) if quota > 0 else MAX
    if period:
        text += f" {period}"
    return text


def page_size_bytes(size: str) -> int:
    """``2MB`` -> 2097152 (base 1024, config-linux.md "Huge page limits")."""
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
    num, unit = size[:-2], size[-2:].upper()
    if not num.isdigit() or unit not in units:
        raise ValueError(f"page size {size!r} is not <number><KB|MB|GB|TB>")
    return int(num) * units[unit]


def page_size_name(nbytes: int) -> str:
    """The kernel's name for a huge page size in control file names: 2097152 -> ``2MB``."""
    # mm/hugetlb_cgroup.c mem_fmt(): the largest unit the size reaches.
    for unit, shift in (("GB", 30), ("MB", 20)):
        if nbytes >= 1 << shift:
            return f"{nbytes >> shift}{unit}"
    return f"{nbytes >> 10}KB"
