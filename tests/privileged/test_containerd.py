"""ocirun under a real containerd (issue 10 point 6).

The test starts Debian's containerd with its own config, root, state dir and
socket (nothing of a system containerd is touched), imports a busybox image it
builds itself (an OCI image layout made from the test rootfs: no registry),
and drives containers through ``ctr`` with the runc v2 shim
(io.containerd.runc.v2) whose runc binary is ocirun: ``--runc-binary`` sets
the shim's ``BinaryName`` option, the same option a config.toml runtime
section sets for the CRI plugin (which this config declares too, and which
the README shows).  It stops its containerd and leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import bundle as bundle_mod
import pytest

IMAGE = "docker.io/library/ocibusybox:test"
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
SHIM = shutil.which("containerd-shim-runc-v2")

pytestmark = pytest.mark.skipif(
    not (CONTAINERD and CTR and SHIM),
    reason="containerd, ctr and containerd-shim-runc-v2 are needed (apt-get install containerd)")


def _not_yet(feature: str) -> str | None:
    """Why a part needs another issue's work, or None when it is built."""
    from ocirun.config.checks import NOT_YET
    if feature in NOT_YET:
        return f"needs {NOT_YET[feature]} (cgroup resources, issue 9: branch `cg`)"
    return None


def _needs_command(runtime: list[str], cmd: str) -> str | None:
    r = subprocess.run([*runtime, cmd, "--help"], capture_output=True, text=True, check=False)
    if "not supported yet" in r.stderr + r.stdout:
        return f"`ocirun {cmd}` is not built yet (issue 9: branch `cg`)"
    return None


# -- the image --------------------------------------------------------------------------


