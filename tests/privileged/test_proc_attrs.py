"""Process attributes on the real kernel: user.apply_user, capabilities.apply_caps,
rlimits.apply_rlimits and user.write_id_maps, through LinuxSyscalls.

Each scenario runs in a forked child that reports ``/proc/self/status`` back
over a pipe and leaves with ``os._exit``; the parent always reaps it, so
nothing outlives a test even when an assertion fails.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import traceback
from collections.abc import Callable

import pytest

from ocirun.capabilities import apply_caps, compute_caps
from ocirun.procfs import status_fields
from ocirun.rlimits import apply_rlimits, plan_rlimits
from ocirun.syscalls.api import CLONE_NEWUSER
from ocirun.syscalls.linux import LinuxSyscalls
from ocirun.user import apply_user, write_id_maps

RUNC_TEMPLATE = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
TEMPLATE_MASK = (1 << 29) | (1 << 5) | (1 << 10)
USER = {"uid": 1000, "gid": 1000, "additionalGids": [20, 10]}
RLIMITS = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
           {"type": "RLIMIT_CORE", "soft": 0, "hard": (1 << 64) - 1}]


def run_child(fn: Callable[[int], None]) -> tuple[int, bytes]:
    """Fork; the child runs fn(write_fd) and exits 0, or prints and exits 1."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            fn(w)
            code = 0
        except BaseException:  # noqa: BLE001 - a forked child reports any failure, then _exits
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    try:
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def report_status(w: int) -> None:
    st = status_fields("self")
    st["rlimit_nofile"] = json.dumps(resource.getrlimit(resource.RLIMIT_NOFILE))
    st["rlimit_core"] = json.dumps(resource.getrlimit(resource.RLIMIT_CORE))
    os.write(w, json.dumps(st).encode())


def setup(caps: dict[str, list[str]]) -> None:
    """What the init does, in its order: rlimits, ids, capabilities."""
    sys = LinuxSyscalls()
    sets, _warnings = compute_caps(caps)
    apply_rlimits(plan_rlimits(RLIMITS))
    apply_user(1000, 1000, [20, 10], sys)
    apply_caps(sets, sys)


def mask(st: dict[str, str], key: str) -> int:
    return int(st[key], 16)


def test_runc_template_uid_1000() -> None:
    caps = {n: list(RUNC_TEMPLATE) for n in ("bounding", "effective", "permitted", "ambient")}

    def child(w: int) -> None:
        setup(caps)
        report_status(w)

    code, out = run_child(child)
    assert code == 0
    st = json.loads(out)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1000"] * 4
    assert st["Groups"].split() == ["10", "20"]
    assert mask(st, "CapBnd") == TEMPLATE_MASK
    assert mask(st, "CapEff") == TEMPLATE_MASK
    assert mask(st, "CapPrm") == TEMPLATE_MASK
    assert mask(st, "CapInh") == 0
    # no inheritable set in the template: compute_caps drops the ambient ones
    assert mask(st, "CapAmb") == 0
    assert json.loads(st["rlimit_nofile"]) == [512, 1024]
    assert json.loads(st["rlimit_core"]) == [0, resource.RLIM_INFINITY]


def test_ambient_survives_exec_as_uid_1000() -> None:
    """With inheritable set, the ambient caps are raised, and after execve
    of an ordinary binary permitted/effective are exactly the ambient set."""
    caps = {n: list(RUNC_TEMPLATE) for n in ("bounding", "effective", "permitted", "inheritable",
                                              "ambient")}
    cat = shutil.which("cat")
    assert cat

    def child(w: int) -> None:
        setup(caps)
        os.dup2(w, 1)
        os.execve(cat, ["cat", "/proc/self/status"], {})

    code, out = run_child(child)
    assert code == 0
    st = {k: v.strip() for k, _, v in (line.partition(":") for line in out.decode().splitlines())}
    assert st["Uid"].split() == ["1000"] * 4
    for key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert mask(st, key) == TEMPLATE_MASK, key


def test_no_ambient_means_no_caps_after_exec() -> None:
    """The kernel rule documented in capabilities.py: a non-root program
    keeps nothing of permitted/effective across execve without ambient."""
    caps = {n: list(RUNC_TEMPLATE) for n in ("bounding", "effective", "permitted")}
    cat = shutil.which("cat")
    assert cat

    def child(w: int) -> None:
        setup(caps)
        os.dup2(w, 1)
        os.execve(cat, ["cat", "/proc/self/status"], {})

    code, out = run_child(child)
    assert code == 0
    st = {k: v.strip() for k, _, v in (line.partition(":") for line in out.decode().splitlines())}
    assert mask(st, "CapBnd") == TEMPLATE_MASK
    assert mask(st, "CapEff") == mask(st, "CapPrm") == mask(st, "CapAmb") == 0


def test_root_keeps_configured_sets() -> None:
    caps = {"bounding": RUNC_TEMPLATE + ["CAP_SYS_ADMIN"], "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": []}

    def child(w: int) -> None:
        sys = LinuxSyscalls()
        sets, _ = compute_caps(caps)
        apply_user(0, 0, (), sys)
        apply_caps(sets, sys)
        report_status(w)

    code, out = run_child(child)
    assert code == 0
    st = json.loads(out)
    assert st["Uid"].split() == ["0"] * 4
    assert st["Groups"] == ""
    assert mask(st, "CapBnd") == TEMPLATE_MASK | (1 << 21)
    assert mask(st, "CapEff") == 1 << 5
    assert mask(st, "CapPrm") == (1 << 5) | (1 << 0)
    assert mask(st, "CapAmb") == 0


def test_write_id_maps_real_userns() -> None:
    """The parent writes the maps of a child that unshared a user namespace."""
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go_w)
            os.close(ready_r)
            LinuxSyscalls().unshare(CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(go_r, 1)  # maps written
            st = status_fields("self")
            code = 0 if st["Uid"].split() == ["0"] * 4 and os.getuid() == 0 else 3
        except BaseException:  # noqa: BLE001 - a forked child reports any failure, then _exits
            os.write(2, traceback.format_exc().encode())
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"u"
        # the child is host uid 0: map it to 0 so it reads itself as root
        maps = [{"containerID": 0, "hostID": 0, "size": 1},
                {"containerID": 1, "hostID": 100000, "size": 10}]
        write_id_maps(pid, maps, maps, deny_setgroups=True)
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}") as f:
                assert [line.split() for line in f.read().splitlines()] == [
                    ["0", "0", "1"], ["1", "100000", "10"]]
        with open(f"/proc/{pid}/setgroups") as f:
            assert f.read().strip() == "deny"
    finally:
        os.write(go_w, b"g")
        os.close(go_w)
        os.close(ready_r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_write_id_maps_twice_fails_with_file_name() -> None:
    from ocirun.errors import SyscallError

    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.close(ready_r)
            LinuxSyscalls().unshare(CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(ready_w)
    try:
        assert os.read(ready_r, 1) == b"u"
        maps = [{"containerID": 0, "hostID": 1000, "size": 1}]
        write_id_maps(pid, maps, maps, deny_setgroups=False)
        with pytest.raises(SyscallError, match=rf"write linux.uidMappings to `/proc/{pid}/uid_map`: "
                                               r"Operation not permitted"):
            write_id_maps(pid, maps, maps, deny_setgroups=False)
    finally:
        os.write(go_w, b"g")
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
