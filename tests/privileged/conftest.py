"""Fixtures for the privileged tier: real containers from a busybox bundle (issue 2, point 11).

``lab`` drives the runtime under test through its runc-compatible CLI (RUNC-CLI.md) with a
private ``--root`` and unique container ids, and builds bundles whose rootfs is shared
read-only by the whole session. Its finalizer runs even when a test fails: it SIGKILLs
and force-deletes every container the test made, then looks for what the runtime left
behind (state dirs, cgroups named after the id, mounts under the test's tmp dir,
processes carrying the test's token), cleans that up and records it in ``leak_log`` so
``test_zz_leaks.py`` fails.

The runtime's own stdout and stderr go to files, never pipes: a created container
inherits them, and a pipe would keep ``subprocess.run`` waiting until it exits.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import bundle as bundle_mod
import pytest

# Set from tests/conftest.py's fixtures when the first lab is made: importing that module by
# name here would clash with pytest's own handling of the two conftest modules.
HostScan: Any = None

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_SEQ = itertools.count(1)


class Result:
    """What one runtime invocation did."""

    __slots__ = ("argv", "returncode", "stderr", "stdout", "stdout_path")

    def __init__(
        self, argv: list[str], returncode: int, stdout: str, stderr: str, stdout_path: str = ""
    ) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        # A created container keeps writing here after the runtime has exited.
        self.stdout_path = stdout_path

    def stdout_now(self) -> str:
        with open(self.stdout_path, "rb") as f:
            return f.read().decode(errors="replace")

    def __repr__(self) -> str:
        return (
            f"Result(rc={self.returncode}, argv={self.argv!r},\n  stdout={self.stdout[-2000:]!r},"
            f"\n  stderr={self.stderr[-2000:]!r})"
        )

    def ok(self) -> Result:
        assert self.returncode == 0, f"runtime failed: {self!r}"
        return self


class Bundle:
    __slots__ = ("config", "path", "rootfs")

    def __init__(self, path: str, config: dict[str, Any], rootfs: str) -> None:
        self.path = path
        self.config = config
        self.rootfs = rootfs


class Lab:
    """One runtime command, one private state root, the bundles and containers of a test."""

    def __init__(
        self,
        cmd: list[str],
        workdir: str,
        shared_rootfs: str,
        token: str,
        is_runc: bool,
        env: dict[str, str],
    ) -> None:
        self.cmd = cmd
        self.workdir = workdir
        self.root = os.path.join(workdir, "root")
        self.shared_rootfs = shared_rootfs
        self.token = token
        self.is_runc = is_runc
        self.ids: list[str] = []
        self.popens: list[subprocess.Popen[bytes]] = []
        self._ids = itertools.count(1)
        self._bundles = itertools.count(1)
        self._outs = itertools.count(1)
        self.env = env
        os.makedirs(workdir, exist_ok=True)
        self.mounts_before = set(HostScan.mounts_under(workdir))

    # -- names and bundles -------------------------------------------------------------
    def new_id(self) -> str:
        cid = f"{self.token}-{next(self._ids)}"
        self.ids.append(cid)
        return cid

    def bundle(
        self,
        args: list[str] | None = None,
        mutate: Callable[[dict[str, Any]], Any] | None = None,
        private_rootfs: bool = False,
    ) -> Bundle:
        path = os.path.join(self.workdir, f"bundle{next(self._bundles)}")
        os.makedirs(path)
        if private_rootfs:
            rootfs = os.path.join(path, "rootfs")
            shutil.copytree(self.shared_rootfs, rootfs, symlinks=True)
        else:
            rootfs = self.shared_rootfs

        def with_token(cfg: dict[str, Any]) -> None:
            # The token lets the leak check find the container's processes.
            cfg["process"]["env"].append(f"OCITEST={self.token}")
            if mutate is not None:
                mutate(cfg)

        cfg = bundle_mod.write_bundle(path, rootfs, args, with_token)
        return Bundle(path, cfg, rootfs)

    # -- the CLI -----------------------------------------------------------------------
    def argv(self, *args: str, global_args: tuple[str, ...] = ()) -> list[str]:
        return [*self.cmd, "--root", self.root, *global_args, *args]

    def cli(self, *args: str, global_args: tuple[str, ...] = (), timeout: float = 60) -> Result:
        argv = self.argv(*args, global_args=global_args)
        n = next(self._outs)
        out_p = os.path.join(self.workdir, f"out{n}")
        err_p = os.path.join(self.workdir, f"err{n}")
        with open(out_p, "wb") as out, open(err_p, "wb") as err:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=self.env,
                timeout=timeout, cwd=self.workdir, check=False,
            )
        with open(out_p, "rb") as out, open(err_p, "rb") as err:
            return Result(
                argv, proc.returncode, out.read().decode(errors="replace"),
                err.read().decode(errors="replace"), out_p,
            )

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.argv(*args), env=self.env, cwd=self.workdir, **kw)
        self.popens.append(p)
        return p

    def create(self, b: Bundle, cid: str, *flags: str) -> Result:
        return self.cli("create", "--bundle", b.path, *flags, cid)

    def run(self, b: Bundle, cid: str | None = None, *flags: str, timeout: float = 60) -> Result:
        return self.cli("run", "--bundle", b.path, *flags, cid or self.new_id(), timeout=timeout)

    def run_args(
        self, args: list[str], mutate: Callable[[dict[str, Any]], Any] | None = None, **kw: Any
    ) -> Result:
        """Run ``args`` in a fresh container and return what the runtime (and so the
        container, whose stdio it shares) printed."""
        return self.run(self.bundle(args, mutate, **kw))

    def sh(self, script: str, mutate: Callable[[dict[str, Any]], Any] | None = None, **kw: Any) -> str:
        r = self.run_args(["sh", "-c", script], mutate, **kw)
        assert r.returncode == 0, f"container script failed: {r!r}"
        return r.stdout

    def state(self, cid: str) -> dict[str, Any]:
        r = self.cli("state", cid).ok()
        return json.loads(r.stdout)

    def status(self, cid: str) -> str:
        return str(self.state(cid)["status"])

    def start_foreground(self, script: str, *flags: str) -> tuple[subprocess.Popen[bytes], str, str]:
        """``run`` a shell script in the foreground, in the background of the test; return
        (runtime process, id, stdout path) once the script printed ``ready``."""
        b = self.bundle(["sh", "-c", script])
        cid = self.new_id()
        out_p = os.path.join(self.workdir, f"fg-{cid}.out")
        with open(out_p, "wb") as out:
            p = self.popen("run", "--bundle", b.path, *flags, cid, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            with open(out_p, "rb") as f:
                if b"ready" in f.read():
                    return p, cid, out_p
            if p.poll() is not None or time.monotonic() > deadline:
                with open(out_p, "rb") as f:
                    raise AssertionError(f"container never got ready (rc={p.poll()}): {f.read()!r}")
            time.sleep(0.02)

    def wait_status(self, cid: str, want: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            r = self.cli("state", cid)
            if r.returncode == 0:
                st = json.loads(r.stdout)
                if st["status"] == want:
                    return st
            if time.monotonic() > deadline:
                raise AssertionError(f"{cid} never reached {want!r}; last: {r!r}")
            time.sleep(0.05)

    # -- what a failed command may have left --------------------------------------------
    def leftovers(self, cid: str) -> list[str]:
        """Everything a container id could have left on the host; [] when clean."""
        found = []
        if os.path.lexists(os.path.join(self.root, cid)):
            found.append(f"state dir {self.root}/{cid}")
        if "/" not in cid and cid not in (".", ".."):
            found += [f"cgroup {p}" for p in HostScan.cgroups_named(cid, exact=True)]
        found += [f"mount {m}" for m in set(HostScan.mounts_under(self.workdir)) - self.mounts_before]
        found += [f"process {p}" for p in self.token_pids()]
        return found

    def token_pids(self) -> list[int]:
        return HostScan.pids_with_token(self.token, exact=True)

    # -- teardown ----------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Kill and delete everything; return the leaks the runtime itself left behind."""
        for p in self.popens:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        ids = list(dict.fromkeys(self.ids))
        if os.path.isdir(self.root):
            # containers are directories; files there are the runtime's own (ocirun's
            # seccomp@<digest> program cache)
            ids += [d for d in os.listdir(self.root)
                    if d not in ids and os.path.isdir(os.path.join(self.root, d))]
        for cid in ids:
            for args in (("kill", cid, "KILL"), ("delete", "--force", cid)):
                try:
                    self.cli(*args, timeout=20)
                except subprocess.TimeoutExpired:
                    pass
        leaks: list[str] = []
        pids = self.token_pids()
        if pids:
            leaks.append(f"processes {pids}")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while self.token_pids() and time.monotonic() < deadline:
                time.sleep(0.05)
        for cid in ids:
            if os.path.lexists(os.path.join(self.root, cid)):
                leaks.append(f"state dir {cid}")
            if "/" in cid or cid in (".", ".."):
                continue
            for cg in HostScan.cgroups_named(cid, exact=True):
                leaks.append(f"cgroup {cg}")
                _rmdir_tree(cg)
        mounts = sorted(set(HostScan.mounts_under(self.workdir)) - self.mounts_before, key=len, reverse=True)
        for m in mounts:
            leaks.append(f"mount {m}")
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        return leaks


