"""``restore``: bring a checkpointed container back with CRIU (runc's ``restore``).

The bundle's config is loaded and checked as by ``create``; the state dir
and the cgroup are made; then ``criu swrk`` restores the images into the
container's own namespaces and cgroup, with:

* the rootfs bind-mounted at ``<state dir>/criu-root`` (CRIU wants a mount
  point to pivot into; runc does the same), the bind sources of the config
  mapped to their external keys, mount points made in the rootfs;
* the criu process put into the container's cgroup before the request, and
  ``cg_root`` entries naming that cgroup for every controller, so restored
  tasks land there;
* ``rst_sibling``: the restored init becomes the runtime's child (sibling
  of criu), so the runtime can wait for it in the foreground;
* the stdio pipes recorded in descriptors.json re-attached to the runtime's
  own stdio (``inherit_fd``), and a joined network namespace passed back
  under its external key;
* NOTIFY ``setup-namespaces``: the prestart and createRuntime hooks (the
  namespaces exist, nothing runs yet); ``post-restore``: the state is saved
  with the restored init's pid.

Without ``--detach`` the runtime stays, forwards signals, waits for the
init and deletes the container, and exits with its status (like ``run``).
Any failure undoes everything (state dir, cgroup, mount, processes).
"""

from __future__ import annotations

import json
import os
import time

from ocirun.errors import NotSupportedError, OciRunError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.criu import Response
    from ocirun.state import ContainerState, StateStore


class RestoreOptions:
    __slots__ = ("auto_dedup", "bundle", "cgroup_root", "console_socket", "criu", "detach",
                 "empty_ns", "ext_unix_sk", "file_locks", "image_path", "lazy_pages",
                 "lsm_mount_context", "lsm_profile", "manage_cgroups_mode", "no_pivot",
                 "no_subreaper", "pid_file", "shell_job", "tcp_established", "work_path")

    def __init__(self, *, bundle: str = ".", image_path: str = "", work_path: str = "",
                 tcp_established: bool = False, ext_unix_sk: bool = False,
                 shell_job: bool = False, file_locks: bool = False,
                 manage_cgroups_mode: str = "", detach: bool = False,
                 pid_file: str | None = None, no_subreaper: bool = False,
                 no_pivot: bool = False, empty_ns: tuple[str, ...] = (),
                 auto_dedup: bool = False, lazy_pages: bool = False, lsm_profile: str = "",
                 lsm_mount_context: str = "", console_socket: str | None = None,
                 criu: str = "criu", cgroup_root: str = "/sys/fs/cgroup") -> None:
        self.bundle = bundle
        self.image_path = image_path
        self.work_path = work_path
        self.tcp_established = tcp_established
        self.ext_unix_sk = ext_unix_sk
        self.shell_job = shell_job
        self.file_locks = file_locks
        self.manage_cgroups_mode = manage_cgroups_mode
        self.detach = detach
        self.pid_file = pid_file
        self.no_subreaper = no_subreaper
        self.no_pivot = no_pivot  # CRIU sets up the root itself: nothing to do
        self.empty_ns = empty_ns
        self.auto_dedup = auto_dedup
        self.lazy_pages = lazy_pages
        self.lsm_profile = lsm_profile
        self.lsm_mount_context = lsm_mount_context
        self.console_socket = console_socket
        self.criu = criu
        self.cgroup_root = cgroup_root


def _mount_points(rootfs: str, binds: list[tuple[str, str]]) -> None:
    """CRIU mounts the external binds onto existing mount points."""
    from ocirun.pathres import mkdir_all_in_root, resolve_in_root
    for dest, src in binds:
        try:
            host = resolve_in_root(rootfs, dest)
            if os.path.lexists(host):
                continue
            if os.path.isdir(src):
                mkdir_all_in_root(rootfs, dest)
            else:
                mkdir_all_in_root(rootfs, os.path.dirname(dest) or "/")
                os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                 | os.O_CLOEXEC, 0o644))
        except OSError as e:
            raise OciRunError(f"restore: make mount point `{dest}` in the rootfs: "
                              f"{e.strerror}", errno=e.errno) from e


