"""Lifecycle hooks: config.md "POSIX-platform Hooks" and runtime.md "Lifecycle".

Each hook entry ``{path, args, env, timeout}`` is run in array order, with
argv ``args`` (``[path]`` when absent, as runc does), an environment of
exactly ``env`` (nothing inherited), and the container state JSON on stdin.
A hook fails when it cannot be started, exits non-zero, dies from a signal or
overruns ``timeout`` seconds (it is then SIGKILLed).  Failure of prestart,
createRuntime, createContainer, startContainer and (since v1.3.0) poststart
hooks is an error; poststop failures are only warnings (:func:`run_hooks_warn`).

Speed: ``subprocess`` costs ~10 ms to import and ``signal`` ~3 ms (enum), so
hooks are spawned with ``os.posix_spawn`` and watched with ``select.poll`` on
the pipes plus a pidfd.  Signal numbers below are the generic Linux ones.
"""

from __future__ import annotations

import _signal
import os
import select
import time

from ocirun import jsonio
from ocirun.errors import HookError, oserror_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


_SIGKILL = 9
_SIGPIPE = 13
_SIGXFSZ = 25
# Keep at most this much of a hook's stdout/stderr: only its first line is
# reported, but reading on avoids blocking a chatty hook on a full pipe.
_CAPTURE_MAX = 65536
_READ_CHUNK = 65536


class Hook:
    """One entry of ``hooks.<kind>``, parsed in the parent (``path``, argv,
    environment as a mapping, timeout in seconds or None)."""

    __slots__ = ("args", "env", "path", "timeout")

    def __init__(self, path: str, args: tuple[str, ...], env: dict[str, str],
                 timeout: int | None) -> None:
        self.path = path
        self.args = args
        self.env = env
        self.timeout = timeout

    @classmethod
    def from_config(cls, entry: dict[str, object], where: str = "hook") -> Hook:
        """Parse one config entry; raises ConfigError naming ``where``."""
        from ocirun.errors import ConfigError
        path = entry.get("path")
        if not isinstance(path, str) or not path:
            raise ConfigError(f"{where}.path: required")
        args = entry.get("args")
        env: dict[str, str] = {}
        raw_env: list[object] = entry.get("env") or []  # type: ignore[assignment]
        for j, item in enumerate(raw_env):
            key, sep, value = str(item).partition("=")
            if not sep or not key:
                raise ConfigError(f"{where}.env[{j}]: `{item}` is not KEY=value")
            env[key] = value
        timeout = entry.get("timeout")
        return cls(path, tuple(str(a) for a in args) if args else (path,),  # type: ignore[attr-defined]
                   env, timeout if isinstance(timeout, int) and not isinstance(timeout, bool)
                   else None)

    def to_config(self) -> dict[str, object]:
        doc: dict[str, object] = {"path": self.path, "args": list(self.args)}
        if self.env:
            doc["env"] = [f"{k}={v}" for k, v in self.env.items()]
        if self.timeout is not None:
            doc["timeout"] = self.timeout
        return doc


def as_hooks(hooks: Sequence[Hook | dict[str, object]] | None, kind: str) -> tuple[Hook, ...]:
    """``hooks.<kind>`` of a config (or of state.json) as Hook objects."""
    return tuple(h if isinstance(h, Hook) else Hook.from_config(h, f"$.hooks.{kind}[{i}]")
                 for i, h in enumerate(hooks or ()))


class HookOutcome:
    """What happened to one hook: ``failure`` is None on success."""

    __slots__ = ("failure", "stderr", "stdout")

    def __init__(self, failure: str | None, stdout: bytes = b"", stderr: bytes = b"") -> None:
        self.failure = failure
        self.stdout = stdout
        self.stderr = stderr


def run_hooks(hooks: Sequence[Hook | dict[str, object]] | None, state: dict[str, object],
              phase: str, *,
              cwd: str | None = None) -> None:
    """Run ``hooks`` in order; raise :class:`HookError` on the first failure.

    The message is ``<phase> hook #<i> (<path>): <what>: <first stderr line>``
    where ``i`` is the index in the config array ``hooks.<phase>[i]``.
    """
    payload = _state_bytes(state)
    for i, hook in enumerate(hooks or ()):
        msg = _run_indexed(i, hook, payload, phase, cwd)
        if msg is not None:
            raise HookError(msg, stage=phase)


