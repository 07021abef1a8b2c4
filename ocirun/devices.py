"""Device nodes in the container (config-linux.md ``#devices``, ``#default-devices``).

Creates the default devices every container MUST have (null, zero, full,
random, urandom, tty) and the configured ``linux.devices``.  Outside a user
namespace a node is made with mknod(2); inside one mknod is refused by the
kernel, so the host's node is bind-mounted over an empty file, as runc does.
A path already holding a different file is an error (the spec's MUST).
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)
import stat

from ocirun.errors import SyscallError, oserror_text
from ocirun.pathres import mkdir_all_in_root, resolve_in_root
from ocirun.posixpaths import normpath
from ocirun.syscalls.api import MS_BIND

TYPE_CHECKING = False  # avoids importing typing (~8 ms cold); mypy still honours it
if TYPE_CHECKING:
    from typing import Any

    from ocirun.syscalls.api import Syscalls

# (path, major, minor); type c, mode 0666, owned by root (config-linux.md).
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
)

_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class Device:
    """One node to create: container ``path``, S_IF* ``kind``, numbers, mode, owner."""

    __slots__ = ("gid", "kind", "major", "minor", "mode", "path", "uid")

    def __init__(self, path: str, kind: int, major: int, minor: int, mode: int,
                 uid: int | None, gid: int | None) -> None:
        self.path = path
        self.kind = kind
        self.major = major
        self.minor = minor
        self.mode = mode
        self.uid = uid
        self.gid = gid


def _norm(path: str) -> str:
    # normpath keeps a leading "//" (POSIX allows it a meaning): strip first.
    return normpath("/" + path.lstrip("/"))


def device_list(spec: dict[str, Any]) -> list[Device]:
    """Defaults first, then ``linux.devices``; a configured path replaces a default."""
    configured = (spec.get("linux") or {}).get("devices") or []
    cfg_paths = {_norm(d["path"]) for d in configured}
    out = [Device(p, stat.S_IFCHR, ma, mi, 0o666, None, None)
           for p, ma, mi in DEFAULT_DEVICES if p not in cfg_paths]
    for d in configured:
        kind = _TYPE_BITS.get(d["type"])
        if kind is None:
            raise SyscallError(f"device `{d['path']}`: unknown type `{d['type']}` "
                               "(expected c, b, u or p)", errno=errno.EINVAL, stage="devices")
        mode = d.get("fileMode")
        out.append(Device(_norm(d["path"]), kind,
                          int(d.get("major", 0)), int(d.get("minor", 0)),
                          0o666 if mode is None else int(mode) & 0o7777,
                          d.get("uid"), d.get("gid")))
    return out


def create_devices(devices: tuple[Device, ...] | list[Device], rootfs: str, sys: Syscalls, *,
                   in_userns: bool) -> None:
    """Create every planned device (device_list) under ``rootfs`` (before pivot_root)."""
    for dev in devices:
        try:
            _create(dev, rootfs, sys, in_userns)
        except OSError as e:
            raise SyscallError(f"create device `{dev.path}`: {oserror_text(e)}",
                               errno=e.errno, stage="devices") from e


def _create(dev: Device, rootfs: str, sys: Syscalls, in_userns: bool) -> None:
    parent, _, _ = dev.path.rpartition("/")
    mkdir_all_in_root(rootfs, parent or "/")
    host = resolve_in_root(rootfs, dev.path)
    rdev = os.makedev(dev.major, dev.minor) if dev.kind != stat.S_IFIFO else 0
    try:
        st = os.lstat(host)
    except FileNotFoundError:
        st = None
    if st is not None:
        if stat.S_IFMT(st.st_mode) == dev.kind and (dev.kind == stat.S_IFIFO
                                                     or st.st_rdev == rdev):
            return  # already the right node (e.g. a rootfs shipping /dev/null)
        if not (in_userns and stat.S_ISREG(st.st_mode) and st.st_size == 0):
            raise OSError(errno.EEXIST, f"a different file exists there "
                          f"(mode {stat.filemode(st.st_mode)}), not the configured device")
    if in_userns and dev.kind != stat.S_IFIFO:
        # mknod of a device needs CAP_MKNOD in the initial user namespace;
        # bind the host's node instead (its mode and owner come along).
        if st is None:
            os.close(os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                             | os.O_NOFOLLOW, 0o644))
        sys.mount(dev.path, host, "bind", MS_BIND, None)
        return
    sys.mknod(host, dev.kind | dev.mode, rdev)
    # mknod's mode is filtered by the umask: set the exact bits explicitly.
    os.chmod(host, dev.mode)
    if dev.uid is not None or dev.gid is not None:
        os.chown(host, -1 if dev.uid is None else dev.uid,
                 -1 if dev.gid is None else dev.gid, follow_symlinks=False)
