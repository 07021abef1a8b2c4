"""``ocirun features`` (issue 10 point 4): the spec's features document, built
from the same tables the validator and the mechanisms use, valid against the
project's schema (specs/features-schema.json) and the upstream one."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from ocirun.capabilities import KNOWN_CAPABILITIES
from ocirun.config.checks import NOT_YET
from ocirun.mount_options import KNOWN_MOUNT_OPTIONS
from ocirun.namespaces import TYPE_FLAGS
from ocirun.ops.features import features
from ocirun.plantypes import HOOK_KINDS

REPO = pathlib.Path(__file__).resolve().parents[2]
UPSTREAM = REPO.parent / "shared" / "oci-runtime-spec" / "schema"


def printed() -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-m", "ocirun", "features"], capture_output=True,
                       text=True, cwd=REPO, check=False,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("{\n    \"ociVersionMin\"")  # runc's 4-space indent
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def test_valid_against_the_projects_schema() -> None:
    schema = json.loads((REPO / "specs" / "features-schema.json").read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(printed())


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="the shared spec checkout is not beside the repo")
def test_valid_against_the_upstream_schema() -> None:
    from referencing import Registry
    from referencing.jsonschema import DRAFT4
    store = {name: json.loads((UPSTREAM / name).read_text())
             for name in ("defs.json", "defs-linux.json", "features-linux.json",
                          "features-schema.json")}
    registry: Registry = Registry().with_resources(
        (name, DRAFT4.create_resource(doc)) for name, doc in store.items())
    jsonschema.Draft4Validator(store["features-schema.json"], registry=registry).validate(
        features())


def test_project_schema_rejects_what_upstream_rejects() -> None:
    schema = json.loads((REPO / "specs" / "features-schema.json").read_text())
    v = jsonschema.Draft4Validator(schema)
    bad = [{}, {"ociVersionMin": "1.0.0"}, {"ociVersionMin": "x", "ociVersionMax": "1.3.0"},
           {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"namespaces": ["nope"]}},
           {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
            "linux": {"capabilities": ["cap_kill"]}},
           {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0",
            "linux": {"seccomp": {"actions": ["SCMP_ACT_NOPE"]}}}]
    for doc in bad:
        assert not v.is_valid(doc), doc


def test_built_from_the_shared_tables() -> None:
    doc = features()
    assert doc["hooks"] == list(HOOK_KINDS)
    assert set(doc["mountOptions"]) <= set(KNOWN_MOUNT_OPTIONS)
    assert {"bind", "rbind", "ro", "nosuid", "rprivate", "tmpcopyup"} <= set(doc["mountOptions"])
    linux = doc["linux"]
    assert set(linux["namespaces"]) == set(TYPE_FLAGS)
    assert linux["capabilities"] == list(KNOWN_CAPABILITIES)
    # what NOT_YET still refuses is reported as not enabled
    idmap = "mounts[].uidMappings" not in NOT_YET
    assert linux["mountExtensions"]["idmap"]["enabled"] is idmap
    assert ("idmap" in doc["mountOptions"]) is idmap
    assert linux["seccomp"]["enabled"] is ("linux.seccomp" not in NOT_YET)
    assert linux["apparmor"]["enabled"] is ("process.apparmorProfile" not in NOT_YET)
    assert linux["intelRdt"]["enabled"] is ("linux.intelRdt" not in NOT_YET)
    assert linux["cgroup"]["v1"] and linux["cgroup"]["v2"]
    assert doc["ociVersionMax"] == "1.3.0"
    # issue 13: as it is on this host (a criu binary to drive, pyroute2, Linux >= 5.12)
    import shutil
    assert doc["annotations"]["org.opencontainers.runc.checkpoint.enabled"] == (
        "true" if shutil.which("criu") else "false")
    assert linux["memoryPolicy"]["modes"][:3] == ["MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND"]
    assert "MPOL_F_STATIC_NODES" in linux["memoryPolicy"]["flags"]
    assert linux["intelRdt"] == {"enabled": True, "schemata": True, "monitoring": True}
    assert linux["netDevices"] == {"enabled": True}


def test_no_host_probing() -> None:
    # features.md: the document states what the implementation supports; the
    # same document on every host (two calls, same bytes).
    assert json.dumps(features()) == json.dumps(features())
