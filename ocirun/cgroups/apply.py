"""Route each part of ``linux.resources`` to the hierarchy that can apply it
(config-linux.md "Control groups", runtime.md "Errors").

Per resource the controller is taken from a cgroup v1 hierarchy when one is
mounted for it, otherwise from the unified hierarchy when it offers the
controller (enabling it down to the container's cgroup), otherwise the
resource is an error naming the field and what the host lacks.  So one
config works on all three layouts: pure v1, hybrid (this is how a hybrid
host gets hugetlb, which only its unified mount has) and pure v2.

Fields whose value asks for nothing (0, "", false, [] where the spec or runc
read them as "unset") never make a controller necessary.
"""

from __future__ import annotations

from ocirun.cgroups import res_v1, res_v2
from ocirun.cgroups.target import Dir, mapping
from ocirun.errors import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.cgroups.paths import Hierarchy
    from ocirun.cgroups.v2 import Hierarchy2
    from ocirun.syscalls.api import Syscalls

CPUSET_KEYS = ("cpus", "mems")
# 0 is a real value for these (pids.limit: spec v1.3.0; swappiness 0 means "never swap").
ZERO_MEANS_SOMETHING = frozenset({"limit@pids", "swappiness@memory"})


def wants(value: object, key: str = "", group: str = "") -> bool:
    """True when ``value`` asks the kernel for something."""
    if value is None or value is False or value == "":
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return value != 0 or f"{key}@{group}" in ZERO_MEANS_SOMETHING
    if isinstance(value, dict):
        return any(wants(v, str(k), group) for k, v in value.items())
    if isinstance(value, list):
        return bool(value)
    return True


class Router:
    """The hierarchies of one container, by version and v1 controller."""

    __slots__ = ("v1", "v2", "warn")

    def __init__(self, hierarchies: list[Hierarchy], warn: Callable[[str], None]) -> None:
        from ocirun.cgroups.v2 import Hierarchy2
        self.v1: dict[str, str] = {}
        self.v2: Hierarchy2 | None = None
        self.warn = warn
        for h in hierarchies:
            if isinstance(h, Hierarchy2):
                self.v2 = h
            else:
                for k in h.keys:
                    self.v1[k] = h.path

    def layout(self) -> str:
        if self.v2 is None:
            return "cgroup v1 only (legacy)"
        return "hybrid (cgroup v1 controllers plus a unified mount)" if self.v1 else \
            "cgroup v2 only (unified)"

    def dir_for(self, v1_ctrl: str, v2_ctrl: str | None, field: str) -> Dir:
        if v1_ctrl in self.v1:
            return Dir(self.v1[v1_ctrl], 1, self.warn)
        if self.v2 is not None and v2_ctrl is not None:
            if v2_ctrl in self.v2.controllers():
                return Dir(self.v2.path, 2, self.warn)
            if v2_ctrl in self.v2.offered():
                try:
                    self.v2.enable(frozenset({v2_ctrl}))
                except CgroupError as e:
                    raise CgroupError(f"{field}: {e}", errno=e.errno) from e
                return Dir(self.v2.path, 2, self.warn)
        if v2_ctrl is None and self.v2 is not None and not self.v1:
            raise CgroupError(f"{field}: the `{v1_ctrl}` controller exists only in cgroup v1, "
                              f"and this host is {self.layout()}")
        where = [f"no cgroup v1 `{v1_ctrl}` hierarchy is mounted"]
        if self.v2 is not None and v2_ctrl is not None:
            where.append(f"the unified hierarchy at `{self.v2.mount_root()}` does not offer "
                         f"`{v2_ctrl}`")
        raise CgroupError(f"{field}: needs the `{v1_ctrl}` cgroup controller, which this host "
                          f"lacks ({'; '.join(where)}; layout: {self.layout()})")


