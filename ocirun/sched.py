"""How a container process is scheduled: config.md "Linux Process".

* ``process.scheduler``: sched_setattr(2) policy, nice, priority, flags and
  the deadline triple (runtime, deadline, period);
* ``process.ioPriority``: ioprio_set(2) class and level;
* ``process.execCPUAffinity``: the CPUs a process joining a running
  container (``exec``) runs on, ``initial`` before it is moved into the
  container's cgroup and ``final`` after (runtime-spec PR 1253, runc 1.2).
  The spec says it does not apply to the container's init.  Like runc, a
  launch with no ``initial`` resets the affinity to every CPU first, so the
  container does not inherit the CPUs its caller happened to be pinned to.

Planning (parse, check, turn names into numbers) runs in the parent and
raises :class:`ConfigError` with the JSON path; the ``apply_*`` functions run
in the child (process/setup.py, process/intermediate.py) on those numbers.
The ``KNOWN_*`` tables are what the runtime recognises (features reads them).
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.errors import ConfigError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.syscalls.api import Syscalls

# sched(7) policies (linux/sched.h).  SCHED_ISO is in the spec but was never
# merged into Linux: recognised, and refused with that reason.
KNOWN_SCHED_POLICIES = {
    "SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3, "SCHED_ISO": 4,
    "SCHED_IDLE": 5, "SCHED_DEADLINE": 6,
}
KNOWN_SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
KNOWN_IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_IOPRIO_CLASS_SHIFT = 13
_RT_POLICIES = ("SCHED_FIFO", "SCHED_RR")
# The kernel's sched_deadline checks (__checkparam_dl): runtime of at least
# 2^DL_SCALE ns, and no value with the top bit set.
_DL_MIN_RUNTIME = 1 << 10
_DL_MAX = 1 << 63
# Highest CPU number a cpu list may name (CONFIG_NR_CPUS is at most 8192).
MAX_CPUS = 8192


class SchedPlan:
    """sched_setattr arguments, checked; ``text`` describes them for errors."""

    __slots__ = ("deadline", "flags", "nice", "period", "policy", "priority", "runtime",
                 "text")

    def __init__(self, policy: int, flags: int, nice: int, priority: int, runtime: int,
                 deadline: int, period: int, text: str) -> None:
        self.policy = policy
        self.flags = flags
        self.nice = nice
        self.priority = priority
        self.runtime = runtime
        self.deadline = deadline
        self.period = period
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SchedPlan) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        return f"SchedPlan({self.text})"


# --------------------------------------------------------------------------
# planning (parent)


def plan_scheduler(obj: dict[str, Any] | None, where: str) -> SchedPlan | None:
    """``process.scheduler`` -> :class:`SchedPlan`, with sched_setattr(2)'s rules."""
    if not obj:
        return None
    name = obj.get("policy")
    if name not in KNOWN_SCHED_POLICIES:
        raise ConfigError(f"config.json: {where}.policy: {name!r} is not one of "
                          f"{', '.join(KNOWN_SCHED_POLICIES)}")
    if name == "SCHED_ISO":
        raise ConfigError(f"config.json: {where}.policy: SCHED_ISO is reserved but not "
                          "implemented by Linux")
    nice = int(obj.get("nice") or 0)
    priority = int(obj.get("priority") or 0)
    runtime, deadline, period = (int(obj.get(k) or 0) for k in ("runtime", "deadline", "period"))
    flags = 0
    for i, f in enumerate(obj.get("flags") or ()):
        if f not in KNOWN_SCHED_FLAGS:
            raise ConfigError(f"config.json: {where}.flags[{i}]: unknown flag {f!r}")
        flags |= KNOWN_SCHED_FLAGS[f]
    if not -20 <= nice <= 19:
        raise ConfigError(f"config.json: {where}.nice: {nice} is outside -20..19")
    if name in _RT_POLICIES:
        if not 1 <= priority <= 99:
            raise ConfigError(f"config.json: {where}.priority: {name} needs a priority from "
                              f"1 to 99, not {priority}")
    elif priority:
        raise ConfigError(f"config.json: {where}.priority: only SCHED_FIFO and SCHED_RR take "
                          f"a priority; {name} needs 0")
    if name == "SCHED_DEADLINE":
        _check_deadline(runtime, deadline, period, where)
    elif runtime or deadline or period:
        raise ConfigError(f"config.json: {where}: runtime, deadline and period are for "
                          f"SCHED_DEADLINE only, not {name}")
    parts = [name]
    if nice:
        parts.append(f"nice {nice}")
    if priority:
        parts.append(f"priority {priority}")
    if name == "SCHED_DEADLINE":
        parts.append(f"runtime {runtime} deadline {deadline} period {period}")
    if flags:
        parts.append("flags " + "|".join(obj.get("flags") or ()))
    return SchedPlan(KNOWN_SCHED_POLICIES[name], flags, nice, priority, runtime, deadline,
                     period, ", ".join(parts))


