"""Device nodes in the container (config-linux.md ``#devices``, ``#default-devices``).

Creates the default devices every container MUST have (null, zero, full,
random, urandom, tty) and the configured ``linux.devices``.  Outside a user
namespace a node is made with mknod(2); inside one mknod is refused by the
kernel, so the host's node is bind-mounted over an empty file, as runc does.
A path already holding a different file is an error (the spec's MUST).
"""

from __future__ import annotations

import _stat as stat  # the C module alone: `stat` adds its Python layer
import errno
import posix as os  # os's calls without its Python layer: the init stays lean (posixpaths.py)

from ocirun.errors import SyscallError, oserror_text
from ocirun.pathres import open_in_root, resolve_in_root
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


def host_node(dev: Device, rdev: int, dev_root: str = "/dev") -> str:
    """The host's node of ``dev`` to bind into a user-namespaced container:
    the same path on the host if it is that very device, else udev's
    ``/dev/char|block/MAJOR:MINOR``.  Never another device under the
    configured name."""
    kind = "char" if dev.kind == stat.S_IFCHR else "block"
    nums = f"{dev.major}:{dev.minor}"
    here = dev_root.rstrip("/") + dev.path[len("/dev"):] if dev.path.startswith("/dev/") \
        else dev.path
    found = None
    for path in (here, f"{dev_root}/{kind}/{nums}"):
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_IFMT(st.st_mode) == dev.kind and st.st_rdev == rdev:
            return path
        if found is None and path == here:
            found = (f"the host's `{path}` is {stat.filemode(st.st_mode)[0]} "
                     f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}, not {kind} {nums}")
    raise OSError(errno.ENODEV, f"in a user namespace a device is bound from the host, and the "
                  f"host has no {kind} device {nums} at `{here}` or `{dev_root}/{kind}/{nums}`"
                  + (f" ({found})" if found else ""))


def _create(dev: Device, rootfs: str, sys: Syscalls, in_userns: bool) -> None:
    """Every name is made through a pinned parent directory fd
    (pathres.open_in_root, ``/proc/self/fd/N/name``): a /dev shared with
    another container cannot redirect a node, or a bind, out of the rootfs."""
    host = resolve_in_root(rootfs, dev.path)  # missing parents: made by the pin below
    rdev = os.makedev(dev.major, dev.minor) if dev.kind != stat.S_IFIFO else 0
    hparent, name = host.rsplit("/", 1)
    pfd = open_in_root(rootfs, hparent, create_dirs=True)
    try:
        _create_in(dev, rdev, f"/proc/self/fd/{pfd}", name, rootfs, host, sys, in_userns)
    finally:
        os.close(pfd)


def _create_in(dev: Device, rdev: int, pdir: str, name: str, rootfs: str, host: str,
               sys: Syscalls, in_userns: bool) -> None:
    path = f"{pdir}/{name}"
    try:
        st = os.lstat(path)
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
        source = host_node(dev, rdev)
        if st is None:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                             | os.O_NOFOLLOW, 0o644))
        nfd = open_in_root(rootfs, host)
        try:
            sys.mount(source, f"/proc/self/fd/{nfd}", "bind", MS_BIND, None)
        finally:
            os.close(nfd)
        return
    sys.mknod(path, dev.kind | dev.mode, rdev)
    # mknod's mode is filtered by the umask: set the exact bits explicitly,
    # on the node itself (opened without following: never a swapped-in link).
    nfd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if stat.S_ISLNK(os.fstat(nfd).st_mode):
            raise OSError(errno.ELOOP, "the new node was replaced by a symlink meanwhile")
        os.chmod(f"/proc/self/fd/{nfd}", dev.mode)
        if dev.uid is not None or dev.gid is not None:
            os.chown(f"/proc/self/fd/{nfd}", -1 if dev.uid is None else dev.uid,
                     -1 if dev.gid is None else dev.gid)
    finally:
        os.close(nfd)
