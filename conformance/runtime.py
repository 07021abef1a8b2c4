"""Driving the runtime under test through the runc CLI contract.

The spec defines abstract operations (runtime.md#operations); callers reach
them through runc's command line, so that is what we exercise:
``<runtime> --root <private> create|start|state|kill|delete ...``.  Every
call has a timeout, and ``Container.destroy`` (kill -9, delete -f, reap) is
always run by the test context, whatever happened in the test.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time

DEFAULT_TIMEOUT = 20.0


class Result:
    __slots__ = ("argv", "rc", "out", "err")

    def __init__(self, argv: list[str], rc: int, out: str, err: str) -> None:
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def brief(self) -> str:
        msg = (self.err.strip() or self.out.strip()).splitlines()
        return f"rc={self.rc} {msg[-1][:300] if msg else ''}".strip()


class Runtime:
    """A runc-compatible binary, given as a path or a shell-quoted command."""

    __slots__ = ("argv", "root", "name", "env")

    def __init__(self, command: str, root: str, env: dict[str, str] | None = None) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("empty --runtime")
        self.root = root
        self.name = os.path.basename(self.argv[0])
        # the caller's environment plus the test's mark (see Context.leftovers)
        self.env = {**os.environ, **(env or {})}

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, "--root", self.root, *args]

    def call(self, *args: str, timeout: float = DEFAULT_TIMEOUT, stdin: bytes | None = None,
             cwd: str | None = None, stdout=None, stderr=None) -> Result:
        """Run one runtime command.  With stdout/stderr given as open files the
        container (which inherits the runtime's stdio) writes there too."""
        argv = self.cmd(*args)
        if stdout is None and stderr is None:
            try:
                p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, cwd=cwd, env=self.env)
            except subprocess.TimeoutExpired:
                return Result(argv, -1, "", f"timeout after {timeout}s: {' '.join(args)}")
            return Result(argv, p.returncode, p.stdout.decode(errors="replace"),
                          p.stderr.decode(errors="replace"))
        # A pipe inherited by a long-lived container would never reach EOF, so
        # uncaptured streams go to a temporary file instead.
        import tempfile
        errf = stderr if stderr is not None else tempfile.TemporaryFile()
        try:
            p = subprocess.run(argv, input=stdin, stdout=stdout if stdout is not None else subprocess.DEVNULL,
                               stderr=errf, timeout=timeout, cwd=cwd, env=self.env,
                               stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Result(argv, -1, "", f"timeout after {timeout}s: {' '.join(args)}")
        out = p.stdout.decode(errors="replace") if isinstance(p.stdout, bytes) else ""
        err = ""
        if stderr is None:
            errf.seek(0)
            err = errf.read().decode(errors="replace")
            errf.close()
        return Result(argv, p.returncode, out, err)


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return False
    return data.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Container:
    """One container id under one runtime root, with its bundle."""

    __slots__ = ("rt", "id", "bundle", "pid", "out_path", "err_path", "extra_pids")

    def __init__(self, rt: Runtime, cid: str, bundle) -> None:
        self.rt = rt
        self.id = cid
        self.bundle = bundle
        self.pid = 0
        self.out_path = bundle.file("stdout.txt")
        self.err_path = bundle.file("stderr.txt")
        self.extra_pids: list[int] = []

    # -- operations (runtime.md#operations) ---------------------------------
    def create(self, *flags: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        self.bundle.write()
        with open(self.out_path, "ab") as out, open(self.err_path, "ab") as err:
            r = self.rt.call("create", "--bundle", self.bundle.path, *flags, self.id,
                             timeout=timeout, stdout=out, stderr=err, cwd=self.bundle.path)
        r.err = self.stderr()
        if r.ok:
            st = self.state()
            if isinstance(st, dict) and isinstance(st.get("pid"), int):
                self.pid = st["pid"]
        return r

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> Result:
        return self.rt.call("start", self.id, timeout=timeout)

    def state_raw(self) -> Result:
        return self.rt.call("state", self.id)

    def state(self) -> dict | Result:
        """The parsed state object, or the failed Result."""
        r = self.state_raw()
        if not r.ok:
            return r
        try:
            return json.loads(r.out)
        except ValueError:
            return r

    def status(self) -> str:
        st = self.state()
        return st.get("status", "?") if isinstance(st, dict) else "<no state>"

    def kill(self, sig: str = "TERM", *flags: str) -> Result:
        return self.rt.call("kill", *flags, self.id, sig)

    def delete(self, *flags: str) -> Result:
        return self.rt.call("delete", *flags, self.id)

    # -- helpers -------------------------------------------------------------
    def wait_exit(self, timeout: float = 10.0) -> bool:
        """Wait for the container init to die (observed from /proc)."""
        if not self.pid:
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not pid_alive(self.pid):
                return True
            time.sleep(0.02)
        return False

    def wait_status(self, want: str, timeout: float = 10.0) -> str:
        end = time.monotonic() + timeout
        s = self.status()
        while s != want and time.monotonic() < end:
            time.sleep(0.05)
            s = self.status()
        return s

    def stdout(self) -> str:
        try:
            with open(self.out_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stderr(self) -> str:
        try:
            with open(self.err_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def destroy(self, reap: bool = True) -> None:
        """Best-effort teardown through the runtime (kill -9, delete --force);
        never raises.  With ``reap`` a process that survives is SIGKILLed;
        the test context passes False so that it can report it first."""
        try:
            self.rt.call("kill", self.id, "KILL", timeout=10)
            self.rt.call("delete", "--force", self.id, timeout=15)
        except Exception:  # noqa: BLE001 - cleanup must go on
            pass
        if not reap:
            return
        for pid in [self.pid, *self.extra_pids]:
            if pid and pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
