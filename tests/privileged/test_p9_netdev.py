"""linux.netDevices on real containers (issue 13 item 3).

Never the host's interfaces: each test makes a network namespace of its own
with a veth pair in it (this kernel has no dummy driver) and runs the runtime
inside that namespace (``nsenter --net``), so the runtime's "host" namespace
is the test's.  What the container sees is read with busybox ``ip``."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

MAC = "02:11:22:33:44:55"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


@pytest.fixture
def netns(lab: Any) -> Iterator[str]:
    """The runtime's network namespace for the test, with veth p9a/p9b in it;
    p9a has addresses of global scope, one of host scope, an MTU and a MAC."""
    name = f"p9nd-{lab.token}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "p9a", "type", "veth", "peer", "name", "p9b")
        ip("-n", name, "link", "set", "p9a", "mtu", "1400", "address", MAC)
        ip("-n", name, "addr", "add", "10.77.0.1/24", "dev", "p9a")
        ip("-n", name, "addr", "add", "fd77::1/64", "dev", "p9a")
        ip("-n", name, "addr", "add", "127.0.0.77/8", "scope", "host", "dev", "p9a")
        yield name
    finally:
        ip("netns", "del", name, check=False)


@pytest.fixture
def other_netns(lab: Any) -> Iterator[str]:
    name = f"p9ct-{lab.token}"
    ip("netns", "add", name)
    try:
        yield name
    finally:
        ip("netns", "del", name, check=False)


def run_in(lab: Any, ns: str, *args: str) -> Any:
    """The runtime CLI run inside network namespace ``ns``."""
    import conftest  # the privileged conftest's Result

    argv = ["nsenter", f"--net=/run/netns/{ns}", *lab.argv(*args)]
    r = subprocess.run(argv, capture_output=True, text=True, env=lab.env, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
    return conftest.Result(argv, r.returncode, r.stdout, r.stderr)


SHOW = ["sh", "-c", "ip addr show {0}; ip -o link show {0}"]


def _bundle(lab: Any, devs: dict[str, Any], name: str = "ctr0", netpath: str | None = None,
            args: list[str] | None = None) -> Any:
    def mutate(c: dict[str, Any]) -> None:
        c["linux"]["netDevices"] = devs
        if netpath:
            for n in c["linux"]["namespaces"]:
                if n["type"] == "network":
                    n["path"] = netpath
    return lab.bundle(args or [a.format(name) for a in SHOW], mutate)


def test_device_moved_renamed_with_addresses_and_up(lab: Any, netns: str) -> None:
    b = _bundle(lab, {"p9a": {"name": "ctr0"}})
    r = run_in(lab, netns, "run", "--bundle", b.path, lab.new_id()).ok()
    out = r.stdout
    assert "inet 10.77.0.1/24" in out, out
    assert "inet6 fd77::1/64" in out, out
    assert "127.0.0.77" not in out, out  # host scope: not kept (the spec: global scope only)
    assert "mtu 1400" in out and MAC in out, out
    assert ",UP" in out or "<UP" in out, out
    # the container's namespace is gone: a virtual device goes with it, and its peer too.
    # The kernel tears a network namespace down in a work queue after its last process
    # and mount are gone, so the veth pair disappears shortly after `run` returns: wait
    # for it (a deadline, not a timing assertion).
    assert _vanishes(netns, "p9a") and _vanishes(netns, "p9b")


def _vanishes(netns: str, dev: str, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while ip("-n", netns, "link", "show", dev, check=False).returncode == 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_name_template_and_default_name(lab: Any, netns: str) -> None:
    b = _bundle(lab, {"p9a": {"name": "eth%d"}, "p9b": {}},
                args=["sh", "-c", "ip -o link show eth0; ip -o link show p9b"])
    r = run_in(lab, netns, "run", "--bundle", b.path, lab.new_id()).ok()
    assert "eth0@" in r.stdout and "p9b@" in r.stdout, r


def test_joined_namespace_keeps_the_device_and_its_owner_moves_it_back(
        lab: Any, netns: str, other_netns: str) -> None:
    b = _bundle(lab, {"p9a": {"name": "ctr0"}}, netpath=f"/run/netns/{other_netns}")
    cid = lab.new_id()
    r = run_in(lab, netns, "run", "--bundle", b.path, cid).ok()
    assert "inet 10.77.0.1/24" in r.stdout, r
    assert lab.leftovers(cid) == []
    # delete did not move it out (the spec: MUST NOT); the namespace's owner does
    assert "10.77.0.1/24" in ip("-n", other_netns, "addr", "show", "ctr0").stdout
    ip("-n", other_netns, "link", "set", "ctr0", "netns", netns, "name", "p9a")
    assert "p9a" in ip("-n", netns, "-o", "link", "show", "p9a").stdout


def test_errors_leave_everything_as_it_was(lab: Any, netns: str, other_netns: str) -> None:
    # a name already used in the (joined) container namespace: refused, and the
    # device is back where it was, with its name and addresses
    ip("-n", other_netns, "link", "add", "taken", "type", "veth", "peer", "name", "taken2")
    b = _bundle(lab, {"p9b": {}, "p9a": {"name": "taken"}}, netpath=f"/run/netns/{other_netns}")
    cid = lab.new_id()
    r = run_in(lab, netns, "create", "--bundle", b.path, cid)
    assert r.returncode != 0
    assert 'linux.netDevices: $.linux.netDevices["p9a"].name: a device `taken` already exists ' \
           "in the container's network namespace" in r.stderr, r
    assert lab.leftovers(cid) == []
    assert "10.77.0.1/24" in ip("-n", netns, "addr", "show", "p9a").stdout
    assert ip("-n", netns, "link", "show", "p9b").returncode == 0  # moved, then moved back
    # refused before anything is made
    for devs, cfg, phrase in (
            ({"nope0": {}}, None, ('$.linux.netDevices["nope0"]: no network device `nope0` in '
                                   "the runtime's network namespace")),
            ({"p9a": {"name": "lo"}}, None, "`lo` already exists in a new network namespace"),
            ({"p9a": {"name": "x" * 16}}, None, "is not a valid network device name"),
            ({"p9a": {}}, "nonet", "moving network devices needs a network namespace")):
        b = _bundle(lab, devs)
        if cfg == "nonet":
            b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"]
                                               if n["type"] != "network"]
            import json
            with open(os.path.join(b.path, "config.json"), "w") as f:
                json.dump(b.config, f)
        cid = lab.new_id()
        r = run_in(lab, netns, "create", "--bundle", b.path, cid)
        assert r.returncode != 0 and phrase in r.stderr, (phrase, r)
        assert lab.leftovers(cid) == []
