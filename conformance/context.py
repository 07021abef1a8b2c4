"""Per-test context: bundles, containers, host facts and guaranteed cleanup.

Each test gets a private directory holding its bundle(s) and the runtime's
``--root``; every container it makes is destroyed (kill -9, delete -f) and
every cgroup directory the test names is removed afterwards, pass or fail.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from typing import Callable

from conformance.bundle import Bundle, base_config
from conformance.registry import Fail, Skip
from conformance.runtime import Container, Runtime, pid_alive

_SEQ = itertools.count(1)
CGROUP_ROOT = "/sys/fs/cgroup"


class Host:
    """What this host offers, so tests can skip (not fail) when it lacks something."""

    __slots__ = ("cgroup_v2_unified", "cgroup_v1", "arch", "timens", "userns", "v2_controllers", "_cgfiles")

    def __init__(self) -> None:
        self.cgroup_v2_unified = os.path.exists(os.path.join(CGROUP_ROOT, "cgroup.controllers"))
        self.cgroup_v1 = {} if self.cgroup_v2_unified else {
            c: os.path.join(CGROUP_ROOT, c) for c in os.listdir(CGROUP_ROOT)
            if os.path.exists(os.path.join(CGROUP_ROOT, c, "cgroup.procs")) and c != "unified"}
        self.v2_controllers: list[str] = []
        if self.cgroup_v2_unified:
            with open(os.path.join(CGROUP_ROOT, "cgroup.controllers")) as f:
                self.v2_controllers = f.read().split()
        self.arch = os.uname().machine
        self.timens = os.path.exists("/proc/self/ns/time")
        self.userns = os.path.exists("/proc/self/ns/user")
        self._cgfiles: dict[str, set[str]] = {}

    def cgroup_files(self, ctrl: str) -> set[str]:
        """File names a fresh non-root cgroup of ``ctrl`` has on this host.

        Probed once per controller by making (and removing) a child cgroup of
        our own: the root cgroup lacks many files (``pids.max``, ``memory.max``)
        and kernels differ (``blkio.weight`` needs CFQ), so only a real child
        tells what a container's cgroup will offer.  This is how resource tests
        decide to skip *before* create; a file missing after create is a FAIL.
        """
        if ctrl in self._cgfiles:
            return self._cgfiles[ctrl]
        files: set[str] = set()
        if self.has_controller(ctrl):
            base = CGROUP_ROOT if self.cgroup_v2_unified else self.cgroup_v1[ctrl]
            if self.cgroup_v2_unified and ctrl not in self._v2_enabled():
                # what any runtime does for a cgroup below the root
                try:
                    with open(os.path.join(CGROUP_ROOT, "cgroup.subtree_control"), "w") as f:
                        f.write(f"+{ctrl}")
                except OSError:
                    pass
            probe = os.path.join(base, f"ocirun-conformance-probe-{os.getpid()}")
            try:
                os.mkdir(probe)
            except FileExistsError:
                pass
            except OSError:
                probe = ""
            if probe:
                try:
                    files = set(os.listdir(probe))
                finally:
                    try:
                        os.rmdir(probe)
                    except OSError:
                        pass
                if self.cgroup_v2_unified and ctrl not in self._v2_enabled():
                    files = set()  # the root does not hand this controller down
        self._cgfiles[ctrl] = files
        return files

    def _v2_enabled(self) -> list[str]:
        try:
            with open(os.path.join(CGROUP_ROOT, "cgroup.subtree_control")) as f:
                return f.read().split()
        except OSError:
            return []

    def has_controller(self, name: str) -> bool:
        if self.cgroup_v2_unified:
            return name in self.v2_controllers
        return name in self.cgroup_v1

    def controller_file(self, ctrl: str, cgpath: str, fname: str) -> str:
        """Host path of ``fname`` for the cgroup ``cgpath`` (absolute, hierarchy-relative)."""
        cg = cgpath.lstrip("/")
        if self.cgroup_v2_unified:
            return os.path.join(CGROUP_ROOT, cg, fname)
        return os.path.join(self.cgroup_v1[ctrl], cg, fname)


def mount_of(path: str) -> tuple[str, list[str]]:
    """The host mount holding ``path``: (mount point, optional fields such as
    ``shared:N`` / ``master:N``).  The last matching line wins (overmounts)."""
    path = os.path.realpath(path)
    best, opt = "/", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split(" - ")[0].split()
            mp = parts[4].replace("\\040", " ")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, opt = mp, parts[6:]
    return best, opt


def proc_cgroup(pid: int, ctrl: str) -> str | None:
    """Cgroup path of pid for a v1 controller (or '' key for v2)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, ctrls, path = line.rstrip("\n").split(":", 2)
                if ctrl in ctrls.split(",") or (ctrl == "" and ctrls == ""):
                    return path
    except OSError:
        return None
    return None


