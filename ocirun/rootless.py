"""Rootless containers: ocirun run by an unprivileged user.

What changes when the runtime's effective uid is not 0 (runc calls this
"rootless EUID"), and what ``--rootless`` decides (runc: the cgroup manager
only):

* the state root defaults to ``$XDG_RUNTIME_DIR/ocirun`` (runc's rule;
  commands.py ``default_root``);
* the container needs a user namespace of its own (a new one, or one joined
  by path): without one an unprivileged user can set up nothing
  (:func:`check_config`);
* the id maps (config-linux.md "User namespace mappings"): the single map of
  the user's own uid (gid) to one container id is written by the runtime
  itself, with ``deny`` in ``setgroups`` before ``gid_map`` as the kernel
  requires of an unprivileged writer (user_namespaces(7)); anything else goes
  through the setuid helpers ``newuidmap``/``newgidmap`` (Debian's
  ``uidmap``), which allow the ranges /etc/subuid and /etc/subgid give the
  user.  Every range is checked against those files before any fork, so a
  config the helpers would refuse fails ``create`` with what the user lacks
  (:func:`check_config`, :func:`write_maps`);
* cgroups (``--rootless true``, or ``auto`` as non-root): a hierarchy is used
  only where its cgroup is delegated to the user (the directory to create the
  container's cgroup in is writable, and on cgroup v2 its ``cgroup.procs``
  too); the others are skipped.  A ``linux.resources`` entry that needs a
  skipped hierarchy is an error naming it (:func:`cgroup_manager`).  Device
  rules are not written: an unprivileged user can neither write v1
  ``devices.deny`` nor attach a v2 device filter, and a user namespace cannot
  make device nodes anyway.

Only imported when one of these applies: root's ``create`` never pays for it.
"""

from __future__ import annotations

import errno
import os

from ocirun.cgroups import CgroupManager
from ocirun.errors import CgroupError, ConfigError, OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from ocirun.cgroups.paths import Hierarchy
    from ocirun.syscalls.api import Syscalls

SUBUID = "/etc/subuid"
SUBGID = "/etc/subgid"
# where the helpers are looked for when PATH lacks them (podman calls the
# runtime with no PATH at all)
HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


# --------------------------------------------------------------------------
# who the user is, what /etc/subuid gives them


def user_name(uid: int) -> str:
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def sub_ranges(path: str, name: str, uid: int) -> list[tuple[int, int]]:
    """``(start, count)`` ranges of ``path`` (subuid(5) format) for the user
    ``name`` or ``uid``; a missing file gives none."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise OciRunError(f"read `{path}`: {e.strerror}", errno=e.errno) from e
    out = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (name, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            out.append((start, count))
    return out


def _lines(text: bytes) -> list[tuple[int, int, int]]:
    out = []
    for line in text.decode().splitlines():
        c, h, n = (int(x) for x in line.split())
        out.append((c, h, n))
    return out


def map_text(maps: list[dict[str, Any]]) -> bytes:
    """The text for /proc/<pid>/uid_map of config maps (schema-checked)."""
    return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n"
                   for m in maps).encode()


def is_self_map(text: bytes, own: int) -> bool:
    """The one map an unprivileged process may write itself: its own id, size 1."""
    lines = _lines(text)
    return len(lines) == 1 and lines[0][1] == own and lines[0][2] == 1


def find_helper(name: str) -> str | None:
    dirs = [d for d in os.environ.get("PATH", "").split(":") if d.startswith("/")]
    for d in [*dirs, *HELPER_DIRS]:
        p = f"{d}/{name}"
        if os.access(p, os.X_OK):
            return p
    return None


def check_maps(text: bytes, own: int, key: str, subfile: str, name: str, uid: int) -> None:
    """Every range of one map is the user's own id or inside their subordinate ranges."""
    if not text or is_self_map(text, own):
        return
    helper = "newuidmap" if key == "uidMappings" else "newgidmap"
    kind = "subuid" if key == "uidMappings" else "subgid"
    ranges = sub_ranges(subfile, name, uid)
    for i, (cid, hid, size) in enumerate(_lines(text)):
        if size == 1 and hid == own:
            continue
        if not any(start <= hid and hid + size <= start + count for start, count in ranges):
            if not ranges:
                raise ConfigError(
                    f"config.json: $.linux.{key}[{i}]: host ids {hid}-{hid + size - 1}: no {kind} "
                    f"range for user {name} in {subfile} (a rootless container may map only "
                    f"its own id {own}, size 1, unless {subfile} gives the user a range)")
            have = ", ".join(f"{s}-{s + c - 1}" for s, c in ranges)
            raise ConfigError(
                f"config.json: $.linux.{key}[{i}]: host ids {hid}-{hid + size - 1} are not in "
                f"the {kind} ranges of user {name} in {subfile} ({have}) nor the user's own id "
                f"{own}")
    if find_helper(helper) is None:
        raise ConfigError(f"config.json: $.linux.{key}: mapping more than the user's own id "
                          f"needs `{helper}`, which is not installed (Debian: apt-get install "
                          "uidmap)")


