"""Build the plans of process/plan.py from a validated config (in the parent).

The config has passed the schema and the meaning checks (config/checks.py);
what remains here is turning it into the exact values the children apply,
and every error that only shows while doing so: rlimits that setrlimit
would refuse, an env entry that is not ``KEY=value``, a mount inside /proc,
id-mapped mounts without a mapping, a rootfs whose /proc or /sys is not a
plain directory.  Each error names its JSON path.  Nothing here touches the
system except reading the rootfs (``/etc/passwd`` for HOME, the /proc and
/sys entries) and the runtime's own capability bounding set.
"""

from __future__ import annotations

import _stat as stat  # the C module alone: `stat` adds its Python layer
import posix as os  # the lean exec path never imports os (posixpaths.py)

from ocirun import log, posixpaths
from ocirun.errors import ConfigError, OciRunError
from ocirun.plantypes import ContainerPlan, IdMap, MountPlan, ProcessPlan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# config-linux.md "Personality": execution domains (linux/personality.h).
PERSONALITY_DOMAINS = {"LINUX": 0x0000, "LINUX32": 0x0008}



class LaunchOptions:
    """What the command line adds to a config (runc's create/run/exec flags)."""

    __slots__ = ("keep_fds", "no_new_keyring", "no_pivot")

    def __init__(self, *, keep_fds: int = 0, no_pivot: bool = False,
                 no_new_keyring: bool = False) -> None:
        self.keep_fds = keep_fds
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring


def norm_dest(path: str) -> str:
    """A container path made absolute and normalised (``//`` and ``..`` folded)."""
    return posixpaths.normpath("/" + path.lstrip("/"))


# --------------------------------------------------------------------------
# the process


def check_env(env: list[Any], where: str) -> tuple[str, ...]:
    """config.md "POSIX process" env: IEEE 1003.1 environ entries, ``KEY=value``."""
    out = []
    for i, item in enumerate(env):
        key, sep, _ = str(item).partition("=")
        if not sep or not key:
            raise ConfigError(f"config.json: {where}[{i}]: `{item}` is not KEY=value")
        out.append(str(item))
    return tuple(out)


def activation_env(env: tuple[str, ...], keep_fds: int) -> tuple[tuple[str, ...], int]:
    """Socket activation (RUNC-CLI.md §8): LISTEN_FDS from the caller are passed
    on after the --preserve-fds ones, with LISTEN_PID=1 (the container's init)."""
    listen = posixpaths.getenv("LISTEN_FDS")
    if listen and listen.isdigit() and int(listen) > 0:
        keep_fds += int(listen)
        env = tuple(e for e in env if not e.startswith(("LISTEN_FDS=", "LISTEN_PID=")))
        env += (f"LISTEN_FDS={listen}", "LISTEN_PID=1")
    return env, keep_fds


def check_kept_fds(keep_fds: int) -> None:
    for fd in range(3, 3 + keep_fds):
        try:
            os.fstat(fd)
        except OSError as e:
            raise OciRunError(f"--preserve-fds: fd {fd} is not open ({e.strerror})") from None