def _rmdir_tree(path: str) -> None:
    """Remove a cgroup directory: children first; cgroupfs only allows rmdir."""
    for _ in range(20):
        for dirpath, dirnames, _files in os.walk(path, topdown=False):
            for d in dirnames:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError:
                    pass
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


@pytest.fixture(scope="session")
def shared_rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return bundle_mod.build_rootfs(str(tmp_path_factory.getbasetemp() / "rootfs-shared"))


@pytest.fixture
def make_lab(
    request: pytest.FixtureRequest,
    tmp_path: Any,
    shared_rootfs: str,
    session_token: str,
    leak_log: list[Any],
    host_scan: Any,
    runtime_env_for: Callable[[list[str], str], dict[str, str]],
) -> Iterator[Callable[[list[str]], Lab]]:
    """Factory: ``make_lab(cmd)`` gives a Lab for that runtime command; all are torn down."""
    global HostScan
    HostScan = host_scan
    labs: list[Lab] = []

    def make(cmd: list[str]) -> Lab:
        token = f"{session_token}-{next(_SEQ)}"
        lab = Lab(
            cmd, str(tmp_path / token), shared_rootfs, token,
            os.path.basename(cmd[0]) == "runc", runtime_env_for(cmd, token),
        )
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        leaks = lab.cleanup()
        if leaks:
            leak_log.append(f"{request.node.nodeid} [{' '.join(lab.cmd)}]: {'; '.join(leaks)}")


@pytest.fixture
def lab(make_lab: Callable[[list[str]], Lab], runtime_cmd: list[str]) -> Lab:
    return make_lab(runtime_cmd)
