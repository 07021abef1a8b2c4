"""Test helper: podman's default seccomp profile as podman puts it into a config.json.

Debian's ``golang-github-containers-common`` installs the profile podman (and buildah)
use by default at ``/usr/share/containers/seccomp.json``. That file is containers/common's
own format, not an OCI ``linux.seccomp`` object: an ``archMap`` instead of
``architectures``, and each rule ``includes``/``excludes`` by architecture, capability
and minimum kernel. :func:`oci_profile` filters it the way podman does for a container
with the given bounding capabilities on this machine, and returns the OCI object.

Used by the privileged tests and by bench/seccomp_bench.py; standard library only.
"""

from __future__ import annotations

import json
import os
from typing import Any

PATH = "/usr/share/containers/seccomp.json"

# uname -m -> (Go's GOARCH as the profile's includes/excludes name it, the SCMP arch)
_ARCH = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
         "s390x": ("s390x", "SCMP_ARCH_S390X"), "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
         "riscv64": ("riscv64", "SCMP_ARCH_RISCV64")}


def _kernel() -> tuple[int, ...]:
    release = os.uname().release.split("-")[0]
    return tuple(int(p) for p in release.split(".")[:2] if p.isdigit())


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:2])


def oci_profile(bounding: list[str], path: str = PATH) -> dict[str, Any]:
    with open(path) as f:
        src = json.load(f)
    goarch, scmp = _ARCH[os.uname().machine]
    out: dict[str, Any] = {"defaultAction": src["defaultAction"]}
    if src.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = src["defaultErrnoRet"]
    arches = list(src.get("architectures") or [])
    for entry in src.get("archMap") or []:
        if entry["architecture"] == scmp:
            arches += [entry["architecture"], *entry.get("subArchitectures", [])]
            break
    if arches:
        out["architectures"] = arches
    if src.get("flags"):
        out["flags"] = src["flags"]
    caps = set(bounding)
    kernel = _kernel()
    rules = []
    for call in src.get("syscalls") or []:
        inc, exc = call.get("includes") or {}, call.get("excludes") or {}
        if goarch in (exc.get("arches") or []):
            continue
        if caps & set(exc.get("caps") or []):
            continue
        if exc.get("minKernel") and kernel >= _version(exc["minKernel"]):
            continue
        if inc.get("arches") and goarch not in inc["arches"]:
            continue
        if inc.get("caps") and not set(inc["caps"]) <= caps:
            continue
        if inc.get("minKernel") and kernel < _version(inc["minKernel"]):
            continue
        rule: dict[str, Any] = {"names": list(call["names"]), "action": call["action"]}
        if call.get("args"):
            rule["args"] = call["args"]
        if call.get("errnoRet") is not None:
            rule["errnoRet"] = call["errnoRet"]
        rules.append(rule)
    out["syscalls"] = rules
    return out