def build_process_plan(proc: dict[str, Any], *, rootfs: str, linux: dict[str, Any],
                       opts: LaunchOptions, keyring: str | None, where: str = "$.process",
                       seccomp: object | None = None) -> ProcessPlan:
    """A ProcessPlan from a config's ``process`` object (or exec's process.json)."""
    from ocirun.capabilities import compute_caps, limit_to_grantable, own_bounding_set
    from ocirun.rlimits import plan_rlimits

    args = proc.get("args") or []
    if not args:
        # process is OPTIONAL at create but start needs it: runc refuses it at
        # create and so do we (there would be nothing to park the init on).
        raise ConfigError(f"config.json: {where}.args: a process with args is required")
    user = proc.get("user") or {}
    uid = int(user.get("uid", 0))
    env = check_env(list(proc.get("env") or []), f"{where}.env")
    if not any(e.startswith("HOME=") for e in env):
        from ocirun.user import lookup_home
        env += ("HOME=" + lookup_home(rootfs, uid),)
    env, keep_fds = activation_env(env, opts.keep_fds)
    check_kept_fds(keep_fds)

    caps, warnings = compute_caps(proc.get("capabilities"))
    grantable = own_bounding_set()  # inherited into a new user namespace too
    if grantable is not None:
        warnings += limit_to_grantable(caps, grantable)
    for w in warnings:
        if "unknown" not in w:  # checks.check() has warned about unknown names
            log.warning(w)

    try:
        rlimits = plan_rlimits(list(proc.get("rlimits") or []), f"{where}.rlimits")
    except ConfigError as e:
        raise ConfigError(f"config.json: {e.msg}") from None

    personality = None
    pers = linux.get("personality")
    if pers:
        personality = PERSONALITY_DOMAINS[pers["domain"]]
    apparmor = selinux = None
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):  # LSM labels (ocirun/lsm.py)
        from ocirun.lsm import plan_labels
        apparmor, selinux = plan_labels(proc.get("apparmorProfile"), proc.get("selinuxLabel"),
                                        where)
    console = proc.get("consoleSize")
    umask = user.get("umask")
    adj = proc.get("oomScoreAdj")
    scheduling = plan_scheduling(proc, linux, where)
    return ProcessPlan(
        args=tuple(str(a) for a in args), env=env, cwd=str(proc.get("cwd") or "/"),
        uid=uid, gid=int(user.get("gid", 0)),
        additional_gids=tuple(int(g) for g in user.get("additionalGids") or ()),
        umask=None if umask is None else int(umask), caps=caps, rlimits=rlimits,
        oom_score_adj=None if adj is None else int(adj),
        no_new_privileges=bool(proc.get("noNewPrivileges")), personality=personality,
        apparmor_profile=apparmor, selinux_label=selinux, seccomp=seccomp,
        terminal=bool(proc.get("terminal")),
        console_size=(int(console["height"]), int(console["width"])) if console else None,
        keep_fds=keep_fds, keyring=keyring, **scheduling)


def plan_scheduling(proc: dict[str, Any], linux: dict[str, Any], where: str) -> dict[str, Any]:
    """process.scheduler, ioPriority, execCPUAffinity and linux.memoryPolicy
    (ProcessPlan keyword arguments; only the configured ones, imported only then)."""
    out: dict[str, Any] = {}
    if proc.get("scheduler") or proc.get("ioPriority") or proc.get("execCPUAffinity"):
        from ocirun.sched import plan_affinity, plan_ioprio, plan_scheduler
        out["scheduler"] = plan_scheduler(proc.get("scheduler"), f"{where}.scheduler")
        out["io_priority"] = plan_ioprio(proc.get("ioPriority"), f"{where}.ioPriority")
        out["cpu_affinity"] = plan_affinity(proc.get("execCPUAffinity"),
                                            f"{where}.execCPUAffinity")
    if linux.get("memoryPolicy"):
        from ocirun.mempolicy import plan_mempolicy
        out["mem_policy"] = plan_mempolicy(linux["memoryPolicy"])
    return out


# --------------------------------------------------------------------------
# the container


def _map_text(maps: list[dict[str, Any]]) -> bytes:
    return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n"
                   for m in maps).encode()


def _time_offsets(offsets: dict[str, dict[str, int]]) -> bytes:
    return "".join(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n"
                   for clock, o in offsets.items()).encode()


def _shows_cgroups(fstype: str, dest: str) -> bool:
    return fstype in ("cgroup", "cgroup2") or dest == "/sys/fs/cgroup" \
        or dest.startswith("/sys/fs/cgroup/")


def _check_proc_dest(dest: str, fstype: str, is_bind: bool, where: str) -> None:
    """rootfs._check_proc's rule on the configured path (the init checks it
    again once the rootfs's symlinks are resolved)."""
    from ocirun.plantypes import ALLOWED_PROC_MOUNTS
    if dest != "/proc" and not dest.startswith("/proc/"):
        return
    if dest == "/proc" and fstype == "proc" and not is_bind:
        return
    if dest in ALLOWED_PROC_MOUNTS:
        return
    raise ConfigError(f"config.json: {where}.destination: `{dest}` is inside /proc; only a "
                      "proc filesystem on /proc or binds over a few harmless /proc files "
                      "are allowed")


