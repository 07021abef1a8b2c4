"""The runtime differences ``ocirun check`` reports (config/explain.py DIFFERENCES) are
facts: each is replayed here against the installed runc 1.1.5 / crun 1.8.1, so the table
cannot go stale silently when those runtimes change."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import bundle as bundle_mod
from ocirun.config import explain

PROBE = "echo dom=$(cat /proc/sys/kernel/domainname) arch=$(uname -m)"


def _run(runtime: str, b: Path, cid: str, root: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([runtime, "--root", str(root), "run", "--bundle", str(b), cid],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              check=False)
    finally:
        subprocess.run([runtime, "--root", str(root), "delete", "--force", cid], capture_output=True,
                       timeout=60, check=False)


def _bundle(tmp_path: Path, rootfs: str, mutate: Any) -> Path:
    b = tmp_path / "b"
    def edit(c: dict[str, Any]) -> None:
        c["ociVersion"] = "1.0.2"
        mutate(c)
    bundle_mod.write_bundle(str(b), rootfs=rootfs, args=["sh", "-c", PROBE], mutate=edit)
    return b


def _claimed(path: str) -> str:
    return next(what for p, _, what, _ in explain.DIFFERENCES if p == path)


@pytest.mark.requires_runc
@pytest.mark.parametrize("path,mutate,runc_says", [
    ("$.domainname", lambda c: c.update(domainname="example.org"), "dom=(none)"),
    ("$.linux.personality", lambda c: c["linux"].update(personality={"domain": "LINUX32"}), "arch=x86_64"),
    ("$.linux.namespaces[].type", lambda c: c["linux"]["namespaces"].append({"type": "time"}),
     'namespace {"time" ""} does not exist'),
])
def test_runc_differences(path: str, mutate: Any, runc_says: str, tmp_path: Path, shared_rootfs: str,
                          session_token: str) -> None:
    if os.uname().machine != "x86_64" and "arch" in runc_says:
        pytest.skip("the personality probe expects an x86_64 host")
    assert "runc 1.1.5" in _claimed(path)
    b = _bundle(tmp_path, shared_rootfs, mutate)
    r = _run("runc", b, f"{session_token}-claim", tmp_path / "root")
    said = (r.stdout + r.stderr).replace('\\"', '"')
    assert runc_says in said, said


@pytest.mark.skipif(shutil.which("crun") is None, reason="crun is not installed")
def test_crun_refuses_new_oci_versions(tmp_path: Path, shared_rootfs: str, session_token: str) -> None:
    assert "crun 1.8.1" in _claimed("$.ociVersion")
    version = subprocess.run(["crun", "--version"], capture_output=True, text=True, check=False).stdout
    if "1.8.1" not in version:
        pytest.skip(f"claim is about crun 1.8.1, found {version.splitlines()[:1]}")
    b = _bundle(tmp_path, shared_rootfs, lambda c: c.update(ociVersion="1.2.0"))
    r = _run("crun", b, f"{session_token}-claim", tmp_path / "root")
    assert r.returncode != 0 and "unknown version specified" in r.stderr
