"""--trace FILE / OCIRUN_TRACE and --debug: one record per lifecycle step
(specs/sync-protocol.md), from every process of a launch."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest


def _records(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def ocirun_only(lab: Any) -> None:
    if lab.is_runc:
        pytest.skip("--trace is ocirun's")


def test_trace_has_every_step_of_run(lab: Any, tmp_path: Any, ocirun_only: None) -> None:
    trace = str(tmp_path / "trace.jsonl")
    b = lab.bundle(["true"])
    r = lab.cli("run", "--bundle", b.path, lab.new_id(), global_args=("--trace", trace))
    assert r.returncode == 0, r
    recs = _records(trace)
    got = {rec["step"] for rec in recs}
    want = {"C1", "C2", "C3", "C4", "C5", "P1", "P2", "P3", "P5", "I1", "I2", "I3", "I4",
            "I5", "N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8", "R1", "R2", "D1", "D2",
            *(f"S{i}" for i in range(1, 10))}
    assert want <= got, sorted(want - got)
    procs = {rec["proc"] for rec in recs}
    assert procs == {"runtime", "intermediate", "init"}
    for rec in recs:
        assert rec["dur_ms"] >= 0 and rec["start_ns"] > 0 and rec["pid"] > 0
        assert rec["cpu_ms"] >= 0 and rec["blocked_ms"] >= 0
        assert isinstance(rec["kernel"], str) and rec["name"]
    # one time line: the init's rootfs work happens after the intermediate forked it
    by = {(r["proc"], r["step"]): r for r in recs}
    assert by[("init", "N3")]["start_ns"] > by[("intermediate", "I5")]["start_ns"]
    # every step's parts add up to no more than the step
    for rec in recs:
        assert rec["cpu_ms"] + rec["blocked_ms"] <= rec["dur_ms"] + rec["runq_ms"] + 0.5, rec


def test_trace_from_the_environment(lab: Any, tmp_path: Any, ocirun_only: None) -> None:
    trace = str(tmp_path / "env-trace.jsonl")
    lab.env = {**lab.env, "OCIRUN_TRACE": trace}
    b = lab.bundle(["true"])
    cid = lab.new_id()
    lab.create(b, cid).ok()
    lab.cli("start", cid).ok()
    steps = [rec["step"] for rec in _records(trace)]
    assert "N3" in steps and "R1" in steps


def test_debug_logs_each_step(lab: Any, tmp_path: Any, ocirun_only: None) -> None:
    log = str(tmp_path / "debug.log")
    b = lab.bundle(["true"])
    r = lab.cli("run", "--bundle", b.path, lab.new_id(),
                global_args=("--debug", "--log", log, "--log-format", "json"))
    assert r.returncode == 0, r
    with open(log) as f:
        lines = [json.loads(x) for x in f if x.strip()]
    msgs = [x["msg"] for x in lines if x["level"] == "debug"]
    for want in ("step C1 ", "step P3 ", "step I4 ", "step N3 rootfs (init)", "step S6 ",
                 "step R1 ", "step D2 "):
        assert any(m.startswith(want) for m in msgs), (want, msgs)


def test_no_trace_no_file(lab: Any, tmp_path: Any, ocirun_only: None) -> None:
    b = lab.bundle(["true"])
    lab.run(b).ok()
    assert not [p for p in os.listdir(tmp_path) if "trace" in p]
