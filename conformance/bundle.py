"""Bundles for the conformance suite (bundle.md, config.md).

A busybox-static rootfs plus the compiled probe are built once per cache dir;
each test then gets its own bundle directory with a cheap hard-linked copy of
that rootfs (so a runtime creating mount points in one test cannot leak into
another) and a config.json generated from ``base_config()`` plus the test's
own changes.  Nothing here is copied from other projects' bundles.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_SRC = os.path.join(HERE, "probe.c")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

# Applets the tests call by name; everything else is reached as `busybox X`.
APPLETS = ("sh", "cat", "echo", "ls", "stat", "sleep", "id", "env", "hostname", "mount",
           "readlink", "touch", "mkdir", "test", "true", "false", "grep", "head", "ps", "kill",
           "uname", "tty", "dd", "mknod", "rm", "wc", "printf", "pwd", "stty", "ln", "chmod",
           "sysctl", "nproc", "date", "cut")

DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


class SetupError(Exception):
    """The host cannot build the suite's fixtures (no busybox, no gcc ...)."""


def find_busybox() -> str:
    for p in BUSYBOX_CANDIDATES:
        if os.path.exists(p):
            out = subprocess.run(["file", "-L", p], capture_output=True, text=True).stdout \
                if shutil.which("file") else "statically linked"
            if "dynamically linked" in out:
                continue
            return p
    raise SetupError("no static busybox found: apt-get install busybox-static")


def build_cache(cache_dir: str) -> str:
    """Build (once) a rootfs with busybox, applet links and the probe; return its path.

    The rootfs lives in ``<cache>/<key>/rootfs``, the key a hash of what goes
    into it (probe source, applet list, busybox), and is built in a temporary
    directory then renamed into place.  Suites run at the same time from
    different checkouts (other engineers, the VM) therefore never rebuild or
    delete a rootfs another run is copying from.
    """
    bb = find_busybox()
    h = hashlib.sha256()
    with open(PROBE_SRC, "rb") as f:
        h.update(f.read())
    st = os.stat(bb)
    h.update(f"{','.join(APPLETS)}|{bb}|{st.st_size}|{st.st_mtime_ns}|{PASSWD}|{GROUP}".encode())
    final = os.path.join(cache_dir, h.hexdigest()[:16])
    rootfs = os.path.join(final, "rootfs")
    if os.path.exists(os.path.join(final, "complete")):
        return rootfs
    if shutil.which("gcc") is None:
        raise SetupError("gcc not found: apt-get install gcc libc6-dev (needed for the static probe)")
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
    try:
        _build_rootfs(os.path.join(tmp, "rootfs"), bb)
        open(os.path.join(tmp, "complete"), "w").close()
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, final)
        except OSError:  # another run finished the same build first
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not os.path.exists(os.path.join(final, "complete")):
        raise SetupError(f"could not build the rootfs cache in {final}")
    return rootfs


PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
GROUP = "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n"


def _build_rootfs(rootfs: str, busybox: str) -> None:
    for d in ("bin", "dev", "proc", "sys", "etc", "tmp", "root", "mnt", "var", "run", "home"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(rootfs, 0o755)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    for a in APPLETS:
        os.symlink("busybox", os.path.join(rootfs, "bin", a))
    r = subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(rootfs, "probe"), PROBE_SRC],
                       capture_output=True, text=True)
    if r.returncode != 0:
        last = r.stderr.strip().splitlines()[-1:] or ["gcc failed"]
        raise SetupError("gcc -static probe.c failed: " + last[0])
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write(GROUP)


def clone_rootfs(src: str, dst: str) -> None:
    """Copy the cached rootfs: directories recreated, files hard-linked.

    Hard links keep this at a few milliseconds; tests never write into the
    shared binaries (they write to tmpfs or bundle-owned paths instead).
    """
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else os.path.join(dst, rel)
        os.makedirs(target, exist_ok=True)
        os.chmod(target, os.stat(dirpath).st_mode & 0o7777)
        for name in filenames:
            s = os.path.join(dirpath, name)
            d = os.path.join(target, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), d)
            else:
                try:
                    os.link(s, d)
                except OSError:
                    shutil.copy2(s, d)
        for name in dirnames:
            s = os.path.join(dirpath, name)
            if os.path.islink(s):
                os.symlink(os.readlink(s), os.path.join(target, name))


def base_config(args: list[str] | None = None) -> dict:
    """A minimal, conventional Linux config.json (config.md, config-linux.md)."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args or ["/probe"],
            "env": ["PATH=/bin:/usr/bin:/sbin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in
                             ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        },
    }


class Bundle:
    """One test's bundle directory: ``config.json`` + ``rootfs/``."""

    __slots__ = ("path", "rootfs", "config")

    def __init__(self, path: str, cached_rootfs: str, config: dict) -> None:
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.config = config
        os.makedirs(path, exist_ok=True)
        clone_rootfs(cached_rootfs, self.rootfs)
        self.write()

    def write(self) -> None:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)
