"""process/wire.py: a container plan survives the trip to the nursery unchanged."""

from __future__ import annotations

from typing import Any

import bundle as bundle_mod
import pytest

from ocirun.plantypes import ContainerPlan
from ocirun.process import wire
from ocirun.process.plan import LaunchOptions, build_container_plan


def same(a: Any, b: Any, where: str = "plan") -> None:
    """Deep equality by value, records compared slot by slot."""
    assert type(a) is type(b), where
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif type(a).__module__.startswith("ocirun"):
        slots = [n for c in type(a).__mro__ for n in c.__dict__.get("__slots__", ())]
        assert slots, where
        for n in slots:
            same(getattr(a, n, "<unset>"), getattr(b, n, "<unset>"), f"{where}.{n}")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> str:
    return bundle_mod.build_rootfs(str(tmp_path_factory.mktemp("wire") / "rootfs"))


def test_a_busy_plan_round_trips(rootfs: str, tmp_path: Any) -> None:
    cfg = bundle_mod.base_config(["sh", "-c", "echo ü"], rootfs)
    cfg["process"]["env"].append("A=b=c")
    cfg["process"]["user"]["additionalGids"] = [5, 6]
    cfg["process"]["oomScoreAdj"] = 100
    cfg["process"]["consoleSize"] = {"height": 24, "width": 80}
    cfg["annotations"] = {"k": "v"}
    cfg["hooks"] = {"createContainer": [{"path": "/bin/true", "args": ["true"], "timeout": 5}],
                    "poststop": [{"path": "/bin/true", "env": ["A=1"]}]}
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": str(tmp_path),
                          "options": ["rbind", "ro", "nosuid"]})
    cfg["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                          "options": ["size=1m", "mode=755"]})
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 1, "nanosecs": 2}}
    cfg["linux"]["namespaces"].append({"type": "time"})
    plan = build_container_plan("c1", cfg, str(tmp_path), LaunchOptions(keep_fds=2))
    assert isinstance(plan, ContainerPlan)
    back = wire.loads(wire.dumps(plan))
    same(plan, back)
    assert isinstance(back, ContainerPlan)
    with pytest.raises(AttributeError, match="frozen"):
        back.rootfs = "/"  # type: ignore[misc]  # still sealed
    assert back.hook_state("created", 1)["annotations"] == {"k": "v"}


def test_values_keep_their_types() -> None:
    value = {"t": (1, "a", b"\0x", None, True, 1.5), "l": [1, [2]], "s": {3}, "f": frozenset({4}),
             (1, 2): "tuple key", "nested": ("t", "l", "o")}
    assert wire.loads(wire.dumps(value)) == value
    assert type(wire.loads(wire.dumps((1,)))) is tuple


def test_refuses_foreign_objects() -> None:
    class Foreign:
        pass
    with pytest.raises(TypeError, match="cannot send"):
        wire.dumps([Foreign()])


@pytest.mark.parametrize("extra, early", [
    (None, True),
    ({"type": "user"}, False),
    ({"type": "network", "path": "/proc/1/ns/net"}, False),
])
def test_which_plans_the_nursery_enters_early(rootfs: str, tmp_path: Any,
                                              extra: dict[str, str] | None, early: bool) -> None:
    """nursery.can_enter_early: I1-I4 before the launch only when there is no
    namespace to join (fds opened at C3) and no user namespace (its id maps
    are a round trip with the runtime)."""
    from ocirun.process.nursery import can_enter_early
    cfg = bundle_mod.base_config(["true"], rootfs)
    if extra is not None:
        nss = [n for n in cfg["linux"]["namespaces"] if n["type"] != extra["type"]]
        cfg["linux"]["namespaces"] = [*nss, extra]
        if extra["type"] == "user":
            cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
            cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    plan = build_container_plan("c1", cfg, str(tmp_path), LaunchOptions())
    assert can_enter_early(plan) is early