def run_hooks_warn(hooks: Sequence[Hook | dict[str, object]] | None, state: dict[str, object],
                   phase: str, *, cwd: str | None = None) -> list[str]:
    """Run every hook even when some fail (poststop); return the failures as
    warnings.  Never raises: the spec says the lifecycle goes on."""
    payload = _state_bytes(state)
    warnings: list[str] = []
    for i, hook in enumerate(hooks or ()):
        try:
            msg = _run_indexed(i, hook, payload, phase, cwd)
        except Exception as e:  # noqa: BLE001 - a warning path must never abort delete
            msg = f"{phase} hook #{i}: {e}"
        if msg is not None:
            warnings.append(msg)
    return warnings


def _state_bytes(state: dict[str, object]) -> bytes:
    return jsonio.dumps(state).encode()


def _run_indexed(i: int, hook: Hook | dict[str, object], payload: bytes, phase: str,
                 cwd: str | None) -> str | None:
    """Run one hook; return the one-line failure message, or None on success."""
    path = hook.path if isinstance(hook, Hook) else hook.get("path")
    label = f"{phase} hook #{i} ({path})"
    if not isinstance(path, str) or not path:
        return f"{label}: `path` is missing"
    out = run_hook(hook, payload, cwd=cwd)
    if out.failure is None:
        return None
    detail = _first_line(out.stderr) or _first_line(out.stdout)
    return f"{label}: {out.failure}" + (f": {detail}" if detail else "")


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _env_map(env: object) -> dict[str, str]:
    """``["K=V", ...]`` -> mapping for posix_spawn (which wants a dict)."""
    result: dict[str, str] = {}
    for entry in env or ():  # type: ignore[attr-defined]
        key, sep, value = str(entry).partition("=")
        if not sep or not key:
            raise ValueError(f"env entry `{entry}` is not KEY=value")
        result[key] = value
    return result


def _high_fd(fd: int) -> int:
    """Move ``fd`` to >= 3 so the dup2 actions onto 0/1/2 cannot clobber one
    another when the runtime itself was started with stdio closed."""
    if fd > 2:
        return fd
    # No imports here: startContainer hooks run after pivot_root, where the
    # runtime's modules are out of reach.
    low = []
    new = os.dup(fd)
    while new <= 2:  # dup takes the lowest free slot: hold those until past 2
        low.append(new)
        new = os.dup(fd)
    for d in low:
        os.close(d)
    os.set_inheritable(new, False)
    os.close(fd)
    return new


def _inheritable_fds(keep: set[int]) -> list[int]:
    """Open fds above 2 that would survive exec.  posix_spawn closes only
    CLOEXEC fds, so these must be closed explicitly to keep hooks from
    inheriting e.g. the sync socket or a console fd passed to the runtime."""
    found: list[int] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        fd = int(name)
        if fd <= 2 or fd in keep:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            pass  # the listdir fd itself, closed by now
    return found


def run_hook(hook: Hook | dict[str, object], payload: bytes, *,
             cwd: str | None = None) -> HookOutcome:
    """Spawn one hook, feed it ``payload``, collect its output and status.

    A Hook comes from a plan; a dict (tests, hand-made calls) is read
    leniently: a malformed env entry is this hook's failure, not an error.
    """
    if isinstance(hook, Hook):
        path, args, env, timeout = hook.path, list(hook.args), hook.env, hook.timeout
    else:
        path = str(hook.get("path"))
        args = hook.get("args") or [path]  # type: ignore[assignment]
        timeout = hook.get("timeout")  # type: ignore[assignment]
        try:
            env = _env_map(hook.get("env"))
        except ValueError as e:
            return HookOutcome(f"cannot start: {e}")

    fds: list[int] = []
    try:
        stdin_r, stdin_w = (_high_fd(fd) for fd in os.pipe())
        fds += [stdin_r, stdin_w]
        out_r, out_w = (_high_fd(fd) for fd in os.pipe())
        fds += [out_r, out_w]
        err_r, err_w = (_high_fd(fd) for fd in os.pipe())
        fds += [err_r, err_w]
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, stdin_r, 0),
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds(set(fds))]
        try:
            pid = _spawn(path, [str(a) for a in args], env, actions, cwd)
        except OSError as e:
            return HookOutcome(f"cannot start: {oserror_text(e)}")
        # Close the child's ends at once: the EOFs we wait for need it.
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
            fds.remove(fd)
        return _watch(pid, payload, stdin_w, out_r, err_r, fds, timeout)
    finally:
        for fd in fds:
            os.close(fd)


