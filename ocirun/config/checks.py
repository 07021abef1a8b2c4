"""Meaning checks on config.json that a JSON Schema cannot express.

runtime-spec v1.3.0: ``config.md`` (ociVersion, root, mounts, process, hooks,
hostname/domainname) and ``config-linux.md`` (namespaces, user namespace
mappings, time offsets, devices, sysctl, masked/readonly paths, rootfs
propagation).  They run in the parent before anything is created, so a bad
config fails "as if create had never been attempted" (``runtime.md#errors``).

``check(spec, bundle)`` returns warnings and raises ONE ConfigError listing
every error with its JSON path.  ``spec`` is the schema-validated dict, so
types are trusted; presence is not.

``unsupported(spec)`` lists features that are valid but not implemented yet
(table ``NOT_YET``), so the caller can refuse them in one place.
"""

from __future__ import annotations

import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create

from ocirun import posixpaths
from ocirun.capabilities import KNOWN_CAPABILITIES
from ocirun.errors import ConfigError
from ocirun.plantypes import HOOK_KINDS
from ocirun.procfs import NS_LINK_NAMES
from ocirun.rlimits import RLIMITS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Highest spec version whose fields this runtime knows.
SPEC_MAX = (1, 3, 0)

# sysctls isolated by the IPC namespace (ipc_namespaces(7)); fs.mqueue.* too.
IPC_SYSCTLS = frozenset({"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                         "kernel.shmall", "kernel.shmmax", "kernel.shmmni",
                         "kernel.shm_rmid_forced"})
# sysctls isolated by the UTS namespace that the spec has no field for.
UTS_SYSCTLS = frozenset({"kernel.domainname"})

TIME_CLOCKS = frozenset({"monotonic", "boottime"})
PROPAGATIONS = frozenset({"private", "shared", "slave", "unbindable"})
DEVICE_TYPES = frozenset({"c", "b", "u", "p"})
# user_namespaces(7): at most 340 lines per map since Linux 4.15.
MAX_ID_MAP_LINES = 340

NOT_YET: dict[str, str] = {
}


class Report:
    """Collects errors and warnings, each prefixed by a JSON path."""

    __slots__ = ("errors", "warnings")

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, msg: str) -> None:
        self.errors.append(f"{path}: {msg}")

    def warn(self, path: str, msg: str) -> None:
        self.warnings.append(f"{path}: {msg}")


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _namespaces(spec: dict[str, object]) -> dict[str, dict[str, object]]:
    """First entry per namespace type (duplicates are reported by check_namespaces)."""
    found: dict[str, dict[str, object]] = {}
    for entry in _list(_obj(spec.get("linux")).get("namespaces")):
        entry = _obj(entry)
        kind = entry.get("type")
        if isinstance(kind, str) and kind not in found:
            found[kind] = entry
    return found


def _in_bundle(bundle: str, path: str) -> str:
    # join (as os.path.join) keeps an absolute ``path`` as it is: the spec allows both.
    return posixpaths.join(bundle, path)


def _same_as_host(kind: str, path: str) -> bool:
    """True if namespace file ``path`` is the runtime's own namespace of ``kind``."""
    try:
        mine = os.stat(f"/proc/self/ns/{NS_LINK_NAMES[kind]}")
        theirs = os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def _private(spec: dict[str, object], kind: str) -> bool:
    """The container gets a namespace of ``kind`` other than the runtime's."""
    entry = _namespaces(spec).get(kind)
    if entry is None:
        return False
    path = entry.get("path")
    return not (isinstance(path, str) and path and _same_as_host(kind, path))


# --- config.md -------------------------------------------------------------

def check_oci_version(spec: dict[str, object], bundle: str, out: Report) -> None:
    version = spec.get("ociVersion")
    if not isinstance(version, str):
        out.error("$.ociVersion", "required")
        return
    core = version.split("+", 1)[0].split("-", 1)[0]
    parts = core.split(".")
    if len(parts) != 3 or not all(p.isdigit() and p.isascii() for p in parts):
        out.error("$.ociVersion", f"{version!r} is not a SemVer version like 1.3.0")
        return
    numbers = (int(parts[0]), int(parts[1]), int(parts[2]))
    if numbers[0] != 1:
        out.error("$.ociVersion", f"{version!r}: major version {numbers[0]} is not supported "
                                  "(only 1.x)")
    elif numbers > SPEC_MAX:
        out.warn("$.ociVersion", f"{version!r} is newer than the supported "
                                 f"{'.'.join(map(str, SPEC_MAX))}; unknown fields are ignored")


