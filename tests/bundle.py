"""Test helper: build OCI bundles (runtime-spec v1.3.0 ``bundle.md``) from Debian's busybox-static.

A bundle is a directory holding ``config.json`` and a root filesystem. The rootfs built
here is tiny: ``bin/busybox`` plus one symlink per applet, ``/etc/passwd`` and
``/etc/group`` with root, nobody and an unprivileged user 1000, and the empty mount
points a container needs. Building it costs a few milliseconds, but the privileged
suite still shares one rootfs per session: containers get ``root.readonly: true`` by
default, so they cannot write to it, and a test that needs a writable rootfs asks for
a private copy.

``base_config()`` is written in code (never by calling a runtime) so the tests do not
depend on the program under test to set themselves up. It follows the ``runc spec``
template, with ``terminal`` false (the container's stdio is the runtime's own, which
is how the tests read what the container prints) and without ``linux.resources``.

This module is imported by the pytest suite and by ``bench/bench.py``; it uses only the
standard library.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

BUSYBOX = "/bin/busybox"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The runc template's capability set: the same names in every set but inheritable.
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
GROUP = (
    "root:x:0:\n"
    "tty:x:5:\n"
    "nogroup:x:65534:\n"
    "user:x:1000:\n"
)

Mutation = Callable[[dict[str, Any]], Any]


def busybox_applets(busybox: str = BUSYBOX) -> list[str]:
    """Names of the applets compiled into ``busybox`` (``busybox --list``)."""
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return [name for name in out.split() if name and "/" not in name]


def build_rootfs(dest: str, busybox: str = BUSYBOX) -> str:
    """Create a busybox root filesystem at ``dest`` (which must not exist yet) and return it."""
    if not os.path.exists(busybox):
        raise FileNotFoundError(f"{busybox} is missing: apt-get install -y busybox-static")
    os.makedirs(dest)
    for d in ("bin", "etc", "proc", "sys", "dev", "root", "home/user", "run", "var", "mnt"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    # /tmp is world-writable with the sticky bit, as on any Linux system.
    os.makedirs(os.path.join(dest, "tmp"))
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    if os.geteuid() == 0:
        os.chown(os.path.join(dest, "home/user"), 1000, 1000)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    for name in busybox_applets(busybox):
        link = os.path.join(dest, "bin", name)
        if name != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    # Some programs and runtimes expect /usr/bin and /sbin to exist; point them at /bin.
    os.makedirs(os.path.join(dest, "usr"))
    os.symlink("../bin", os.path.join(dest, "usr", "bin"))
    os.symlink("bin", os.path.join(dest, "sbin"))
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write(GROUP)
    return dest


def base_config(args: list[str] | None = None, rootfs: str = "rootfs") -> dict[str, Any]:
    """A config.json dict close to ``runc spec``: terminal false, no ``linux.resources``."""
    return {
        "ociVersion": "1.3.0",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": list(args) if args else ["sh"],
            "env": [f"PATH={DEFAULT_PATH}", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "ambient": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": True},
        "hostname": "ocitest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


def write_bundle(
    bundle_dir: str,
    rootfs: str | None = None,
    args: list[str] | None = None,
    mutate: Mutation | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``bundle_dir/config.json`` and return the config dict that was written.

    ``rootfs``: an existing rootfs to use (absolute path, shared), or None to build one
    at ``bundle_dir/rootfs``. ``mutate`` edits the dict in place before it is written.
    """
    os.makedirs(bundle_dir, exist_ok=True)
    if rootfs is None:
        rootfs_path = "rootfs"
        if not os.path.exists(os.path.join(bundle_dir, "rootfs")):
            build_rootfs(os.path.join(bundle_dir, "rootfs"))
    else:
        rootfs_path = os.path.abspath(rootfs)
    cfg = copy.deepcopy(config) if config is not None else base_config(args, rootfs_path)
    if config is not None and args:
        cfg["process"]["args"] = list(args)
    if mutate is not None:
        mutate(cfg)
    with open(os.path.join(bundle_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return cfg


def main(argv: list[str]) -> int:
    """``python3 tests/bundle.py DIR [ARGS...]``: build a self-contained bundle in DIR."""
    if not argv:
        print("usage: bundle.py DIR [ARGS...]")
        return 2
    write_bundle(argv[0], None, argv[1:] or None)
    print(os.path.abspath(argv[0]))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