def _spawn(path: str, argv: list[str], env: dict[str, str], actions: list[tuple[int, ...]],
           cwd: str | None) -> int:
    """posix_spawn has no chdir action before glibc 2.29 / Python 3.13, so
    change the runtime's cwd around the call (no threads: this is safe)."""
    kwargs = {
        "file_actions": actions,
        # Python ignores SIGPIPE and SIGXFSZ; ignored dispositions survive
        # exec, so give the hook the defaults, and an empty signal mask.
        "setsigdef": (_SIGPIPE, _SIGXFSZ),
        "setsigmask": (),
    }
    if cwd is None:
        return os.posix_spawn(path, argv, env, **kwargs)  # type: ignore[arg-type]
    saved = os.open(".", os.O_PATH | os.O_CLOEXEC)
    try:
        try:
            os.chdir(cwd)
        except OSError as e:
            raise OSError(e.errno, f"chdir `{cwd}`: {oserror_text(e)}") from e
        try:
            return os.posix_spawn(path, argv, env, **kwargs)  # type: ignore[arg-type]
        finally:
            os.fchdir(saved)
    finally:
        os.close(saved)


def _watch(pid: int, payload: bytes, stdin_w: int, out_r: int, err_r: int, fds: list[int],
           timeout: object) -> HookOutcome:
    """Feed stdin, drain stdout/stderr and wait for exit, all in one poll
    loop, so a hook that ignores stdin or floods its output cannot deadlock
    us, and the deadline is exact."""
    deadline = None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        deadline = time.monotonic() + timeout
    try:
        pidfd: int | None = os.pidfd_open(pid)
        fds.append(pidfd)  # type: ignore[arg-type]
    except OSError:
        pidfd = None  # kernel < 5.3: fall back to a short waitpid tick
    poller = select.poll()
    for fd in (stdin_w, out_r, err_r):
        os.set_blocking(fd, False)
    bufs: dict[int, bytearray] = {out_r: bytearray(), err_r: bytearray()}
    pending = memoryview(payload)
    poller.register(stdin_w, select.POLLOUT)
    poller.register(out_r, select.POLLIN)
    poller.register(err_r, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    status: int | None = None
    timed_out = False
    while status is None:
        wait_ms: float | None = None
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            wait_ms = remaining * 1000
        if pidfd is None:
            wait_ms = 10 if wait_ms is None else min(wait_ms, 10)
        for fd, _ev in poller.poll(wait_ms):
            if fd == stdin_w:
                pending = _feed(stdin_w, pending)
                if not pending:
                    poller.unregister(stdin_w)
                    _close(stdin_w, fds)
            elif fd in bufs:
                if not _drain(fd, bufs[fd]):
                    poller.unregister(fd)
            elif fd == pidfd:
                status = _reap(pid, block=True)
        if pidfd is None and status is None:
            status = _reap(pid, block=False)
    if timed_out:
        os.kill(pid, _SIGKILL)  # not reaped yet, so the pid cannot be recycled
        _reap(pid, block=True)
    # The hook is gone; take what is already in the pipes but do not wait for
    # EOF: a daemon it left behind may hold them open forever.
    for fd, buf in bufs.items():
        _drain(fd, buf)
    stdout, stderr = bytes(bufs[out_r]), bytes(bufs[err_r])
    if timed_out:
        return HookOutcome(f"timed out after {timeout}s, killed", stdout, stderr)
    assert status is not None
    return HookOutcome(_describe(status), stdout, stderr)


def _feed(fd: int, pending: memoryview) -> memoryview:
    try:
        n = os.write(fd, pending)
    except BlockingIOError:
        return pending
    except OSError:
        # EPIPE: the hook does not read its stdin.  Not a failure by itself.
        return pending[:0]
    return pending[n:]


def _drain(fd: int, buf: bytearray) -> bool:
    """Read what is available; False once the pipe is at EOF or broken."""
    while True:
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            return False
        if not chunk:
            return False
        if len(buf) < _CAPTURE_MAX:
            buf += chunk[: _CAPTURE_MAX - len(buf)]


def _reap(pid: int, *, block: bool) -> int | None:
    while True:
        try:
            got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except InterruptedError:
            continue
        return status if got == pid else None


def _close(fd: int, fds: list[int]) -> None:
    os.close(fd)
    fds.remove(fd)


def _describe(status: int) -> str | None:
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    if code > 0:
        return f"exit status {code}"
    # _signal, not signal: signal pulls in enum (~3 ms), and nothing may be
    # imported lazily in a hook run after pivot_root.
    names = {getattr(_signal, n): n for n in dir(_signal)
             if n.startswith("SIG") and not n.startswith(("SIG_", "SIGRT"))}
    return f"killed by signal {-code} ({names.get(-code, 'unknown')})"
