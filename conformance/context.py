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
import time
from typing import Callable

from conformance.bundle import Bundle, base_config
from conformance.registry import Fail, Skip
from conformance.runtime import Container, Runtime

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


class Context:
    """Handed to every test function."""

    def __init__(self, runtime_cmd: str, workdir: str, rootfs: str, host: Host, keep: bool) -> None:
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.rt = Runtime(runtime_cmd, os.path.join(workdir, "root"))
        self.rootfs_cache = rootfs
        self.host = host
        self.keep = keep
        self.containers: list[Container] = []
        self.cgroups: list[str] = []  # hierarchy-relative paths to rmdir at the end
        self.finalizers: list[Callable[[], None]] = []
        self._nb = 0

    # -- building ---------------------------------------------------------------
    def bundle(self, mutate: Callable[[dict], None] | None = None, args: list[str] | None = None,
               config: dict | None = None) -> Bundle:
        cfg = config if config is not None else base_config(args)
        if mutate is not None:
            mutate(cfg)
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
        """A fresh absolute cgroupsPath, removed at cleanup."""
        p = f"/ocirun-conformance-{os.getpid()}/c{next(_SEQ)}"
        self.cgroups.append(p)
        return p

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

    def expect_create_error(self, mutate: Callable[[dict], None], what: str) -> Container:
        """create must fail and leave no container behind (runtime.md#errors)."""
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

    # -- teardown ---------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Destroy everything; returns problems found (leaks are reported, not hidden)."""
        problems: list[str] = []
        for fn in reversed(self.finalizers):
            try:
                fn()
            except Exception as e:  # noqa: BLE001
                problems.append(f"finalizer: {e}")
        for c in self.containers:
            c.destroy()
        for cg in self.cgroups:
            self._rm_cgroup(cg)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        return problems

    def _rm_cgroup(self, cg: str) -> None:
        dirs = []
        if self.host.cgroup_v2_unified:
            dirs.append(CGROUP_ROOT)
        else:
            dirs.extend(self.host.cgroup_v1.values())
            if os.path.isdir(os.path.join(CGROUP_ROOT, "unified")):
                dirs.append(os.path.join(CGROUP_ROOT, "unified"))
        parts = cg.strip("/").split("/")
        for base in dirs:
            for i in range(len(parts), 0, -1):
                p = os.path.join(base, *parts[:i])
                for _ in range(20):
                    try:
                        os.rmdir(p)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)  # processes still leaving the cgroup


def read_json(path: str) -> object:
    with open(path) as f:
        return json.load(f)
