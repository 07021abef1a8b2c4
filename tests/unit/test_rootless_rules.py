"""rootless.py and the CLI's rootless rules: the state root, --rootless, the
map checks against /etc/subuid, the map writer, the cgroup delegation rule
(no root needed; the real thing runs in tests/privileged/test_rootless.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ocirun import rootless
from ocirun.cgroups.paths import Hierarchy
from ocirun.cgroups.v1 import Hierarchy1
from ocirun.cgroups.v2 import Hierarchy2
from ocirun.commands import default_root, rootless_flag
from ocirun.config.template import template
from ocirun.errors import CgroupError, ConfigError, OciRunError, UsageError

# -- the command line ---------------------------------------------------------------


def test_state_root_follows_xdg_for_a_plain_user() -> None:
    assert default_root(0, {"XDG_RUNTIME_DIR": "/run/user/0"}) == "/run/ocirun"
    assert default_root(1000, {"XDG_RUNTIME_DIR": "/run/user/1000/"}) == "/run/user/1000/ocirun"
    # unset or not absolute: runc's /run/<runtime>, whose error then says what to do
    assert default_root(1000, {}) == "/run/ocirun"
    assert default_root(1000, {"XDG_RUNTIME_DIR": "relative"}) == "/run/ocirun"


@pytest.mark.parametrize("value,euid,want", [
    (None, 0, False), ("auto", 0, False), ("auto", 1000, True), ("AUTO", 1000, True),
    ("true", 0, True), ("false", 1000, False), ("1", 0, True), ("0", 1000, False),
])
def test_rootless_flag(value: Any, euid: int, want: bool) -> None:
    assert rootless_flag(value, euid) is want


def test_rootless_flag_refuses_other_words() -> None:
    with pytest.raises(UsageError, match="invalid --rootless value `maybe`: want true, false or auto"):
        rootless_flag("maybe", 0)


# -- /etc/subuid and the maps ---------------------------------------------------------


def subfile(tmp_path: Path, text: str, name: str = "subuid") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_sub_ranges_by_name_or_uid(tmp_path: Path) -> None:
    f = subfile(tmp_path, "alice:100000:65536\nbob:200000:10\n1000:300000:5\nbad line\nalice:x:1\n")
    assert rootless.sub_ranges(f, "alice", 1000) == [(100000, 65536), (300000, 5)]
    assert rootless.sub_ranges(f, "carol", 1001) == []
    assert rootless.sub_ranges(str(tmp_path / "none"), "alice", 1000) == []


def test_self_map() -> None:
    assert rootless.is_self_map(b"0 1000 1\n", 1000)
    assert rootless.is_self_map(b"5 1000 1\n", 1000)
    assert not rootless.is_self_map(b"0 1000 2\n", 1000)
    assert not rootless.is_self_map(b"0 1000 1\n1 100000 10\n", 1000)


def test_check_maps_accepts_own_id_and_sub_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = subfile(tmp_path, "alice:100000:65536\n")
    monkeypatch.setattr(rootless, "find_helper", lambda name: f"/usr/bin/{name}")
    rootless.check_maps(b"0 1000 1\n", 1000, "uidMappings", f, "alice", 1000)
    rootless.check_maps(b"0 1000 1\n1 100000 65536\n", 1000, "uidMappings", f, "alice", 1000)
    rootless.check_maps(b"0 100010 100\n", 1000, "gidMappings", f, "alice", 1000)


def test_check_maps_says_what_the_user_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "find_helper", lambda name: f"/usr/bin/{name}")
    none = subfile(tmp_path, "bob:100000:65536\n")
    with pytest.raises(ConfigError) as ei:
        rootless.check_maps(b"0 1000 1\n1 100000 65536\n", 1000, "uidMappings", none, "alice", 1000)
    assert "$.linux.uidMappings[1]: host ids 100000-165535: no subuid range for user alice in " \
        f"{none}" in ei.value.msg
    f = subfile(tmp_path, "alice:100000:1000\n", "subgid")
    with pytest.raises(ConfigError, match=r"\$.linux.gidMappings\[0\]: host ids 100000-165535 are "
                       r"not in the subgid ranges of user alice .* \(100000-100999\)"):
        rootless.check_maps(b"0 100000 65536\n", 1000, "gidMappings", f, "alice", 1000)
    # another uid than one's own, even of size 1
    with pytest.raises(ConfigError, match="no subuid range for user alice"):
        rootless.check_maps(b"0 0 1\n", 1000, "uidMappings", none, "alice", 1000)


def test_check_maps_needs_the_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = subfile(tmp_path, "alice:100000:65536\n")
    monkeypatch.setattr(rootless, "find_helper", lambda name: None)
    rootless.check_maps(b"0 1000 1\n", 1000, "uidMappings", f, "alice", 1000)  # no helper needed
    with pytest.raises(ConfigError, match="needs `newgidmap`, which is not installed .*uidmap"):
        rootless.check_maps(b"0 1000 1\n1 100000 10\n", 1000, "gidMappings", f, "alice", 1000)


def test_check_config_wants_a_user_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "user_name", lambda uid: "alice")
    doc = template(rootless=False)
    with pytest.raises(ConfigError) as ei:
        rootless.check_config(doc, 1000, 1000)
    assert ei.value.msg.startswith("config.json: $.linux.namespaces: running as user alice "
                                   "(uid 1000), not root: a rootless container needs a user "
                                   "namespace")
    assert "ocirun spec --rootless" in ei.value.msg


def test_check_config_passes_the_rootless_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getegid", lambda: 1000)
    rootless.check_config(template(rootless=True), 1000, 1000)


def test_check_config_refuses_idmap_mounts_and_skips_joined_maps() -> None:
    doc: dict[str, Any] = template(rootless=False)
    doc["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 10}]
    rootless.check_config(doc, 1000, 1000)  # joined: nothing of ours to write
    doc["mounts"].append({"destination": "/d", "source": "/s", "options": ["bind", "idmap"]})
    with pytest.raises(ConfigError, match=r"\$.mounts\[7\]: id-mapped mounts need root"):
        rootless.check_config(doc, 1000, 1000)


# -- writing the maps -----------------------------------------------------------------


def fake_proc(tmp_path: Path, pid: int = 42) -> Path:
    d = tmp_path / "proc" / str(pid)
    d.mkdir(parents=True)
    for name in ("setgroups", "uid_map", "gid_map"):
        (d / name).write_text("")
    return d


def test_write_maps_self_maps_deny_setgroups(tmp_path: Path) -> None:
    d = fake_proc(tmp_path)
    rootless.write_maps(42, b"0 1000 1\n", b"0 1000 1\n", proc=str(tmp_path / "proc"),
                        euid=1000, egid=1000)
    assert (d / "uid_map").read_text() == "0 1000 1\n"
    assert (d / "setgroups").read_text() == "deny"
    assert (d / "gid_map").read_text() == "0 1000 1\n"


def fake_helper(tmp_path: Path, name: str, status: int = 0, say: str = "") -> Path:
    log = tmp_path / f"{name}.args"
    p = tmp_path / "bin" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text(f"#!/bin/sh\necho \"$@\" > {log}\n{'echo ' + repr(say) + ' >&2' if say else ''}\n"
                 f"exit {status}\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return log


def test_write_maps_runs_the_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = fake_proc(tmp_path)
    ulog = fake_helper(tmp_path, "newuidmap")
    glog = fake_helper(tmp_path, "newgidmap")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    rootless.write_maps(42, b"0 1000 1\n1 100000 65536\n", b"0 100000 10\n",
                        proc=str(tmp_path / "proc"), euid=1000, egid=1000)
    assert ulog.read_text() == "42 0 1000 1 1 100000 65536\n"
    assert glog.read_text() == "42 0 100000 10\n"
    assert (d / "setgroups").read_text() == ""  # newgidmap's business


def test_write_maps_reports_the_helpers_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_proc(tmp_path)
    fake_helper(tmp_path, "newuidmap", 1, "newuidmap: uid range [1-65537) -> [100000-165536) not allowed")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(OciRunError) as ei:
        rootless.write_maps(42, b"0 1000 1\n1 100000 65536\n", b"", proc=str(tmp_path / "proc"),
                            euid=1000, egid=1000)
    assert ei.value.msg.startswith("linux.uidMappings: `")
    assert "newuidmap 42 0 1000 1 1 100000 65536` failed (newuidmap: uid range [1-65537) -> " \
        "[100000-165536) not allowed)" in ei.value.msg


# -- cgroups --------------------------------------------------------------------------


def h1(keys: tuple[str, ...], path: str = "/cg/x") -> Hierarchy:
    return Hierarchy1(keys, path, "/cg")


def h2(path: str = "/cg2/x") -> Hierarchy:
    return Hierarchy2(("unified",), path, "/cg2")


def test_split_keeps_the_delegated_and_skips_the_rest() -> None:
    pids, mem, uni = h1(("pids",), "/p/x"), h1(("memory",), "/m/x"), h2()
    why = {pids.path: None, mem.path: "`/m` is not writable", uni.path: "no"}
    kept, skipped = rootless.split_delegated([pids, mem, uni], {"pids": {"limit": 10}},
                                             lambda h: why[h.path], 1000)
    assert kept == [pids]
    assert [h for h, _ in skipped] == [mem, uni]


def test_split_refuses_a_limit_of_a_skipped_hierarchy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rootless, "user_name", lambda uid: "alice")
    pids, mem = h1(("pids",), "/p/x"), h1(("memory",), "/m/x")
    why = {pids.path: None, mem.path: "`/m` is not writable"}
    with pytest.raises(CgroupError) as ei:
        rootless.split_delegated([pids, mem], {"pids": {"limit": 5}, "memory": {"limit": 1 << 20}},
                                 lambda h: why[h.path], 1000)
    assert ei.value.msg.startswith("linux.resources.memory: cannot be applied: cgroup not "
                                   "delegated to user alice (uid 1000): `/m` is not writable "
                                   "(for `/m/x`)")
    # values that ask for nothing need nothing; devices are never written rootless
    rootless.split_delegated([pids, mem], {"memory": {"limit": 0}, "devices": [{"allow": False}]},
                             lambda h: why[h.path], 1000)


def test_split_routes_like_apply_on_a_hybrid_host() -> None:
    """A v1 controller wins over the unified hierarchy; what v1 lacks goes to v2."""
    mem, uni = h1(("memory",), "/m/x"), h2()
    # memory is in v1 (skipped): the delegated unified hierarchy does not serve it
    with pytest.raises(CgroupError, match="linux.resources.memory"):
        rootless.split_delegated([mem, uni], {"memory": {"limit": 1 << 20}},
                                 lambda h: None if h is uni else "no", 1000)
    # hugetlb has no v1 hierarchy here: the unified one (delegated) serves it
    rootless.split_delegated([mem, uni], {"hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                                          "cpu": {"cpus": "0"}},
                             lambda h: None if h is uni else "no", 1000)


def deny(monkeypatch: pytest.MonkeyPatch, *paths: Path) -> None:
    """os.access as a plain user would see it: ``paths`` not writable (root may
    write anything, so the refusals are simulated)."""
    real = os.access
    denied = {str(p) for p in paths}
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) in denied and mode & os.W_OK
                        else real(p, mode))


def test_delegated_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v1root = tmp_path / "v1"
    (v1root / "deleg" / "old").mkdir(parents=True)
    (v1root / "deleg" / "old" / "cgroup.procs").write_text("")
    new = Hierarchy1(("pids",), str(v1root / "deleg" / "a" / "c"), str(v1root))
    old = Hierarchy1(("pids",), str(v1root / "deleg" / "old"), str(v1root))
    assert rootless.delegated(new) is None
    assert rootless.delegated(old) is None
    deny(monkeypatch, v1root / "deleg", v1root / "deleg" / "old" / "cgroup.procs")
    assert rootless.delegated(new) == f"`{v1root}/deleg` is not writable"
    assert rootless.delegated(old) == f"`{v1root}/deleg/old/cgroup.procs` is not writable"


def test_delegated_v2_needs_the_common_ancestor(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "v2"
    for d in ("", "user", "user/me", "user/me/app"):
        (root / d).mkdir(exist_ok=True)
        (root / d / "cgroup.procs").write_text("")
    me = tmp_path / "self"
    me.write_text("0::/user/me/app\n")
    h = Hierarchy2(("unified",), str(root / "user" / "me" / "c1"), str(root))
    deny(monkeypatch, root / "cgroup.procs", root / "user" / "cgroup.procs")
    assert rootless.delegated(h, str(me)) is None
    # from the root cgroup the common ancestor is the (root-owned) top
    me.write_text("0::/\n")
    assert rootless.delegated(h, str(me)) == (
        f"`{root}/cgroup.procs` is not writable (cgroup v2 moves a process only with write "
        "access to the common ancestor of its cgroup `/` and the target)")
