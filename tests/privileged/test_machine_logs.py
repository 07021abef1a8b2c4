"""``--log FILE --log-format json`` as containerd's shim and podman read it
(issue 10 point 5): every line ``{"level","msg","time"}`` with an RFC 3339
time; on failure exactly one ``error`` line carrying stderr's message."""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def entries(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        e = json.loads(line)
        assert list(e) == ["level", "msg", "time"], line
        assert e["level"] in ("debug", "info", "warning", "error")
        assert RFC3339.match(e["time"]), line
        out.append(e)
    return out


def _bad_mount(cfg: dict[str, Any]) -> None:
    # fails inside the init (a child), not in the parent's checks
    cfg["mounts"].append({"destination": "/mnt", "type": "nosuchfs", "source": "x"})


@pytest.mark.parametrize("verb", ["create", "run", "exec", "start", "delete"])
def test_one_error_line_with_stderrs_message(lab: Any, verb: str) -> None:
    log = os.path.join(lab.workdir, f"{verb}.json")
    g = ("--log", log, "--log-format", "json")
    if verb in ("create", "run"):
        b = lab.bundle(["true"], _bad_mount)
        r = lab.cli(verb, "--bundle", b.path, lab.new_id(), global_args=g)
    elif verb == "exec":
        b = lab.bundle(["sleep", "100"])
        cid = lab.new_id()
        lab.run(b, cid, "--detach").ok()
        r = lab.cli("exec", cid, "/nonexistent", global_args=g)
    else:
        r = lab.cli(verb, lab.new_id(), global_args=g)
    assert r.returncode != 0
    got = entries(log)
    assert len(got) == 1, got  # podman unmarshals the whole file as one object
    assert got[0]["level"] == "error"
    # stderr holds the same message (conmon and containerd fall back to it)
    assert r.stderr.strip().splitlines()[-1] == f"ocirun: {got[0]['msg']}"


def test_debug_lines_are_all_json(lab: Any) -> None:
    log = os.path.join(lab.workdir, "debug.json")
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.cli("run", "--detach", "--bundle", b.path, cid,
            global_args=("--debug", "--log", log, "--log-format", "json")).ok()
    lab.cli("exec", cid, "true", global_args=("--debug", "--log", log, "--log-format", "json")).ok()
    got = entries(log)
    assert len(got) >= 2
    assert not any(e["level"] == "error" for e in got)
