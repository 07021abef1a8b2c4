"""Rootless mode for real (issue 8 item 3): ocirun run by a throwaway
unprivileged user (useradd; removed after the module with its /etc/subuid
and /etc/subgid lines).

The user runs the installed launcher with ``runuser`` and an environment of
exactly PATH, HOME, XDG_RUNTIME_DIR and the leak-check token.  Bundles live in
a directory of the user's own.  Checked: ``spec --rootless`` as the user,
the state root under $XDG_RUNTIME_DIR, the single self-map (setgroups
denied), several ranges through newuidmap/newgidmap (files the container
chowns land on the user's subordinate ids), exec/kill/delete/list, cgroups
skipped unless delegated and used when they are, and the errors that say what
the user lacks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import types
from collections.abc import Callable, Iterator
from typing import Any

import bundle as bundle_mod
import pytest
import secenv

pytestmark = pytest.mark.skipif(shutil.which("runuser") is None or shutil.which("useradd") is None,
                                reason="needs runuser and useradd (util-linux, passwd)")


@pytest.fixture(scope="module")
def module_dir() -> Iterator[str]:
    d = secenv.wide_dir("ocirun-rootless-")
    yield d
    subprocess.run(["rm", "-rf", "--one-file-system", d], check=False)


@pytest.fixture(scope="module")
def user() -> Iterator[secenv.PlainUser]:
    u = secenv.PlainUser(subids=True)
    yield u
    u.close()


@pytest.fixture(scope="module")
def runtime(user: secenv.PlainUser, runtime_cmd: list[str], module_dir: str) -> list[str]:
    cmd = secenv.runtime_for(user, runtime_cmd, module_dir)
    if cmd is None:
        pytest.skip(f"{runtime_cmd} cannot be run by an unprivileged user here, and no venv of "
                    "/usr/bin/python3 could be made for it")
    return cmd


class Rootless:
    """One test's user-side world: XDG_RUNTIME_DIR, bundles, the CLI as the user."""

    def __init__(self, user: secenv.PlainUser, cmd: list[str], top: str, token: str) -> None:
        self.user = user
        self.cmd = cmd
        self.top = top
        self.token = token
        self.xdg = os.path.join(top, "xdg")
        os.mkdir(self.xdg, 0o700)
        user.chown_tree(top)
        self.ids: list[str] = []
        self.n = 0
        self.wrap: list[str] = []  # run (as root) before runuser
        self.env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": top,
                    "XDG_RUNTIME_DIR": self.xdg, "OCITEST": token}

    @property
    def state_root(self) -> str:
        return os.path.join(self.xdg, "ocirun")

    def new_id(self) -> str:
        self.n += 1
        cid = f"{self.token}-r{self.n}"
        self.ids.append(cid)
        return cid

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        # files, never pipes: a container started with --detach keeps them open
        out = os.path.join(self.top, f"out-{time.monotonic_ns()}")
        with open(out, "w") as f, open(out + ".err", "w") as e:
            p = subprocess.run([*self.wrap, *self.user.argv(*self.cmd, *args, env=self.env)],
                               stdin=subprocess.DEVNULL, stdout=f, stderr=e,
                               text=True, timeout=timeout, cwd=self.top, check=False)
        with open(out) as f, open(out + ".err") as e:
            p.stdout, p.stderr = f.read(), e.read()
        return p

    def bundle(self, args: list[str], mutate: Callable[[dict[str, Any]], Any] | None = None,
               *, maps: str = "self") -> Any:
        """A bundle from ``ocirun spec --rootless`` run as the user (``maps``:
        "self" as written, "multi" 0 -> the user and 1.. -> the subordinate ids)."""
        self.n += 1
        path = os.path.join(self.top, f"b{self.n}")
        os.mkdir(path)
        bundle_mod.build_rootfs(os.path.join(path, "rootfs"))
        self.user.chown_tree(path)
        r = self.cli("spec", "--rootless", "--bundle", path)
        assert r.returncode == 0, r
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        cfg["process"]["args"] = args
        cfg["process"]["env"].append(f"OCITEST={self.token}")
        if maps == "multi":
            assert self.user.subuid and self.user.subgid
            for key, (start, count), own in (("uidMappings", self.user.subuid, self.user.uid),
                                             ("gidMappings", self.user.subgid, self.user.gid)):
                cfg["linux"][key] = [{"containerID": 0, "hostID": own, "size": 1},
                                     {"containerID": 1, "hostID": start, "size": count}]
        if mutate is not None:
            mutate(cfg)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f)
        return types.SimpleNamespace(path=path, rootfs=os.path.join(path, "rootfs"), config=cfg)

    def run(self, b: Any, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.cli("run", "--bundle", b.path, *flags, self.new_id())

    def cleanup(self) -> list[str]:
        leaks = []
        for cid in self.ids:
            self.cli("delete", "--force", cid, timeout=20)
            if os.path.exists(os.path.join(self.state_root, cid)):
                leaks.append(f"state dir {cid}")
        pids = [p for p in _token_pids(self.token)]
        for pid in pids:
            leaks.append(f"process {pid}")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return leaks


def _token_pids(token: str) -> list[int]:
    needle = f"OCITEST={token}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    with open(f"/proc/{name}/stat", "rb") as s:
                        if s.read().rsplit(b")", 1)[1].split()[0] != b"Z":
                            found.append(int(name))
        except OSError:
            continue
    return found


@pytest.fixture
def rl(user: secenv.PlainUser, runtime: list[str], module_dir: str, session_token: str,
       request: pytest.FixtureRequest, leak_log: list[Any]) -> Iterator[Rootless]:
    top = os.path.join(module_dir, f"t{len(os.listdir(module_dir))}")
    os.mkdir(top, 0o755)
    r = Rootless(user, runtime, top, f"{session_token}-rl{len(os.listdir(module_dir))}")
    yield r
    leaks = r.cleanup()
    if leaks:
        leak_log.append(f"{request.node.nodeid} [rootless]: {'; '.join(leaks)}")


# -- the user's own container ---------------------------------------------------------


def test_spec_rootless_runs_as_a_plain_user(rl: Rootless, user: secenv.PlainUser) -> None:
    """The template of ``spec --rootless`` as written by the user: a user
    namespace mapping only the user to root, setgroups denied (an
    unprivileged writer of gid_map must), the state under $XDG_RUNTIME_DIR."""
    b = rl.bundle(["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups;"
                   " hostname; stat -c %u /bin/busybox; echo x > /dev/null && echo DEV-OK"])
    assert b.config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": user.uid, "size": 1}]
    r = rl.run(b)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("uid=0(root) gid=0(root)")
    assert lines[1].split() == ["0", str(user.uid), "1"]
    assert lines[2].split() == ["0", str(user.gid), "1"]
    assert lines[3] == "deny"
    assert lines[4] == "ocirun"
    assert lines[5] == "0"  # the user's files are root's inside
    assert lines[6] == "DEV-OK"
    st = os.stat(rl.state_root)
    assert (st.st_uid, oct(st.st_mode & 0o777)) == (user.uid, "0o700")
    assert os.listdir(rl.state_root) == []  # run deleted what it made


def test_lifecycle_exec_and_list_as_a_plain_user(rl: Rootless) -> None:
    b = rl.bundle(["sleep", "1000"])
    cid = rl.new_id()
    assert rl.cli("run", "--detach", "--bundle", b.path, cid).returncode == 0
    st = json.loads(rl.cli("state", cid).stdout)
    assert st["status"] == "running"
    assert os.stat(f"/proc/{st['pid']}").st_uid == rl.user.uid  # host view: the user's process
    e = rl.cli("exec", cid, "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert e.returncode == 0, e
    assert e.stdout.split()[:4] == ["0", "0", str(rl.user.uid), "1"]
    assert cid in rl.cli("list", "--quiet").stdout.split()
    assert rl.cli("kill", cid, "KILL").returncode == 0
    deadline = time.monotonic() + 10
    while json.loads(rl.cli("state", cid).stdout)["status"] != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    d = rl.cli("delete", cid)
    assert d.returncode == 0, d
    assert not os.path.exists(os.path.join(rl.state_root, cid))


def test_exec_before_start_says_to_start_first(rl: Rootless) -> None:
    """The parked init is the runtime, non-dumpable: the kernel gives a plain
    user none of its namespace files (SECURITY.md, known limits)."""
    b = rl.bundle(["sleep", "1000"])
    cid = rl.new_id()
    assert rl.cli("create", "--bundle", b.path, cid).returncode == 0
    e = rl.cli("exec", cid, "true")
    assert e.returncode == 255
    assert f"container {cid} has not been started: running as uid {rl.user.uid}, exec can " \
        "join it only after `start`" in e.stderr, e.stderr
    assert rl.cli("start", cid).returncode == 0
    assert rl.cli("exec", cid, "true").returncode == 0


def test_several_ranges_through_newuidmap(rl: Rootless, user: secenv.PlainUser) -> None:
    """0 -> the user, 1.. -> the user's /etc/subuid range: newuidmap and
    newgidmap write them; setgroups stays allowed, so additionalGids work;
    a file chowned inside lands on the subordinate ids on the host."""
    if shutil.which("newuidmap") is None:
        pytest.skip("newuidmap is not installed (Debian: uidmap)")
    data = os.path.join(rl.top, "data")
    os.mkdir(data)
    user.chown_tree(data)

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"]["additionalGids"] = [5]
        cfg["process"]["capabilities"] = {k: ["CAP_CHOWN"] for k in
                                          ("bounding", "effective", "permitted")}
        cfg["mounts"].append({"destination": "/data", "type": "bind", "source": data,
                              "options": ["rbind", "rw"]})

    b = rl.bundle(["sh", "-c", "cat /proc/self/uid_map /proc/self/setgroups; id -G; "
                   "touch /data/f && chown 1000:1005 /data/f"], mutate, maps="multi")
    r = rl.run(b)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert user.subuid is not None and user.subgid is not None
    assert lines[0].split() == ["0", str(user.uid), "1"]
    assert lines[1].split() == ["1", str(user.subuid[0]), str(user.subuid[1])]
    assert lines[2] == "allow"
    assert lines[3].split() == ["0", "5"]
    st = os.stat(os.path.join(data, "f"))
    assert (st.st_uid, st.st_gid) == (user.subuid[0] + 999, user.subgid[0] + 1004)


# -- what the user lacks ----------------------------------------------------------------


def _left_nothing(rl: Rootless, r: subprocess.CompletedProcess[str]) -> None:
    assert not os.path.isdir(rl.state_root) or os.listdir(rl.state_root) == [], r
    assert not _token_pids(rl.token), r


def test_no_user_namespace_is_refused(rl: Rootless) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "user"]
        del cfg["linux"]["uidMappings"], cfg["linux"]["gidMappings"]

    r = rl.run(rl.bundle(["true"], mutate))
    assert r.returncode == 1
    assert r.stderr.startswith(f"ocirun: config.json: $.linux.namespaces: running as user "
                               f"{rl.user.name} (uid {rl.user.uid}), not root: a rootless "
                               "container needs a user namespace"), r.stderr
    _left_nothing(rl, r)


def test_range_outside_the_subuids_is_refused(rl: Rootless, user: secenv.PlainUser) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["uidMappings"][1]["hostID"] = 4000000000

    r = rl.run(rl.bundle(["true"], mutate, maps="multi"))
    assert r.returncode == 1
    assert "$.linux.uidMappings[1]: host ids 4000000000-" in r.stderr, r.stderr
    assert f"are not in the subuid ranges of user {user.name} in /etc/subuid" in r.stderr
    _left_nothing(rl, r)


def test_user_without_subuids_is_told_so(runtime: list[str], module_dir: str,
                                         session_token: str) -> None:
    other = secenv.PlainUser(subids=False)
    top = os.path.join(module_dir, "nosub")
    os.mkdir(top, 0o755)
    rl = Rootless(other, runtime, top, f"{session_token}-nosub")
    try:
        b = rl.bundle(["true"])
        b.config["linux"]["uidMappings"].append({"containerID": 1, "hostID": 200000,
                                                 "size": 1000})
        with open(os.path.join(b.path, "config.json"), "w") as f:
            json.dump(b.config, f)
        r = rl.run(b)
        assert r.returncode == 1
        assert (f"$.linux.uidMappings[1]: host ids 200000-200999: no subuid range for user "
                f"{other.name} in /etc/subuid") in r.stderr, r.stderr
        _left_nothing(rl, r)
    finally:
        rl.cleanup()
        other.close()


def test_limits_without_a_delegated_cgroup_are_refused(rl: Rootless) -> None:
    r = rl.run(rl.bundle(["true"], lambda c: c["linux"].update(resources={"pids": {"limit": 10}})))
    assert r.returncode == 1
    assert "linux.resources.pids: cannot be applied: cgroup not delegated to user " \
        f"{rl.user.name} (uid {rl.user.uid})" in r.stderr, r.stderr
    _left_nothing(rl, r)


def test_rootless_false_makes_cgroup_errors_errors(rl: Rootless) -> None:
    r = rl.cli("--rootless", "false", "run", "--bundle", rl.bundle(["true"]).path, rl.new_id())
    assert r.returncode == 1
    assert "create cgroup" in r.stderr and "Permission denied" in r.stderr, r.stderr
    _left_nothing(rl, r)


# -- a delegated cgroup -------------------------------------------------------------------


@pytest.fixture
def delegated(user: secenv.PlainUser, session_token: str) -> Iterator[dict[str, str]]:
    """A cgroup of each usable kind chowned to the user: the v1 pids hierarchy
    (when mounted) and a unified one whose common ancestor with the runtime's
    own cgroup is delegated too (the runtime is started inside it)."""
    made: dict[str, str] = {}
    name = f"{session_token}-deleg"
    v1 = "/sys/fs/cgroup/pids"
    v2 = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    try:
        if os.path.isfile(os.path.join(v1, "cgroup.procs")):
            os.mkdir(os.path.join(v1, name))
            made["pids"] = os.path.join(v1, name)
        if os.path.isfile(os.path.join(v2, "cgroup.controllers")):
            os.mkdir(os.path.join(v2, name))
            os.mkdir(os.path.join(v2, name, "runtime"))
            made["unified"] = os.path.join(v2, name)
        for d in made.values():
            subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", d], check=True)
        yield made
    finally:
        for d in made.values():
            for sub in sorted((os.path.join(dp, x) for dp, ds, _ in os.walk(d) for x in ds),
                              key=len, reverse=True):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass
            try:
                os.rmdir(d)
            except OSError:
                pass


def test_delegated_cgroups_are_used(rl: Rootless, delegated: dict[str, str]) -> None:
    if not delegated:
        pytest.skip("no pids v1 hierarchy and no unified hierarchy here")
    name = os.path.basename(next(iter(delegated.values())))
    cid = rl.new_id()
    b = rl.bundle(["sleep", "1000"], lambda c: c["linux"].update(
        cgroupsPath=f"/{name}/{cid}", resources={"pids": {"limit": 17}}))
    if "unified" in delegated:
        # start the runtime inside the delegated unified cgroup (as a session
        # manager would): cgroup v2 moves a process only for a writer of the
        # common ancestor of where it is and where it goes
        procs = os.path.join(delegated["unified"], "runtime", "cgroup.procs")
        rl.wrap = ["sh", "-c", f"echo $$ > {procs} && exec \"$@\"", "sh"]
    try:
        r = rl.cli("run", "--detach", "--bundle", b.path, cid)
    finally:
        rl.wrap = []
    assert r.returncode == 0, r
    pid = json.loads(rl.cli("state", cid).stdout)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        own = f.read()
    for kind, d in delegated.items():
        leaf = os.path.join(d, cid)
        assert os.path.isdir(leaf), (kind, own)
        with open(os.path.join(leaf, "cgroup.procs")) as f:
            assert str(pid) in f.read().split(), (kind, own)
    if "pids" in delegated:
        with open(os.path.join(delegated["pids"], cid, "pids.max")) as f:
            assert f.read().strip() == "17"
    assert rl.cli("delete", "--force", cid).returncode == 0
    for d in delegated.values():
        assert not os.path.exists(os.path.join(d, cid))
