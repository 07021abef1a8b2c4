"""User namespaces for real (issue 8 item 2), run by root: single and multiple
maps, what ownership looks like inside, device nodes bound instead of made,
/sys and /dev/mqueue and cgroup mounts that work in a user namespace, and
mount flags the host locked kept on remount.

The rootfs and bind sources live in wide directories (tests/secenv.py): the
container reaches them as its mapped root, host uid 100000, as with runc.
"""

from __future__ import annotations

import os
import subprocess
import types
from collections.abc import Callable, Iterator
from typing import Any

import bundle as bundle_mod
import pytest
import secenv

HOST = 100000
ALL_MAP = [{"containerID": 0, "hostID": HOST, "size": 65536}]


class UserLab:
    """Bundles whose rootfs the mapped root can reach, run through ``lab``."""

    def __init__(self, lab: Any, top: str) -> None:
        self.lab = lab
        self.top = top
        self.n = 0

    def bundle(self, args: list[str], mutate: Callable[[dict[str, Any]], Any] | None = None, *,
               uids: list[dict[str, int]] | None = None, gids: list[dict[str, int]] | None = None,
               shift: int | None = HOST, userns: bool = True) -> Any:
        """A bundle with its own rootfs; ``shift``: chown the rootfs to that host
        id (the container's root then owns it), None to leave it root's."""
        self.n += 1
        path = os.path.join(self.top, f"b{self.n}")
        rootfs = os.path.join(path, "rootfs")
        os.makedirs(path)
        bundle_mod.build_rootfs(rootfs)
        if shift is not None:
            subprocess.run(["chown", "-R", "-h", f"{shift}:{shift}", rootfs], check=True)

        def mutate_all(cfg: dict[str, Any]) -> None:
            cfg["process"]["env"].append(f"OCITEST={self.lab.token}")
            cfg["root"]["readonly"] = False
            if userns:
                cfg["linux"]["namespaces"].append({"type": "user"})
                cfg["linux"]["uidMappings"] = uids or ALL_MAP
                cfg["linux"]["gidMappings"] = gids or uids or ALL_MAP
            if mutate is not None:
                mutate(cfg)

        cfg = bundle_mod.write_bundle(path, rootfs, args, mutate_all)
        return types.SimpleNamespace(path=path, rootfs=rootfs, config=cfg)

    def sh(self, script: str, mutate: Callable[[dict[str, Any]], Any] | None = None,
           **kw: Any) -> str:
        r = self.lab.run(self.bundle(["sh", "-c", script], mutate, **kw))
        assert r.returncode == 0, r
        return str(r.stdout)


@pytest.fixture
def top() -> Iterator[str]:
    d = secenv.wide_dir("ocirun-userns-")
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", d], check=False)


@pytest.fixture
def ulab(top: str, lab: Any) -> UserLab:
    # top before lab: the lab's containers are gone before their files are
    return UserLab(lab, top)


def caps(*names: str) -> Callable[[dict[str, Any]], None]:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["capabilities"] = {k: list(names) for k in
                                          ("bounding", "effective", "permitted")}
    return mutate


def mountinfo_of(out: str) -> dict[str, list[str]]:
    """mount point -> fields of the last mountinfo line for it."""
    found: dict[str, list[str]] = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) > 6 and f[0].isdigit():
            found[f[4]] = f
    return found


def fstype(fields: list[str]) -> str:
    return fields[fields.index("-") + 1]


# -- the maps, and what they do to ownership -----------------------------------------


