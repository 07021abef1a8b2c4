#!/bin/sh
# make-bundle.sh DIR [ARGS...]: build an OCI bundle (runtime-spec bundle.md) in DIR from
# Debian's busybox-static: DIR/rootfs (bin/busybox + one symlink per applet, /etc/passwd and
# /etc/group with root, nobody and user 1000, /tmp) and DIR/config.json.
#
# config.json comes from `ocirun spec` when ocirun can be run (installed, or from this
# repository), else from the template below; either way `terminal` is set to false, so the
# container's output is the runtime's own, and process.args to ARGS (default: sh).
#
#   examples/make-bundle.sh /tmp/bb echo hello
#   ocirun run --bundle /tmp/bb demo        # prints "hello"
set -eu

usage() { echo "usage: $0 DIR [ARGS...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
dir=$1; shift
busybox=${BUSYBOX:-/bin/busybox}
repo=$(cd "$(dirname "$0")/.." && pwd)

[ -x "$busybox" ] || { echo "$0: $busybox is missing: apt-get install -y busybox-static" >&2; exit 1; }
[ ! -e "$dir/config.json" ] || { echo "$0: $dir/config.json exists; remove it first" >&2; exit 1; }

rootfs=$dir/rootfs
if [ ! -x "$rootfs/bin/busybox" ]; then
    mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" \
        "$rootfs/root" "$rootfs/home/user" "$rootfs/run" "$rootfs/var" "$rootfs/mnt" "$rootfs/tmp"
    chmod 1777 "$rootfs/tmp"
    cp "$busybox" "$rootfs/bin/busybox"
    for applet in $("$busybox" --list); do
        [ "$applet" = busybox ] || [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
    done
    mkdir -p "$rootfs/usr"
    ln -sf ../bin "$rootfs/usr/bin"
    ln -sf bin "$rootfs/sbin"
    cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
PASSWD
    cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
tty:x:5:
nogroup:x:65534:
user:x:1000:
GROUP
    chown 1000:1000 "$rootfs/home/user" 2>/dev/null || true
fi

# Prefer the runtime's own template; fall back to ours when ocirun cannot run yet.
if command -v ocirun >/dev/null 2>&1 && ocirun spec --bundle "$dir" 2>/dev/null; then
    :
elif PYTHONPATH=$repo python3 -m ocirun spec --bundle "$dir" 2>/dev/null; then
    :
else
    cat > "$dir/config.json" <<'CONFIG'
{
  "ociVersion": "1.3.0",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh"],
    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "ocirun",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
CONFIG
fi

# terminal false and the requested args, whichever template we started from.
python3 - "$dir/config.json" "$@" <<'EDIT'
import json, sys
path, args = sys.argv[1], sys.argv[2:]
with open(path) as f:
    cfg = json.load(f)
cfg["process"]["terminal"] = False
if args:
    cfg["process"]["args"] = args
with open(path, "w") as f:
    json.dump(cfg, f, indent=2)
    f.write("\n")
EDIT
echo "$dir"