def parse_kv(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep and k and " " not in k:
            out.setdefault(k, v)
    return out


MARK = "OCI_CONFORMANCE_MARK"


def _umount_detach(path: str) -> bool:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.umount2(path.encode(), 2) == 0  # MNT_DETACH


class Context:
    """Handed to every test function."""

    def __init__(self, runtime_cmd: str, workdir: str, rootfs: str, host: Host, keep: bool) -> None:
        self.dir = os.path.realpath(workdir)
        os.makedirs(self.dir, exist_ok=True)
        # Every process the test causes carries this in its environment: the
        # runtime invocations (and whatever they fork), the container's
        # process.env and the hooks' env.  The leak scan looks for it.
        self.mark = f"{MARK}={self.dir}"
        self.rt = Runtime(runtime_cmd, os.path.join(self.dir, "root"), env={MARK: self.dir})
        self.rootfs_cache = rootfs
        self.host = host
        self.keep = keep
        self.containers: list[Container] = []
        self.cgroups: list[str] = []  # hierarchy-relative paths the test names
        self.finalizers: list[Callable[[], None]] = []
        self.own_mounts: set[str] = set()  # host mounts the test made itself
        self._nb = 0

    # -- building ---------------------------------------------------------------
    def bundle(self, mutate: Callable[[dict], None] | None = None, args: list[str] | None = None,
               config: dict | None = None) -> Bundle:
        cfg = config if config is not None else base_config(args)
        if mutate is not None:
            mutate(cfg)
        proc = cfg.get("process")
        if isinstance(proc, dict) and isinstance(proc.get("env"), list):
            proc["env"].append(self.mark)
        self._nb += 1
        return Bundle(os.path.join(self.dir, f"bundle{self._nb}"), self.rootfs_cache, cfg)

    def new_id(self) -> str:
        return f"conf-{next(_SEQ)}-{os.getpid()}"

    def container(self, bundle: Bundle | None = None, cid: str | None = None,
                  mutate: Callable[[dict], None] | None = None, args: list[str] | None = None) -> Container:
        if bundle is None:
            bundle = self.bundle(mutate, args)
        c = Container(self.rt, cid or self.new_id(), bundle)
        self.containers.append(c)
        return c

    def cgroup_path(self) -> str:
        """A fresh absolute cgroupsPath; the leak scan checks it is gone at the end."""
        p = f"{suite_cgroup_parent()}/c{next(_SEQ)}"
        self.cgroups.append(p)
        return p

    def shared_mount(self, path: str, kind: str = "shared") -> None:
        """Make ``path`` (a directory of this test) a shared (or ``kind``)
        bind mount on the host, so that propagation into and out of a
        container can be seen.  Unmounted by the test's finalizers, before the
        leak scan; mounts that appear below it meanwhile are reported."""
        import subprocess
        for argv in (["mount", "--bind", path, path], ["mount", f"--make-{kind}", path]):
            r = subprocess.run(argv, capture_output=True, text=True)
            if r.returncode != 0:
                _umount_detach(path)
                raise Skip(f"cannot make a {kind} mount on this host: {' '.join(argv)}: {r.stderr.strip()}")
        real = os.path.realpath(path)
        self.own_mounts.add(real)

        def undo() -> None:
            extra = [m for m in self._mounts_under(real) if m not in self.own_mounts]
            self._umount_tree(real)
            if extra:
                raise Fail("mounts propagated out of the container into the host's shared mount: "
                           + ", ".join(m.replace(self.dir, "<test>") for m in extra[:5]))
        self.finalizers.append(undo)

    def socket_path(self, name: str) -> str:
        """A path for a unix socket: sun_path holds 107 bytes, which a test
        directory under a long --workdir can exceed, so sockets live in a short
        directory of their own under /tmp (removed at cleanup)."""
        import tempfile
        d = tempfile.mkdtemp(prefix="oci-sock-", dir="/tmp")
        os.chmod(d, 0o755)
        self.finalizers.append(lambda: shutil.rmtree(d, ignore_errors=True))
        return os.path.join(d, name)

    def host_mount(self, args: list[str], target: str) -> None:
        """``mount ARGS TARGET`` on the host, made by the test itself (so not
        a leak); removed with the shared mount above it or at cleanup."""
        import subprocess
        r = subprocess.run(["mount", *args, target], capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"test set-up: mount {' '.join(args)} {target}: {r.stderr.strip()}")
        real = os.path.realpath(target)
        self.own_mounts.add(real)
        self.finalizers.append(lambda: self._umount_tree(real))

    def _umount_tree(self, path: str) -> None:
        for mp in sorted(self._mounts_under(path), key=len, reverse=True):
            _umount_detach(mp)

    # -- running ----------------------------------------------------------------
    def created(self, mutate: Callable[[dict], None] | None = None, args: list[str] | None = None,
                bundle: Bundle | None = None, flags: tuple[str, ...] = ()) -> Container:
        """A container in the ``created`` state, or Fail with the runtime's message."""
        c = self.container(bundle=bundle, mutate=mutate, args=args)
        r = c.create(*flags)
        if not r.ok:
            raise Fail(f"create failed: {r.brief()}")
        return c

    def run(self, mutate: Callable[[dict], None] | None = None, args: list[str] | None = None,
            bundle: Bundle | None = None, timeout: float = 15.0) -> tuple[Container, str]:
        """create + start, wait for the process to exit, return its stdout."""
        c = self.created(mutate, args, bundle)
        r = c.start()
        if not r.ok:
            raise Fail(f"start failed: {r.brief()}")
        if not c.wait_exit(timeout):
            raise Fail(f"container process still running after {timeout}s")
        return c, c.stdout()

    def facts(self, mutate: Callable[[dict], None] | None = None, args: list[str] | None = None) -> dict[str, str]:
        """Run the probe (or ``args``) and parse its key=value output."""
        _, out = self.run(mutate, args or ["/probe"])
        kv = parse_kv(out)
        if not kv:
            raise Fail(f"no output from the container: {out.strip()[:200]!r}")
        return kv

    def sh(self, script: str, mutate: Callable[[dict], None] | None = None) -> str:
        """Run ``sh -c script`` in a container; returns stdout."""
        return self.run(mutate, ["/bin/sh", "-c", script])[1]

    def control(self, mutate: Callable[[dict], None] | None, what: str) -> None:
        """Positive control of a negative test: the valid counterpart of the
        bad config must be accepted, so that a runtime refusing the whole
        feature cannot pass "rejects an invalid X".  The control container is
        destroyed right away."""
        c = self.container(mutate=mutate, args=["/bin/true"])
        r = c.create()
        if not r.ok:
            raise Fail(f"positive control: create refused the valid {what} too ({r.brief()}), "
                       "so the refusal of the invalid one proves nothing")
        c.destroy()

    def expect_create_error(self, mutate: Callable[[dict], None], what: str, *,
                            control: Callable[[dict], None] | None, control_what: str = "base config") -> Container:
        """create must fail and leave no container behind (runtime.md#errors).

        ``control`` is the valid counterpart of ``mutate`` (None: the base
        config), created first as a positive control."""
        self.control(control, control_what)
        c = self.container(mutate=mutate)
        r = c.create()
        if r.ok:
            raise Fail(f"create accepted {what}")
        st = c.state_raw()
        if st.ok:
            raise Fail(f"create failed on {what} but left the container behind: {st.out.strip()[:120]}")
        return c

    def skip(self, why: str) -> None:
        raise Skip(why)

    def need_v1(self, ctrl: str) -> None:
        if not self.host.has_controller(ctrl):
            raise Skip(f"host has no {ctrl} cgroup controller")

    def cgfile(self, ctrl: str, cgpath: str, fname: str) -> str:
        p = self.host.controller_file(ctrl, cgpath, fname)
        try:
            with open(p) as f:
                return f.read().strip()
        except OSError as e:
            raise Fail(f"cannot read {p}: {e.strerror}") from e

    # -- what the runtime left behind -------------------------------------------
    def marked_pids(self) -> list[int]:
        """Live processes (not us) carrying this test's mark in their environment."""
        want = self.mark.encode() + b"\0"
        me = os.getpid()
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    env = f.read()
            except OSError:
                continue
            if (env.startswith(want) or b"\0" + want in env) and pid_alive(int(name)):
                out.append(int(name))
        return out

    def _mounts_under(self, path: str) -> list[str]:
        path = os.path.realpath(path)
        out = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].replace("\\040", " ")
                if mp == path or mp.startswith(path + "/"):
                    out.append(mp)
        return out

    def _cgroup_dirs(self, cg: str) -> list[str]:
        bases = [CGROUP_ROOT] if self.host.cgroup_v2_unified else sorted(set(self.host.cgroup_v1.values()))
        uni = os.path.join(CGROUP_ROOT, "unified")
        if not self.host.cgroup_v2_unified and os.path.exists(os.path.join(uni, "cgroup.procs")):
            bases.append(uni)
        return [p for p in (os.path.join(b, cg.lstrip("/")) for b in bases) if os.path.isdir(p)]

    def leftovers(self, containers: list[Container] | None = None) -> list[str]:
        """What exists although every container of the test is gone: processes,
        mounts under the test directory, the test's cgroups, state in --root."""
        found: list[str] = []
        cs = self.containers if containers is None else containers
        pids = sorted(set(self.marked_pids()) | {p for c in cs for p in (c.pid, *c.extra_pids)
                                                   if p and pid_alive(p)})
        if pids:
            found.append("processes " + ", ".join(f"{p} ({_comm(p)})" for p in pids))
        mnts = self._mounts_under(self.dir)
        if mnts:
            found.append("mounts " + ", ".join(m.replace(self.dir, "<test>") for m in mnts[:5])
                         + (f" (+{len(mnts) - 5})" if len(mnts) > 5 else ""))
        cgs = [d for cg in self.cgroups for d in self._cgroup_dirs(cg)]
        if cgs:
            found.append("cgroups " + ", ".join(cgs))
        ids = {c.id for c in cs}
        try:
            st = sorted(n for n in os.listdir(self.rt.root) if n in ids)
        except OSError:
            st = []
        if st:
            found.append("state in --root for " + ", ".join(st))
        return found

    def _remove_leftovers(self) -> None:
        for p in self.marked_pids() + [q for c in self.containers for q in (c.pid, *c.extra_pids)]:
            if p and pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self._umount_tree(self.dir)
        for cg in self.cgroups:
            for d in self._cgroup_dirs(cg):
                _rmdir_cgroup(d)

    # -- teardown ---------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Destroy the test's containers through the runtime (kill -9, delete
        --force), run the finalizers, then REPORT whatever is still there
        (returned as problems, which fail the test) before removing it."""
        problems: list[str] = []
        for c in self.containers:
            c.destroy(reap=False)
        for fn in reversed(self.finalizers):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                problems.append(f"finalizer: {e}")
        left = self.leftovers()
        if left:
            # a process may still be on its way out after delete --force
            time.sleep(0.3)
            left = self.leftovers()
        if left:
            problems.append("left behind after delete --force: " + "; ".join(left))
            self._remove_leftovers()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _rmdir_cgroup(d: str) -> None:
    for _ in range(40):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                for p in f.read().split():
                    try:
                        os.kill(int(p), signal.SIGKILL)
                    except OSError:
                        pass
        except OSError:
            pass
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def suite_cgroup_parent() -> str:
    return f"/ocirun-conformance-{os.getpid()}"


def remove_suite_cgroups(host: Host) -> None:
    """At the end of a run: the parent of every test's cgroupsPath (made by the
    runtimes, empty by now) in every hierarchy."""
    parent = suite_cgroup_parent().lstrip("/")
    bases = [CGROUP_ROOT] if host.cgroup_v2_unified else list(host.cgroup_v1.values()) + [
        os.path.join(CGROUP_ROOT, "unified")]
    for b in bases:
        d = os.path.join(b, parent)
        if os.path.isdir(d):
            for sub in sorted(os.listdir(d)):
                if os.path.isdir(os.path.join(d, sub)):
                    _rmdir_cgroup(os.path.join(d, sub))
            _rmdir_cgroup(d)


def read_json(path: str) -> object:
    with open(path) as f:
        return json.load(f)
