"""``checkpoint``: save a running container with CRIU (runc's ``checkpoint``).

The runtime-spec has no checkpoint; this follows runc, which containerd
(``ctr c checkpoint``, the shim's ``Checkpoint``) and podman
(``container checkpoint``) call.  CRIU is driven over RPC (ocirun/criu.py)
with what it must know about the container:

* its root (the rootfs) and init pid; the images and work directories;
* the cgroup to freeze it with (v1 freezer, else the v2 directory), and
  cgroups dumped (``manage_cgroups``, ``--manage-cgroups-mode``);
* every bind mount as an external mount (its key is the destination;
  restore maps it back to the source from the bundle);
* joined network namespaces as external ones, so restore can put the
  container back into the namespace of the same key;
* runc's flags: ``--leave-running``, ``--tcp-established``,
  ``--ext-unix-sk``, ``--shell-job``, ``--file-locks``, ``--pre-dump`` with
  ``--parent-path``, ``--auto-dedup``, ``--lazy-pages`` with ``--status-fd``
  and ``--page-server``, ``--empty-ns``.

The container's stdio is recorded in ``descriptors.json`` in the images
directory (as runc does): a pipe there is re-attached at restore.  Unless
``--leave-running`` or ``--pre-dump``, CRIU stops the container and the
runtime then deletes it (runc does the same): ``restore`` brings it back.
"""

from __future__ import annotations

import json
import os

from ocirun.errors import NotSupportedError, OciRunError, UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.state import ContainerState, StateStore

DESCRIPTORS = "descriptors.json"


class CheckpointOptions:
    __slots__ = ("auto_dedup", "criu", "empty_ns", "ext_unix_sk", "file_locks", "image_path",
                 "lazy_pages", "leave_running", "manage_cgroups_mode", "page_server",
                 "parent_path", "pre_dump", "shell_job", "status_fd", "tcp_established",
                 "work_path")

    def __init__(self, *, image_path: str = "", work_path: str = "", parent_path: str = "",
                 leave_running: bool = False, tcp_established: bool = False,
                 ext_unix_sk: bool = False, shell_job: bool = False, lazy_pages: bool = False,
                 status_fd: int = -1, page_server: str = "", file_locks: bool = False,
                 pre_dump: bool = False, manage_cgroups_mode: str = "",
                 empty_ns: tuple[str, ...] = (), auto_dedup: bool = False,
                 criu: str = "criu") -> None:
        self.image_path = image_path
        self.work_path = work_path
        self.parent_path = parent_path
        self.leave_running = leave_running
        self.tcp_established = tcp_established
        self.ext_unix_sk = ext_unix_sk
        self.shell_job = shell_job
        self.lazy_pages = lazy_pages
        self.status_fd = status_fd
        self.page_server = page_server
        self.file_locks = file_locks
        self.pre_dump = pre_dump
        self.manage_cgroups_mode = manage_cgroups_mode
        self.empty_ns = empty_ns
        self.auto_dedup = auto_dedup
        self.criu = criu


