"""NUMA memory policy of the container's processes: config-linux.md "Memory policy".

``linux.memoryPolicy`` (mode, nodes, flags) becomes one set_mempolicy(2)
call in the process step of the init and of every ``exec``'d process (the
policy is per task, inherited across fork and execve).  The parent checks
the combination with set_mempolicy(2)'s rules, so a bad one fails before
anything is created, naming the field:

* MPOL_DEFAULT and MPOL_LOCAL take no nodes, and neither the static nor the
  relative flag;
* MPOL_BIND, MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE and
  MPOL_PREFERRED_MANY need at least one node; MPOL_PREFERRED without nodes
  means "local" and then takes no static/relative flag;
* MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other;
  MPOL_F_NUMA_BALANCING goes with MPOL_BIND or MPOL_PREFERRED_MANY only;
* node numbers stay below the kernel's largest MAX_NUMNODES (1024), and
  (unless relative) at least one of them must be a node of this host.

An empty object asks for nothing (runc does the same).
"""

from __future__ import annotations

from ocirun.errors import ConfigError, SyscallError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.syscalls.api import Syscalls

# linux/mempolicy.h
KNOWN_MPOL_MODES = {
    "MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
    "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6,
}
KNOWN_MPOL_FLAGS = {
    "MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
    "MPOL_F_STATIC_NODES": 1 << 15,
}
MAX_NUMNODES = 1024
NODES_ONLINE = "/sys/devices/system/node/online"

_NO_NODES = ("MPOL_DEFAULT", "MPOL_LOCAL")
_NEED_NODES = ("MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY")
_BALANCING = ("MPOL_BIND", "MPOL_PREFERRED_MANY")


class MemPolicyPlan:
    """set_mempolicy arguments: the mode with its flags, the nodes, a description."""

    __slots__ = ("mode", "nodes", "text")

    def __init__(self, mode: int, nodes: tuple[int, ...], text: str) -> None:
        self.mode = mode
        self.nodes = nodes
        self.text = text

    def __repr__(self) -> str:
        return f"MemPolicyPlan({self.text})"


def online_nodes(path: str = NODES_ONLINE) -> tuple[int, ...] | None:
    """This host's online memory nodes; None when the kernel has no NUMA."""
    from ocirun.sched import parse_cpu_list
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except OSError:
        return None
    try:
        return parse_cpu_list(text, path, limit=MAX_NUMNODES, what="node") if text else ()
    except ConfigError:
        return None


def plan_mempolicy(obj: dict[str, Any] | None, where: str = "$.linux.memoryPolicy", *,
                   online: tuple[int, ...] | None = None) -> MemPolicyPlan | None:
    if not obj:
        return None
    from ocirun.sched import parse_cpu_list
    mode = obj.get("mode")
    if mode is None:
        raise ConfigError(f"config.json: {where}.mode: required (one of "
                          f"{', '.join(KNOWN_MPOL_MODES)})")
    if mode not in KNOWN_MPOL_MODES:
        raise ConfigError(f"config.json: {where}.mode: invalid memory policy mode {mode!r} "
                          f"(one of {', '.join(KNOWN_MPOL_MODES)})")
    names = list(obj.get("flags") or ())
    flags = 0
    for i, f in enumerate(names):
        if f not in KNOWN_MPOL_FLAGS:
            raise ConfigError(f"config.json: {where}.flags[{i}]: invalid memory policy flag "
                              f"{f!r} (one of {', '.join(KNOWN_MPOL_FLAGS)})")
        flags |= KNOWN_MPOL_FLAGS[f]
    text = str(obj.get("nodes") or "").strip()
    nodes = parse_cpu_list(text, f"{where}.nodes", limit=MAX_NUMNODES,
                           what="memory node") if text else ()
    static = "MPOL_F_STATIC_NODES" in names
    relative = "MPOL_F_RELATIVE_NODES" in names
    if static and relative:
        raise ConfigError(f"config.json: {where}.flags: MPOL_F_STATIC_NODES and "
                          "MPOL_F_RELATIVE_NODES exclude each other")
    if "MPOL_F_NUMA_BALANCING" in names and mode not in _BALANCING:
        raise ConfigError(f"config.json: {where}.flags: MPOL_F_NUMA_BALANCING goes with "
                          f"MPOL_BIND or MPOL_PREFERRED_MANY, not {mode}")
    if mode in _NO_NODES:
        if nodes:
            raise ConfigError(f"config.json: {where}.nodes: {mode} takes no nodes")
        if static or relative:
            raise ConfigError(f"config.json: {where}.flags: {mode} takes no static or relative "
                              "nodes flag")
    elif not nodes:
        if mode in _NEED_NODES:
            raise ConfigError(f"config.json: {where}.nodes: {mode} needs at least one node")
        if static or relative:
            raise ConfigError(f"config.json: {where}.flags: MPOL_PREFERRED without nodes "
                              "(local allocation) takes no static or relative nodes flag")
    if nodes and not relative:
        have = online_nodes() if online is None else online
        if have is not None and not set(nodes) & set(have):
            shown = ",".join(map(str, have)) or "none"
            raise ConfigError(f"config.json: {where}.nodes: {text!r}: none of these memory "
                              f"nodes exist on this host (online: {shown})")
    desc = mode + (f" nodes {text}" if text else "") + ("".join(" " + n for n in names))
    return MemPolicyPlan(KNOWN_MPOL_MODES[mode] | flags, nodes, desc)


def apply_mempolicy(p: MemPolicyPlan, sys: Syscalls) -> None:
    try:
        sys.set_mempolicy(p.mode, p.nodes)
    except OSError as e:
        hint = " (this kernel has no NUMA support)" if e.errno == 38 else ""
        raise SyscallError(f"linux.memoryPolicy: set_mempolicy({p.text}): {e.strerror}{hint}",
                           errno=e.errno, stage="memory_policy") from e


def features() -> dict[str, list[str]]:
    """features-linux.md "MemoryPolicy": every mode and flag recognised here."""
    return {"modes": list(KNOWN_MPOL_MODES), "flags": list(KNOWN_MPOL_FLAGS)}