def check_root(spec: dict[str, object], bundle: str, out: Report) -> None:
    root = spec.get("root")
    if not isinstance(root, dict):
        out.error("$.root", "required on Linux")
        return
    path = root.get("path")
    if not isinstance(path, str) or not path:
        out.error("$.root.path", "required")
        return
    full = _in_bundle(bundle, path)
    if not posixpaths.isdir(full):
        why = "is not a directory" if posixpaths.lexists(full) else "does not exist"
        out.error("$.root.path", f"`{full}` {why}")


def check_process(spec: dict[str, object], bundle: str, out: Report) -> None:
    if "process" not in spec:
        return  # OPTIONAL at create; ``start`` refuses a config without it.
    process = _obj(spec.get("process"))
    if not _list(process.get("args")):
        out.error("$.process.args", "must contain at least one entry")
    cwd = process.get("cwd")
    if isinstance(cwd, str) and not cwd.startswith("/"):
        out.error("$.process.cwd", f"{cwd!r} is not an absolute path")
    user = process.get("user")
    if not isinstance(user, dict):
        out.error("$.process.user", "required (with uid and gid)")
    else:
        for key in ("uid", "gid"):
            if key not in user:
                out.error(f"$.process.user.{key}", "required")
    adj = process.get("oomScoreAdj")
    if isinstance(adj, int) and not -1000 <= adj <= 1000:
        out.error("$.process.oomScoreAdj", f"{adj} is outside -1000..1000")
    prio = process.get("ioPriority")
    if isinstance(prio, dict):
        level = prio.get("priority")
        if not isinstance(level, int) or not 0 <= level <= 7:
            out.error("$.process.ioPriority.priority", "required, 0 (highest) to 7 (lowest)")


def check_rlimits(spec: dict[str, object], bundle: str, out: Report) -> None:
    seen: set[str] = set()
    for i, item in enumerate(_list(_obj(spec.get("process")).get("rlimits"))):
        limit = _obj(item)
        path = f"$.process.rlimits[{i}]"
        kind = limit.get("type")
        if kind not in RLIMITS:
            out.error(f"{path}.type", f"{kind!r} is not a Linux resource limit")
        elif kind in seen:
            out.error(f"{path}.type", f"{kind} is set more than once")
        else:
            seen.add(kind)
        soft, hard = limit.get("soft"), limit.get("hard")
        if isinstance(soft, int) and isinstance(hard, int) and soft > hard:
            out.error(path, f"soft limit {soft} is above hard limit {hard}")


def check_capabilities(spec: dict[str, object], bundle: str, out: Report) -> None:
    # Since v1.1.0 unknown capabilities are a warning, never an error.
    caps = _obj(_obj(spec.get("process")).get("capabilities"))
    for set_name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        for i, name in enumerate(_list(caps.get(set_name))):
            if name not in KNOWN_CAPABILITIES:
                out.warn(f"$.process.capabilities.{set_name}[{i}]",
                         f"unknown capability {name!r} ignored")


def _is_bind(mount: dict[str, object]) -> bool:
    options = _list(mount.get("options"))
    return "bind" in options or "rbind" in options or mount.get("type") == "bind"


def check_mounts(spec: dict[str, object], bundle: str, out: Report) -> None:
    has_userns = "user" in _namespaces(spec)
    for i, item in enumerate(_list(spec.get("mounts"))):
        mount = _obj(item)
        path = f"$.mounts[{i}]"
        dest = mount.get("destination")
        if isinstance(dest, str):
            if not dest:
                out.error(f"{path}.destination", "must not be empty")
            elif not dest.startswith("/"):
                out.warn(f"{path}.destination",
                         f"{dest!r} is relative (deprecated); taken relative to /")
        if _is_bind(mount):
            source = mount.get("source")
            if not isinstance(source, str) or not source:
                out.error(f"{path}.source", "required for a bind mount")
            elif not posixpaths.lexists(_in_bundle(bundle, source)):
                out.error(f"{path}.source",
                          f"missing mount source `{_in_bundle(bundle, source)}`")
        has_uid, has_gid = "uidMappings" in mount, "gidMappings" in mount
        if has_uid != has_gid:
            out.error(path, "uidMappings and gidMappings must be given together")
        options = _list(mount.get("options"))
        if ("idmap" in options or "ridmap" in options) and not has_uid and not has_userns:
            out.error(f"{path}.options", "idmap needs uidMappings/gidMappings or a user namespace")


def check_hooks(spec: dict[str, object], bundle: str, out: Report) -> None:
    hooks = _obj(spec.get("hooks"))
    for kind in HOOK_KINDS:
        for i, item in enumerate(_list(hooks.get(kind))):
            path = _obj(item).get("path")
            if isinstance(path, str) and not path.startswith("/"):
                out.error(f"$.hooks.{kind}[{i}].path", f"{path!r} is not an absolute path")