def open_dir(path: str, what: str) -> int:
    try:
        os.makedirs(path, 0o700, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise OciRunError(f"{what} `{path}`: {e.strerror}", errno=e.errno) from e


def cgroup_mode(mode: str) -> int | None:
    from ocirun.criu import CG_MODES
    if not mode:
        return None
    if mode not in CG_MODES:
        raise UsageError(f"--manage-cgroups-mode {mode!r}: expected one of "
                         f"{', '.join(k for k in CG_MODES if k not in ('none', 'props'))}")
    return CG_MODES[mode]


def empty_ns_bits(names: tuple[str, ...]) -> int | None:
    from ocirun.criu import EMPTY_NS
    bits = 0
    for n in names:
        if n not in EMPTY_NS:
            raise UsageError(f"--empty-ns {n!r}: only `network` can be left empty")
        bits |= EMPTY_NS[n]
    return bits or None


def bind_mounts(cfg: dict[str, Any], bundle: str) -> list[tuple[str, str]]:
    """(destination, source) of every bind mount in ``cfg`` (external to CRIU)."""
    from ocirun.process.plan import norm_dest
    out = []
    for m in cfg.get("mounts") or []:
        opts = m.get("options") or []
        if "bind" in opts or "rbind" in opts or m.get("type") in ("bind", "rbind"):
            src = str(m.get("source") or "")
            out.append((norm_dest(str(m["destination"])), os.path.join(bundle, src)))
    return out


def cgroup_binds(cfg: dict[str, Any], pid: int) -> list[tuple[str, str]]:
    """Without a cgroup namespace the container's cgroup mount is made of binds
    of the host's hierarchies (rootfs._mount_cgroup): external to CRIU.
    (mount point in the container, source on the host for ``pid``'s cgroups)."""
    from ocirun import rootfs
    from ocirun.process.plan import norm_dest
    namespaces = (cfg.get("linux") or {}).get("namespaces") or []
    if any(n.get("type") == "cgroup" for n in namespaces):
        return []
    dests = [norm_dest(str(m["destination"])) for m in cfg.get("mounts") or []
             if m.get("type") == "cgroup"]
    if not dests:
        return []
    hier = rootfs._host_cgroups()
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    out = []
    for dest in dests:
        for name, fstype, data in hier:
            want = set((data or "").split(",")) - {"xattr", "noprefix", "clone_children"}
            own = next((p for _, c, p in lines if (fstype == "cgroup2" and c == "")
                        or (fstype == "cgroup" and c and set(c.split(",")) == want)), "/")
            key = dest if name == "" else dest.rstrip("/") + "/" + name
            src = (rootfs.CGROUP_ROOT.rstrip("/") + "/" + name).rstrip("/") + own.rstrip("/")
            out.append((key, src))
    return out


def joined_netns(cfg: dict[str, Any]) -> str | None:
    for n in (cfg.get("linux") or {}).get("namespaces") or []:
        if n.get("type") == "network" and n.get("path"):
            return str(n["path"])
    return None


def ext_netns_key(path: str) -> str:
    """CRIU's external key for a network namespace file (runc's extRootNetns)."""
    return f"net[{os.stat(path).st_ino}]:extRootNetns"


def freezer_path(st: ContainerState) -> str | None:
    paths = st.cgroup_paths or {}
    return paths.get("freezer") or paths.get("unified") or None


def stdio_links(pid: int) -> list[str]:
    out = []
    for fd in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            out.append("")
    return out


def checkpoint(store: StateStore, cid: str, opts: CheckpointOptions) -> None:
    from ocirun import criu
    from ocirun.ops.exec import container_config
    from ocirun.state import PAUSED, RUNNING

    lock = store.lock(cid)
    try:
        st = store.load(cid)
        status = st.status()
        if status not in (RUNNING, PAUSED):
            raise OciRunError(f"container {cid} is not running (status {status}): "
                              "only a running container can be checkpointed")
        cfg = container_config(st)
        if (cfg.get("process") or {}).get("terminal"):
            raise NotSupportedError("checkpoint: containers with a terminal are not supported yet")
        image = os.path.abspath(opts.image_path or "checkpoint")
        work = os.path.abspath(opts.work_path or image)
        img_fd = open_dir(image, "checkpoint: images directory")
        work_fd = -1
        try:
            work_fd = open_dir(work, "checkpoint: work directory")
            log = "pre-dump.log" if opts.pre_dump else "dump.log"
            o: dict[str, Any] = {
                "images_dir_fd": img_fd, "work_dir_fd": work_fd, "log_level": 4, "log_file": log,
                "root": st.rootfs, "pid": st.pid, "manage_cgroups": True, "notify_scripts": True,
                "leave_running": opts.leave_running, "tcp_established": opts.tcp_established,
                "ext_unix_sk": opts.ext_unix_sk, "shell_job": opts.shell_job,
                "file_locks": opts.file_locks, "auto_dedup": opts.auto_dedup,
                "lazy_pages": opts.lazy_pages,
                "manage_cgroups_mode": cgroup_mode(opts.manage_cgroups_mode),
                "empty_ns": empty_ns_bits(opts.empty_ns),
                "freeze_cgroup": freezer_path(st),
                "ext_mnt": [criu.kv(dest, dest) for dest, _ in
                            bind_mounts(cfg, st.bundle) + cgroup_binds(cfg, st.pid)],
            }
            if opts.pre_dump or opts.parent_path:
                o["track_mem"] = True
            if opts.parent_path:
                o["parent_img"] = opts.parent_path
            if opts.lazy_pages and opts.status_fd >= 0:
                o["status_fd"] = opts.status_fd
            if opts.page_server:
                addr, _, port = opts.page_server.rpartition(":")
                if not addr or not port.isdigit():
                    raise UsageError(f"--page-server {opts.page_server!r}: expected ADDRESS:PORT")
                o["ps"] = criu.page_server(addr, int(port))
            netns = joined_netns(cfg)
            if netns:
                o["external"] = [ext_netns_key(netns)]
            stdio = stdio_links(st.pid)
            fds = (img_fd, work_fd) + ((opts.status_fd,) if "status_fd" in o else ())
            w = criu.Swrk(opts.criu, pass_fds=fds)
            try:
                resp = w.call(criu.request(criu.PRE_DUMP if opts.pre_dump else criu.DUMP, o))
            finally:
                w.close()
            if not resp.success:
                tail = criu.log_tail(os.path.join(work, log))
                e = criu.failure("pre-dump" if opts.pre_dump else "dump", resp,
                                 os.path.join(work, log))
                if tail:
                    e.msg += f" ({tail})"
                raise e
            with open(os.path.join(image, DESCRIPTORS), "w", encoding="utf-8") as f:
                json.dump(stdio, f)
        finally:
            os.close(img_fd)
            if work_fd >= 0:
                os.close(work_fd)
        if not (opts.leave_running or opts.pre_dump):
            # CRIU has stopped the container; it lives on in the images.
            from ocirun.ops.delete import destroy, run_poststop, stop_container
            hooks = st.hooks.get("poststop") or []
            stop_container(st)
            destroy(store, st)
            if hooks:
                run_poststop(st, hooks)
    finally:
        os.close(lock)
