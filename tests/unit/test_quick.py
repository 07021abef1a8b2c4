"""The launcher's fast path (ocirun/quick.py) prints what the full command line prints.

Each case runs the same argv twice in a fresh ``python -I -S`` (as the
launcher runs): once through ``quick.main`` and once through ``cli.main``,
and compares stdout, stderr, the exit status and the ``--log`` file.  The
fast path may decline (it then returns None and the launcher runs cli.main);
the cases it is built for must not decline, and the unusual ones must.
No root needed: state roots are written here, the "inits" are this test's
own children.  Also: ground.py (one implementation of state derivation)
against the library it replaced.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from ocirun import cmdtable, ground, procfs

DECLINED = 99  # exit status of the probe when quick.main returned None

PROBE = r"""
import sys
sys.path.insert(0, {repo!r})
argv = {argv!r}
if {fast!r}:
    from ocirun.quick import main
    status = main(argv)
    if status is None:
        sys.exit({declined})
else:
    from ocirun.cli import main
    status = main(argv)
sys.exit(status)
"""


class Out:
    def __init__(self, r: subprocess.CompletedProcess[str], log: str | None) -> None:
        self.rc = r.returncode
        self.out = r.stdout
        self.err = r.stderr
        self.log = log

    def key(self) -> tuple[int, str, str, str | None]:
        return self.rc, self.out, self.err, self.log


def run(argv: list[str], fast: bool, log: pathlib.Path | None = None,
        env: dict[str, str] | None = None) -> Out:
    if log is not None and log.exists():
        log.unlink()
    code = PROBE.format(repo=str(REPO), argv=argv, fast=fast, declined=DECLINED)
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                       timeout=60, env=env, check=False)
    text = None
    if log is not None and log.exists():
        # the time field may tick between the two runs
        text = "\n".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "time"})
                         if line.startswith("{") else line
                         for line in log.read_text().splitlines())
    return Out(r, text)


def same(argv: list[str], log: pathlib.Path | None = None) -> Out:
    """Both paths agree, and the fast one did the work."""
    fast = run(argv, True, log)
    assert fast.rc != DECLINED, f"{argv}: the fast path declined"
    full = run(argv, False, log)
    assert fast.key() == full.key(), argv
    return fast


def declines(argv: list[str], env: dict[str, str] | None = None) -> None:
    assert run(argv, True, env=env).rc == DECLINED, argv


def record(root: pathlib.Path, cid: str, pid: int = 0, fifo: bool = False,
           **extra: Any) -> pathlib.Path:
    d = root / cid
    d.mkdir(parents=True)
    rec = {"id": cid, "pid": pid, "pid_start": procfs.pid_start_time(pid) if pid else 0,
           "bundle": f"/b/{cid}", "rootfs": f"/b/{cid}/rootfs",
           "created": "2024-01-02T03:04:05.000000006Z", "ociVersion": "1.3.0",
           "annotations": {}, "cgroup_paths": {}, "hooks": {}}
    rec.update(extra)
    (d / "state.json").write_text(json.dumps(rec))
    if fifo:
        os.mkfifo(d / "exec.fifo")
    return d


@pytest.fixture
def sleeper() -> Any:
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def test_state(tmp_path: pathlib.Path, sleeper: Any) -> None:
    root = tmp_path / "root"
    record(root, "made", sleeper.pid, fifo=True)
    record(root, "gone", 0, annotations={"a": "b", "c": "ü"})
    record(root, "runs", sleeper.pid)
    log = tmp_path / "log.json"
    for cid, status in (("made", "created"), ("gone", "stopped"), ("runs", "running")):
        out = same(["--root", str(root), "state", cid])
        assert json.loads(out.out)["status"] == status
        same([f"--root={root}", "--log", str(log), "--log-format", "json", "state", cid], log)
        same(["-root", str(root), "--log-format=text", "state", cid])
    rel = os.path.relpath(root)
    same(["--root", rel, "state", "runs"])


def test_list(tmp_path: pathlib.Path, sleeper: Any) -> None:
    root = tmp_path / "root"
    for i in range(5):
        record(root, f"c{i}", sleeper.pid if i % 2 else 0, fifo=i == 3)
    (root / "half-made").mkdir()  # no state.json yet: skipped by both
    (root / "a-file").write_text("")
    for args in ([], ["-q"], ["--quiet"], ["--format", "json"], ["-f", "json"],
                 ["--format=table"], ["-q", "-f", "json"]):
        same(["--root", str(root), "list", *args])
    same(["--root", str(tmp_path / "nothing"), "list"])
    same(["--root", str(tmp_path / "nothing"), "list", "-f", "json"])


def test_kill(tmp_path: pathlib.Path, sleeper: Any) -> None:
    root = tmp_path / "root"
    record(root, "runs", sleeper.pid)
    assert run(["--root", str(root), "kill", "runs", "TERM"], True).rc == 0
    assert sleeper.wait(10) == -signal.SIGTERM
    # stopped now: the fast path leaves the error to the full one
    declines(["--root", str(root), "kill", "runs", "KILL"])


def _parked_init(fifo: pathlib.Path, then: str) -> subprocess.Popen[bytes]:
    """A stand-in for a parked init: blocks opening the FIFO for writing, then
    writes what ``then`` says and execs sleep (or exits 127 after an error)."""
    code = ("import os, sys\n"
            f"fd = os.open({str(fifo)!r}, os.O_WRONLY | os.O_CLOEXEC)\n"
            f"os.write(fd, {then.encode()!r})\n"
            "if len(sys.argv) > 1: os._exit(127)\n"
            "os.execv('/bin/sleep', ['sleep', '60'])\n")
    return subprocess.Popen([sys.executable, "-c", code, *(["fail"] if len(then) > 1 else [])])


@pytest.mark.parametrize("then", ["\0", "\0exec:2:exec `nosuch`: No such file or directory"])
def test_start(tmp_path: pathlib.Path, then: str) -> None:
    outs = []
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "full")
        d = record(root, "c1", 0, fifo=True)
        init = _parked_init(d / "exec.fifo", then)
        try:
            time.sleep(0.05)
            rec = json.loads((d / "state.json").read_text())
            rec.update(pid=init.pid, pid_start=procfs.pid_start_time(init.pid))
            (d / "state.json").write_text(json.dumps(rec))
            log = tmp_path / f"log-{fast}.json"
            out = run(["--root", str(root), "--log", str(log), "--log-format", "json",
                       "start", "c1"], fast, log)
            assert out.rc != DECLINED
            assert not (d / "exec.fifo").exists()
            outs.append(out.key())
        finally:
            init.kill()
            init.wait()
    assert outs[0] == outs[1]
    assert (outs[0][0] == 0) == (then == "\0")


def test_declines(tmp_path: pathlib.Path, sleeper: Any) -> None:
    root = tmp_path / "root"
    record(root, "runs", sleeper.pid)
    r = ["--root", str(root)]
    for argv in (["state", "nosuch"], ["state", "../x"], ["--debug", "state", "runs"],
                 ["--trace", str(tmp_path / "t"), "state", "runs"], ["state", "runs", "--help"],
                 ["state"], ["kill", "--all", "runs"], ["kill", "runs", "NOSUCH"],
                 ["start", "runs"], ["delete", "--force=true", "runs"], ["list", "--format", "yaml"],
                 ["--log-format", "xml", "state", "runs"]):
        declines(r + argv)
    declines([], None)
    declines(r + ["state", "runs"], env={**os.environ, "OCIRUN_TRACE": str(tmp_path / "t")})
    (root / "broken").mkdir()
    (root / "broken" / "state.json").write_text("{")
    declines(r + ["list"])  # the full path warns about the broken entry
    declines(r + ["state", "broken"])


def test_delete(tmp_path: pathlib.Path, sleeper: Any) -> None:
    """delete runs the library itself: same output, errors included."""
    outs = []
    for fast in (True, False):
        root = tmp_path / ("fast" if fast else "full")
        record(root, "gone", 0)
        record(root, "runs", sleeper.pid)
        got = [run(["--root", str(root), "delete", "runs"], fast).key(),
               run(["--root", str(root), "delete", "gone"], fast).key(),
               run(["--root", str(root), "delete", "gone"], fast).key(),
               run(["--root", str(root), "delete", "-f", "gone"], fast).key()]
        assert not (root / "gone").exists() and (root / "runs").exists()
        outs.append(got)
    assert outs[0] == outs[1]
    assert outs[0][0][0] == 1 and "not stopped: running" in outs[0][0][2]
    assert outs[0][1][0] == 0 and outs[0][2][0] == 1 and outs[0][3][0] == 0


# --- ground.py against what it replaced ---

def test_default_root_is_the_cli_one() -> None:
    assert ground.DEFAULT_ROOT == cmdtable.DEFAULT_ROOT


def test_signal_numbers() -> None:
    for text in ("9", "0", "64", "65", "KILL", "sigterm", "SIGRTMIN", "SIG_DFL", "nosuch", "hup"):
        want = None
        if text.isdigit():
            want = int(text) if int(text) <= 64 else None
        else:
            name = ("SIG" + text.upper()).replace("SIGSIG", "SIG")
            n = getattr(signal.Signals, name, None) if name not in ("SIGRTMIN", "SIGRTMAX") else None
            want = int(n) if n is not None else None
        assert ground.signal_number(text) == want, text


@pytest.mark.parametrize("files, want", [
    ({"freezer/c/freezer.state": "FROZEN\n"}, True),
    ({"freezer/c/freezer.state": "FREEZING\n"}, True),
    ({"freezer/c/freezer.state": "THAWED\n"}, False),
    ({"unified/c/cgroup.freeze": "1\n"}, True),
    ({"unified/c/cgroup.freeze": "0\n", "unified/c/cgroup.events": "populated 1\nfrozen 1\n"}, True),
    ({"unified/c/cgroup.freeze": "0\n", "unified/c/cgroup.events": "frozen 0\n"}, False),
    ({}, False),
])
def test_frozen_matches_the_cgroup_manager(tmp_path: pathlib.Path, files: dict[str, str],
                                           want: bool) -> None:
    from ocirun.cgroups import load_manager
    from ocirun.errors import OciRunError
    cg = tmp_path / "cg"
    for rel, text in files.items():
        (cg / rel).parent.mkdir(parents=True, exist_ok=True)
        (cg / rel).write_text(text)
    paths = {"freezer": f"{cg}/freezer/c", "unified": f"{cg}/unified/c",
             "created:freezer": f"{cg}/freezer/c"}
    try:
        lib = load_manager(paths, root=str(cg)).frozen()
    except OciRunError:
        lib = False
    assert ground.frozen(paths, root=str(cg)) == lib == want
    # records load_manager refuses count as not frozen
    assert not ground.frozen({"freezer": "/etc/x"}, root=str(cg))
    assert not ground.frozen({"unified": f"{cg}/unified/c", "memory": f"{cg}/unified/c"},
                             root=str(cg))


def test_launcher_names_every_quick_verb() -> None:
    # the launcher imports quick.py only for these verbs: a verb added to
    # quick.py but not there would never reach the fast path
    from ocirun import launcher, quick
    assert set(launcher._QUICK) == set(quick._VERBS)


# --- create's plain form ---

def _full_create(args: list[str]) -> tuple[str, dict[str, object]]:
    from ocirun import cli
    row = next(r for r in cmdtable.COMMANDS if r[0] == "create")
    out = cli.Parsed()
    cli.parse_flags(args, 0, cli.flag_index(row[-1]), out, stop_at_positional=False)
    assert len(out.args) == 1
    return out.args[0], out.opts


@pytest.mark.parametrize("args", [
    ["c1"],
    ["--bundle", "/b", "c1"],
    ["-b", "/b", "--pid-file", "/p", "c1"],
    ["c1", "--bundle=/b", "--pid-file=/p", "--console-socket", "/s"],
    ["--no-pivot", "--no-new-keyring", "--preserve-fds", "2", "-b", "/b", "c1"],
    ["-bundle", "/b", "-pid-file", "/p", "c1"],
    ["--bundle", "/a", "--bundle", "/b", "c1"],  # the last one wins, as in the full parser
    ["--pid-file", "", "c1"],
])
def test_create_request_reads_what_the_full_parser_reads(args: list[str]) -> None:
    from ocirun import quick
    cid, opts = quick.create_request(args)
    full_cid, full = _full_create(args)
    assert cid == full_cid
    # the full parser makes --preserve-fds a number already (quick._create converts it)
    mine = {k: int(str(v)) if k == "preserve_fds" else v for k, v in opts.items()}
    assert mine == full, args


@pytest.mark.parametrize("args", [
    [], ["a", "b"], ["--help", "c1"], ["-h", "c1"], ["--no-pivot=false", "c1"],
    ["--preserve-fds", "x", "c1"], ["--preserve-fds", "-1", "c1"], ["--foo", "c1"],
    ["--", "c1"], ["c1", "--bundle"],
])
def test_create_request_declines_the_rest(args: list[str]) -> None:
    from ocirun import quick
    from ocirun.plainargs import Fallback
    with pytest.raises(Fallback):
        quick.create_request(args)