def _cgroup_roots(pid: int) -> list[bytes]:
    """cg_root entries: every controller of ``pid``'s cgroups (the container's)."""
    from ocirun import criu
    out = []
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls.startswith("name="):
                continue
            out.append(criu.message((1, "s", ctrls or None), (2, "s", path)))
    return out


def _inherited_stdio(image: str) -> list[tuple[str, int]]:
    """Pipes the container had as stdio -> the runtime's own fd of that number
    (one entry per pipe: stdout and stderr are often the same one)."""
    try:
        with open(os.path.join(image, "descriptors.json"), encoding="utf-8") as f:
            links = json.load(f)
    except (OSError, ValueError):
        return []
    out: dict[str, int] = {}
    for i, link in enumerate(links[:3]):
        if str(link).startswith("pipe:"):
            out.setdefault(str(link), i)
    return list(out.items())


def restore(store: StateStore, cid: str, opts: RestoreOptions) -> int:
    """Restore ``cid``; the container's exit status, or 0 with ``--detach``."""
    from ocirun import criu
    from ocirun.ops.checkpoint import (
        bind_mounts,
        cgroup_binds,
        cgroup_mode,
        empty_ns_bits,
        ext_netns_key,
        joined_netns,
        open_dir,
    )
    from ocirun.ops.create import CreateOptions, _cgroup, load_and_check, make_plan
    from ocirun.process.parent import Rollback
    from ocirun.state import ContainerState, rfc3339_nano, validate_id

    validate_id(cid)
    if opts.console_socket:
        raise NotSupportedError("restore: --console-socket: terminals are not supported yet")
    bundle = os.path.abspath(opts.bundle)
    spec, raw = load_and_check(bundle)
    plan = make_plan(cid, spec, bundle, CreateOptions(bundle=bundle))
    if plan.process.terminal:
        raise NotSupportedError("restore: process.terminal: terminals are not supported yet")
    image = os.path.abspath(opts.image_path or "checkpoint")
    work = os.path.abspath(opts.work_path or image)
    if not os.path.isdir(image):
        raise OciRunError(f"restore: images directory `{image}` does not exist")
    binds = bind_mounts(spec, bundle)
    pid_file = os.path.abspath(opts.pid_file) if opts.pid_file else None
    if not opts.detach and not opts.no_subreaper:
        from ocirun.syscalls import api
        from ocirun.syscalls.linux import LinuxSyscalls
        LinuxSyscalls().prctl(api.PR_SET_CHILD_SUBREAPER, 1)
    fds: list[int] = []
    with Rollback() as rb:
        rb.push(lambda: _close_all(fds))
        path, lock_fd = store.create_dir(cid)
        rb.push(lambda: store.remove(cid))
        rb.push(lambda: os.close(lock_fd))
        with open(os.path.join(path, "config.json"), "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(raw)
        mgr = _cgroup(cid, spec, opts.cgroup_root)
        if mgr is not None:
            mgr.create()
            rb.push(mgr.destroy)
            mgr.apply((spec.get("linux") or {}).get("resources"))
        root = os.path.join(path, "criu-root")
        os.mkdir(root, 0o755)
        from ocirun.syscalls import api
        from ocirun.syscalls.linux import LinuxSyscalls
        sys = LinuxSyscalls()
        sys.mount(plan.rootfs, root, "bind", api.MS_BIND | api.MS_REC, None)
        rb.push(lambda: sys.umount2(root, api.MNT_DETACH))
        _mount_points(plan.rootfs, binds)
        fds.append(open_dir(image, "restore: images directory"))
        fds.append(open_dir(work, "restore: work directory"))
        o: dict[str, Any] = {
            "images_dir_fd": fds[0], "work_dir_fd": fds[1], "log_level": 4,
            "log_file": "restore.log", "root": root, "rst_sibling": True,
            "notify_scripts": True, "manage_cgroups": True, "evasive_devices": True,
            "manage_cgroups_mode": cgroup_mode(opts.manage_cgroups_mode),
            "tcp_established": opts.tcp_established, "ext_unix_sk": opts.ext_unix_sk,
            "shell_job": opts.shell_job, "file_locks": opts.file_locks,
            "auto_dedup": opts.auto_dedup, "lazy_pages": opts.lazy_pages,
            "empty_ns": empty_ns_bits(opts.empty_ns),
            "ext_mnt": [criu.kv(dest, src) for dest, src in binds],
            "inherit_fd": [criu.inherit(key, fd) for key, fd in _inherited_stdio(image)],
            "lsm_profile": opts.lsm_profile or None,
            "lsm_mount_context": opts.lsm_mount_context or None,
        }
        netns = joined_netns(spec)
        if netns:
            fds.append(os.open(netns, os.O_RDONLY | os.O_CLOEXEC))
            o["inherit_fd"].append(criu.inherit("extRootNetns", fds[-1]))
            o["external"] = [ext_netns_key(netns)]
        st = ContainerState(cid, bundle=bundle, rootfs=plan.rootfs,
                            created=rfc3339_nano(time.time_ns()), oci_version=plan.oci_version,
                            annotations=plan.annotations,
                            cgroup_paths=mgr.paths() if mgr else {}, dir=path,
                            hooks={k: [h.to_config() for h in v] for k, v in plan.hooks.items()
                                   if k in ("poststart", "poststop")})
        w = criu.Swrk(opts.criu, pass_fds=tuple(fds))
        restored: list[int] = []

        def kill_restored() -> None:
            from ocirun.process.fork import kill_and_reap
            for pid in restored:
                kill_and_reap(pid)
        rb.push(kill_restored)
        rb.push(w.close)
        if mgr is not None:
            mgr.add(w.pid)  # restored tasks start where criu is
            o["cg_root"] = _cgroup_roots(w.pid)
        o["ext_mnt"] += [criu.kv(key, src) for key, src in cgroup_binds(spec, w.pid)]

        def notify(resp: Response, got: list[int]) -> None:
            for fd in got:
                os.close(fd)  # orphan-pts-master: no terminals here
            if resp.script == "setup-namespaces":
                _runtime_hooks(plan, resp.notify_pid, bundle)
            elif resp.script == "post-restore":
                restored.append(resp.notify_pid)
                _save(store, st, resp.notify_pid)

        resp = w.call(criu.request(criu.RESTORE, o), notify)
        if not resp.success:
            log = os.path.join(work, "restore.log")
            e = criu.failure("restore", resp, log)
            tail = criu.log_tail(log)
            if tail:
                e.msg += f" ({tail})"
            raise e
        pid = resp.restored_pid or (restored[0] if restored else 0)
        if not restored:
            restored.append(pid)
            _save(store, st, pid)
        w.close()
        sys.umount2(root, api.MNT_DETACH)
        os.rmdir(root)
        for fd in fds:
            os.close(fd)
        fds.clear()
        if pid_file:
            from ocirun.ops.create import write_pid_file
            write_pid_file(pid_file, pid)
        rb.commit()
    os.close(lock_fd)
    if opts.detach:
        return 0
    from ocirun.ops.delete import delete
    from ocirun.ops.run import Forwarder, wait_init
    fwd = Forwarder()
    fwd.install()
    fwd.target(pid)
    try:
        status = wait_init(pid)
    finally:
        fwd.restore()
    delete(store, cid, force=True)
    return status


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)
    fds.clear()


def _save(store: StateStore, st: ContainerState, pid: int) -> None:
    from ocirun import procfs
    st.pid = pid
    st.pid_start = procfs.pid_start_time(pid) or 0
    store.save(st)


def _runtime_hooks(plan: Any, pid: int, bundle: str) -> None:
    state = plan.hook_state("creating", pid)
    for phase in ("prestart", "createRuntime"):
        if plan.hooks.get(phase):
            from ocirun.hooks import run_hooks
            run_hooks(plan.hooks[phase], state, phase, cwd=bundle)
