"""Intel RDT through the resctrl filesystem: config-linux.md "IntelRdt".

The container's processes go into a resctrl group (a directory of the
mounted resctrl filesystem; kernel Documentation/arch/x86/resctrl.rst):

* the group is ``closID`` (``/`` is the root group, the default CLOS), or
  the container id when ``closID`` is not set;
* schemata lines are written in the spec's order: ``l3CacheSchema``, then
  ``memBwSchema``, then the ``schemata`` array;
* an existing ``closID`` group with schemata configured must already hold
  them (the spec: compare, and fail when they differ); an existing one
  without schemata is joined as it is; a missing one without schemata is an
  error (nothing says what it should hold);
* ``enableMonitoring``: a MON group ``mon_groups/<container-id>`` under it;
* delete removes the MON group, and the group itself only when the runtime
  made it (no ``closID``).

Everything that can be checked without changing the host is checked by
:func:`plan_rdt` in the parent before any fork, with the JSON path: no
resctrl mounted here (the spec: an error), bad lines, a missing or
differing ``closID`` group, no monitoring support.  ``root`` is a parameter
everywhere so that tests apply it to a fixture directory.
"""

from __future__ import annotations

import errno
import os

from ocirun.errors import ConfigError, OciRunError

MOUNTINFO = "/proc/self/mountinfo"
W = "$.linux.intelRdt"
# Names the kernel keeps for itself in a resctrl directory.
_RESERVED = frozenset({"info", "mon_groups", "mon_data", "tasks", "cpus", "cpus_list", "mode",
                       "schemata", "size", "."})


def find_mount(mountinfo: str = MOUNTINFO) -> str | None:
    """Mount point of the first resctrl filesystem in this mount namespace."""
    from ocirun.procfs import read_mountinfo
    try:
        infos = read_mountinfo(mountinfo)
    except OSError:
        return None
    for mi in infos:
        if mi.fstype == "resctrl":
            return mi.mount_point
    return None


class RdtPlan:
    """Where the container goes and what is written there (all checked)."""

    __slots__ = ("create", "group", "lines", "mon", "remove")

    def __init__(self, group: str, lines: tuple[str, ...], mon: str | None, create: bool,
                 remove: bool) -> None:
        self.group = group  # the CTRL_MON group's directory
        self.lines = lines  # schemata lines, in the order they are written
        self.mon = mon  # the MON group's directory, or None
        self.create = create  # the group does not exist yet
        self.remove = remove  # delete removes the group (the runtime named it)

    def __repr__(self) -> str:
        return f"RdtPlan(group={self.group!r}, lines={self.lines!r}, mon={self.mon!r})"


def _norm(line: str) -> str:
    return "".join(line.split())


def _current_schemata(group: str) -> set[str]:
    try:
        with open(os.path.join(group, "schemata"), encoding="utf-8") as f:
            return {_norm(ln) for ln in f if ln.strip()}
    except OSError as e:
        raise ConfigError(f"config.json: {W}.closID: cannot read `{group}/schemata`: "
                          f"{e.strerror}") from None


def plan_rdt(obj: dict[str, object], cid: str, *, root: str | None = None) -> RdtPlan:
    """Check ``linux.intelRdt`` against this host (resctrl mounted at ``root``)."""
    lines: list[str] = []
    for key in ("l3CacheSchema", "memBwSchema"):
        value = obj.get(key)
        if value:
            lines.append(_line(str(value), f"{W}.{key}"))
    if obj.get("memBwSchema") and not str(obj["memBwSchema"]).startswith("MB:"):
        raise ConfigError(f"config.json: {W}.memBwSchema: must start with `MB:`")
    schemata = obj.get("schemata") or []
    assert isinstance(schemata, list)
    for i, value in enumerate(schemata):
        lines.append(_line(str(value), f"{W}.schemata[{i}]"))
    closid = obj.get("closID")
    if closid is not None:
        closid = str(closid)
        if closid != "/" and (not closid or "/" in closid or closid in _RESERVED
                              or closid == ".."):
            raise ConfigError(f"config.json: {W}.closID: {closid!r} is not a group name "
                              "(one directory name, or `/` for the default group)")
    if root is None:
        root = find_mount()
    if root is None:
        raise ConfigError(f"config.json: {W}: no resctrl filesystem is mounted in the runtime's "
                          "mount namespace (this host has no Intel RDT, or it is not mounted: "
                          "mount -t resctrl resctrl /sys/fs/resctrl)")
    group = root if closid == "/" else os.path.join(root, closid or cid)
    exists = os.path.isdir(group)
    if closid is not None:
        if not exists and not lines:
            raise ConfigError(f"config.json: {W}.closID: resctrl group `{group}` does not exist "
                              "(give schemata to create it, or create it beforehand)")
        if exists and lines:
            have = _current_schemata(group)
            differ = [ln for ln in lines if _norm(ln) not in have]
            if differ:
                raise ConfigError(f"config.json: {W}: resctrl group `{group}` exists with other "
                                  f"schemata than {', '.join(repr(d) for d in differ)}")
            lines = []  # nothing to write: they are already there
    elif exists:
        raise ConfigError(f"config.json: {W}: resctrl group `{group}` (named after the container) "
                          "already exists")
    mon = None
    if obj.get("enableMonitoring"):
        if not os.path.isdir(os.path.join(root, "info", "L3_MON")):
            raise ConfigError(f"config.json: {W}.enableMonitoring: resctrl here has no "
                              f"monitoring (no `{root}/info/L3_MON`)")
        mon = os.path.join(group, "mon_groups", cid)
        if os.path.lexists(mon):
            raise ConfigError(f"config.json: {W}.enableMonitoring: MON group `{mon}` already "
                              "exists")
    return RdtPlan(group, tuple(lines), mon, create=not exists, remove=closid is None)