def build_mounts(mounts: list[dict[str, Any]], bundle: str, *, in_userns: bool,
                 own_netns: bool, mount_label: str | None = None,
                 userns: IdMap | None = None) -> tuple[MountPlan, ...]:
    """``mount_label``: linux.mountLabel, added as ``context=`` (ocirun/lsm.py).
    ``userns``: the container's user namespace (its maps, or its path), which
    an ``idmap`` mount without maps of its own uses (config.md: MAY)."""
    from ocirun.mount_options import parse_mount_options
    out = []
    for i, m in enumerate(mounts):
        where = f"$.mounts[{i}]"
        dest = norm_dest(str(m["destination"]))
        fstype = str(m.get("type") or "")
        opts = parse_mount_options(list(m.get("options") or []))
        idmap = None
        if opts.idmap or opts.ridmap or m.get("uidMappings") or m.get("gidMappings"):
            idmap = plan_idmap(m, opts.ridmap, where, userns)
        is_bind = opts.is_bind or fstype in ("bind", "rbind")
        if idmap is not None and not is_bind:
            raise ConfigError(f"config.json: {where}: id-mapped mounts are bind mounts only "
                              "(add `bind` or `rbind` to options)")
        _check_proc_dest(dest, fstype, is_bind, where)
        src = str(m.get("source") or "")
        if is_bind:
            kind = "bind"
            src = posixpaths.join(bundle, src) if not src.startswith("/") else src
        elif fstype == "cgroup":
            kind = "cgroup"
        elif fstype == "sysfs" and in_userns and not own_netns:
            # sysfs may only be mounted by the owner of the network namespace;
            # without a private one the host's /sys is shown (as runc does).
            kind, src = "host_sysfs", "/sys"
        else:
            kind = "fs"
            src = src or fstype
            if mount_label:
                from ocirun.lsm import mount_data
                opts.data = mount_data(opts.data, fstype, mount_label)
        out.append(MountPlan(index=i, destination=dest, fstype=fstype, source=src, options=opts,
                             kind=kind, recursive=opts.rbind or fstype == "rbind"
                             or kind == "host_sysfs",
                             shows_cgroups=_shows_cgroups(fstype, dest), idmap=idmap))
    return tuple(out)


def plan_idmap(m: dict[str, Any], recursive: bool, where: str,
               userns: IdMap | None) -> IdMap:
    """config.md mounts[].uidMappings/gidMappings and the idmap/ridmap options."""
    uid, gid = m.get("uidMappings"), m.get("gidMappings")
    if uid or gid:
        for key, maps in (("uidMappings", uid), ("gidMappings", gid)):
            if not maps:
                raise ConfigError(f"config.json: {where}.{key}: required with the other mapping")
            for j, one in enumerate(maps):
                if int(one.get("size", 0)) < 1:
                    raise ConfigError(f"config.json: {where}.{key}[{j}].size: must be at least 1")
        return IdMap(uid_map=_map_text(list(uid or ())), gid_map=_map_text(list(gid or ())),
                     recursive=recursive)
    if userns is None:
        raise ConfigError(f"config.json: {where}.options: idmap needs uidMappings and "
                          "gidMappings on the mount, or a user namespace for the container")
    return IdMap(uid_map=userns.uid_map, gid_map=userns.gid_map, recursive=recursive,
                 userns_path=userns.userns_path)


def _container_userns(linux: dict[str, Any]) -> IdMap | None:
    """The container's user namespace as an idmap mount would use it."""
    entry = next((n for n in linux.get("namespaces") or [] if n.get("type") == "user"), None)
    if entry is None:
        return None
    if entry.get("path"):
        return IdMap(userns_path=str(entry["path"]))
    return IdMap(uid_map=_map_text(linux.get("uidMappings") or []),
                 gid_map=_map_text(linux.get("gidMappings") or []))