def check_config(spec: dict[str, Any], euid: int | None = None, egid: int | None = None) -> None:
    """Before any fork: what an unprivileged user cannot do, in its words."""
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    linux = spec.get("linux") or {}
    user_ns = next((n for n in linux.get("namespaces") or [] if n.get("type") == "user"), None)
    name = user_name(euid)
    if user_ns is None:
        raise ConfigError(f"config.json: $.linux.namespaces: running as user {name} (uid {euid}), "
                          "not root: a rootless container needs a user namespace (add "
                          "{\"type\": \"user\"} with uidMappings and gidMappings; `ocirun spec "
                          "--rootless` writes such a config)")
    for i, m in enumerate(spec.get("mounts") or []):
        opts = m.get("options") or []
        if m.get("uidMappings") or m.get("gidMappings") or "idmap" in opts or "ridmap" in opts:
            raise ConfigError(f"config.json: $.mounts[{i}]: id-mapped mounts need root (the "
                              f"runtime runs as user {name}, uid {euid})")
    if user_ns.get("path"):
        return  # joined: its maps exist already
    uid_text = map_text(linux.get("uidMappings") or [])
    gid_text = map_text(linux.get("gidMappings") or [])
    check_maps(uid_text, euid, "uidMappings", SUBUID, name, euid)
    check_maps(gid_text, egid, "gidMappings", SUBGID, name, euid)


# --------------------------------------------------------------------------
# writing the maps (in the runtime, for the intermediate's new user namespace)