def _line(value: str, where: str) -> str:
    if "\n" in value:
        raise ConfigError(f"config.json: {where}: must not contain a newline")
    if not value.strip():
        raise ConfigError(f"config.json: {where}: empty schemata line")
    return value


# --------------------------------------------------------------------------
# applying (the runtime, around the launch)


def _err(what: str, e: OSError) -> OciRunError:
    return OciRunError(f"linux.intelRdt: {what}: {e.strerror}", errno=e.errno)


def setup(p: RdtPlan) -> None:
    """Make the group (when planned so), write the schemata, make the MON group."""
    made = False
    if p.create:
        try:
            os.mkdir(p.group, 0o755)
            made = True
        except OSError as e:
            raise _err(f"create resctrl group `{p.group}`", e) from e
    try:
        if p.lines:
            _write(os.path.join(p.group, "schemata"), "\n".join(p.lines) + "\n",
                   "write schemata of")
        if p.mon is not None:
            try:
                os.mkdir(p.mon, 0o755)
            except OSError as e:
                hint = " (the number of MON groups is used up)" if e.errno == errno.ENOSPC else ""
                raise OciRunError(f"linux.intelRdt.enableMonitoring: create MON group "
                                  f"`{p.mon}`: {e.strerror}{hint}", errno=e.errno) from e
    except BaseException:
        if made:
            _rmdir(p.group)
        raise


def _write(path: str, text: str, what: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        # resctrl explains a refused line in info/last_cmd_status.
        detail = ""
        try:
            root = path.rsplit("/", 2)[0]
            for base in (root, os.path.dirname(root)):
                status = os.path.join(base, "info", "last_cmd_status")
                if os.path.exists(status):
                    with open(status, encoding="utf-8") as f:
                        detail = " (" + f.read().strip() + ")"
                    break
        except OSError:
            pass
        raise _err(f"{what} `{os.path.dirname(path)}`{detail}", e) from e


def add(p: RdtPlan, pid: int) -> None:
    """Put ``pid`` in the group, then in its MON group (which needs it in the group)."""
    _write(os.path.join(p.group, "tasks"), str(pid), f"add pid {pid} to")
    if p.mon is not None:
        _write(os.path.join(p.mon, "tasks"), str(pid), f"add pid {pid} to")


def _rmdir(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def destroy(p: RdtPlan) -> None:
    """The MON group always; the group only when the runtime named it."""
    if p.mon is not None:
        _rmdir(p.mon)
    if p.remove and p.create:
        _rmdir(p.group)


# A record in the container's state dir, so delete and exec need not plan again.

def record(p: RdtPlan) -> str:
    return f"group {int(p.remove and p.create)} {p.group}\nmon {p.mon or ''}\n"


def from_record(text: str) -> RdtPlan:
    group_line, mon_line = (text.splitlines() + ["", ""])[:2]
    _, remove, group = group_line.split(" ", 2)
    mon = mon_line.partition(" ")[2] or None
    return RdtPlan(group, (), mon, create=remove == "1", remove=remove == "1")


def features() -> dict[str, bool]:
    """features-linux.md "IntelRdt": what the runtime implements (the spec: not
    whether this host has resctrl; ``plan_rdt`` says that, naming the field)."""
    return {"enabled": True, "schemata": True, "monitoring": True}