def apply_resources(hierarchies: list[Hierarchy], resources: dict[str, object] | None, *,
                    sys: Syscalls | None = None, prefix: str = "linux.resources",
                    update: bool = False, warn: Callable[[str], None] | None = None,
                    devices: bool = True) -> None:
    """Write every resource; raise on the first that cannot be applied.
    ``devices=False``: no device rules (rootless: ocirun/rootless.py)."""
    res = mapping(resources, prefix)
    r = Router(hierarchies, warn or (lambda _m: None))

    def part(key: str) -> dict[str, object]:
        return mapping(res.get(key), f"{prefix}.{key}")

    cpu = part("cpu")
    cpuset_part = {k: v for k, v in cpu.items() if k in CPUSET_KEYS}
    cpu_part = {k: v for k, v in cpu.items() if k not in CPUSET_KEYS}
    field = f"{prefix}.cpu"
    if wants(cpuset_part, group="cpu"):
        d = r.dir_for("cpuset", "cpuset", field)
        (res_v1.cpuset if d.version == 1 else res_v2.cpuset)(cpuset_part, d, field)
    if not update and devices:
        _devices(r, res.get("devices"), f"{prefix}.devices", sys)
    memory = part("memory")
    if wants(memory, group="memory"):
        field = f"{prefix}.memory"
        d = r.dir_for("memory", "memory", field)
        (res_v1.memory if d.version == 1 else res_v2.memory)(memory, d, field, update=update)
    if wants(cpu_part, group="cpu"):
        d = r.dir_for("cpu", "cpu", field := f"{prefix}.cpu")
        (res_v1.cpu if d.version == 1 else res_v2.cpu)(cpu_part, d, field)
    pids = part("pids")
    if wants(pids, group="pids"):
        d = r.dir_for("pids", "pids", field := f"{prefix}.pids")
        (res_v1.pids if d.version == 1 else res_v2.pids)(pids, d, field)
    blkio = part("blockIO")
    if wants(blkio, group="blockIO"):
        d = r.dir_for("blkio", "io", field := f"{prefix}.blockIO")
        (res_v1.blkio if d.version == 1 else res_v2.io)(blkio, d, field)
    huge = res.get("hugepageLimits")
    if wants(huge):
        d = r.dir_for("hugetlb", "hugetlb", field := f"{prefix}.hugepageLimits")
        (res_v1.hugetlb if d.version == 1 else res_v2.hugetlb)(huge, d, field)
    net = part("network")
    field = f"{prefix}.network"
    if wants(net.get("classID")):
        res_v1.net_cls(net, r.dir_for("net_cls", None, field + ".classID"), field)
    if wants(net.get("priorities")):
        res_v1.net_prio(net, r.dir_for("net_prio", None, field + ".priorities"), field)
    rdma = part("rdma")
    if wants(rdma):
        d = r.dir_for("rdma", "rdma", field := f"{prefix}.rdma")
        (res_v1.rdma if d.version == 1 else res_v2.rdma)(rdma, d, field)
    unified = part("unified")
    if unified:
        _unified(r, unified, f"{prefix}.unified")


def _devices(r: Router, rules: object, field: str, sys: Syscalls | None) -> None:
    from ocirun.cgroups import devices
    from ocirun.cgroups.target import items
    lst = items(rules, field)
    if "devices" in r.v1:
        devices.apply_v1(r.v1["devices"], lst, field)
    elif r.v2 is not None:
        if sys is None:
            from ocirun.syscalls.linux import LinuxSyscalls
            sys = LinuxSyscalls()
        devices.apply_v2(r.v2.path, lst, sys, field)
    elif lst:
        raise CgroupError(f"{field}: no cgroup v1 `devices` hierarchy and no unified "
                          "hierarchy to attach a device filter to")


def _unified(r: Router, values: dict[str, object], field: str) -> None:
    if r.v2 is None:
        raise CgroupError(f"{field}: cgroup v2 values need a unified hierarchy, and this "
                          f"host is {r.layout()}")
    need = {res_v2.unified_key(k, field) for k in values} - {"cgroup"}
    have = r.v2.controllers()
    missing = frozenset(need - have)
    if missing:
        offered = r.v2.offered()
        absent = sorted(missing - offered)
        if absent:
            raise CgroupError(f"{field}: the {', '.join(f'`{c}`' for c in absent)} "
                              f"controller{'s are' if len(absent) > 1 else ' is'} not available "
                              f"on the unified hierarchy at `{r.v2.mount_root()}` "
                              f"(it offers: {', '.join(sorted(offered)) or 'none'})")
        try:
            r.v2.enable(missing)
        except CgroupError as e:
            raise CgroupError(f"{field}: {e}", errno=e.errno) from e
        have = r.v2.controllers()
    res_v2.unified(values, Dir(r.v2.path, 2, r.warn), field, have)
