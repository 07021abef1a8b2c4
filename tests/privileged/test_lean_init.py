"""The waiting init is forked from the nursery, not from the runtime's heap (issue 11 item 3).

The nursery (process/nursery.py) is forked by the launcher before the config
layer is imported; the init it forks waits for ``start`` with the child side
only.  Memory, not time: RssAnon of the waiting init against a bare
interpreter of the same build (the runtime's whole heap made it ~2.5 MiB
more; the child side alone is ~1.2).  And the nursery never outlives a
failed command.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest


def _rss_anon_kib(pid: int | str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError(f"no RssAnon for {pid}")


@pytest.fixture
def launcher(lab: Any) -> str:
    if lab.is_runc or len(lab.cmd) != 1:
        pytest.skip("the nursery is forked by ocirun's installed launcher")
    py = os.path.join(os.path.dirname(os.path.realpath(lab.cmd[0])), "python3")
    if not os.access(py, os.X_OK):
        pytest.skip("no interpreter beside the launcher")
    return py


def test_waiting_init_is_forked_lean(lab: Any, launcher: str) -> None:
    b = lab.bundle(["sleep", "60"])
    cid = lab.new_id()
    pid_file = os.path.join(lab.workdir, "init.pid")
    lab.create(b, cid, "--pid-file", pid_file).ok()
    with open(pid_file) as f:
        init = int(f.read())
    got = _rss_anon_kib(init)
    bare = subprocess.run(
        [launcher, "-I", "-S", "-c",
         "print([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1])"],
        capture_output=True, text=True, check=True).stdout
    assert got <= int(bare) + 1536, f"waiting init {got} KiB, a bare interpreter {bare.strip()} KiB"
    lab.cli("start", cid).ok()
    assert lab.status(cid) == "running"


def test_the_nursery_never_outlives_a_failure(lab: Any, launcher: str) -> None:
    b = lab.bundle(["true"])
    with open(os.path.join(b.path, "config.json")) as f:
        cfg = json.load(f)
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOSUCH", "soft": 1, "hard": 1}]
    with open(os.path.join(b.path, "config.json"), "w") as f:
        json.dump(cfg, f)
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert r.returncode != 0 and "RLIMIT_NOSUCH" in r.stderr, r
    assert lab.leftovers(cid) == []
    # a usage error after the launcher forked it (create without an id), and run
    for args in (("create", "--bundle", b.path), ("run", "--bundle", b.path, cid)):
        r = lab.cli(*args)
        assert r.returncode != 0, r
        assert lab.token_pids() == [], args