def _blob(layout: str, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return "sha256:" + digest, len(data)


def rootfs_tar(rootfs: str) -> bytes:
    """The rootfs as one uncompressed, reproducible layer."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                info = t.gettarinfo(path, os.path.relpath(path, rootfs))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isfile():
                    with open(path, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)
    return buf.getvalue()


def oci_image_tar(rootfs: str, workdir: str, name: str) -> str:
    """An OCI image layout (image-spec) holding ``rootfs``, tarred for ``ctr image import``."""
    layout = os.path.join(workdir, "oci-layout")
    layer, layer_size = _blob(layout, rootfs_tar(rootfs))
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
              "rootfs": {"type": "layers", "diff_ids": [layer]}}
    cfg, cfg_size = _blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cfg, "size": cfg_size},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer, "size": layer_size}]}
    man, man_size = _blob(layout, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man,
        "size": man_size, "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    out = os.path.join(workdir, "image.tar")
    with tarfile.open(out, "w") as t:
        t.add(layout, arcname=".")
    return out


# -- containerd ---------------------------------------------------------------------------


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "README.md")
README_PATH = "/opt/ocirun/bin/ocirun"  # the launcher path the README's snippets use


def readme_block(marker: str) -> str:
    """The fenced block right after the README comment that names ``marker``."""
    with open(README) as f:
        text = f.read()
    m = re.search(rf"<!-- {re.escape(marker)}[^>]*-->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert m, f"README.md has no block marked {marker!r}"
    return m.group(1)


CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  level = "info"

# containerd's stock runc runtime (`containerd config default` has it; a runtimes
# table without the default runtime keeps the CRI plugin from loading) ...
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

# ... and README.md's block registering ocirun, with this launcher's path:
{readme}
"""


class Containerd:
    def __init__(self, workdir: str, ocirun: str, token: str) -> None:
        self.dir = workdir
        self.ocirun = ocirun
        self.token = token
        self.ns = token  # a containerd namespace of our own
        self.sock = os.path.join(workdir, "containerd.sock")
        self.env = {**os.environ, "OCITEST": token}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(d=self.dir, readme=readme_block(
                "tests/privileged/test_containerd.py starts").replace(README_PATH, self.ocirun)))
        self.log = open(os.path.join(self.dir, "containerd.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([str(CONTAINERD), "--config", cfg], stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env)
        deadline = time.monotonic() + 30
        while self.ctr("version").returncode != 0:
            assert self.proc.poll() is None, self.logtext()
            assert time.monotonic() < deadline, self.logtext()
            time.sleep(0.1)

    def logtext(self) -> str:
        with open(os.path.join(self.dir, "containerd.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def ctr(self, *args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        return subprocess.run([str(CTR), "--address", self.sock, "--namespace", self.ns, *args],
                              text=True, timeout=timeout, env=self.env, check=False,
                              stdin=subprocess.DEVNULL, **kw)

    def runtime_flags(self) -> list[str]:
        # BinaryName and Root of the runc v2 shim's options
        return ["--runc-binary", self.ocirun, "--runc-root", os.path.join(self.dir, "runc")]

    def run(self, cid: str, *args: str, flags: tuple[str, ...] = (),
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.ctr("run", *self.runtime_flags(), "--env", f"OCITEST={self.token}", *flags,
                        IMAGE, cid, *args, timeout=timeout)

    def cleanup(self) -> list[str]:
        """Remove every task and container of our namespace, stop containerd."""
        left = []
        if self.proc is not None and self.proc.poll() is None:
            for line in self.ctr("task", "ls", "-q").stdout.split():
                left.append(f"task {line}")
                self.ctr("task", "kill", "-s", "SIGKILL", line)
                for _ in range(50):
                    if self.ctr("task", "delete", line).returncode == 0:
                        break
                    time.sleep(0.1)
            for line in self.ctr("container", "ls", "-q").stdout.split():
                self.ctr("container", "delete", line)
            self.ctr("image", "rm", IMAGE)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
        return left


def shims_of(sock: str) -> list[int]:
    """containerd-shim-runc-v2 processes serving our containerd."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and sock.encode() in argv:
            pids.append(int(name))
    return pids


@pytest.fixture(scope="module")
def ctd(tmp_path_factory: pytest.TempPathFactory, session_token: str,
        runtime_cmd: list[str], host_scan: Any) -> Iterator[Containerd]:
    if len(runtime_cmd) != 1 or not os.path.isabs(runtime_cmd[0]):
        pytest.skip("containerd needs the runtime as one executable path (the installed launcher)")
    why = _not_yet("linux.resources.cpu")
    if why:  # ctr's default spec sets linux.resources.cpu.shares = 1024
        pytest.skip(f"every ctr container asks for cpu shares: {why}")
    # a short directory: unix socket paths are limited to 108 bytes
    workdir = f"/tmp/{session_token}-ctd"
    os.makedirs(workdir)
    c = Containerd(workdir, runtime_cmd[0], f"{session_token}-ctd")
    mounts_before = set(host_scan.mounts_under(workdir))
    try:
        rootfs = bundle_mod.build_rootfs(os.path.join(workdir, "rootfs"))
        image = oci_image_tar(rootfs, workdir, IMAGE)
        c.start()
        r = c.ctr("image", "import", image)
        assert r.returncode == 0, r
        yield c
    finally:
        left = c.cleanup()
        shims = shims_of(c.sock)
        for pid in shims:
            os.kill(pid, signal.SIGKILL)
        mounts = sorted(set(host_scan.mounts_under(workdir)) - mounts_before, key=len,
                        reverse=True)
        for m in mounts:
            subprocess.run(["umount", "-l", m], check=False)
        cgroups = host_scan.cgroups_named(c.ns, exact=True)
        for cg in cgroups:
            for dirpath, _dirs, _files in os.walk(cg, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
        shutil.rmtree(workdir, ignore_errors=True)
        assert not (left or shims or mounts or cgroups), (left, shims, mounts, cgroups)


# -- the tests ------------------------------------------------------------------------------


def test_readme_registration(ctd: Containerd) -> None:
    """containerd started with the README's runtimes section (the CRI plugin
    loaded it), and the README's RuntimeClass names that section."""
    plugins = ctd.ctr("plugins", "ls").stdout
    assert re.search(r"io\.containerd\.grpc\.v1\s+cri\s+.*\bok\b", plugins), plugins
    toml = readme_block("tests/privileged/test_containerd.py starts")
    name = re.search(r"containerd\.runtimes\.([\w-]+)\]", toml).group(1)  # type: ignore[union-attr]
    yaml = readme_block("tests/privileged/test_containerd.py checks")
    assert re.search(rf"^handler: {name}$", yaml, re.MULTILINE), yaml
    assert "kind: RuntimeClass" in yaml and "apiVersion: node.k8s.io/v1" in yaml


def test_output_and_exit_code(ctd: Containerd) -> None:
    r = ctd.run("out1", "sh", "-c", "echo hello from ocirun; echo to-stderr >&2; exit 3",
                flags=("--rm",))
    assert r.returncode == 3, r
    assert r.stdout == "hello from ocirun\n"
    assert "to-stderr" in r.stderr


def test_detached_task_exec_kill_ps_pause_delete(ctd: Containerd) -> None:
    cid = "det1"
    script = "trap 'echo got-usr1 > /dev/shm/sig' USR1; echo $$ > /dev/shm/pid; " \
             "while :; do sleep 0.1; done"
    r = ctd.run(cid, "sh", "-c", script, flags=("--detach",))
    assert r.returncode == 0, r
    try:
        tasks = ctd.ctr("task", "ls").stdout
        assert re.search(rf"^{cid}\s+\d+\s+RUNNING", tasks, re.MULTILINE), tasks
        # ctr task exec: a second process in the same container
        e = ctd.ctr("task", "exec", "--exec-id", "e1", cid, "sh", "-c",
                    "cat /dev/shm/pid; readlink /proc/1/ns/pid; exit 4")
        assert e.returncode == 4, e
        assert e.stdout.splitlines()[0] == "1"  # the task is pid 1 of its namespace
        # kill with a signal
        assert ctd.ctr("task", "kill", "-s", "SIGUSR1", cid).returncode == 0
        deadline = time.monotonic() + 10
        while True:
            e = ctd.ctr("task", "exec", "--exec-id", "e2", cid, "cat", "/dev/shm/sig")
            if e.stdout == "got-usr1\n":
                break
            assert time.monotonic() < deadline, e
            time.sleep(0.1)
        # ctr task ps: through `ocirun ps --format json`
        why = _needs_command([ctd.ocirun], "ps")
        if why is None:
            ps = ctd.ctr("task", "ps", cid)
            assert ps.returncode == 0, ps
            pids = [int(x.split()[0]) for x in ps.stdout.splitlines()[1:]]
            init = int(re.search(rf"^{cid}\s+(\d+)", tasks, re.MULTILINE).group(1))  # type: ignore[union-attr]
            assert init in pids
        # pause and resume: the cgroup freezer
        why = why or _needs_command([ctd.ocirun], "pause")
        if why is None:
            assert ctd.ctr("task", "pause", cid).returncode == 0
            assert re.search(rf"^{cid}\s+\d+\s+PAUSED", ctd.ctr("task", "ls").stdout, re.MULTILINE)
            assert ctd.ctr("task", "resume", cid).returncode == 0
            assert re.search(rf"^{cid}\s+\d+\s+RUNNING", ctd.ctr("task", "ls").stdout, re.MULTILINE)
    finally:
        ctd.ctr("task", "kill", "-s", "SIGKILL", cid)
        deadline = time.monotonic() + 20
        while ctd.ctr("task", "delete", cid).returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ctd.ctr("container", "delete", cid).returncode == 0
    assert cid not in ctd.ctr("container", "ls", "-q").stdout.split()
    assert not os.path.exists(os.path.join(ctd.dir, "runc", ctd.ns, cid))
    if why is not None:
        pytest.skip(f"ps, pause and resume: {why}")


def test_tty_task(ctd: Containerd) -> None:
    """ctr run -t: the shim receives the pty master over --console-socket."""
    argv = [str(CTR), "--address", ctd.sock, "--namespace", ctd.ns, "run", "--rm", "-t",
            *ctd.runtime_flags(), "--env", f"OCITEST={ctd.token}", IMAGE, "tty1", "sh"]
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.execve(argv[0], argv, ctd.env)
    out = b""
    try:
        os.write(fd, b"tty; stty size; echo tty-$((40+2)); exit 6\n")
        deadline = time.monotonic() + 30
        while True:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                pid = 0
                break
            assert time.monotonic() < deadline, out
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert "/dev/pts/0" in text and "tty-42" in text, text
    assert os.waitstatus_to_exitcode(status) == 6, text


def _memory_dir(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "memory" in ctrls.split(","):
                return f"/sys/fs/cgroup/memory{path}"
            if ctrls == "" and os.path.exists(f"/sys/fs/cgroup{path}/memory.max"):
                return f"/sys/fs/cgroup{path}"
    raise AssertionError(f"no memory cgroup for {pid}")


def _task_pid(ctd: Containerd, cid: str) -> int:
    tasks = ctd.ctr("task", "ls").stdout
    m = re.search(rf"^{re.escape(cid)}\s+(\d+)", tasks, re.MULTILINE)
    assert m, tasks
    return int(m.group(1))


def _delete_task(ctd: Containerd, cid: str) -> None:
    ctd.ctr("task", "kill", "-s", "SIGKILL", cid)
    deadline = time.monotonic() + 20
    while ctd.ctr("task", "delete", cid).returncode != 0:
        if cid not in ctd.ctr("task", "ls", "-q").stdout.split():
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ctd.ctr("container", "delete", cid)


def test_memory_limit_is_enforced(ctd: Containerd) -> None:
    why = _not_yet("linux.resources.memory")
    if why:
        pytest.skip(why)
    limit = 32 * 1024 * 1024
    r = ctd.run("mem1", "sleep", "1000", flags=("--detach", "--memory-limit", str(limit)))
    assert r.returncode == 0, r
    try:
        d = _memory_dir(_task_pid(ctd, "mem1"))
        name = "memory.limit_in_bytes" if os.path.exists(f"{d}/memory.limit_in_bytes") \
            else "memory.max"
        with open(f"{d}/{name}") as f:
            assert int(f.read()) == limit
        # 100 MB held by a shell in a 32 MiB cgroup: the OOM killer ends it
        e = ctd.ctr("task", "exec", "--exec-id", "hog", "mem1", "sh", "-c",
                    "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}")
        assert "survived" not in e.stdout, e
        assert e.returncode == 137, e
        events = "memory.oom_control" if name == "memory.limit_in_bytes" else "memory.events"
        with open(f"{d}/{events}") as f:
            kills = dict(line.split() for line in f)
        assert int(kills["oom_kill"]) >= 1, kills
    finally:
        _delete_task(ctd, "mem1")


def test_with_ns_joins_another_tasks_network(ctd: Containerd) -> None:
    """What a Kubernetes pod does: a sandbox task owns the network namespace,
    the app containers join it by path."""
    r = ctd.run("pod1", "sleep", "1000", flags=("--detach",))
    assert r.returncode == 0, r
    try:
        pod_pid = _task_pid(ctd, "pod1")
        want = os.readlink(f"/proc/{pod_pid}/ns/net")
        app = ctd.run("app1", "readlink", "/proc/self/ns/net",
                      flags=("--rm", "--with-ns", f"network:/proc/{pod_pid}/ns/net"))
        assert app.returncode == 0, app
        assert app.stdout.strip() == want
        other = ctd.run("app2", "readlink", "/proc/self/ns/net", flags=("--rm",))
        assert other.stdout.strip() != want  # without --with-ns: a namespace of its own
    finally:
        _delete_task(ctd, "pod1")


def test_failing_command_carries_ocirun_message(ctd: Containerd) -> None:
    r = ctd.run("bad1", "/nonexistent", flags=("--rm",))
    assert r.returncode != 0
    # containerd reads the last error line of ocirun's --log json file
    assert 'OCI runtime create failed' in r.stderr, r
    assert 'exec: "/nonexistent": stat /nonexistent: no such file or directory' in r.stderr, r
    ctd.ctr("container", "delete", "bad1")
    assert "bad1" not in ctd.ctr("container", "ls", "-q").stdout.split()
