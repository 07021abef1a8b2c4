"""Unit tests for ocirun/config/checks.py: one valid and one invalid case per check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ocirun.config import checks
from ocirun.config.checks import NOT_YET, check, unsupported, unsupported_message
from ocirun.config.template import template
from ocirun.errors import ConfigError


@pytest.fixture
def bundle(tmp_path: Path) -> str:
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "src").mkdir()
    return str(tmp_path)


def spec(**linux: Any) -> dict[str, Any]:
    doc = template()
    doc["linux"].update(linux)
    return doc


def errors_of(doc: dict[str, Any], bundle: str) -> str:
    with pytest.raises(ConfigError) as info:
        check(doc, bundle)
    msg = str(info.value)
    assert msg.startswith("config.json: ") and "\n" not in msg
    return msg


def ns(*kinds: str, **paths: str) -> list[dict[str, str]]:
    out = [{"type": k} for k in kinds]
    out += [{"type": k, "path": p} for k, p in paths.items()]
    return out


def test_template_passes(bundle: str) -> None:
    assert check(template(), bundle) == []
    assert check(template(rootless=True), bundle) == []


def test_all_errors_in_one_exception(bundle: str) -> None:
    doc = template()
    doc["process"]["cwd"] = "tmp"
    doc["linux"]["maskedPaths"] = ["proc/kcore"]
    doc["root"]["path"] = "nope"
    msg = errors_of(doc, bundle)
    assert "$.process.cwd: 'tmp' is not an absolute path" in msg
    assert "$.linux.maskedPaths[0]" in msg
    assert "$.root.path" in msg and "does not exist" in msg


@pytest.mark.parametrize("version,ok", [("1.3.0", True), ("1.0.2-dev", True), ("1.0.0+build.1", True),
                                        ("2.0.0", False), ("0.9.0", False), ("1.0", False),
                                        ("latest", False)])
def test_oci_version(bundle: str, version: str, ok: bool) -> None:
    doc = template()
    doc["ociVersion"] = version
    if ok:
        check(doc, bundle)
    else:
        assert "$.ociVersion" in errors_of(doc, bundle)


def test_oci_version_newer_minor_warns(bundle: str) -> None:
    doc = template()
    doc["ociVersion"] = "1.4.0"
    (warning,) = check(doc, bundle)
    assert warning.startswith("$.ociVersion:")


def test_root_required_and_directory(bundle: str) -> None:
    doc = template()
    del doc["root"]
    assert "$.root: required on Linux" in errors_of(doc, bundle)
    doc = template()
    Path(bundle, "file").write_text("")
    doc["root"]["path"] = "file"
    assert "is not a directory" in errors_of(doc, bundle)
    doc["root"]["path"] = os.path.join(bundle, "rootfs")  # absolute is fine too
    check(doc, bundle)


def test_process_fields(bundle: str) -> None:
    doc = template()
    doc["process"]["args"] = []
    del doc["process"]["user"]["gid"]
    doc["process"]["oomScoreAdj"] = 2000
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE"}
    msg = errors_of(doc, bundle)
    assert "$.process.args: must contain at least one entry" in msg
    assert "$.process.user.gid: required" in msg
    assert "$.process.oomScoreAdj" in msg
    assert "$.process.ioPriority.priority" in msg
    doc = template()
    doc["process"]["oomScoreAdj"] = -1000
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 7}
    check(doc, bundle)


def test_process_absent_is_allowed(bundle: str) -> None:
    doc = template()
    del doc["process"]
    check(doc, bundle)


def test_process_user_missing(bundle: str) -> None:
    doc = template()
    del doc["process"]["user"]
    assert "$.process.user" in errors_of(doc, bundle)


def test_rlimits(bundle: str) -> None:
    doc = template()
    doc["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20},
                                 {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    check(doc, bundle)
    doc["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 30, "hard": 20},
                                 {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                                 {"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    msg = errors_of(doc, bundle)
    assert "$.process.rlimits[0]: soft limit 30 is above hard limit 20" in msg
    assert "$.process.rlimits[1].type: RLIMIT_NOFILE is set more than once" in msg
    assert "$.process.rlimits[2].type: 'RLIMIT_BOGUS' is not a Linux resource limit" in msg


def test_unknown_capability_is_warning(bundle: str) -> None:
    doc = template()
    doc["process"]["capabilities"]["bounding"].append("CAP_FLY")
    expected = "$.process.capabilities.bounding[3]: unknown capability 'CAP_FLY' ignored"
    assert check(doc, bundle) == [expected]


def test_mount_destination_relative_warns(bundle: str) -> None:
    doc = template()
    doc["mounts"][0]["destination"] = "proc"
    (warning,) = check(doc, bundle)
    assert warning.startswith("$.mounts[0].destination:") and "relative" in warning
    doc["mounts"][0]["destination"] = ""
    assert "$.mounts[0].destination: must not be empty" in errors_of(doc, bundle)


def test_bind_source_must_exist(bundle: str) -> None:
    doc = template()
    doc["mounts"].append({"destination": "/data", "type": "none", "source": "src",
                          "options": ["rbind", "ro"]})
    check(doc, bundle)  # relative to the bundle
    doc["mounts"][-1]["source"] = "missing"
    msg = errors_of(doc, bundle)
    assert f"$.mounts[7].source: missing mount source `{os.path.join(bundle, 'missing')}`" in msg
    del doc["mounts"][-1]["source"]
    assert "$.mounts[7].source: required for a bind mount" in errors_of(doc, bundle)
    # type "bind" counts too.
    doc["mounts"][-1] = {"destination": "/d", "type": "bind", "source": "/nonexistent/x"}
    assert "missing mount source" in errors_of(doc, bundle)


def test_mount_id_mappings_pair(bundle: str) -> None:
    doc = template()
    idmap = [{"containerID": 0, "hostID": 1000, "size": 1}]
    doc["mounts"].append({"destination": "/d", "source": "src", "options": ["bind", "idmap"],
                          "uidMappings": idmap, "gidMappings": idmap})
    check(doc, bundle)
    del doc["mounts"][-1]["gidMappings"]
    assert "uidMappings and gidMappings must be given together" in errors_of(doc, bundle)


def test_idmap_option_needs_mappings_or_userns(bundle: str) -> None:
    doc = template()
    doc["mounts"].append({"destination": "/d", "source": "src", "options": ["bind", "idmap"]})
    assert "idmap needs" in errors_of(doc, bundle)
    rootless = template(rootless=True)
    rootless["mounts"].append({"destination": "/d", "source": "src", "options": ["bind", "idmap"]})
    check(rootless, bundle)


def test_hook_paths(bundle: str) -> None:
    doc = template()
    doc["hooks"] = {"prestart": [{"path": "/bin/true"}], "poststop": [{"path": "true"}]}
    assert "$.hooks.poststop[0].path: 'true' is not an absolute path" in errors_of(doc, bundle)
    doc["hooks"]["poststop"][0]["path"] = "/bin/true"
    check(doc, bundle)


def test_hostname_needs_uts(bundle: str) -> None:
    doc = spec(namespaces=ns("pid", "mount"))
    doc["domainname"] = "example.org"
    msg = errors_of(doc, bundle)
    assert "$.hostname: needs a private `uts` namespace" in msg
    assert "$.domainname" in msg
    doc["hostname"] = ""
    del doc["domainname"]
    check(doc, bundle)


def test_namespaces_unique_and_paths(bundle: str) -> None:
    doc = spec(namespaces=ns("pid", "pid", "mount", "uts", network="net/ns"))
    msg = errors_of(doc, bundle)
    assert "$.linux.namespaces[1].type: namespace 'pid' listed twice" in msg
    assert "$.linux.namespaces[4].path: 'net/ns' is not an absolute path" in msg
    doc = spec(namespaces=ns("mount", "uts", network="/nonexistent/ns/net"))
    assert "`/nonexistent/ns/net` does not exist" in errors_of(doc, bundle)
    doc = spec(namespaces=ns("mount", "uts", network="/proc/self/ns/net"))
    check(doc, bundle)


def test_id_mappings_need_user_namespace(bundle: str) -> None:
    idmap = [{"containerID": 0, "hostID": 1000, "size": 1}]
    doc = spec(uidMappings=idmap, gidMappings=idmap)
    msg = errors_of(doc, bundle)
    assert "$.linux.uidMappings: needs a `user` namespace" in msg
    assert "$.linux.gidMappings: needs a `user` namespace" in msg


def test_new_user_namespace_needs_mappings(bundle: str) -> None:
    doc = template(rootless=True)
    del doc["linux"]["gidMappings"]
    assert "$.linux.gidMappings: required when a new user namespace" in errors_of(doc, bundle)
    doc = spec(namespaces=ns("mount", "uts", user="/proc/self/ns/user"))
    check(doc, bundle)  # joining by path: the namespace already has its maps
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    assert "joined user namespace" in errors_of(doc, bundle)


def test_id_mapping_size_zero(bundle: str) -> None:
    doc = template(rootless=True)
    doc["linux"]["uidMappings"][0]["size"] = 0
    assert "$.linux.uidMappings[0].size: must be at least 1" in errors_of(doc, bundle)


def test_time_offsets_need_new_time_namespace(bundle: str) -> None:
    offsets = {"monotonic": {"secs": 10, "nanosecs": 0}}
    doc = spec(timeOffsets=offsets)
    assert "$.linux.timeOffsets: needs a new `time` namespace" in errors_of(doc, bundle)
    doc["linux"]["namespaces"].append({"type": "time"})
    check(doc, bundle)
    doc["linux"]["namespaces"][-1]["path"] = "/proc/self/ns/time"
    assert "$.linux.timeOffsets" in errors_of(doc, bundle)
    doc = spec(timeOffsets={"realtime": {"secs": 1}}, namespaces=ns("mount", "uts", "time"))
    assert "$.linux.timeOffsets.realtime: unknown clock" in errors_of(doc, bundle)


def test_sysctl_namespacing(bundle: str) -> None:
    ok = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "100", "fs.mqueue.msg_max": "10",
          "net/core/somaxconn": "128", "kernel.domainname": "x"}
    check(spec(sysctl=ok), bundle)
    doc = spec(sysctl={"net.ipv4.ip_forward": "1", "kernel.msgmax": "1", "vm.swappiness": "1",
                       "kernel.hostname": "h", "net..x": "1"},
               namespaces=ns("pid", "mount", "uts"))
    msg = errors_of(doc, bundle)
    assert '$.linux.sysctl["net.ipv4.ip_forward"]: needs a private `network` namespace' in msg
    assert '$.linux.sysctl["kernel.msgmax"]: needs a private `ipc` namespace' in msg
    assert '$.linux.sysctl["vm.swappiness"]: not a namespaced sysctl' in msg
    assert '$.linux.sysctl["kernel.hostname"]: use $.hostname instead' in msg
    assert '$.linux.sysctl["net..x"]: not a valid sysctl name' in msg


def test_sysctl_net_in_host_netns_refused(bundle: str) -> None:
    doc = spec(sysctl={"net.ipv4.ip_forward": "1"},
               namespaces=ns("pid", "mount", "uts", network="/proc/self/ns/net"))
    assert "needs a private `network` namespace" in errors_of(doc, bundle)


def test_devices(bundle: str) -> None:
    good = [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229},
            {"type": "p", "path": "/dev/pipe"}]
    check(spec(devices=good), bundle)
    bad = [{"type": "c", "path": "dev/fuse", "major": 10, "minor": 229},
           {"type": "b", "path": "/dev/sda"},
           {"type": "c", "path": "/dev/x", "major": -1, "minor": 0},
           {"type": "c", "path": "/dev/x", "major": 1, "minor": 1},
           {"type": "q", "path": "/dev/q"}]
    msg = errors_of(spec(devices=bad), bundle)
    assert "$.linux.devices[0].path: 'dev/fuse' is not an absolute path" in msg
    assert "$.linux.devices[1].major: required for type 'b'" in msg
    assert "$.linux.devices[2].major: -1 is negative" in msg
    assert "$.linux.devices[3].path: `/dev/x` listed twice" in msg
    assert "$.linux.devices[4].type" in msg


def test_duplicate_device_numbers_warn(bundle: str) -> None:
    devices = [{"type": "c", "path": "/dev/a", "major": 1, "minor": 3},
               {"type": "c", "path": "/dev/b", "major": 1, "minor": 3}]
    (warning,) = check(spec(devices=devices), bundle)
    assert warning.startswith("$.linux.devices[1]:")


def test_masked_and_readonly_paths(bundle: str) -> None:
    msg = errors_of(spec(maskedPaths=["/ok", "rel"], readonlyPaths=["x"]), bundle)
    assert "$.linux.maskedPaths[1]" in msg and "$.linux.readonlyPaths[0]" in msg


def test_rootfs_propagation(bundle: str) -> None:
    check(spec(rootfsPropagation="unbindable"), bundle)
    assert "$.linux.rootfsPropagation" in errors_of(spec(rootfsPropagation="rslave"), bundle)


def test_every_check_is_registered() -> None:
    named = {name for name in dir(checks) if name.startswith("check_")}
    assert named == {fn.__name__ for fn in checks.CHECKS}


# --- unsupported() ----------------------------------------------------------

def test_unsupported_empty_for_template() -> None:
    assert unsupported(template()) == []
    assert unsupported_message(template()) is None


def test_unsupported_lists_paths() -> None:
    doc = template()
    doc["process"]["terminal"] = True  # built (issue 10): no longer listed
    idmap = [{"containerID": 0, "hostID": 1, "size": 1}]
    doc["mounts"][1]["uidMappings"] = idmap  # built (issue 13): no longer listed
    doc["mounts"][1]["gidMappings"] = idmap
    assert unsupported(doc) == []
    # the machinery, on a table entry of its own (every feature is built now)
    import ocirun.config.checks as checks_mod
    saved = dict(checks_mod.NOT_YET)
    checks_mod.NOT_YET["mounts[].uidMappings"] = "id-mapped mounts (not implemented yet)"
    try:
        found = unsupported(doc)
        assert set(found) == {"$.mounts[1].uidMappings"}
        msg = unsupported_message(doc)
    finally:
        checks_mod.NOT_YET.clear()
        checks_mod.NOT_YET.update(saved)
    assert msg is not None and msg.startswith("config.json: not supported: ")
    assert all(f"{path}: " in msg for path in found)


def test_unsupported_ignores_empty_values() -> None:
    doc = template()
    doc["process"]["terminal"] = False
    doc["process"]["selinuxLabel"] = ""
    doc["linux"]["resources"] = {}
    assert unsupported(doc) == []


def test_not_yet_table_covers_brief() -> None:
    for key in ():
        assert key in NOT_YET


def test_personality_checks(tmp_path) -> None:
    from ocirun.config.checks import Report, check_personality
    ok = Report()
    check_personality({"linux": {"personality": {"domain": "LINUX32"}}}, str(tmp_path), ok)
    assert not ok.errors
    bad = Report()
    check_personality({"linux": {"personality": {"domain": "LINUX", "flags": ["X"]}}},
                      str(tmp_path), bad)
    assert bad.errors == ["$.linux.personality.flags: the spec defines no personality flags"]


def test_rdma_entry_needs_handles_or_objects(tmp_path) -> None:
    doc = template()
    doc["linux"]["resources"] = {"rdma": {"mlx5_0": {}, "mlx5_1": {"hcaObjects": 3}}}
    with pytest.raises(ConfigError, match=r'\$\.linux\.resources\.rdma\["mlx5_0"\]: needs hcaHandles'):
        check(doc, str(tmp_path))
