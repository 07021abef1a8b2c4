"""Id-mapped bind mounts on real containers (issue 13 item 5): files owned by
``containerID`` on disk show as owned by ``hostID`` inside, with the mount's
own maps, recursively with ridmap, and with the container's user namespace
maps when the mount has none."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import bundle as bundle_mod
import pytest

MAPS = [{"containerID": 0, "hostID": 1234, "size": 1},
        {"containerID": 1000, "hostID": 2345, "size": 10}]
LIST = ["sh", "-c", ("cd /data && stat -c '%n %u %g' * sub/* 2>/dev/null; "
                     "touch /data/new 2>&1 || true")]


@pytest.fixture
def source() -> Iterator[str]:
    """A directory reachable by any uid, with files of several owners, and a
    tmpfs mounted below it (for the recursive case)."""
    top = tempfile.mkdtemp(prefix="ocirun-p9-idmap-")
    os.chmod(top, 0o755)
    try:
        for name, owner in (("root0", 0), ("u1000", 1000), ("u1005", 1005), ("u7", 7)):
            path = os.path.join(top, name)
            with open(path, "w"):
                pass
            os.chown(path, owner, owner)
        os.mkdir(os.path.join(top, "sub"))
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "p9idmap", top + "/sub"],
                       check=True)
        try:
            with open(os.path.join(top, "sub", "inner"), "w"):
                pass
            yield top
        finally:
            subprocess.run(["umount", "-l", top + "/sub"], check=False)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _owners(out: str) -> dict[str, tuple[int, int]]:
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit():
            found[parts[0]] = (int(parts[1]), int(parts[2]))
    return found


def _mount(source: str, options: list[str], maps: bool = True) -> dict[str, Any]:
    m: dict[str, Any] = {"destination": "/data", "type": "bind", "source": source,
                         "options": options}
    if maps:
        m["uidMappings"] = MAPS
        m["gidMappings"] = MAPS
    return m


def test_idmapped_bind_shows_the_mapped_owners(lab: Any, source: str) -> None:
    out = lab.run_args(LIST, lambda c: c["mounts"].append(_mount(source, ["rbind", "idmap"]))
                       ).ok().stdout
    got = _owners(out)
    assert got["root0"] == (1234, 1234)
    assert got["u1000"] == (2345, 2345)
    assert got["u1005"] == (2350, 2350)
    assert got["u7"] == (65534, 65534)  # not in the maps: the overflow id
    # a non-recursive map leaves the tmpfs below as it is (owned by 0)
    assert got["sub/inner"] == (0, 0)
    # the host's view is unchanged
    assert os.stat(os.path.join(source, "root0")).st_uid == 0


def test_ridmap_maps_the_mounts_below_too(lab: Any, source: str) -> None:
    out = lab.run_args(LIST, lambda c: c["mounts"].append(
        _mount(source, ["rbind", "ridmap"]))).ok().stdout
    got = _owners(out)
    assert got["root0"] == (1234, 1234)
    assert got["sub/inner"] == (1234, 1234)


def test_idmap_with_read_only(lab: Any, source: str) -> None:
    out = lab.run_args(LIST, lambda c: c["mounts"].append(
        _mount(source, ["bind", "idmap", "ro"]))).ok().stdout
    assert _owners(out)["root0"] == (1234, 1234)
    assert "Read-only file system" in out


def test_idmap_uses_the_container_user_namespace(lab: Any, source: str) -> None:
    """No maps on the mount: the container's (0-65535 -> 100000-165535).  Files
    the host owns as 0 then show as 0 inside, where a plain bind shows nobody."""
    def mutate(c: dict[str, Any], idmap: bool) -> None:
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        c["mounts"].append(_mount(source, ["bind"] + (["idmap"] if idmap else []), maps=False))

    results = {}
    for idmap in (True, False):
        top = tempfile.mkdtemp(prefix="ocirun-p9-userns-")
        try:
            os.chmod(top, 0o755)
            bundle_mod.build_rootfs(os.path.join(top, "rootfs"))
            os.mkdir(os.path.join(top, "rootfs", "data"))  # the mapped root cannot make it
            bundle_mod.write_bundle(top, os.path.join(top, "rootfs"), LIST,
                                    lambda c, i=idmap: mutate(c, i))  # type: ignore[misc]
            r = lab.cli("run", "--bundle", top, lab.new_id())
        finally:
            shutil.rmtree(top, ignore_errors=True)
        assert r.returncode == 0, r
        results[idmap] = _owners(r.stdout)
    assert results[True]["root0"] == (0, 0)
    assert results[True]["u1000"] == (1000, 1000)
    assert results[False]["root0"] == (65534, 65534)


def test_idmap_errors(lab: Any, source: str) -> None:
    for mount, phrase in (
            ({**_mount(source, ["idmap"]), "type": "tmpfs", "source": "tmpfs"},
             "$.mounts[7]: id-mapped mounts are bind mounts only"),
            (_mount(source, ["bind", "idmap"], maps=False),
             "$.mounts[7].options: idmap needs uidMappings/gidMappings or a user namespace"),
            ({**_mount(source, ["bind", "idmap"]),
              "uidMappings": [{"containerID": 0, "hostID": 1, "size": 5},
                              {"containerID": 2, "hostID": 9, "size": 1}]},
             "$.mounts[7].uidMappings: write `/proc/")):
        b = lab.bundle(["true"], lambda c, m=mount: c["mounts"].append(m))  # type: ignore[misc]
        assert len(b.config["mounts"]) == 8
        cid = lab.new_id()
        r = lab.create(b, cid)
        assert r.returncode != 0 and phrase in r.stderr, (phrase, r)
        assert lab.leftovers(cid) == []
