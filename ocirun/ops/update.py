"""``update``: change a live container's resource limits (runc's command;
runtime-spec has no update operation, its ``linux.resources`` fields are the
vocabulary).

The new values come from ``--resources FILE`` / ``--resources -`` (a
LinuxResources JSON object, what containerd's shim sends; other flags are
then ignored, as in runc) or from runc's flags.  They are merged into the
container's current resources (the config's, or those of the last update,
kept in ``<state dir>/resources.json``) because some values depend on
others: v2 ``memory.swap.max`` is swap minus limit, ``cpu.max`` holds quota
and period together.  The merged set is written again, devices excepted
(runc leaves device rules alone on update).  If the kernel refuses a value,
the previous set is written back and the error names the field.

Where runc and the spec differ, the spec wins: ``pids.limit`` 0 is a limit
of zero, not "unchanged" (an absent field is unchanged).
"""

from __future__ import annotations

import os

from ocirun import jsonio, log
from ocirun.errors import ConfigError, NotSupportedError, OciRunError, StateError, UsageError
from ocirun.state import STOPPED, ContainerState, StateStore

RESOURCES_FILE = "resources.json"

# flag -> (section, field, kind); kinds: bytes (docker's RAMInBytes), int, uint, str
FLAGS: dict[str, tuple[str, str, str]] = {
    "memory": ("memory", "limit", "bytes"),
    "memory-reservation": ("memory", "reservation", "bytes"),
    "memory-swap": ("memory", "swap", "bytes"),
    "cpu-share": ("cpu", "shares", "uint"),
    "cpu-shares": ("cpu", "shares", "uint"),
    "cpu-quota": ("cpu", "quota", "int"),
    "cpu-period": ("cpu", "period", "uint"),
    "cpu-burst": ("cpu", "burst", "uint"),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", "int"),
    "cpu-rt-period": ("cpu", "realtimePeriod", "uint"),
    "cpuset-cpus": ("cpu", "cpus", "str"),
    "cpuset-mems": ("cpu", "mems", "str"),
    "cpu-idle": ("cpu", "idle", "int"),
    "pids-limit": ("pids", "limit", "int"),
    "blkio-weight": ("blockIO", "weight", "uint"),
}
IGNORED_FLAGS = ("kernel-memory", "kernel-memory-tcp")
RDT_FLAGS = ("l3-cache-schema", "mem-bw-schema")

_BYTE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """docker/go-units RAMInBytes: ``512``, ``512k``, ``1.5g``, ``64MiB`` (binary units)."""
    s = text.strip()
    low = s.lower()
    for suffix in ("ib", "b", "i"):
        if low.endswith(suffix) and len(low) > len(suffix):
            low = low[:-len(suffix)]
            break
    unit = low[-1] if low and low[-1] in "kmgtp" else ""
    num = low[:-1] if unit else low
    num = num.rstrip()
    if not num or not num.replace(".", "", 1).isdigit():
        raise ValueError(f"invalid size: '{text}'")
    return int(float(num) * _BYTE_UNITS[unit])


def from_flags(opts: dict[str, str]) -> dict[str, object]:
    """runc's update flags -> a LinuxResources object (only what was given)."""
    for name in RDT_FLAGS:
        if opts.get(name):
            raise NotSupportedError(f"--{name}: Intel RDT is not supported yet")
    for name in IGNORED_FLAGS:
        if opts.get(name):
            log.warning(f"Setting --{name} is ignored and will be removed")
    res: dict[str, dict[str, object]] = {}
    for flag, (section, field, kind) in FLAGS.items():
        raw = opts.get(flag)
        if raw is None or raw == "":
            continue
        value: object
        try:
            if kind == "str":
                value = raw
            elif kind == "bytes":
                value = -1 if raw.strip() == "-1" else ram_in_bytes(raw)
            else:
                value = int(raw)
                if kind == "uint" and value < 0:
                    raise ValueError(f"{raw!r} is negative")
        except ValueError as e:
            msg = str(e) if kind == "bytes" else f"{raw!r} is not an integer"
            raise UsageError(f"invalid value for {flag}: {msg}") from None
        if flag == "blkio-weight" and value == 0:
            continue  # runc: 0 means "not given"
        res.setdefault(section, {})[field] = value
    return dict(res)


def read_resources_arg(arg: str) -> dict[str, object]:
    """``--resources FILE`` or ``-`` (stdin): one JSON object."""
    try:
        if arg == "-":
            chunks = []
            while True:
                b = os.read(0, 65536)
                if not b:
                    break
                chunks.append(b)
            data = b"".join(chunks)
        else:
            with open(arg, "rb") as f:
                data = f.read()
    except OSError as e:
        raise OciRunError(f"open {arg}: {e.strerror}") from e
    try:
        doc = jsonio.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resources {arg}: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"--resources {arg}: expected a JSON object of linux.resources")
    return doc


def merge(base: dict[str, object], new: dict[str, object]) -> dict[str, object]:
    """``new`` over ``base``: objects merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in new.items():
        old = out.get(k)
        out[k] = merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


def current(st: ContainerState) -> dict[str, object]:
    """The resources in force: the last update's, else the config's."""
    for name in (RESOURCES_FILE, "config.json"):
        try:
            with open(os.path.join(st.dir, name), "rb") as f:
                doc = jsonio.loads(f.read())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            raise StateError(f"state of container {st.id}: read `{name}`: {e}") from e
        if name == "config.json":
            doc = ((doc.get("linux") or {}).get("resources") or {}) if isinstance(doc, dict) else {}
        return {k: v for k, v in doc.items() if k != "devices"} if isinstance(doc, dict) else {}
    return {}


def update(store: StateStore, cid: str, new: dict[str, object]) -> None:
    lock = store.lock(cid)
    try:
        st = store.load(cid)
        if st.status() == STOPPED:
            raise StateError("container not running")
        if not st.cgroup_paths:
            raise OciRunError(f"container {cid} has no cgroup to update")
        new = {k: v for k, v in new.items() if k != "devices"}
        base = current(st)
        merged = merge(base, new)
        mem = new.get("memory")
        if isinstance(mem, dict) and mem.get("limit") == -1 and "swap" not in mem:
            # runc: unlimited memory with no swap given also lifts the swap limit
            merged["memory"] = dict(merged["memory"], swap=-1)  # type: ignore[call-overload]
        from ocirun.cgroups import load_manager
        mgr = load_manager(st.cgroup_paths)
        try:
            mgr.apply(merged, update=True, prefix="resources")
        except OciRunError:
            try:  # put the previous values back, as runc does
                mgr.apply(base, update=True, prefix="resources")
            except OciRunError as e2:
                log.warning(f"restore the previous resources: {e2}")
            raise
        _save(st, merged)
    finally:
        os.close(lock)


def _save(st: ContainerState, res: dict[str, object]) -> None:
    final = os.path.join(st.dir, RESOURCES_FILE)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, jsonio.dumps(res).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, final)
