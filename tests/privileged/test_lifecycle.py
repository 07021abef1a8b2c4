"""The container lifecycle through the CLI: runtime.md ``state``, ``lifecycle`` and
``operations`` (create, start, kill, delete), plus RUNC-CLI.md's ``run``, ``list``, pid
files and signal names (issue 2, points 2, 4 and 9).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from typing import Any

import pytest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")
# pid 1 of a pid namespace only gets the signals it handles, so the test containers trap them.
TRAPPING = ("trap 'exit 15' TERM; trap 'exit 2' INT; trap 'exit 10' USR1; echo ready;"
            " while :; do sleep 0.05; done")


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_full_lifecycle(lab: Any) -> None:
    b = lab.bundle(["sh", "-c", TRAPPING])
    cid = lab.new_id()
    pid_file = os.path.join(lab.workdir, "init.pid")
    r = lab.create(b, cid, "--pid-file", pid_file).ok()
    assert r.stdout == ""

    with open(pid_file, "rb") as f:
        raw = f.read()
    assert re.fullmatch(rb"[0-9]+", raw), f"pid file must hold digits only: {raw!r}"
    st = lab.state(cid)
    assert st["status"] == "created"
    assert st["pid"] == int(raw) and pid_alive(st["pid"])
    # The user program must not run before start (runtime.md#create).
    time.sleep(0.1)
    assert "ready" not in r.stdout_now()

    lab.cli("start", cid).ok()
    st = lab.state(cid)
    assert st["status"] == "running" and st["pid"] == int(raw)
    deadline = time.monotonic() + 10
    while "ready" not in r.stdout_now():
        assert time.monotonic() < deadline, "the user program never ran"
        time.sleep(0.02)

    lab.cli("kill", cid).ok()  # SIGTERM by default
    st = lab.wait_status(cid, "stopped")
    assert st["pid"] == 0
    assert not pid_alive(int(raw))

    lab.cli("delete", cid).ok()
    r = lab.cli("state", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr
    assert not os.path.lexists(os.path.join(lab.root, cid))
    assert lab.leftovers(cid) == []


def test_state_fields(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.create(b, cid).ok()
    r = lab.cli("state", cid).ok()
    st = json.loads(r.stdout)
    assert set(st) == {"ociVersion", "id", "status", "pid", "bundle", "rootfs", "created", "owner"}
    assert SEMVER.match(st["ociVersion"]), st["ociVersion"]
    assert st["id"] == cid and st["status"] == "created"
    assert isinstance(st["pid"], int) and st["pid"] > 0
    assert st["bundle"] == b.path and os.path.isabs(st["bundle"])
    assert st["rootfs"] == b.rootfs
    assert RFC3339.match(st["created"]), st["created"]
    assert st["owner"] == ""
    assert "annotations" not in st  # omitted when empty (runc's format)


def test_state_annotations_and_relative_rootfs(lab: Any) -> None:
    notes = {"com.example.k": "v", "org.test.empty": ""}
    b = lab.bundle(["sleep", "100"], lambda c: c.update(annotations=notes), private_rootfs=True)
    # A relative root.path is relative to the bundle (config.md#root).
    with open(os.path.join(b.path, "config.json")) as f:
        cfg = json.load(f)
    cfg["root"]["path"] = "rootfs"
    with open(os.path.join(b.path, "config.json"), "w") as f:
        json.dump(cfg, f)
    cid = lab.new_id()
    lab.create(b, cid).ok()
    st = lab.state(cid)
    assert st["annotations"] == notes
    assert st["rootfs"] == os.path.join(b.path, "rootfs")


@pytest.mark.runc_differs  # runc reports its own spec version (1.0.2-dev), not the one it implements
def test_state_oci_version_is_the_runtimes(lab: Any) -> None:
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid).ok()
    assert lab.state(cid)["ociVersion"] == "1.3.0"


def test_pid_file_relative_to_caller_cwd(lab: Any) -> None:
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid, "--pid-file", "rel.pid").ok()
    with open(os.path.join(lab.workdir, "rel.pid")) as f:
        assert int(f.read()) == lab.state(cid)["pid"]


@pytest.mark.parametrize("sig,code", [
    ("15", 15), ("TERM", 15), ("SIGTERM", 15), ("sigterm", 15), ("term", 15),
    ("USR1", 10), ("10", 10), ("SIGINT", 2), ("2", 2),
])
def test_kill_signal_forms(lab: Any, sig: str, code: int) -> None:
    p, cid, _ = lab.start_foreground(TRAPPING)
    lab.cli("kill", cid, sig).ok()
    # `run` exits with the container's status: the trap tells which signal arrived.
    assert p.wait(timeout=20) == code


@pytest.mark.parametrize("sig", ["FOO", "SIGFOO", "99999", "-1"])
def test_kill_unknown_signal(lab: Any, sig: str) -> None:
    cid = lab.new_id()
    lab.run(lab.bundle(["sleep", "100"]), cid, "--detach").ok()
    r = lab.cli("kill", cid, sig)
    assert r.returncode == 1, r
    assert lab.status(cid) == "running"


def test_kill_created_container(lab: Any) -> None:
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid).ok()
    lab.cli("kill", cid, "KILL").ok()
    assert lab.wait_status(cid, "stopped")["pid"] == 0
    lab.cli("delete", cid).ok()
    assert lab.leftovers(cid) == []


def test_run_detach(lab: Any) -> None:
    cid = lab.new_id()
    pid_file = os.path.join(lab.workdir, "d.pid")
    t0 = time.monotonic()
    lab.run(lab.bundle(["sleep", "100"]), cid, "--detach", "--pid-file", pid_file).ok()
    assert time.monotonic() - t0 < 30
    st = lab.state(cid)
    assert st["status"] == "running"
    with open(pid_file) as f:
        assert int(f.read()) == st["pid"]
    lab.cli("kill", cid, "KILL").ok()
    lab.wait_status(cid, "stopped")
    lab.cli("delete", cid).ok()
    assert lab.leftovers(cid) == []


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 15), (signal.SIGINT, 2), (signal.SIGUSR1, 10)])
def test_run_forwards_signals(lab: Any, sig: int, code: int) -> None:
    p, cid, _ = lab.start_foreground(TRAPPING)
    p.send_signal(sig)
    assert p.wait(timeout=20) == code
    # Foreground run deletes the container after it exits.
    assert "does not exist" in lab.cli("state", cid).stderr
    assert lab.leftovers(cid) == []


def test_run_deletes_container_after_exit(lab: Any) -> None:
    cid = lab.new_id()
    r = lab.run(lab.bundle(["sh", "-c", "echo out; echo err >&2; exit 5"]), cid)
    assert r.returncode == 5
    assert r.stdout == "out\n" and "err\n" in r.stderr
    assert lab.leftovers(cid) == []


def test_list_empty(lab: Any) -> None:
    r = lab.cli("list").ok()
    assert r.stdout.split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    assert lab.cli("list", "--format", "json").ok().stdout.strip() == "null"
    assert lab.cli("list", "-q").ok().stdout == ""


def test_list_containers(lab: Any) -> None:
    created, running = lab.new_id(), lab.new_id()
    b = lab.bundle(["sleep", "100"])
    lab.create(b, created).ok()
    lab.run(b, running, "--detach").ok()
    table = lab.cli("list").ok().stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert set(rows) == {created, running}
    assert rows[created][2] == "created" and rows[running][2] == "running"
    assert rows[created][3] == b.path and RFC3339.match(rows[created][4])

    entries = json.loads(lab.cli("list", "--format", "json").ok().stdout)
    by_id = {e["id"]: e for e in entries}
    assert set(by_id) == {created, running}
    for cid, want in ((created, "created"), (running, "running")):
        e = by_id[cid]
        assert e["status"] == want and e["pid"] == lab.state(cid)["pid"]
        assert e["bundle"] == b.path and RFC3339.match(e["created"])
        assert e["owner"] == "root"
    assert sorted(lab.cli("list", "-q").ok().stdout.split()) == sorted([created, running])


def _parallel(lab: Any, n: int, *args: str) -> list[tuple[int, str]]:
    procs = []
    for i in range(n):
        err = open(os.path.join(lab.workdir, f"par{i}-{args[0]}.err"), "w+b")  # noqa: SIM115 (closed below)
        procs.append((lab.popen(*args, stdout=subprocess.DEVNULL, stderr=err), err))
    results = []
    for p, err in procs:
        rc = p.wait(timeout=30)
        err.seek(0)
        results.append((rc, err.read().decode(errors="replace")))
        err.close()
    return results


@pytest.mark.runc_differs  # runc 1.1.5 has no per-id lock: two racing creates can both "succeed"
def test_concurrent_create_same_id(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    results = _parallel(lab, 4, "create", "--bundle", b.path, cid)
    assert sorted(rc for rc, _ in results) == [0, 1, 1, 1], results
    assert lab.status(cid) == "created"
    assert len(os.listdir(lab.root)) == 1


@pytest.mark.runc_differs  # runc 1.1.5: a start that opens the FIFO after the exec blocks forever
def test_concurrent_start_same_id(lab: Any) -> None:
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid).ok()
    results = _parallel(lab, 3, "start", cid)
    assert sorted(rc for rc, _ in results) == [0, 1, 1], results
    assert lab.status(cid) == "running"


def test_concurrent_force_delete(lab: Any) -> None:
    cid = lab.new_id()
    lab.run(lab.bundle(["sleep", "100"]), cid, "--detach").ok()
    results = _parallel(lab, 3, "delete", "--force", cid)
    assert any(rc == 0 for rc, _ in results), results
    assert "does not exist" in lab.cli("state", cid).stderr
    assert lab.leftovers(cid) == []


def test_delete_force_unknown_id_succeeds(lab: Any) -> None:
    assert lab.cli("delete", "--force", lab.new_id()).returncode == 0


def test_delete_force_running(lab: Any) -> None:
    cid = lab.new_id()
    lab.run(lab.bundle(["sleep", "100"]), cid, "--detach").ok()
    pid = lab.state(cid)["pid"]
    lab.cli("delete", "--force", cid).ok()
    assert not pid_alive(pid)
    assert lab.leftovers(cid) == []


@pytest.mark.runc_differs  # runc 1.1.5 kills and deletes a created container without --force
def test_delete_created_needs_force(lab: Any) -> None:
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid).ok()
    r = lab.cli("delete", cid)
    assert r.returncode == 1
    assert lab.status(cid) == "created"


def test_id_reusable_after_delete(lab: Any) -> None:
    b = lab.bundle(["true"])
    cid = lab.new_id()
    for _ in range(2):
        lab.create(b, cid).ok()
        lab.cli("start", cid).ok()
        lab.wait_status(cid, "stopped")
        lab.cli("delete", cid).ok()
    assert lab.leftovers(cid) == []


def test_container_outlives_create(lab: Any) -> None:
    """The init is parked, not a child that dies with the runtime (RUNC-CLI.md section 8)."""
    cid = lab.new_id()
    lab.create(lab.bundle(["sleep", "100"]), cid).ok()
    time.sleep(0.2)
    st = lab.state(cid)
    assert st["status"] == "created" and pid_alive(st["pid"])