def test_single_mapping(ulab: UserLab) -> None:
    """0..65535 -> 100000..165535: the maps as configured, root inside is host
    uid 100000 (files it makes belong to it on the host), ids outside the map
    show as the overflow id and cannot be written even with CAP_DAC_OVERRIDE."""
    script = ("cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; id -u; "
              "stat -c '%u:%g' /etc/owned5 /hostroot; "
              "echo x >> /hostroot && echo WROTE-HOSTROOT || echo DENIED-HOSTROOT; "
              "echo x >> /etc/owned5 && echo WROTE-OWNED5; touch /made")
    b = ulab.bundle(["sh", "-c", script],
                    caps("CAP_DAC_OVERRIDE", "CAP_CHOWN", "CAP_FOWNER"))
    with open(os.path.join(b.rootfs, "etc", "owned5"), "w"):
        pass
    os.chown(os.path.join(b.rootfs, "etc", "owned5"), HOST + 5, HOST + 7)
    with open(os.path.join(b.rootfs, "hostroot"), "w"):
        pass
    os.chmod(os.path.join(b.rootfs, "hostroot"), 0o644)
    r = ulab.lab.run(b)
    assert r.returncode == 0, r
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["0", str(HOST), "65536"]
    assert lines[1] == ["0", str(HOST), "65536"]
    assert lines[2] == ["allow"]  # root writes the maps: setgroups stays allowed
    assert lines[3] == ["0"]
    assert lines[4] == ["5:7"]
    assert lines[5] == ["65534:65534"]  # host root is not mapped: the overflow ids
    assert "DENIED-HOSTROOT" in r.stdout and "WROTE-OWNED5" in r.stdout
    st = os.stat(os.path.join(b.rootfs, "made"))
    assert (st.st_uid, st.st_gid) == (HOST, HOST)
    assert os.path.getsize(os.path.join(b.rootfs, "hostroot")) == 0


def test_multiple_mappings(ulab: UserLab) -> None:
    """Several ranges per map, written by root straight into /proc/<pid>/uid_map."""
    maps = [{"containerID": 0, "hostID": HOST, "size": 1000},
            {"containerID": 1000, "hostID": 300000, "size": 10}]
    script = ("cat /proc/self/uid_map; cat /proc/self/gid_map; "
              "stat -c '%u:%g' /a /b; touch /c && chown 1005:1003 /c && id")
    b = ulab.bundle(["sh", "-c", script],
                    caps("CAP_CHOWN"), uids=maps)
    for name, owner in (("a", 300003), ("b", HOST + 999)):
        with open(os.path.join(b.rootfs, name), "w"):
            pass
        os.chown(os.path.join(b.rootfs, name), owner, owner)
    r = ulab.lab.run(b)
    assert r.returncode == 0, r
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[:4] == [["0", str(HOST), "1000"], ["1000", "300000", "10"]] * 2
    assert lines[4:6] == [["1003:1003"], ["999:999"]]
    st = os.stat(os.path.join(b.rootfs, "c"))
    assert (st.st_uid, st.st_gid) == (300005, 300003)


def test_unmapped_process_user_is_refused(ulab: UserLab) -> None:
    """process.user.uid outside the map: create fails saying so, nothing left."""
    b = ulab.bundle(["true"], lambda c: c["process"]["user"].update(uid=70000, gid=0))
    r = ulab.lab.run(b)
    assert r.returncode != 0
    assert "setresuid 70000: Invalid argument (is the uid mapped in the user namespace?)" \
        in r.stderr, r


def test_rootfs_the_mapped_root_cannot_reach_is_named(ulab: UserLab, tmp_path: Any) -> None:
    """runc's rule: the rootfs must be reachable by the container's root.  A
    rootfs under a 0700 root directory fails create with the reason."""
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    rootfs = bundle_mod.build_rootfs(str(hidden / "rootfs"))
    b = ulab.bundle(["true"], lambda c: c["root"].update(path=rootfs))
    r = ulab.lab.run(b)
    assert r.returncode != 0
    assert "Permission denied" in r.stderr, r
    assert "host uid 100000" in r.stderr and "must be able to reach" in r.stderr, r


# -- devices, /sys, /dev/mqueue, cgroups -----------------------------------------------


def test_devices_are_bound_from_the_host(ulab: UserLab) -> None:
    """mknod is the initial namespace's: each device is the host's node bound
    over an empty file.  They work, are the right devices, and making a node
    stays impossible even with CAP_MKNOD."""
    def mutate(cfg: dict[str, Any]) -> None:
        caps("CAP_MKNOD", "CAP_DAC_OVERRIDE")(cfg)
        cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10,
                                    "minor": 229}]

    out = ulab.sh("cat /proc/self/mountinfo; echo ---; "
                  "for d in null zero full random urandom tty fuse; do "
                  "stat -c \"$d %F %t:%T\" /dev/$d; done; echo hi > /dev/null && echo NULL-OK; "
                  "head -c 5 /dev/zero | wc -c; mknod /dev/mem2 c 1 1 2>&1 || echo MKNOD-DENIED",
                  mutate)
    info, rest = out.split("---\n", 1)
    mounts = mountinfo_of(info)
    for d in ("null", "zero", "full", "random", "urandom", "tty", "fuse"):
        assert f"/dev/{d}" in mounts, (d, info)
    assert "null character special file 1:3" in rest
    assert "fuse character special file a:e5" in rest
    assert "NULL-OK" in rest and "\n5\n" in rest
    assert "MKNOD-DENIED" in rest