def check_rootfs_dirs(rootfs: str) -> None:
    """/proc and /sys of the rootfs must be plain directories (or absent).

    A symlink there would put the container's procfs or sysfs wherever the
    image points it, and the masked paths would then mask the wrong place.
    """
    for name in ("proc", "sys"):
        try:
            st = os.lstat(posixpaths.join(rootfs, name))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise ConfigError(f"config.json: $.root.path: cannot inspect `/{name}` in the rootfs: "
                              f"{e.strerror}") from None
        if not stat.S_ISDIR(st.st_mode):
            what = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
            raise ConfigError(f"config.json: $.root.path: `/{name}` in the rootfs `{rootfs}` is "
                              f"{what}; it must be a plain directory")


def build_container_plan(cid: str, spec: dict[str, Any], bundle: str, opts: LaunchOptions,
                         *, seccomp: object | None = None) -> ContainerPlan:
    """The whole plan of a new container (its init's process included)."""
    from ocirun.devices import device_list
    from ocirun.namespaces import NamespacePlan

    linux = spec.get("linux") or {}
    namespaces = linux.get("namespaces") or []
    ns = NamespacePlan(namespaces)
    if not ns.has("mount"):
        raise ConfigError("config.json: $.linux.namespaces: ocirun needs a mount namespace "
                          "(add {\"type\": \"mount\"}) to set up the root filesystem")
    for key in (spec.get("annotations") or {}):
        if not key:
            raise ConfigError("config.json: $.annotations: keys must not be empty")
    rootfs = posixpaths.realpath(posixpaths.join(bundle, spec["root"]["path"]))
    check_rootfs_dirs(rootfs)
    own_netns = any(n.get("type") == "network" and not n.get("path") for n in namespaces)
    mount_label = None
    if linux.get("mountLabel"):
        from ocirun.lsm import plan_mount_label
        mount_label = plan_mount_label(linux["mountLabel"])
    mounts = build_mounts(list(spec.get("mounts") or []), bundle, in_userns=ns.in_userns,
                          own_netns=own_netns, mount_label=mount_label,
                          userns=_container_userns(linux))
    try:
        devices = tuple(device_list(spec))
    except OciRunError as e:
        raise ConfigError(f"config.json: $.linux.devices: {e.msg}") from None
    hooks = {}
    for kind, entries in (spec.get("hooks") or {}).items():
        if entries:
            from ocirun.hooks import as_hooks  # only for a config with hooks
            hooks[kind] = as_hooks(entries, kind)
    process = build_process_plan(
        spec.get("process") or {}, rootfs=rootfs, linux=linux, opts=opts,
        keyring=None if opts.no_new_keyring else f"_ses.{cid}", seccomp=seccomp)
    return ContainerPlan(
        cid=cid, bundle=bundle, rootfs=rootfs, oci_version=str(spec["ociVersion"]),
        annotations=dict(spec.get("annotations") or {}), ns=ns,
        uid_map=_map_text(linux.get("uidMappings") or []),
        gid_map=_map_text(linux.get("gidMappings") or []),
        time_offsets=_time_offsets(linux.get("timeOffsets") or {}) if ns.new_time else b"",
        mounts=mounts, devices=devices,
        dev_is_bind=any(m.destination == "/dev" and m.kind == "bind" for m in mounts),
        private_devpts=any(m.destination == "/dev/pts" and m.fstype == "devpts" for m in mounts),
        masked_paths=tuple(linux.get("maskedPaths") or ()),
        readonly_paths=tuple(linux.get("readonlyPaths") or ()),
        sysctl=tuple((str(k), str(v)) for k, v in (linux.get("sysctl") or {}).items()),
        hostname=spec.get("hostname") if "hostname" in spec else None,
        domainname=spec.get("domainname") if "domainname" in spec else None,
        rootfs_propagation=linux.get("rootfsPropagation"),
        root_readonly=bool(spec["root"].get("readonly")), no_pivot=opts.no_pivot,
        hooks=hooks, process=process)
