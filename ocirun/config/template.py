"""The config.json written by ``ocirun spec`` (runtime-spec v1.3.0 ``config.md``,
``config-linux.md``).

Modelled on the template of ``runc spec`` so that tools and tutorials written
for runc work unchanged, with these differences:

* ``ociVersion`` is the spec version we implement, 1.3.0;
* ``process.terminal`` is false: the container shares the caller's stdio, and
  ``run --detach`` works without a console socket;
* hostname ``ocirun``;
* no ``linux.resources``: runc's only entry there denies every device, which
  the default device rules already do;
* no ``ambient`` set: without an inheritable set the kernel refuses to raise
  ambient capabilities, so runc's ambient list has no effect but a warning.

``rootless=True`` mirrors ``runc spec --rootless``: a user namespace mapping
only the caller's uid/gid to 0, no network namespace (an unprivileged user
could not configure one anyway), the host's ``/sys`` bind-mounted instead of
a new sysfs (mounting sysfs needs a network namespace we own), and no
``gid=5`` on devpts (gid 5 is not mapped).
"""

from __future__ import annotations

import os

from ocirun import SPEC_VERSION

_DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _mounts(rootless: bool) -> list[dict[str, object]]:
    devpts_options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if not rootless:
        devpts_options.append("gid=5")
    if rootless:
        sysfs: dict[str, object] = {"destination": "/sys", "type": "none", "source": "/sys",
                                    "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    else:
        sysfs = {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]}
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": devpts_options},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        sysfs,
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
    ]


def template(rootless: bool = False) -> dict[str, object]:
    """A fresh config.json dict running ``sh`` in ``<bundle>/rootfs``."""
    linux: dict[str, object] = {}
    if rootless:
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        namespaces = ["pid", "ipc", "uts", "mount", "user"]
    else:
        namespaces = ["pid", "network", "ipc", "uts", "mount"]
    linux["namespaces"] = [{"type": kind} for kind in namespaces]
    linux["maskedPaths"] = list(MASKED_PATHS)
    linux["readonlyPaths"] = list(READONLY_PATHS)
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "TERM=xterm"],
            "cwd": "/",
            "capabilities": {name: list(_DEFAULT_CAPS)
                             for name in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "ocirun",
        "mounts": _mounts(rootless),
        "linux": linux,
    }
