"""Resource limits and OOM score: config.md "POSIX process" ``process.rlimits``
and config-linux.md / config.md ``process.oomScoreAdj``.

The spec: each ``type`` maps to a kernel RLIMIT_*; an unknown one or the same
type twice is an error; afterwards getrlimit(2) must report exactly ``soft``
as rlim_cur and ``hard`` as rlim_max.  Limits are set in the init while it is
still privileged (raising a hard limit needs CAP_SYS_RESOURCE).

``oomScoreAdj``: written to /proc/<pid>/oom_score_adj only when set; when
absent the file must not be touched.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)
import resource

from ocirun.errors import ConfigError, SyscallError, oserror_text

# include/uapi/asm-generic/resource.h (same numbers on every Linux arch the
# project targets).
RLIMITS: dict[str, int] = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}

# The config carries limits as uint64 and writes "unlimited" as 2^64-1, but
# Python's resource module takes signed 64-bit values and spells it -1.
_UINT64_MAX = (1 << 64) - 1
_INT64_MAX = (1 << 63) - 1


def _to_rlim(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > _UINT64_MAX:
        raise ConfigError(f"{where}: {value!r} is not an unsigned 64-bit integer")
    if value == _UINT64_MAX:
        return resource.RLIM_INFINITY
    if value > _INT64_MAX:
        raise ConfigError(f"{where}: {value} cannot be set (values above 2^63-1 other than "
                          f"2^64-1 for unlimited are not supported)")
    return value


def check_rlimits(rlimits: list[dict[str, object]], base: str = "process.rlimits"
                  ) -> list[tuple[int, int, int]]:
    """Validate ``process.rlimits`` (pure) and return ``(resource, soft, hard)``
    triples ready for setrlimit.  Meant for the parent, before any fork."""
    plan: list[tuple[int, int, int]] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(rlimits):
        where = f"{base}[{i}]"
        kind = entry.get("type")
        if not isinstance(kind, str) or kind not in RLIMITS:
            raise ConfigError(f"{where}: unknown rlimit type `{kind}` "
                              f"(expected one of RLIMIT_CPU, RLIMIT_NOFILE, ...)")
        if kind in seen:
            raise ConfigError(f"{where}: `{kind}` is already set by {base}[{seen[kind]}]")
        seen[kind] = i
        soft = _to_rlim(entry.get("soft"), f"{where}.soft")
        hard = _to_rlim(entry.get("hard"), f"{where}.hard")
        # The kernel refuses soft > hard with EINVAL; say so before forking.
        if hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard):
            raise ConfigError(f"{where}: soft limit {entry.get('soft')} of `{kind}` is above "
                              f"its hard limit {entry.get('hard')}")
        plan.append((RLIMITS[kind], soft, hard))
    return plan


def plan_rlimits(rlimits: list[dict[str, object]], base: str = "process.rlimits"
                 ) -> tuple[tuple[int, int, int, str], ...]:
    """check_rlimits plus each entry's name: what a ProcessPlan carries."""
    return tuple((res, soft, hard, str(entry.get("type")))
                 for (res, soft, hard), entry in zip(check_rlimits(rlimits, base), rlimits))


def apply_rlimits(limits: tuple[tuple[int, int, int, str], ...]) -> None:
    """Set every planned limit on the calling process (in the child)."""
    for i, (res, soft, hard, name) in enumerate(limits):
        try:
            resource.setrlimit(res, (soft, hard))
        except (OSError, ValueError) as e:
            text = oserror_text(e) if isinstance(e, OSError) else str(e)
            shown = ["unlimited" if v == resource.RLIM_INFINITY else v for v in (soft, hard)]
            raise SyscallError(f"setrlimit `{name}` (process.rlimits[{i}]) "
                               f"soft={shown[0]} hard={shown[1]}: {text}",
                               errno=getattr(e, "errno", None), stage="rlimits") from e


def apply_oom_score_adj(value: int | None, *, path: str = "/proc/self/oom_score_adj") -> None:
    """Write ``process.oomScoreAdj`` when it is set; do nothing when it is None.

    Lowering the score needs CAP_SYS_RESOURCE, so call this before dropping
    capabilities.
    """
    if value is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(int(value)).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"write `{value}` to `{path}` (process.oomScoreAdj): {oserror_text(e)}",
                           errno=e.errno, stage="oom_score_adj") from e