def check_uts(spec: dict[str, object], bundle: str, out: Report) -> None:
    # Setting them in the runtime's own UTS namespace would rename the host.
    for key in ("hostname", "domainname"):
        if spec.get(key) and "uts" not in _namespaces(spec):
            out.error(f"$.{key}", "needs a private `uts` namespace in $.linux.namespaces")


# --- config-linux.md --------------------------------------------------------

def check_namespaces(spec: dict[str, object], bundle: str, out: Report) -> None:
    seen: set[str] = set()
    for i, item in enumerate(_list(_obj(spec.get("linux")).get("namespaces"))):
        entry = _obj(item)
        kind = entry.get("type")
        if isinstance(kind, str):
            if kind in seen:
                out.error(f"$.linux.namespaces[{i}].type", f"namespace {kind!r} listed twice")
            seen.add(kind)
        path = entry.get("path")
        if path is None:
            continue
        if not isinstance(path, str) or not path.startswith("/"):
            out.error(f"$.linux.namespaces[{i}].path", f"{path!r} is not an absolute path")
        elif not posixpaths.exists(path):
            out.error(f"$.linux.namespaces[{i}].path", f"`{path}` does not exist")


def check_id_mappings(spec: dict[str, object], bundle: str, out: Report) -> None:
    linux = _obj(spec.get("linux"))
    userns = _namespaces(spec).get("user")
    present = [key for key in ("uidMappings", "gidMappings") if _list(linux.get(key))]
    if userns is None:
        for key in present:
            out.error(f"$.linux.{key}", "needs a `user` namespace in $.linux.namespaces")
    elif userns.get("path"):
        for key in present:
            out.error(f"$.linux.{key}", "cannot be applied to a joined user namespace")
    else:
        for key in ("uidMappings", "gidMappings"):
            if key not in present:
                out.error(f"$.linux.{key}", "required when a new user namespace is created")
    for key in present:
        maps = _list(linux.get(key))
        if len(maps) > MAX_ID_MAP_LINES:
            out.error(f"$.linux.{key}", f"{len(maps)} entries; the kernel allows "
                                        f"{MAX_ID_MAP_LINES}")
        for i, item in enumerate(maps):
            if _obj(item).get("size") == 0:
                out.error(f"$.linux.{key}[{i}].size", "must be at least 1")


def check_time_offsets(spec: dict[str, object], bundle: str, out: Report) -> None:
    offsets = _obj(spec.get("linux")).get("timeOffsets")
    if not isinstance(offsets, dict) or not offsets:
        return
    entry = _namespaces(spec).get("time")
    # Offsets can only be written before the first process enters a NEW time ns.
    if entry is None or entry.get("path"):
        out.error("$.linux.timeOffsets", "needs a new `time` namespace (without path)")
    for clock in offsets:
        if clock not in TIME_CLOCKS:
            out.error(f"$.linux.timeOffsets.{clock}", "unknown clock (monotonic or boottime)")


def check_sysctl(spec: dict[str, object], bundle: str, out: Report) -> None:
    for key in _obj(_obj(spec.get("linux")).get("sysctl")):
        path = f'$.linux.sysctl["{key}"]'
        name = key.replace("/", ".")
        if not name or any(part in ("", ".", "..") for part in name.split(".")):
            out.error(path, "not a valid sysctl name")
        elif name == "kernel.hostname":
            out.error(path, "use $.hostname instead")
        elif name.startswith("net."):
            if not _private(spec, "network"):
                out.error(path, "needs a private `network` namespace")
        elif name in IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if not _private(spec, "ipc"):
                out.error(path, "needs a private `ipc` namespace")
        elif name in UTS_SYSCTLS:
            if not _private(spec, "uts"):
                out.error(path, "needs a private `uts` namespace")
        else:
            # Anything else is global to the host: writing it would leak out.
            out.error(path, "not a namespaced sysctl; refusing to change the host")


def check_devices(spec: dict[str, object], bundle: str, out: Report) -> None:
    paths: set[str] = set()
    numbers: set[tuple[object, object, object]] = set()
    for i, item in enumerate(_list(_obj(spec.get("linux")).get("devices"))):
        device = _obj(item)
        where = f"$.linux.devices[{i}]"
        kind, path = device.get("type"), device.get("path")
        if kind not in DEVICE_TYPES:
            out.error(f"{where}.type", f"{kind!r} is not one of c, b, u, p")
        if not isinstance(path, str) or not path.startswith("/"):
            out.error(f"{where}.path", f"{path!r} is not an absolute path")
        elif path in paths:
            out.error(f"{where}.path", f"`{path}` listed twice")
        else:
            paths.add(path)
        if kind in ("c", "b", "u"):
            for key in ("major", "minor"):
                value = device.get(key)
                if value is None:
                    out.error(f"{where}.{key}", f"required for type {kind!r}")
                elif not isinstance(value, int) or value < 0:
                    out.error(f"{where}.{key}", f"{value!r} is negative")
            triple = (kind, device.get("major"), device.get("minor"))
            if triple in numbers:
                out.warn(where, f"device {kind} {triple[1]}:{triple[2]} listed twice")
            numbers.add(triple)


