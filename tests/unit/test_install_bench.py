"""bench/bench.py keeps working (one tiny pair; the figures themselves are never asserted)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import bench

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.requires_runc,
    pytest.mark.skipif(os.geteuid() != 0, reason="the bench runs real containers: needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="needs runc"),
    pytest.mark.skipif(not os.path.exists("/bin/busybox"), reason="needs busybox-static"),
]


def test_bench_fills_every_row() -> None:
    # The launcher installed beside this interpreter (.ci/setup's venv), so no wheel is
    # built and nothing is fetched here; tests/unit/test_install.py covers the building.
    ocirun = os.path.join(os.path.dirname(sys.executable), "ocirun")
    if not os.access(ocirun, os.X_OK):
        pytest.skip(f"no installed launcher at {ocirun}")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = bench.main(["--runtime-a", ocirun, "--pairs", "1", "--warmup", "0",
                         "--list-size", "2", "--json"])
    assert rc == 0
    report = json.loads(out.getvalue())
    want = {k for k, _, _ in bench.METRICS} | set(bench.CPU_KEYS)
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        want.discard("rss_run")
    for side in ("a", "b"):
        missing = {k for k in want if report[side]["median"][k] is None}
        assert not missing, f"{report[side]['name']}: no figure for {sorted(missing)}"
    assert report["a"]["median"]["list"] > 0