def test_device_the_host_lacks_is_named(ulab: UserLab) -> None:
    """A configured device with no such node on the host cannot be bound: the
    error says where it looked (instead of binding whatever the path holds)."""
    b = ulab.bundle(["true"], lambda c: c["linux"].update(
        devices=[{"path": "/dev/ocirun-nosuch", "type": "c", "major": 1, "minor": 3}]))
    r = ulab.lab.run(b)
    assert r.returncode != 0
    assert "/dev/ocirun-nosuch" in r.stderr and "user namespace" in r.stderr, r


def test_device_of_another_kind_on_the_host_is_not_bound(ulab: UserLab) -> None:
    """The host's /dev/zero is 1:5: configured as 1:3 it must not be bound in
    under the configured numbers' name."""
    b = ulab.bundle(["true"], lambda c: c["linux"].update(
        devices=[{"path": "/dev/zero", "type": "c", "major": 1, "minor": 3}]))
    r = ulab.lab.run(b)
    assert r.returncode != 0
    assert "/dev/zero" in r.stderr and "1:5" in r.stderr, r


@pytest.mark.parametrize("netns", [True, False])
def test_sys_with_and_without_a_network_namespace(ulab: UserLab, netns: bool) -> None:
    """sysfs belongs to the network namespace's owner: with a private one a
    fresh sysfs is mounted (only its own interfaces show); without one the
    host's /sys is bound, read-only as configured."""
    def mutate(cfg: dict[str, Any]) -> None:
        if not netns:
            cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                          if n["type"] != "network"]

    out = ulab.sh("cat /proc/self/mountinfo; echo ---; ls /sys/class/net | tr '\\n' ' '; echo; "
                  "touch /sys/x 2>&1 || echo RO", mutate)
    info, rest = out.split("---\n", 1)
    line = mountinfo_of(info)["/sys"]
    nets = rest.splitlines()[0]
    assert fstype(line) == "sysfs" and line[5].split(",")[0] == "ro", line
    assert "RO" in out
    host_nets = set(os.listdir("/sys/class/net"))
    if netns:
        assert nets.split() == ["lo"]
    else:
        assert set(nets.split()) == host_nets


def test_mqueue_in_a_private_ipc_namespace(ulab: UserLab) -> None:
    out = ulab.sh("grep ' /dev/mqueue ' /proc/self/mountinfo")
    assert fstype(out.split()) == "mqueue", out


