"""Network devices moved into the container: config-linux.md "Network Devices".

Each ``linux.netDevices`` entry names a device of the runtime's network
namespace; it is moved into the container's network namespace, renamed to
``name`` when given (a ``%d`` template lets the kernel pick a free number),
its permanent addresses of global scope are put back (the kernel drops
addresses when a device changes namespace), and it is set up.  The MTU, MAC
address and other device attributes travel with the device.

When: by the runtime, once the container's init exists (its network
namespace is ``/proc/<pid>/ns/net``) and before the init may go on
(``cgroup_ready``), so sysctls, hooks and the process all see the device.

Delete does not move anything back (the spec: the runtime MUST NOT): the
namespace's owner does.  When a container's own network namespace is freed,
the kernel returns physical devices to the initial namespace and destroys
virtual ones (veth, macvlan ...); a joined namespace keeps them.  A failed
create is different: what was moved is moved back, renamed back and with
its addresses, so the host is as it was.

Netlink through pyroute2 (a well-kept library, already packaged for Debian
and on PyPI) rather than hand-written rtnetlink messages, and rather than
running ``ip`` per step (a process per call, text output to parse).  It is
imported only when a config has netDevices: it costs ~0.2 s to import.  Its
netns helpers fork a process per socket; instead the runtime enters the
container's network namespace for the one call that opens a socket there
(setns through the seam) and comes straight back: the socket stays bound to
the namespace it was opened in.
"""

from __future__ import annotations

import os

from ocirun.errors import ConfigError, OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.syscalls.api import Syscalls

W = "$.linux.netDevices"
IFNAMSIZ = 16  # with the terminating NUL
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
CLONE_NEWNET = 0x40000000


class NetDevPlan:
    """(host name, name in the container) pairs, checked."""

    __slots__ = ("devices",)

    def __init__(self, devices: tuple[tuple[str, str], ...]) -> None:
        self.devices = devices

    def __repr__(self) -> str:
        return f"NetDevPlan({self.devices!r})"


def _check_name(name: str, where: str, template: bool) -> None:
    bad = (not name or len(name.encode()) >= IFNAMSIZ or name in (".", "..")
           or any(c in name for c in "/: \t\n") or (not template and "%" in name))
    if template and name.count("%") > (1 if "%d" in name else 0):
        bad = True
    if bad:
        raise ConfigError(f"config.json: {where}: {name!r} is not a valid network device name "
                          f"(1 to {IFNAMSIZ - 1} bytes, no '/', ':' or spaces"
                          f"{', one %d template' if template else ''})")


def plan_netdevices(devs: dict[str, Any], spec: dict[str, Any]) -> NetDevPlan:
    """Check ``linux.netDevices`` before anything is created (the spec: the
    runtime MUST check that moving is possible)."""
    from importlib.util import find_spec

    from ocirun.errors import NotSupportedError
    from ocirun.procfs import same_ns
    if find_spec("pyroute2") is None:
        raise NotSupportedError(f"config.json: {W}: moving network devices needs the pyroute2 "
                                "package beside ocirun (pip install pyroute2)")
    netns = next((n for n in (spec.get("linux") or {}).get("namespaces") or []
                  if n.get("type") == "network"), None)
    if netns is None or (netns.get("path") and same_ns(str(netns["path"]), "/proc/self/ns/net")):
        raise ConfigError(f"config.json: {W}: moving network devices needs a network namespace "
                          "of the container's own (add {\"type\": \"network\"} to "
                          "$.linux.namespaces)")
    out: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for host, entry in devs.items():
        where = f'{W}["{host}"]'
        _check_name(host, where, template=False)
        new = str((entry or {}).get("name") or host)
        _check_name(new, f"{where}.name", template=True)
        if "%" not in new:
            if new in seen:
                raise ConfigError(f"config.json: {where}.name: `{new}` is also the name of "
                                  f'{W}["{seen[new]}"]')
            seen[new] = host
            if new == "lo" and not netns.get("path"):
                raise ConfigError(f"config.json: {where}.name: `lo` already exists in a new "
                                  "network namespace")
        try:
            import _socket
            _socket.if_nametoindex(host)
        except OSError:
            raise ConfigError(f"config.json: {where}: no network device `{host}` in the "
                              "runtime's network namespace") from None
        out.append((host, new))
    return NetDevPlan(tuple(out))


# --------------------------------------------------------------------------
# moving (the runtime, at P3)


def _fail(what: str, e: Exception) -> OciRunError:
    err = getattr(e, "code", None) if not isinstance(e, OSError) else e.errno
    text = e.strerror if isinstance(e, OSError) and e.strerror else (
        os.strerror(err) if isinstance(err, int) and err > 0 else str(e))
    return OciRunError(f"linux.netDevices: {what}: {text}",
                       errno=err if isinstance(err, int) else None)