def _check_deadline(runtime: int, deadline: int, period: int, where: str) -> None:
    for key, value in (("runtime", runtime), ("deadline", deadline), ("period", period)):
        if value >= _DL_MAX:
            raise ConfigError(f"config.json: {where}.{key}: {value} is too large (below 2^63)")
    if runtime < _DL_MIN_RUNTIME:
        raise ConfigError(f"config.json: {where}.runtime: SCHED_DEADLINE needs a runtime of at "
                          f"least {_DL_MIN_RUNTIME} ns, not {runtime}")
    if deadline < runtime:
        raise ConfigError(f"config.json: {where}.deadline: {deadline} is below the runtime "
                          f"{runtime} (runtime <= deadline <= period)")
    if period and period < deadline:
        raise ConfigError(f"config.json: {where}.period: {period} is below the deadline "
                          f"{deadline} (runtime <= deadline <= period)")


def plan_ioprio(obj: dict[str, Any] | None, where: str) -> tuple[int, str] | None:
    """``process.ioPriority`` -> (the ioprio value, a description)."""
    if not obj:
        return None
    cls = obj.get("class")
    if cls not in KNOWN_IOPRIO_CLASSES:
        raise ConfigError(f"config.json: {where}.class: {cls!r} is not one of "
                          f"{', '.join(KNOWN_IOPRIO_CLASSES)}")
    level = obj.get("priority")
    if not isinstance(level, int) or not 0 <= level <= 7:
        raise ConfigError(f"config.json: {where}.priority: {level!r}: give 0 (highest) to "
                          "7 (lowest)")
    return (KNOWN_IOPRIO_CLASSES[cls] << _IOPRIO_CLASS_SHIFT) | level, f"{cls} {level}"


def parse_cpu_list(text: str, where: str, *, limit: int = MAX_CPUS,
                   what: str = "CPU") -> tuple[int, ...]:
    """``0-3,7`` -> (0, 1, 2, 3, 7); the list format of cpuset(7)."""
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ConfigError(f"config.json: {where}: {text!r}: empty item in the list")
        lo, dash, hi = part.partition("-")
        try:
            a = int(lo.strip())
            b = int(hi.strip()) if dash else a
        except ValueError:
            raise ConfigError(f"config.json: {where}: {text!r}: {part!r} is not a number or "
                              "a range like 0-3") from None
        if a > b:
            raise ConfigError(f"config.json: {where}: {text!r}: range {part!r} runs backwards")
        if b >= limit:
            raise ConfigError(f"config.json: {where}: {text!r}: {what} {b} is out of range "
                              f"(at most {limit - 1})")
        out.update(range(a, b + 1))
    return tuple(sorted(out))


def plan_affinity(obj: dict[str, Any] | None,
                  where: str) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None] | None:
    """``process.execCPUAffinity`` -> (initial, final), each None when not set."""
    if not obj:
        return None
    host = os.cpu_count() or 1
    out: list[tuple[int, ...] | None] = []
    for key in ("initial", "final"):
        text = str(obj.get(key) or "").strip()
        if not text:
            out.append(None)
            continue
        cpus = parse_cpu_list(text, f"{where}.{key}")
        if not any(c < host for c in cpus):
            raise ConfigError(f"config.json: {where}.{key}: {text!r}: none of these CPUs exist "
                              f"on this host (CPUs 0-{host - 1})")
        out.append(cpus)
    if out == [None, None]:
        return None
    return out[0], out[1]


# --------------------------------------------------------------------------
# applying (child)


def all_cpus() -> tuple[int, ...]:
    return tuple(range(os.cpu_count() or 1))


def set_affinity(cpus: tuple[int, ...], what: str, sys: Syscalls) -> None:
    try:
        sys.sched_setaffinity(cpus)
    except OSError as e:
        raise SyscallError(f"{what}: sched_setaffinity to CPUs {_cpu_text(cpus)}: {e.strerror}",
                           errno=e.errno, stage="cpu_affinity") from e


def _cpu_text(cpus: tuple[int, ...]) -> str:
    return ",".join(str(c) for c in cpus) if len(cpus) < 16 else f"{cpus[0]}..{cpus[-1]}"


def apply_ioprio(value: int, text: str, sys: Syscalls) -> None:
    try:
        sys.ioprio_set(value)
    except OSError as e:
        hint = " (the realtime class needs CAP_SYS_ADMIN or CAP_SYS_NICE in the initial " \
               "user namespace)" if e.errno == 1 else ""
        raise SyscallError(f"process.ioPriority: ioprio_set({text}): {e.strerror}{hint}",
                           errno=e.errno, stage="io_priority") from e


def apply_scheduler(p: SchedPlan, sys: Syscalls) -> None:
    try:
        sys.sched_setattr(p.policy, p.flags, p.nice, p.priority, p.runtime, p.deadline,
                          p.period)
    except OSError as e:
        hint = ""
        if e.errno == 1:
            hint = (" (realtime and deadline policies, and a lower nice, need CAP_SYS_NICE in "
                    "the initial user namespace)")
        elif e.errno == 16:
            hint = " (the deadline bandwidth of this CPU set is used up)"
        raise SyscallError(f"process.scheduler: sched_setattr({p.text}): {e.strerror}{hint}",
                           errno=e.errno, stage="scheduler") from e
