"""Unit tests for ocirun/config/template.py (the ``ocirun spec`` template)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ocirun.config.checks import check, unsupported
from ocirun.config.schema import validate
from ocirun.config.template import template


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


@pytest.mark.parametrize("rootless", [False, True])
def test_template_is_valid_and_supported(bundle: str, rootless: bool) -> None:
    doc = template(rootless)
    validate(doc)
    assert check(doc, bundle) == []
    assert unsupported(doc) == []


def test_template_basics() -> None:
    doc = template()
    assert doc["ociVersion"] == "1.3.0"
    assert doc["hostname"] == "ocirun"
    assert doc["process"]["terminal"] is False
    assert "resources" not in doc["linux"]
    assert [n["type"] for n in doc["linux"]["namespaces"]] == ["pid", "network", "ipc", "uts", "mount"]
    assert doc["process"]["noNewPrivileges"] is True
    assert doc["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert "gid=5" in doc["mounts"][2]["options"]
    assert json.loads(json.dumps(doc)) == doc


def test_rootless_template() -> None:
    doc = template(rootless=True)
    linux = doc["linux"]
    kinds = [n["type"] for n in linux["namespaces"]]
    assert "user" in kinds and "network" not in kinds
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    sysfs = next(m for m in doc["mounts"] if m["destination"] == "/sys")
    assert sysfs["source"] == "/sys" and "rbind" in sysfs["options"]
    assert not any("gid=5" in m.get("options", []) for m in doc["mounts"])


def test_templates_are_fresh_objects() -> None:
    a = template()
    a["mounts"][0]["options"] = ["x"]
    a["linux"]["maskedPaths"].append("/x")
    a["process"]["capabilities"]["bounding"].append("CAP_X")
    assert template() != a


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_spec_except_documented_changes(tmp_path: Path, rootless: bool) -> None:
    cmd = ["runc", "spec", "--bundle", str(tmp_path)] + (["--rootless"] if rootless else [])
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    theirs = json.loads((tmp_path / "config.json").read_text())
    ours = template(rootless)
    # The documented differences (module docstring).
    theirs["ociVersion"] = "1.3.0"
    theirs["hostname"] = "ocirun"
    theirs["process"]["terminal"] = False
    theirs["linux"].pop("resources", None)
    theirs["process"]["capabilities"].pop("ambient")
    assert ours == theirs