def _ipr_in(ns_fd: int, sys: Syscalls) -> Any:
    """An IPRoute whose socket lives in network namespace ``ns_fd``."""
    from pyroute2 import IPRoute
    here = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sys.setns(ns_fd, CLONE_NEWNET)
        try:
            return IPRoute()
        finally:
            sys.setns(here, CLONE_NEWNET)
    finally:
        os.close(here)


def _kept_addresses(ipr: Any, index: int) -> list[dict[str, Any]]:
    """Permanent addresses of global scope, as arguments for ``addr('add')``."""
    out = []
    for msg in ipr.get_addr(index=index):
        flags = msg.get_attr("IFA_FLAGS")
        if flags is None:
            flags = msg["flags"]
        if not flags & IFA_F_PERMANENT or msg["scope"] != RT_SCOPE_UNIVERSE:
            continue
        args: dict[str, Any] = {"family": msg["family"], "prefixlen": msg["prefixlen"]}
        local = msg.get_attr("IFA_LOCAL")
        address = msg.get_attr("IFA_ADDRESS")
        args["address"] = address or local
        if local and address and local != address:
            args["local"] = local
        bcast = msg.get_attr("IFA_BROADCAST")
        if bcast:
            args["broadcast"] = bcast
        out.append(args)
    return out


def _indexes(ipr: Any) -> dict[int, str]:
    return {int(m["index"]): str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()}


class Mover:
    """Moves the planned devices into one network namespace; can undo it."""

    def __init__(self, plan: NetDevPlan, pid: int, sys: Syscalls) -> None:
        self.plan = plan
        self.sys = sys
        self.moved: list[tuple[str, str, list[dict[str, Any]]]] = []  # (host, now, addrs)
        self.target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self.here_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        self.errors: tuple[type[Exception], ...] = (OSError, NetlinkError)
        self.here: Any = None
        self.there: Any = None
        try:
            self.here = IPRoute()
            self.there = _ipr_in(self.target, sys)
        except BaseException:
            self.close()
            raise

    def move_all(self) -> None:
        for host, new in self.plan.devices:
            self._move(host, new)

    def _move(self, host: str, new: str) -> None:
        where = f'{W}["{host}"]'
        found = self.here.link_lookup(ifname=host)
        if not found:
            raise OciRunError(f"linux.netDevices: {where}: no network device `{host}` in the "
                              "runtime's network namespace")
        index = found[0]
        addrs = _kept_addresses(self.here, index)
        before = _indexes(self.there)
        if "%" not in new and new in before.values():
            raise OciRunError(f"linux.netDevices: {where}.name: a device `{new}` already "
                              "exists in the container's network namespace")
        try:
            # rename and move in one request: no window with a clashing name
            self.here.link("set", index=index, net_ns_fd=self.target, ifname=new)
        except self.errors as e:  # pyroute2's NetlinkError carries the errno as .code
            raise _fail(f"move `{host}` into the container's network namespace as `{new}`",
                        e) from e
        after = _indexes(self.there)
        fresh = [(i, n) for i, n in after.items() if before.get(i) != n]
        nidx, now = fresh[0] if len(fresh) == 1 else next(
            (i, n) for i, n in after.items() if n == new)
        self.moved.append((host, now, addrs))
        try:
            for a in addrs:
                self.there.addr("add", index=nidx, **a)
            self.there.link("set", index=nidx, state="up")
        except self.errors as e:
            raise _fail(f"configure `{now}` (from `{host}`) in the container", e) from e

    def undo(self) -> None:
        """Move every moved device back, with its name and addresses (a failed create)."""
        while self.moved:
            host, now, addrs = self.moved.pop()
            try:
                found = self.there.link_lookup(ifname=now)
                if not found:
                    continue
                self.there.link("set", index=found[0], state="down")
                self.there.link("set", index=found[0], net_ns_fd=self.here_fd, ifname=host)
                back = self.here.link_lookup(ifname=host)
                for a in addrs if back else ():
                    self.here.addr("add", index=back[0], **a)
            except self.errors as e:
                from ocirun import log
                log.warning(f"linux.netDevices: move `{now}` back to `{host}`: {e}")

    def close(self) -> None:
        if self.target < 0:
            return
        for ipr in (self.here, self.there):
            if ipr is None:
                continue
            try:
                ipr.close()
            except self.errors as e:  # closing must not hide the real outcome
                from ocirun import log
                log.debug(f"linux.netDevices: close a netlink socket: {e}")
        for fd in (self.target, self.here_fd):
            os.close(fd)
        self.target = self.here_fd = -1


def features() -> dict[str, bool]:
    """features-linux.md "NetDevices": enabled when pyroute2 is installed beside
    ocirun (without it a config with netDevices is refused, saying so)."""
    from importlib.util import find_spec
    return {"enabled": find_spec("pyroute2") is not None}