def _run_helper(helper: str, pid: int, text: bytes, what: str) -> None:
    argv = [helper, str(pid)]
    for c, h, n in _lines(text):
        argv += [str(c), str(h), str(n)]
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.posix_spawn(helper, argv, {"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
                               file_actions=[(os.POSIX_SPAWN_DUP2, w, 2),
                                             (os.POSIX_SPAWN_DUP2, w, 1)])
    except OSError as e:
        os.close(r)
        os.close(w)
        raise OciRunError(f"run `{helper}` for {what}: {e.strerror}", errno=e.errno) from e
    os.close(w)
    out = b""
    try:
        while chunk := os.read(r, 4096):
            out += chunk
    finally:
        os.close(r)
    _, status = os.waitpid(child, 0)
    if status != 0:
        said = out.decode(errors="replace").strip().replace("\n", "; ")
        raise OciRunError(f"{what}: `{' '.join(argv)}` failed ({said or 'exit status ' + str(status >> 8)})",
                          errno=errno.EPERM, stage="userns")


def write_maps(pid: int, uid_text: bytes, gid_text: bytes, *, proc: str = "/proc",
               euid: int | None = None, egid: int | None = None) -> None:
    """Give the new user namespace of ``pid`` its maps, as an unprivileged user.

    The process must be dumpable while this runs (process/intermediate.py):
    /proc/<pid>/ of a non-dumpable process belongs to root, and newuidmap
    checks that the target is the caller's own.
    """
    from ocirun.user import write_id_map_text
    euid = os.geteuid() if euid is None else euid
    egid = os.getegid() if egid is None else egid
    if uid_text:
        if is_self_map(uid_text, euid):
            write_id_map_text(pid, uid_text, b"", deny_setgroups=False, proc=proc)
        else:
            _run_helper(find_helper("newuidmap") or "newuidmap", pid, uid_text,
                        "linux.uidMappings")
    if gid_text:
        if is_self_map(gid_text, egid):
            # user_namespaces(7): an unprivileged writer of gid_map must deny
            # setgroups first (so additionalGids cannot be set: runc refuses them too)
            write_id_map_text(pid, b"", gid_text, deny_setgroups=True, proc=proc)
        else:
            _run_helper(find_helper("newgidmap") or "newgidmap", pid, gid_text,
                        "linux.gidMappings")


# --------------------------------------------------------------------------
# cgroups


def _needed(key: str, value: Any) -> tuple[str, ...]:
    """The v1 controllers a wanted linux.resources entry needs (() : v2 only)."""
    from ocirun.cgroups.apply import CPUSET_KEYS, wants
    if key == "cpu" and isinstance(value, dict):
        out = []
        if wants({k: v for k, v in value.items() if k in CPUSET_KEYS}, group="cpu"):
            out.append("cpuset")
        if wants({k: v for k, v in value.items() if k not in CPUSET_KEYS}, group="cpu"):
            out.append("cpu")
        return tuple(out)
    if key == "network" and isinstance(value, dict):
        return tuple(c for c, k in (("net_cls", "classID"), ("net_prio", "priorities"))
                     if wants(value.get(k)))
    return {"memory": ("memory",), "pids": ("pids",), "blockIO": ("blkio",),
            "hugepageLimits": ("hugetlb",), "rdma": ("rdma",)}.get(key, ())


class RootlessCgroups(CgroupManager):
    """The delegated hierarchies only; no device rules."""

    __slots__ = ()

    def apply(self, resources: dict[str, object] | None, *, sys: Syscalls | None = None,
              update: bool = False, prefix: str = "linux.resources") -> None:
        from ocirun import log
        from ocirun.cgroups.apply import apply_resources
        apply_resources(self.hierarchies, resources, sys=sys, prefix=prefix, update=update,
                        warn=log.warning, devices=False)


def delegated(h: Hierarchy, self_cgroup: str = "/proc/self/cgroup") -> str | None:
    """None when the user may create and join the container's cgroup in ``h``;
    else the reason it may not."""
    path = h.path
    if os.path.isdir(path):
        procs = path + "/cgroup.procs"
        if not os.access(procs, os.W_OK):
            return f"`{procs}` is not writable"
    else:
        parent = os.path.dirname(path)
        while not os.path.isdir(parent) and parent != "/":
            parent = os.path.dirname(parent)
        if not os.access(parent, os.W_OK):
            return f"`{parent}` is not writable"
    if h.version == 2 and h.mount is not None:
        # cgroup v2 moves a process only for a writer of the cgroup.procs of
        # the common ancestor of its current cgroup and the target
        # (cgroup-v2.rst "Delegation Containment")
        from ocirun.cgroups.detect import read_own_cgroups
        own = read_own_cgroups(self_cgroup).get(frozenset(), "/")
        here = (h.mount.rstrip("/") + own).rstrip("/") or "/"
        common = os.path.commonpath([here, path])
        if not os.access(common + "/cgroup.procs", os.W_OK):
            return (f"`{common}/cgroup.procs` is not writable (cgroup v2 moves a process only "
                    f"with write access to the common ancestor of its cgroup `{own}` and the "
                    "target)")
    return None


def cgroup_manager(cid: str, spec: dict[str, Any], root: str) -> CgroupManager | None:
    """The container's cgroup, limited to what is delegated to the user."""
    from ocirun import log
    from ocirun.cgroups import open_manager
    linux = spec.get("linux") or {}
    full = open_manager(linux.get("cgroupsPath"), cid, root=root)
    kept, skipped = split_delegated(full.hierarchies, linux.get("resources") or {},
                                    delegated, os.geteuid())
    for h, why in skipped:
        log.debug(f"rootless: cgroup `{h.path}` ({','.join(h.keys)}) skipped: {why}")
    if not kept:
        return None
    return RootlessCgroups(kept)


def split_delegated(hierarchies: list[Hierarchy], resources: dict[str, Any],
                    why_not: Callable[[Hierarchy], str | None], uid: int
                    ) -> tuple[list[Hierarchy], list[tuple[Hierarchy, str]]]:
    """(kept, skipped with the reason); raise when a wanted resource needs a
    skipped hierarchy."""
    from ocirun.cgroups.apply import wants
    kept: list[Hierarchy] = []
    skipped: list[tuple[Hierarchy, str]] = []
    for h in hierarchies:
        why = why_not(h)
        if why is None:
            kept.append(h)
        else:
            skipped.append((h, why))
    for key, value in resources.items():
        if key == "devices" or not wants(value, group=key):
            continue
        for ctrl in _needed(key, value) or ("",):
            # as cgroups/apply.py routes it: a v1 hierarchy with the
            # controller when there is one, else the unified hierarchy
            providers: list[tuple[Hierarchy, str | None]] = [
                (h, None) for h in kept if ctrl and ctrl in h.keys]
            providers += [(h, w) for h, w in skipped if ctrl and ctrl in h.keys]
            if not providers:
                providers = [(h, None) for h in kept if h.version == 2]
                providers += [(h, w) for h, w in skipped if h.version == 2]
            if not providers or providers[0][1] is None:
                continue  # served (or missing on the host: apply says so)
            h, why = providers[0]
            raise CgroupError(
                f"linux.resources.{key}: cannot be applied: cgroup not delegated to user "
                f"{user_name(uid)} (uid {uid}): {why} (for `{h.path}`); delegate a cgroup "
                "(chown its directory, cgroup.procs and cgroup.subtree_control to the user) and "
                "point linux.cgroupsPath below it, or drop the limit")
    return kept, skipped
