"""hooks.py with small shell-script hooks in a tmp dir."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from ocirun.errors import HookError
from ocirun.hooks import run_hook, run_hooks, run_hooks_warn

STATE = {"ociVersion": "1.3.0", "id": "c1", "status": "creating", "pid": 42, "bundle": "/b"}


def script(tmp_path: Path, name: str, body: str) -> str:
    p = tmp_path / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return str(p)


def test_state_on_stdin_compact(tmp_path: Path) -> None:
    out = tmp_path / "stdin"
    h = script(tmp_path, "h", f"cat > {out}\n")
    run_hooks([{"path": h}], STATE, "prestart")
    data = out.read_text()
    assert json.loads(data) == STATE
    assert " " not in data  # compact separators


def test_args_and_default_argv0(tmp_path: Path) -> None:
    out = tmp_path / "args"
    h = script(tmp_path, "h", f'printf "%s|" "$@" > {out}\n')
    run_hooks([{"path": h, "args": [h, "one", "two words"]}], STATE, "prestart")
    assert out.read_text() == "one|two words|"
    run_hooks([{"path": h}], STATE, "prestart")
    assert out.read_text() == "|"  # no extra args when args is absent


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox needed to observe argv[0]")
def test_argv0_is_args0() -> None:
    # busybox dispatches on argv[0], so args[0] must reach it unchanged.
    bb = shutil.which("busybox")
    assert bb
    out = run_hook({"path": bb, "args": ["echo", "hello"]}, b"{}")
    assert out.failure is None
    assert out.stdout == b"hello\n"


def test_env_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    # env(1) itself as the hook: a shell would add PWD and friends
    monkeypatch.setenv("LEAKY", "1")
    out = run_hook({"path": "/usr/bin/env", "env": ["A=1", "B=x=y"]}, b"{}")
    assert out.failure is None
    assert sorted(out.stdout.decode().splitlines()) == ["A=1", "B=x=y"]
    out = run_hook({"path": "/usr/bin/env"}, b"{}")
    assert out.stdout == b""


def test_bad_env_entry_fails(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "exit 0\n")
    with pytest.raises(HookError, match=r"cannot start: env entry `NOEQUALS` is not KEY=value"):
        run_hooks([{"path": h, "env": ["NOEQUALS"]}], STATE, "prestart")


def test_nonzero_exit_message(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "echo out; echo 'first problem' >&2; echo second >&2; exit 3\n")
    with pytest.raises(HookError) as ei:
        run_hooks([{"path": h}], STATE, "createRuntime")
    assert str(ei.value) == f"createRuntime hook #0 ({h}): exit status 3: first problem"
    assert ei.value.stage == "createRuntime"
    assert ei.value.code == "hook"


def test_stdout_used_when_stderr_empty(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "echo only-stdout; exit 1\n")
    with pytest.raises(HookError, match=r"exit status 1: only-stdout$"):
        run_hooks([{"path": h}], STATE, "prestart")


def test_killed_by_signal(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "kill -TERM $$\n")
    with pytest.raises(HookError, match=r"killed by signal 15 \(SIGTERM\)"):
        run_hooks([{"path": h}], STATE, "poststart")


def test_timeout_kills(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    h = script(tmp_path, "h", f"echo $$ > {pidfile}\nexec sleep 30\n")
    t0 = time.monotonic()
    with pytest.raises(HookError, match=r"startContainer hook #0 \(.*\): timed out after 1s, killed"):
        run_hooks([{"path": h, "timeout": 1}], STATE, "startContainer")
    assert time.monotonic() - t0 < 10
    pid = int(pidfile.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(HookError, match=r"prestart hook #0 \(/nonexistent/hook\): cannot start: No such file or directory"):
        run_hooks([{"path": "/nonexistent/hook"}], STATE, "prestart")


def test_not_executable(tmp_path: Path) -> None:
    p = tmp_path / "h"
    p.write_text("#!/bin/sh\n")
    p.chmod(0o644)
    if os.geteuid() == 0:
        p.chmod(0o600)  # root bypasses r/w but still needs one x bit to exec
    with pytest.raises(HookError, match=r"cannot start: Permission denied"):
        run_hooks([{"path": str(p)}], STATE, "prestart")


def test_order_and_stop_at_first_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    a = script(tmp_path, "a", f"echo a >> {log}\n")
    bad = script(tmp_path, "bad", f"echo bad >> {log}; exit 2\n")
    c = script(tmp_path, "c", f"echo c >> {log}\n")
    run_hooks([{"path": a}, {"path": c}, {"path": a}], STATE, "prestart")
    assert log.read_text() == "a\nc\na\n"
    log.unlink()
    with pytest.raises(HookError, match=r"prestart hook #1 "):
        run_hooks([{"path": a}, {"path": bad}, {"path": c}], STATE, "prestart")
    assert log.read_text() == "a\nbad\n"


def test_warn_variant_runs_all_and_never_raises(tmp_path: Path) -> None:
    log = tmp_path / "log"
    bad = script(tmp_path, "bad", f"echo bad >> {log}; echo oops >&2; exit 2\n")
    c = script(tmp_path, "c", f"echo c >> {log}\n")
    warnings = run_hooks_warn([{"path": bad}, {"path": "/nonexistent"}, {"path": c}, {}],
                              STATE, "poststop")
    assert log.read_text() == "bad\nc\n"
    assert warnings == [
        f"poststop hook #0 ({bad}): exit status 2: oops",
        "poststop hook #1 (/nonexistent): cannot start: No such file or directory",
        "poststop hook #3 (None): `path` is missing",
    ]
    assert run_hooks_warn(None, STATE, "poststop") == []


def test_no_fd_leaks(tmp_path: Path) -> None:
    out = tmp_path / "fds"
    h = script(tmp_path, "h", f"ls /proc/self/fd > {out}\n")
    leaky = os.open("/dev/null", os.O_RDONLY)  # inheritable on purpose
    os.set_inheritable(leaky, True)
    try:
        run_hooks([{"path": h}], STATE, "prestart")
    finally:
        os.close(leaky)
    # ls sees 0, 1, 2 and its own directory fd (the lowest free one), nothing else
    assert leaky > 3
    assert sorted(int(x) for x in out.read_text().split()) == [0, 1, 2, 3]


def test_parent_fds_closed_after_run(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "cat >/dev/null; echo x\n")
    before = set(os.listdir("/proc/self/fd"))
    run_hooks([{"path": h}], STATE, "prestart")
    run_hooks_warn([{"path": "/nonexistent"}], STATE, "poststop")
    assert set(os.listdir("/proc/self/fd")) == before


def test_hook_ignoring_large_stdin(tmp_path: Path) -> None:
    # a state bigger than a pipe buffer, and a hook that never reads it
    h = script(tmp_path, "h", "exit 0\n")
    big = dict(STATE, annotations={"k": "v" * 300_000})
    run_hooks([{"path": h}], big, "prestart")


def test_hook_reading_large_stdin(tmp_path: Path) -> None:
    out = tmp_path / "n"
    h = script(tmp_path, "h", f"wc -c > {out}\n")
    big = dict(STATE, annotations={"k": "v" * 300_000})
    run_hooks([{"path": h}], big, "prestart")
    assert int(out.read_text()) == len(json.dumps(big, separators=(",", ":")))


def test_flooding_output_does_not_deadlock(tmp_path: Path) -> None:
    h = script(tmp_path, "h", "head -c 1000000 /dev/zero; head -c 1000000 /dev/zero >&2\n")
    run_hooks([{"path": h, "timeout": 20}], STATE, "prestart")


def test_daemonized_child_does_not_block(tmp_path: Path) -> None:
    # the hook exits but leaves a child holding stdout open: do not wait for EOF
    pidfile = tmp_path / "pid"
    h = script(tmp_path, "h", f"sleep 30 & echo $! > {pidfile}\nexit 0\n")
    t0 = time.monotonic()
    try:
        run_hooks([{"path": h}], STATE, "prestart")
        assert time.monotonic() - t0 < 10
    finally:
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 9)
            except ProcessLookupError:
                pass


def test_cwd(tmp_path: Path) -> None:
    out = tmp_path / "cwd"
    work = tmp_path / "work"
    work.mkdir()
    h = script(tmp_path, "h", f"pwd -P > {out}\n")
    here = os.getcwd()
    run_hooks([{"path": h}], STATE, "createContainer", cwd=str(work))
    assert out.read_text().strip() == str(work.resolve())
    assert os.getcwd() == here
    with pytest.raises(HookError, match=r"cannot start: chdir `/nonexistent`"):
        run_hooks([{"path": h}], STATE, "createContainer", cwd="/nonexistent")
    assert os.getcwd() == here


def test_sigpipe_default_in_hook(tmp_path: Path) -> None:
    out = tmp_path / "sig"
    h = script(tmp_path, "h", f"grep SigIgn /proc/self/status > {out}\n")
    run_hooks([{"path": h}], STATE, "prestart")
    ign = int(out.read_text().split()[1], 16)
    assert not ign & (1 << 12)  # SIGPIPE (13) not ignored


def test_runtime_with_stdio_closed(tmp_path: Path) -> None:
    # containerd-style callers may start the runtime with 0/1/2 closed: the
    # pipes then land on 0..2 and must not clobber one another.
    out = tmp_path / "stdin"
    h = script(tmp_path, "h", f"cat > {out}; echo err >&2; exit 7\n")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in (0, 1, 2):
                os.close(fd)
            try:
                run_hooks([{"path": h}], STATE, "prestart")
            except HookError as e:
                code = 0 if str(e).endswith("exit status 7: err") else 2
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert json.loads(out.read_text()) == STATE
