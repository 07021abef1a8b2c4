"""Id-mapped mounts: planning (process/plan.py) and the runtime's part
(process/idmap.py, ops/create.open_handles) on the recording double."""

from __future__ import annotations

import os
from typing import Any

import pytest

from ocirun.errors import ConfigError, OciRunError
from ocirun.plantypes import IdMap
from ocirun.process import idmap as idmap_mod
from ocirun.process.plan import build_mounts
from ocirun.syscalls import api
from ocirun.syscalls.recording import RecordingSyscalls

MAPS = [{"containerID": 0, "hostID": 1234, "size": 1}, {"containerID": 1000, "hostID": 2000,
                                                         "size": 10}]


def _mount(options: list[str], **extra: Any) -> dict[str, Any]:
    return {"destination": "/data", "type": "bind", "source": "/tmp", "options": options, **extra}


def test_mount_maps_are_planned() -> None:
    (m,) = build_mounts([_mount(["rbind", "ridmap"], uidMappings=MAPS, gidMappings=MAPS)], "/b",
                        in_userns=False, own_netns=True)
    assert m.idmap is not None
    assert m.idmap.uid_map == b"0 1234 1\n1000 2000 10\n" == m.idmap.gid_map
    assert m.idmap.recursive and m.recursive
    (m,) = build_mounts([_mount(["bind"], uidMappings=MAPS, gidMappings=MAPS)], "/b",
                        in_userns=False, own_netns=True)
    assert m.idmap is not None and not m.idmap.recursive  # maps without the option: idmap
    (m,) = build_mounts([_mount(["bind"])], "/b", in_userns=False, own_netns=True)
    assert m.idmap is None


def test_idmap_without_maps_uses_the_container_user_namespace() -> None:
    userns = IdMap(uid_map=b"0 100000 65536\n", gid_map=b"0 100000 65536\n")
    (m,) = build_mounts([_mount(["bind", "idmap"])], "/b", in_userns=True, own_netns=True,
                        userns=userns)
    assert m.idmap is not None and m.idmap.uid_map == b"0 100000 65536\n"
    joined = IdMap(userns_path="/proc/1/ns/user")
    (m,) = build_mounts([_mount(["bind", "idmap"])], "/b", in_userns=True, own_netns=True,
                        userns=joined)
    assert m.idmap is not None and m.idmap.userns_path == "/proc/1/ns/user"


@pytest.mark.parametrize("mount,phrase", [
    (_mount(["bind", "idmap"]), "$.mounts[0].options: idmap needs uidMappings"),
    ({**_mount(["idmap"], uidMappings=MAPS, gidMappings=MAPS), "type": "tmpfs"},
     "$.mounts[0]: id-mapped mounts are bind mounts only"),
    (_mount(["bind"], uidMappings=[{"containerID": 0, "hostID": 1, "size": 0}],
            gidMappings=MAPS), "$.mounts[0].uidMappings[0].size: must be at least 1"),
    (_mount(["bind"], uidMappings=MAPS), "$.mounts[0].gidMappings: required"),
])
def test_plan_errors(mount: dict[str, Any], phrase: str) -> None:
    with pytest.raises(ConfigError) as ei:
        build_mounts([mount], "/b", in_userns=False, own_netns=True)
    assert phrase in ei.value.msg


def test_map_tree_calls_mount_setattr() -> None:
    (m,) = build_mounts([_mount(["rbind", "ridmap"], uidMappings=MAPS, gidMappings=MAPS)], "/b",
                        in_userns=False, own_netns=True)
    rec = RecordingSyscalls()
    idmap_mod.map_tree(7, m, 9, rec)
    assert rec.calls == [("mount_setattr", 7, "", api.AT_EMPTY_PATH | api.AT_RECURSIVE,
                          api.MOUNT_ATTR_IDMAP, 0, 0, 9)]
    with pytest.raises(OciRunError, match=r"\$\.mounts\[0\]: id-map `/tmp` for `/data` "
                                          r"\(mounts\[0\]\): Invalid argument \(the filesystem"):
        idmap_mod.map_tree(7, m, 9, RecordingSyscalls({"mount_setattr": 22}))


def test_joined_user_namespace_is_opened_not_made() -> None:
    users = idmap_mod.UsernsFds()
    rec = RecordingSyscalls()  # its fork() fails the test: no helper may be made
    fd = users.get(IdMap(userns_path="/proc/self/ns/user"), "$.mounts[0]", rec)
    assert users.get(IdMap(userns_path="/proc/self/ns/user"), "$.mounts[1]", rec) == fd
    assert os.fstat(fd).st_ino == os.stat("/proc/self/ns/user").st_ino
    users.close()
    with pytest.raises(ConfigError, match=r"open the container's user namespace"):
        users.get(IdMap(userns_path="/nonexistent"), "$.mounts[0]", rec)
    assert "fork" not in rec.names()
