"""Corpus test for the config schema (specs/config-schema.json).

Every config of the corpus is judged by four validators which must agree:
the expected verdict written here, the generated fast validator, jsonschema
with our schema, and jsonschema with the upstream runtime-spec v1.3.0 schema
(reference data in ../shared, read by this test only).  The corpus is built
from one complete base config plus mutations, covering every area of
config.md and config-linux.md, and includes ``template()`` and ``runc spec``
output.  ``vm`` is left out: the upstream ``defs.json`` of v1.3.0 has a broken
``ArrayOfUint32`` reference that only ``vm`` reaches.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ocirun.config import _fastcheck
from ocirun.config.schema import full_report, load_schema, schema_path, validate
from ocirun.config.template import template
from ocirun.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = REPO.parent / "shared" / "oci-runtime-spec" / "schema"

Mutation = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    """A valid config touching every Linux field of v1.3.0."""
    return {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "box", "domainname": "example.org",
        "annotations": {"org.example.key": "value", "org.opencontainers.image.stopSignal": "SIGTERM"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "none", "source": "/srv", "options": ["rbind", "ro", "idmap"],
             "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
             "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]},
        ],
        "process": {
            "terminal": False, "consoleSize": {"height": 24, "width": 80},
            "user": {"uid": 1000, "gid": 1000, "umask": 18, "additionalGids": [5, 10]},
            "args": ["sh", "-c", "true"], "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {k: ["CAP_KILL"] for k in
                             ("bounding", "effective", "inheritable", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                        {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615}],
            "noNewPrivileges": True, "oomScoreAdj": -500,
            "scheduler": {"policy": "SCHED_DEADLINE", "nice": 0, "priority": 0,
                          "flags": ["SCHED_FLAG_RESET_ON_FORK"], "runtime": 1000, "deadline": 2000,
                          "period": 3000},
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "execCPUAffinity": {"initial": "0", "final": "0-1, 3"},
            "apparmorProfile": "unconfined", "selinuxLabel": "system_u:system_r:container_t:s0",
        },
        "hooks": {kind: [{"path": "/bin/true", "args": ["true"], "env": ["A=b"], "timeout": 5}]
                  for kind in ("prestart", "createRuntime", "createContainer", "startContainer",
                               "poststart", "poststop")},
        "linux": {
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "timeOffsets": {"monotonic": {"secs": -3600, "nanosecs": 0},
                            "boottime": {"secs": 86400, "nanosecs": 500}},
            "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                         "fileMode": 438, "uid": 0, "gid": 0},
                        {"type": "p", "path": "/dev/fifo"}],
            "netDevices": {"eth1": {"name": "net0"}, "dummy0": {}},
            "cgroupsPath": "/ocirun/test",
            "resources": {
                "devices": [{"allow": False, "access": "rwm"},
                            {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
                "memory": {"limit": 1 << 30, "reservation": 1 << 29, "swap": -1, "kernel": -1,
                           "kernelTCP": -1, "swappiness": 60, "disableOOMKiller": False,
                           "useHierarchy": True, "checkBeforeUpdate": True},
                "cpu": {"shares": 1024, "quota": 50000, "burst": 1000, "period": 100000,
                        "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "0-1", "mems": "0",
                        "idle": 0},
                "blockIO": {"weight": 500, "leafWeight": 300,
                            "weightDevice": [{"major": 8, "minor": 0, "weight": 200}],
                            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}],
                            "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 1 << 20}],
                            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
                "hugepageLimits": [{"pageSize": "2MB", "limit": 1 << 21}],
                "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
                "pids": {"limit": 0},
                "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
                "unified": {"io.weight": "100", "memory.high": "max"},
            },
            "intelRdt": {"closID": "guaranteed", "l3CacheSchema": "L3:0=7f0", "memBwSchema": "MB:0=20",
                         "schemata": ["L2:0=ff"], "enableMonitoring": True},
            "memoryPolicy": {"mode": "MPOL_INTERLEAVE", "nodes": "0-1",
                             "flags": ["MPOL_F_STATIC_NODES"]},
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000000"},
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
                        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_RISCV64"],
                        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                        "listenerPath": "/run/seccomp.sock", "listenerMetadata": "meta",
                        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                                     {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                                      "errnoRet": 38,
                                      "args": [{"index": 0, "value": 8, "valueTwo": 0,
                                                "op": "SCMP_CMP_EQ"}]}]},
            "rootfsPropagation": "slave",
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "personality": {"domain": "LINUX32", "flags": []},
        },
    }


def put(path: str, value: Any) -> Mutation:
    """Mutation setting ``a.b.0.c`` (digits index lists) to ``value``."""
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return apply


def drop(path: str) -> Mutation:
    def apply(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[int(last) if last.isdigit() else last]
    return apply


# (name, mutations, expected to be valid)
CASES: list[tuple[str, list[Mutation], bool]] = [
    ("base", [], True),
    ("unknown-properties-ignored", [put("x-vendor", {"a": 1}), put("process.x", 1),
                                    put("linux.x", [1])], True),
    ("minimal-no-root-no-process", [drop("root"), drop("process"), drop("linux"), drop("mounts"),
                                    drop("hooks")], True),
    ("relative-mount-destination", [put("mounts.0.destination", "proc")], True),
    ("pids-limit-minus-one", [put("linux.resources.pids.limit", -1)], True),
    ("empty-annotations", [put("annotations", {})], True),
    ("windows-typed", [put("windows", {"layerFolders": ["C:\\layers"]})], True),
    ("solaris-object", [put("solaris", {"milestone": "svc:/milestone/container:default"})], True),
    ("ioprio-without-priority", [drop("process.ioPriority.priority")], True),
    ("exec-affinity-empty", [put("process.execCPUAffinity.final", "")], True),
    ("hugepage-1GB", [put("linux.resources.hugepageLimits.0.pageSize", "1GB")], True),
    ("seccomp-minimal", [put("linux.seccomp", {"defaultAction": "SCMP_ACT_KILL_PROCESS"})], True),
    ("device-mode-zero", [put("linux.devices.0.fileMode", 0)], True),
    # ---- invalid: top level and common parts
    ("missing-ociVersion", [drop("ociVersion")], False),
    ("ociVersion-number", [put("ociVersion", 1)], False),
    ("root-without-path", [drop("root.path")], False),
    ("root-readonly-string", [put("root.readonly", "yes")], False),
    ("hostname-number", [put("hostname", 7)], False),
    ("annotation-value-int", [put("annotations", {"a": 1})], False),
    ("mount-without-destination", [drop("mounts.0.destination")], False),
    ("mount-options-string", [put("mounts.0.options", "ro")], False),
    ("mount-idmap-missing-size", [drop("mounts.1.uidMappings.0.size")], False),
    ("hook-without-path", [drop("hooks.poststop.0.path")], False),
    ("hook-timeout-zero", [put("hooks.prestart.0.timeout", 0)], False),
    ("hooks-not-array", [put("hooks.poststart", {"path": "/x"})], False),
    ("windows-string", [put("windows", "C:")], False),
    # ---- invalid: process
    ("process-without-cwd", [drop("process.cwd")], False),
    ("args-not-strings", [put("process.args", ["sh", 1])], False),
    ("env-string", [put("process.env", "PATH=/bin")], False),
    ("terminal-string", [put("process.terminal", "false")], False),
    ("console-missing-width", [drop("process.consoleSize.width")], False),
    ("uid-negative", [put("process.user.uid", -1)], False),
    ("uid-overflow", [put("process.user.uid", 1 << 32)], False),
    ("gid-float", [put("process.user.gid", 1.0)], False),
    ("uid-bool", [put("process.user.uid", True)], False),
    ("rlimit-bad-type-pattern", [put("process.rlimits.0.type", "rlimit_nofile")], False),
    ("rlimit-missing-hard", [drop("process.rlimits.0.hard")], False),
    ("rlimit-soft-overflow", [put("process.rlimits.0.soft", 1 << 64)], False),
    ("caps-not-array", [put("process.capabilities.bounding", "CAP_KILL")], False),
    ("scheduler-no-policy", [drop("process.scheduler.policy")], False),
    ("scheduler-bad-policy", [put("process.scheduler.policy", "SCHED_MAGIC")], False),
    ("scheduler-bad-flag", [put("process.scheduler.flags", ["SCHED_FLAG_X"])], False),
    ("ioprio-bad-class", [put("process.ioPriority.class", "IOPRIO_CLASS_NONE")], False),
    ("exec-affinity-letters", [put("process.execCPUAffinity.initial", "all")], False),
    ("oom-float", [put("process.oomScoreAdj", 0.5)], False),
    # ---- invalid: linux
    ("linux-not-object", [put("linux", [])], False),
    ("namespace-bogus", [put("linux.namespaces.0.type", "bogus")], False),
    ("namespace-without-type", [put("linux.namespaces.0", {"path": "/proc/1/ns/pid"})], False),
    ("uidmap-missing-hostID", [drop("linux.uidMappings.0.hostID")], False),
    ("timeoffset-nanosecs-negative", [put("linux.timeOffsets.boottime.nanosecs", -1)], False),
    ("device-bad-type", [put("linux.devices.0.type", "x")], False),
    ("device-without-path", [drop("linux.devices.0.path")], False),
    ("device-filemode-512", [put("linux.devices.0.fileMode", 512)], False),
    ("netdevice-not-object", [put("linux.netDevices.eth1", "net0")], False),
    ("cgroupsPath-number", [put("linux.cgroupsPath", 1)], False),
    ("res-device-without-allow", [drop("linux.resources.devices.0.allow")], False),
    ("res-memory-limit-string", [put("linux.resources.memory.limit", "1G")], False),
    ("res-swappiness-negative", [put("linux.resources.memory.swappiness", -1)], False),
    ("res-cpu-shares-negative", [put("linux.resources.cpu.shares", -2)], False),
    ("res-cpu-quota-overflow", [put("linux.resources.cpu.quota", 1 << 63)], False),
    ("res-blkio-weight-overflow", [put("linux.resources.blockIO.weight", 70000)], False),
    ("res-weightdevice-no-major", [drop("linux.resources.blockIO.weightDevice.0.major")], False),
    ("res-throttle-no-minor", [drop("linux.resources.blockIO.throttleReadBpsDevice.0.minor")],
     False),
    ("res-hugepage-lowercase", [put("linux.resources.hugepageLimits.0.pageSize", "2mb")], False),
    ("res-hugepage-no-limit", [drop("linux.resources.hugepageLimits.0.limit")], False),
    ("res-netprio-no-name", [drop("linux.resources.network.priorities.0.name")], False),
    ("res-pids-without-limit", [put("linux.resources.pids", {})], False),
    ("res-rdma-negative", [put("linux.resources.rdma.mlx5_1.hcaHandles", -1)], False),
    ("res-unified-int", [put("linux.resources.unified", {"pids.max": 10})], False),
    ("rdt-membw-not-MB", [put("linux.intelRdt.memBwSchema", "L3:0=1")], False),
    ("rdt-monitoring-string", [put("linux.intelRdt.enableMonitoring", "yes")], False),
    ("mempolicy-bad-mode", [put("linux.memoryPolicy.mode", "MPOL_ANY")], False),
    ("mempolicy-bad-flag", [put("linux.memoryPolicy.flags", ["MPOL_F_NONE"])], False),
    ("sysctl-int-value", [put("linux.sysctl", {"net.ipv4.ip_forward": 1})], False),
    ("seccomp-no-default", [drop("linux.seccomp.defaultAction")], False),
    ("seccomp-bad-arch", [put("linux.seccomp.architectures", ["SCMP_ARCH_VAX"])], False),
    ("seccomp-bad-flag", [put("linux.seccomp.flags", ["SECCOMP_FILTER_FLAG_X"])], False),
    ("seccomp-empty-names", [put("linux.seccomp.syscalls.0.names", [])], False),
    ("seccomp-rule-no-action", [drop("linux.seccomp.syscalls.0.action")], False),
    ("seccomp-arg-no-value", [drop("linux.seccomp.syscalls.1.args.0.value")], False),
    ("seccomp-arg-bad-op", [put("linux.seccomp.syscalls.1.args.0.op", "SCMP_CMP_XOR")], False),
    ("propagation-rshared", [put("linux.rootfsPropagation", "rshared")], False),
    ("masked-not-strings", [put("linux.maskedPaths", [1])], False),
    ("readonly-string", [put("linux.readonlyPaths", "/proc")], False),
    ("personality-bad-domain", [put("linux.personality.domain", "BSD")], False),
    ("many-errors", [drop("process.cwd"), put("linux.namespaces.1.type", "net"),
                     put("linux.devices.0.fileMode", 4095)], False),
]


def _corpus() -> list[tuple[str, dict[str, Any], bool]]:
    out = []
    for name, mutations, valid in CASES:
        doc = base()
        for mutate in mutations:
            mutate(doc)
        out.append((name, doc, valid))
    out.append(("template", template(), True))
    out.append(("template-rootless", template(rootless=True), True))
    out.append(("top-level-array", [base()], False))  # type: ignore[list-item]
    return out


def _runc_specs(tmp: Path) -> list[tuple[str, dict[str, Any], bool]]:
    runc = shutil.which("runc")
    if runc is None:
        return []
    out = []
    for flag in ([], ["--rootless"]):
        where = tmp / ("rootless" if flag else "plain")
        where.mkdir()
        subprocess.run([runc, "spec", "--bundle", str(where), *flag], check=True,
                       capture_output=True, timeout=30)
        doc = json.loads((where / "config.json").read_text())
        out.append((f"runc-spec{'-'.join([''] + [f[2:] for f in flag])}", doc, True))
    return out


def _upstream_validator() -> Any:
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    resources = []
    for file in sorted(UPSTREAM.glob("*.json")):
        resources.append((file.as_uri(), DRAFT4.create_resource(json.loads(file.read_text()))))
    registry = Registry().with_resources(resources)
    root = {"$ref": (UPSTREAM / "config-schema.json").as_uri()}
    return jsonschema.Draft4Validator(root, registry=registry)


def _fast_ok(doc: Any) -> bool:
    try:
        _fastcheck.validate(doc)
    except _fastcheck.JsonSchemaValueException:
        return False
    return True


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Any, bool]]:
    return _corpus() + _runc_specs(tmp_path_factory.mktemp("runc-spec"))


def test_corpus_is_large_enough(corpus: list[tuple[str, Any, bool]]) -> None:
    assert len(corpus) >= 50
    assert sum(1 for _, _, ok in corpus if ok) >= 10
    assert len({name for name, _, _ in corpus}) == len(corpus)


def test_project_schema_verdicts(corpus: list[tuple[str, Any, bool]]) -> None:
    wrong = []
    for name, doc, valid in corpus:
        fast, full = _fast_ok(doc), not full_report(doc)
        if (fast, full) != (valid, valid):
            wrong.append(f"{name}: expected {valid}, fast {fast}, full {full}")
    assert not wrong, wrong


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="upstream schema (../shared) not available")
def test_upstream_schema_agrees(corpus: list[tuple[str, Any, bool]]) -> None:
    upstream = _upstream_validator()
    wrong = []
    for name, doc, valid in corpus:
        theirs = upstream.is_valid(doc)
        if theirs != valid:
            wrong.append(f"{name}: ours {valid}, upstream {theirs}")
    assert not wrong, wrong


def test_validate_lists_every_violation() -> None:
    doc = base()
    del doc["process"]["cwd"]
    doc["linux"]["namespaces"][0]["type"] = "bogus"
    doc["linux"]["sysctl"] = {"net.core.somaxconn": 5}
    with pytest.raises(ConfigError) as info:
        validate(doc)
    msg = str(info.value)
    assert msg.startswith("config.json: schema violation: ")
    assert "\n" not in msg
    assert "$.process: 'cwd' is a required property" in msg
    assert "$.linux.namespaces[0].type: 'bogus' is not one of" in msg
    assert '$.linux.sysctl["net.core.somaxconn"]: 5 is not of type \'string\'' in msg


def test_validate_accepts_valid_config() -> None:
    validate(base())


def test_schema_is_draft4_single_file() -> None:
    schema = load_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    text = json.dumps(schema)
    # Every reference is internal, so no base URI is needed to resolve them.
    assert '"$ref": "#/definitions/' in text
    assert all(ref.startswith('"#/') for ref in text.split('"$ref": ')[1:])
    assert Path(schema_path()).resolve() == (REPO / "specs" / "config-schema.json").resolve()


def test_fastcheck_matches_schema_file() -> None:
    raw = (REPO / "specs" / "config-schema.json").read_bytes()
    generated = (REPO / "ocirun" / "config" / "_fastcheck.py").read_text()
    assert f"# schema-sha256: {hashlib.sha256(raw).hexdigest()}" in generated, \
        "run tools/gen_validator.py"
    assert "import fastjsonschema" not in generated and "from fastjsonschema" not in generated
    assert "decimal" not in generated


def test_fastcheck_regenerates_identically() -> None:
    fastjsonschema = pytest.importorskip("fastjsonschema")
    generated = (REPO / "ocirun" / "config" / "_fastcheck.py").read_text()
    if f"# generator: fastjsonschema {fastjsonschema.VERSION}\n" not in generated:
        pytest.skip("installed fastjsonschema differs from the one that generated the module")
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_validator", REPO / "tools" / "gen_validator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.generate((REPO / "specs" / "config-schema.json").read_bytes()) == generated


def test_config_layer_imports_without_heavy_modules() -> None:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); "
            "import ocirun.config.schema, ocirun.config.bundle, ocirun.config.checks; "
            "bad = [m for m in ('fastjsonschema', 'jsonschema', 'decimal', 'dataclasses', "
            "'subprocess', 'logging') if m in sys.modules]; print(','.join(bad))")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_base_copy_is_independent() -> None:
    a, b = base(), base()
    a["linux"]["namespaces"].clear()
    assert b["linux"]["namespaces"]
    assert copy.deepcopy(b) == base()