def check_path_lists(spec: dict[str, object], bundle: str, out: Report) -> None:
    linux = _obj(spec.get("linux"))
    for key in ("maskedPaths", "readonlyPaths"):
        for i, path in enumerate(_list(linux.get(key))):
            if not isinstance(path, str) or not path.startswith("/"):
                out.error(f"$.linux.{key}[{i}]", f"{path!r} is not an absolute path")


def check_rootfs_propagation(spec: dict[str, object], bundle: str, out: Report) -> None:
    value = _obj(spec.get("linux")).get("rootfsPropagation")
    if value is not None and value not in PROPAGATIONS:
        out.error("$.linux.rootfsPropagation", f"{value!r} is not one of "
                                               f"{', '.join(sorted(PROPAGATIONS))}")


def check_personality(spec: dict[str, object], bundle: str, out: Report) -> None:
    """config-linux.md "Personality": no flag values are defined by the spec."""
    linux = spec.get("linux")
    pers = linux.get("personality") if isinstance(linux, dict) else None
    if isinstance(pers, dict):
        if pers.get("domain") not in ("LINUX", "LINUX32"):
            out.error("$.linux.personality.domain", f"{pers.get('domain')!r} is not LINUX or LINUX32")
        if pers.get("flags"):
            out.error("$.linux.personality.flags", "the spec defines no personality flags")


def check_rdma(spec: dict[str, object], bundle: str, out: Report) -> None:
    """config-linux.md "RDMA": each device entry MUST carry hcaHandles or hcaObjects."""
    rdma = _obj(_obj(_obj(spec.get("linux")).get("resources")).get("rdma"))
    for name, limit in rdma.items():
        entry = _obj(limit)
        if entry.get("hcaHandles") is None and entry.get("hcaObjects") is None:
            out.error(f'$.linux.resources.rdma["{name}"]',
                      "needs hcaHandles or hcaObjects (or both)")


CHECKS: tuple[Callable[[dict[str, object], str, Report], None], ...] = (
    check_oci_version, check_root, check_process, check_rlimits, check_capabilities,
    check_mounts, check_hooks, check_uts, check_namespaces, check_id_mappings,
    check_time_offsets, check_sysctl, check_devices, check_path_lists,
    check_rootfs_propagation, check_personality, check_rdma,
)


def check(spec: dict[str, object], bundle: str) -> list[str]:
    """Run every meaning check; return warnings, raise one ConfigError for all errors."""
    out = Report()
    for one in CHECKS:
        one(spec, bundle, out)
    if out.errors:
        raise ConfigError("config.json: " + "; ".join(out.errors))
    return out.warnings


# --- features present but not implemented yet ------------------------------

def _present(value: object) -> bool:
    # ``false``, ``""``, ``{}`` and ``[]`` ask for nothing, so they are not refused.
    return value is not None and value is not False and value != "" and value != {} \
        and value != []


def _find(node: object, parts: list[str], prefix: str, found: list[str]) -> None:
    if not parts:
        if _present(node):
            found.append(prefix)
        return
    head, rest = parts[0], parts[1:]
    is_list = head.endswith("[]")
    key = head[:-2] if is_list else head
    if not isinstance(node, dict) or key not in node:
        return
    child = node[key]
    if is_list:
        for i, item in enumerate(_list(child)):
            _find(item, rest, f"{prefix}.{key}[{i}]", found)
    else:
        _find(child, rest, f"{prefix}.{key}", found)


def unsupported(spec: dict[str, object]) -> list[str]:
    """JSON paths (``$.linux.seccomp``) of NOT_YET features this config asks for."""
    found: list[str] = []
    for pattern in NOT_YET:
        _find(spec, pattern.split("."), "$", found)
    return found


def unsupported_message(spec: dict[str, object]) -> str | None:
    """One line naming every NOT_YET feature in use, or None."""
    parts: list[str] = []
    for pattern, what in NOT_YET.items():
        hits: list[str] = []
        _find(spec, pattern.split("."), "$", hits)
        parts.extend(f"{hit}: {what}" for hit in hits)
    return "config.json: not supported: " + "; ".join(parts) if parts else None
