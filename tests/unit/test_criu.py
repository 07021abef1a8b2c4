"""ocirun/criu.py: the protobuf subset of CRIU's rpc.proto and ``criu swrk``,
driven against a stand-in criu (a small script speaking the same protocol)."""

from __future__ import annotations

import os
import stat
import sys
from typing import Any

import pytest

from ocirun import criu
from ocirun.errors import OciRunError

FAKE = r'''#!{python}
import os, socket, sys
sys.path.insert(0, {repo!r})
from ocirun import criu
assert sys.argv[1] == "swrk"
sock = socket.socket(fileno=int(sys.argv[2]))
req = criu.decode(sock.recv(1 << 20))
kind = req[1][0]
opts = criu.decode(req[2][0]) if 2 in req else {{}}
with open({log!r}, "w") as f:
    f.write(repr((kind, opts)))
if kind == criu.VERSION:
    v = criu.message((1, "v", 3), (2, "v", 17), (4, "v", 1))
    sock.send(criu.message((1, "v", kind), (2, "v", 1), (10, "m", v)))
    sys.exit(0)
# one NOTIFY round trip, then the answer
sock.send(criu.message((1, "v", criu.NOTIFY), (2, "v", 1),
                       (5, "m", criu.message((1, "s", "post-restore"), (2, "v", 4242)))))
ack = criu.decode(sock.recv(1 << 20))
ok = ack[1][0] == criu.NOTIFY and ack.get(3, [0])[0] == 1
if kind == criu.RESTORE and ok:
    sock.send(criu.message((1, "v", kind), (2, "v", 1),
                           (4, "m", criu.message((1, "v", 4242)))))
else:
    sock.send(criu.message((1, "v", kind), (2, "v", 0), (7, "v", 13),
                           (9, "s", "told to fail")))
'''


@pytest.fixture
def fake(tmp_path: Any) -> tuple[str, str]:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    log = str(tmp_path / "req")
    path = tmp_path / "criu"
    path.write_text(FAKE.format(python=sys.executable, repo=repo, log=log))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path), log


def test_varints_and_fields_round_trip() -> None:
    data = criu.message((1, "v", 300), (2, "v", -1), (3, "s", "héllo"), (4, "v", True),
                        (4, "v", 0))
    got = criu.decode(data)
    assert got[1] == [300] and got[3] == ["héllo".encode()] and got[4] == [1, 0]
    assert criu._int32(got[2][0]) == -1
    assert criu.field(1, "v", 1) == b"\x08\x01"


def test_options_are_encoded_by_rpc_proto_numbers() -> None:
    o = criu.decode(criu.encode_opts({
        "images_dir_fd": 5, "root": "/r", "leave_running": True, "shell_job": False,
        "ext_mnt": [criu.kv("/a", "/b"), criu.kv("/c", "/d")], "empty_ns": None,
        "inherit_fd": [criu.inherit("pipe:[7]", 1)], "external": ["net[1]:k"]}))
    assert o[1] == [5] and o[13] == [b"/r"] and o[3] == [1]
    assert 7 not in o and 38 not in o  # False / None are left out
    assert [criu.decode(x) for x in o[23]] == [{1: [b"/a"], 2: [b"/b"]}, {1: [b"/c"], 2: [b"/d"]}]
    assert criu.decode(o[27][0]) == {1: [b"pipe:[7]"], 2: [1]}
    assert o[37] == [b"net[1]:k"]


def test_response_decoding() -> None:
    r = criu.Response(criu.message((1, "v", criu.RESTORE), (2, "v", 1),
                                   (4, "m", criu.message((1, "v", 99)))))
    assert (r.kind, r.success, r.restored_pid) == (criu.RESTORE, True, 99)
    r = criu.Response(criu.message((1, "v", criu.DUMP), (2, "v", 0), (7, "v", 2),
                                   (9, "s", "nope")))
    assert not r.success and r.errno == 2 and r.errmsg == "nope"
    e = criu.failure("dump", r, "/w/dump.log")
    assert e.msg == "criu dump failed: nope (No such file or directory); see the log `/w/dump.log`"


def test_swrk_version(fake: tuple[str, str]) -> None:
    assert criu.version(fake[0]) == (3, 17, 1)


def test_swrk_notify_and_result(fake: tuple[str, str]) -> None:
    seen = []
    w = criu.Swrk(fake[0])
    try:
        resp = w.call(criu.request(criu.RESTORE, {"images_dir_fd": 3, "rst_sibling": True}),
                      lambda r, fds: seen.append((r.script, r.notify_pid)))
    finally:
        w.close()
    assert seen == [("post-restore", 4242)]
    assert resp.success and resp.restored_pid == 4242
    with open(fake[1]) as f:
        kind, opts = eval(f.read())  # the stand-in's record of the request
    assert kind == criu.RESTORE and opts[1] == [3] and opts[26] == [1]


def test_notify_failure_is_reported_to_criu(fake: tuple[str, str]) -> None:
    def boom(r: Any, fds: list[int]) -> None:
        raise OciRunError("hook failed")
    w = criu.Swrk(fake[0])
    try:
        with pytest.raises(OciRunError, match="hook failed"):
            w.call(criu.request(criu.RESTORE, {}), boom)
        resp, _ = w.recv()  # criu saw notify_success=false and gave up
        assert not resp.success and resp.errmsg == "told to fail"
    finally:
        w.close()


def test_missing_criu_is_explained(tmp_path: Any) -> None:
    with pytest.raises(OciRunError, match=r"run `/nonexistent/criu swrk`: No such file .* "
                                          r"apt-get install criu"):
        criu.Swrk("/nonexistent/criu")


def test_features_fragments() -> None:
    from ocirun import mempolicy, netdev, resctrl
    from ocirun.process import idmap
    assert mempolicy.features()["modes"][0] == "MPOL_DEFAULT"
    assert set(mempolicy.features()["flags"]) == {"MPOL_F_NUMA_BALANCING",
                                                  "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"}
    assert resctrl.features() == {"enabled": True, "schemata": True, "monitoring": True}
    assert netdev.features() == {"enabled": True}  # pyroute2 is installed with ocirun
    assert idmap.features("6.1.0-57-amd64") == {"idmap": {"enabled": True}}
    assert idmap.features("5.10.0") == {"idmap": {"enabled": False}}
    assert criu.features_annotations("/nonexistent/criu") == {
        "org.opencontainers.runc.checkpoint.enabled": "false"}