def test_mqueue_without_an_ipc_namespace(ulab: UserLab) -> None:
    """The host IPC namespace's mqueue may not be mounted from a user
    namespace: the host's /dev/mqueue is bound, and where the host has none
    the error says what to do."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "ipc"]

    b = ulab.bundle(["sh", "-c", "grep ' /dev/mqueue ' /proc/self/mountinfo"], mutate)
    if not os.path.ismount("/dev/mqueue"):
        r = ulab.lab.run(b)
        assert r.returncode != 0
        assert "/dev/mqueue" in r.stderr and "ipc namespace" in r.stderr, r
        # the fallback for real: in a private mount namespace with a /dev/mqueue
        made = not os.path.exists("/dev/mqueue")
        try:
            script = ("mkdir -p /dev/mqueue && mount -t mqueue ocirun-test /dev/mqueue && "
                      "exec \"$@\"")
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                    *ulab.lab.argv("run", "--bundle", b.path, ulab.lab.new_id())]
            p = subprocess.run(argv, capture_output=True, text=True, env=ulab.lab.env,
                               timeout=60, check=False)
        finally:
            if made:
                try:
                    os.rmdir("/dev/mqueue")
                except OSError:
                    pass
        assert p.returncode == 0, p
        assert fstype(p.stdout.split()) == "mqueue" and "ocirun-test" in p.stdout, p
    else:
        r = ulab.lab.run(b)
        assert r.returncode == 0, r
        assert fstype(r.stdout.split()) == "mqueue"


@pytest.mark.parametrize("cgroupns", [True, False])
def test_cgroup_mounts(ulab: UserLab, cgroupns: bool) -> None:
    """With a cgroup namespace of its own, fresh cgroup mounts whose root is
    the container's cgroup; without one, the container's own directories of
    the host's hierarchies bound in.  Either way only the container's
    processes show, read-only."""
    def mutate(cfg: dict[str, Any]) -> None:
        if cgroupns:
            cfg["linux"]["namespaces"].append({"type": "cgroup"})

    script = ("grep ' /sys/fs/cgroup' /proc/self/mountinfo; echo ---; "
              "for f in /sys/fs/cgroup/*/cgroup.procs; do echo $(cat $f); done; "
              "mkdir /sys/fs/cgroup/pids/x 2>&1 || echo MKDIR-DENIED")
    b = ulab.bundle(["sh", "-c", script], mutate)
    cid = ulab.lab.new_id()
    r = ulab.lab.run(b, cid)
    assert r.returncode == 0, r
    info, rest = r.stdout.split("---\n", 1)
    mounts = mountinfo_of(info)
    sub = [m for p, m in mounts.items() if p.startswith("/sys/fs/cgroup/")]
    assert sub, info
    for m in sub:
        assert fstype(m) in ("cgroup", "cgroup2"), m
        assert m[5].startswith("ro"), m
        if cgroupns:
            assert m[3] == "/", m  # the namespace's root: the container's cgroup
        else:
            assert m[3].rstrip("/").endswith("/" + cid), m  # the container's own directory
    lists = [line.split() for line in rest.splitlines() if line[:1].isdigit()]
    assert len(lists) == len(sub), rest
    for pids in lists:  # the shell (pid 1) and the `cat` of the moment, nothing else
        assert pids[0] == "1" and len(pids) == 2, rest
    assert "MKDIR-DENIED" in rest


# -- locked mount flags ----------------------------------------------------------------


@pytest.fixture
def locked_source(top: str) -> Iterator[str]:
    """A tmpfs mounted nosuid,nodev,noexec on the host: a user namespace may
    never clear those flags on a copy of it."""
    d = os.path.join(top, "locked")
    os.mkdir(d)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "nosuid,nodev,noexec,mode=755", "ocirun-locked",
                    d], check=True)
    try:
        with open(os.path.join(d, "f"), "w") as f:
            f.write("data\n")
        yield d
    finally:
        subprocess.run(["umount", "-l", d], check=False)


def test_locked_flags_are_kept_on_remount(ulab: UserLab, locked_source: str) -> None:
    """``ro`` on a bind of that tmpfs needs a remount, which must keep the
    host's nosuid,nodev,noexec (EPERM otherwise).  From inside, even with
    CAP_SYS_ADMIN in the user namespace, the locked flags cannot be dropped."""
    def mutate(cfg: dict[str, Any]) -> None:
        caps("CAP_SYS_ADMIN")(cfg)
        cfg["process"]["noNewPrivileges"] = True
        cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": locked_source,
                              "options": ["bind", "ro"]})

    out = ulab.sh("grep ' /mnt ' /proc/self/mountinfo; cat /mnt/f; "
                  "echo y > /mnt/g 2>/dev/null || echo WRITE-DENIED; "
                  "mount -o remount,bind,suid,dev,exec /mnt 2>&1 || echo UNLOCK-DENIED; "
                  "grep ' /mnt ' /proc/self/mountinfo", mutate)
    lines = out.splitlines()
    opts = set(lines[0].split()[5].split(","))
    assert {"ro", "nosuid", "nodev", "noexec"} <= opts, lines[0]
    assert "data" in out and "WRITE-DENIED" in out and "UNLOCK-DENIED" in out
    after = set(lines[-1].split()[5].split(","))
    assert {"nosuid", "nodev", "noexec"} <= after, lines[-1]
