"""Namespaces of a new container (config-linux.md "Namespaces").

A listed type without ``path`` is created new, one with ``path`` is joined
with setns(2) (the path must be a namespace of that type), an unlisted type
is inherited from the runtime.  Joining and creating happen in the
intermediate process in this order: setns into every ``path`` (user first,
so that the other joins are checked against the joined user namespace), then
unshare(CLONE_NEWUSER) and the parent writes the id maps, then unshare the
remaining new types in one call.  CLONE_NEWPID and CLONE_NEWTIME only affect
children, which is why the init is a fork of the intermediate.  A new cgroup
namespace is unshared by the init itself once it sits in its cgroup, so that
its cgroup root is the container's cgroup.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.errors import ConfigError
from ocirun.syscalls import api

TYPE_FLAGS = {
    "pid": api.CLONE_NEWPID,
    "network": api.CLONE_NEWNET,
    "mount": api.CLONE_NEWNS,
    "ipc": api.CLONE_NEWIPC,
    "uts": api.CLONE_NEWUTS,
    "user": api.CLONE_NEWUSER,
    "cgroup": api.CLONE_NEWCGROUP,
    "time": api.CLONE_NEWTIME,
}

# setns order: user first (later joins are checked against it), mount last
# (after it, paths of the runtime's mount namespace are no longer reachable).
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class NamespacePlan:
    """What the intermediate and init do; computed in the parent."""

    __slots__ = ("joins", "new", "new_cgroup", "new_pid", "new_time", "new_user", "unshare_flags")

    def __init__(self, namespaces: list[dict[str, str]]) -> None:
        self.new: set[str] = set()
        self.joins: list[tuple[str, str]] = []
        for ns in namespaces:
            t = ns["type"]
            if ns.get("path"):
                self.joins.append((t, ns["path"]))
            else:
                self.new.add(t)
        self.joins.sort(key=lambda j: _JOIN_ORDER.index(j[0]))
        self.new_user = "user" in self.new
        self.new_cgroup = "cgroup" in self.new
        self.new_pid = "pid" in self.new
        self.new_time = "time" in self.new
        flags = 0
        for t in self.new:
            if t not in ("user", "cgroup"):
                flags |= TYPE_FLAGS[t]
        self.unshare_flags = flags

    def has(self, t: str) -> bool:
        """The container has a namespace of type ``t`` of its own (new or joined)."""
        return t in self.new or any(j[0] == t for j in self.joins)

    @property
    def in_userns(self) -> bool:
        return self.has("user")


def open_joins(plan: NamespacePlan, sys: api.Syscalls) -> list[tuple[int, int]]:
    """Open every ``path`` (in the runtime's mount namespace) and check its type.

    Returns ``(fd, CLONE_NEW*)`` pairs in join order.  Done in the parent,
    before any fork, so that a bad path fails with nothing to undo.
    """
    out: list[tuple[int, int]] = []
    try:
        for t, path in plan.joins:
            where = f"linux.namespaces[type={t}].path"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise ConfigError(f"{where}: open `{path}`: {e.strerror}", errno=e.errno) from e
            out.append((fd, TYPE_FLAGS[t]))
            try:
                got = sys.ns_get_type(fd)
            except OSError as e:
                raise ConfigError(f"{where}: `{path}` is not a namespace file ({e.strerror})",
                                  errno=e.errno) from e
            if got != TYPE_FLAGS[t]:
                kind = next((k for k, v in TYPE_FLAGS.items() if v == got), hex(got))
                raise ConfigError(f"{where}: `{path}` is a {kind} namespace, not a {t} namespace")
    except BaseException:
        for fd, _ in out:
            os.close(fd)
        raise
    return out


def join(fds: list[tuple[int, int]], sys: api.Syscalls) -> None:
    for fd, flag in fds:
        try:
            sys.setns(fd, flag)
        except OSError as e:
            kind = next(k for k, v in TYPE_FLAGS.items() if v == flag)
            from ocirun.errors import SyscallError
            raise SyscallError(f"setns into the {kind} namespace: {e.strerror}", errno=e.errno,
                               stage="namespaces") from e
        os.close(fd)


def open_container_namespaces(pid: int, *, proc: str = "/proc") -> list[tuple[int, int]]:
    """Fds of every namespace of process ``pid`` that differs from the caller's,
    in join order (user first, mount last): what a process joining a running
    container (``exec``) must setns into.  The same namespace as the caller's
    is skipped (setns into one's own user namespace fails with EINVAL)."""
    from ocirun.procfs import NS_LINK_NAMES
    out: list[tuple[int, int]] = []
    try:
        for t in _JOIN_ORDER:
            link = NS_LINK_NAMES[t]
            theirs = f"{proc}/{pid}/ns/{link}"
            try:
                a = os.stat(theirs)
                b = os.stat(f"{proc}/self/ns/{link}")
            except FileNotFoundError:
                continue  # a namespace type this kernel lacks (time before 5.6)
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                continue
            out.append((os.open(theirs, os.O_RDONLY | os.O_CLOEXEC), TYPE_FLAGS[t]))
    except BaseException:
        for fd, _ in out:
            os.close(fd)
        raise
    return out
