"""A process joining a running container through the shared process step
(issue 7 item 3): ops/exec.exec_process, driven from a small script so the
test process itself never becomes a subreaper or forks into a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

SCRIPT = r"""
import json, sys
from ocirun.ops.exec import ExecOptions, exec_process
from ocirun.state import StateStore
root, cid, proc, detach = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == "1"
sys.exit(exec_process(StateStore(root), cid, proc, ExecOptions(detach=detach)))
"""


def _exec(lab: Any, cid: str, proc: dict[str, Any], detach: bool = False) -> subprocess.CompletedProcess[str]:
    # A detached process keeps its stdio: no pipes then, or run() would wait for it.
    if detach:
        return subprocess.run([sys.executable, "-c", SCRIPT, lab.root, cid, json.dumps(proc), "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
                              env=lab.env)
    return subprocess.run([sys.executable, "-c", SCRIPT, lab.root, cid, json.dumps(proc), "0"],
                          capture_output=True, text=True, timeout=30, env=lab.env)


def _proc(args: list[str], **extra: Any) -> dict[str, Any]:
    p = {"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
         "env": ["PATH=/bin:/usr/bin"], "capabilities": {
             k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}}
    p.update(extra)
    return p


@pytest.fixture
def running(lab: Any) -> str:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    return cid


def test_tenant_joins_every_namespace(lab: Any, running: str) -> None:
    init = lab.state(running)["pid"]
    script = "hostname; echo $$; for n in mnt uts ipc net pid cgroup; do readlink /proc/self/ns/$n; done"
    r = _exec(lab, running, _proc(["sh", "-c", script]))
    assert r.returncode == 0, r
    host, pid, *links = r.stdout.split()
    assert host == "ocitest"  # the container's uts namespace
    assert int(pid) > 1  # in the container's pid namespace (the init is 1)
    want = [os.readlink(f"/proc/{init}/ns/{n}") for n in ("mnt", "uts", "ipc", "net", "pid",
                                                          "cgroup")]
    assert links == want


def test_tenant_exit_status_and_process_attributes(lab: Any, running: str) -> None:
    r = _exec(lab, running, _proc(["sh", "-c", "grep -E '^(CapEff|CapBnd|NoNewPrivs|Uid)' "
                                   "/proc/self/status; exit 3"],
                                  user={"uid": 1000, "gid": 1000}, noNewPrivileges=True))
    assert r.returncode == 3, r
    lines = dict(line.split(":\t") for line in r.stdout.splitlines())
    assert lines["Uid"].split()[0] == "1000"
    assert lines["NoNewPrivs"] == "1"
    assert int(lines["CapBnd"], 16) == 1 << 5  # CAP_KILL only


def test_tenant_sees_the_containers_root_and_no_host_fd(lab: Any, running: str) -> None:
    r = _exec(lab, running, _proc(["sh", "-c", "ls /proc/self/fd; cat /etc/hostname 2>/dev/null;"
                                   " test -e /bin/busybox && echo ROOT"]))
    assert r.returncode == 0, r
    out = r.stdout.split()
    assert "ROOT" in out
    fds = sorted(int(x) for x in out if x.isdigit())
    assert fds == [0, 1, 2, 3]  # 3 is ls's own directory fd


def test_tenant_exec_errors_come_back(lab: Any, running: str) -> None:
    r = _exec(lab, running, _proc(["/nonexistent"]))
    assert r.returncode == 1
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in r.stderr


def test_tenant_into_stopped_container_is_refused(lab: Any, running: str) -> None:
    lab.cli("kill", running, "KILL").ok()
    lab.wait_status(running, "stopped")
    r = _exec(lab, running, _proc(["true"]))
    assert r.returncode == 1 and "cannot exec in a stopped container" in r.stderr, r


def test_tenant_lands_in_the_containers_cgroup(lab: Any, running: str) -> None:
    init = lab.state(running)["pid"]
    with open(f"/proc/{init}/cgroup") as f:
        want = f.read()
    r = _exec(lab, running, _proc(["sh", "-c", "sleep 5"]), detach=True)
    assert r.returncode == 0, r
    procs = set()
    for line in want.splitlines():
        _, ctrls, path = line.split(":", 2)
        if ctrls == "pids":
            with open(f"/sys/fs/cgroup/pids{path}/cgroup.procs") as f:
                procs = {int(p) for p in f.read().split()}
    assert len(procs) >= 2, procs  # the init and the tenant
    os.kill(max(procs), 9)
