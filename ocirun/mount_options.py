"""Mount option strings -> mount(2)/mount_setattr(2) arguments.

Implements the "Linux mount options" table of config.md (runtime-spec v1.3.0,
``#linux-mount-options``) with every option runc knows: the MUST set, the
SHOULD set (``nosymfollow``, the recursive ``r*`` forms applied with
mount_setattr(AT_RECURSIVE), ``idmap``/``ridmap``) and the MAY set
(``mand``, ``nomand``, ``tmpcopyup``), plus runc's ``acl``/``noacl``.
Unknown strings are filesystem-specific data, comma-joined in order.  Pure.
"""

from __future__ import annotations

from ocirun.syscalls.api import (
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME,
    MS_BIND,
    MS_DIRSYNC,
    MS_I_VERSION,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

MS_POSIXACL = 0x10000  # include/uapi/linux/mount.h; not in the seam's table

# option -> (clear?, MS_* flag).  "clear" options remove a flag an earlier
# option (or the default) would set, following mount(8): rw clears ro, etc.
FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "sync": (False, MS_SYNCHRONOUS),
}

# Propagation changes need their own mount(2) call after the mount itself.
PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "shared": MS_SHARED,
    "slave": MS_SLAVE,
    "unbindable": MS_UNBINDABLE,
    "rprivate": MS_PRIVATE | MS_REC,
    "rshared": MS_SHARED | MS_REC,
    "rslave": MS_SLAVE | MS_REC,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# Recursive forms: option -> (clear?, MOUNT_ATTR_*), via mount_setattr
# (kernel >= 5.12).  The atime family is one 3-value field, not bits; see
# parse_mount_options.
RECURSIVE_OPTIONS: dict[str, tuple[bool, int]] = {
    "rro": (False, MOUNT_ATTR_RDONLY),
    "rrw": (True, MOUNT_ATTR_RDONLY),
    "rnosuid": (False, MOUNT_ATTR_NOSUID),
    "rsuid": (True, MOUNT_ATTR_NOSUID),
    "rnodev": (False, MOUNT_ATTR_NODEV),
    "rdev": (True, MOUNT_ATTR_NODEV),
    "rnoexec": (False, MOUNT_ATTR_NOEXEC),
    "rexec": (True, MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, MOUNT_ATTR_NODIRATIME),
    "rdiratime": (True, MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (False, MOUNT_ATTR_NOSYMFOLLOW),
    "rsymfollow": (True, MOUNT_ATTR_NOSYMFOLLOW),
}

# The atime field: the kernel requires attr_clr to hold the whole
# MOUNT_ATTR__ATIME mask whenever the field changes, and attr_set to hold
# exactly one value.  "No noatime"/"no strictatime" fall back to the kernel's
# default, relatime; "no relatime" means full updates, i.e. strictatime.
RECURSIVE_ATIME_OPTIONS: dict[str, int] = {
    "ratime": MOUNT_ATTR_RELATIME,
    "rnoatime": MOUNT_ATTR_NOATIME,
    "rrelatime": MOUNT_ATTR_RELATIME,
    "rnorelatime": MOUNT_ATTR_STRICTATIME,
    "rstrictatime": MOUNT_ATTR_STRICTATIME,
    "rnostrictatime": MOUNT_ATTR_RELATIME,
}

# Handled by the runtime itself, never passed to the kernel.
EXTENSION_OPTIONS = ("idmap", "ridmap", "tmpcopyup")

KNOWN_MOUNT_OPTIONS: tuple[str, ...] = tuple(sorted(
    {*FLAG_OPTIONS, *PROPAGATION_OPTIONS, *RECURSIVE_OPTIONS, *RECURSIVE_ATIME_OPTIONS,
     *EXTENSION_OPTIONS}))


class MountOptions:
    """Parsed ``mounts[].options``.

    ``flags``: MS_* to pass to mount(2) (MS_BIND/MS_REC included for bind and
    rbind); ``clear``: MS_* flags some option explicitly turned off;
    ``propagation``: MS_* propagation values, one mount(2) call each, in
    order; ``attr_set``/``attr_clr``: for mount_setattr(AT_RECURSIVE);
    ``data``: unknown options comma-joined (``""`` when none).
    """

    __slots__ = (
        "attr_clr",
        "attr_set",
        "bind",
        "clear",
        "data",
        "flags",
        "idmap",
        "propagation",
        "rbind",
        "ridmap",
        "tmpcopyup",
    )

    def __init__(self) -> None:
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.data = ""
        self.bind = False
        self.rbind = False
        self.idmap = False
        self.ridmap = False
        self.tmpcopyup = False

    @property
    def is_bind(self) -> bool:
        return self.bind or self.rbind

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"MountOptions({fields})"


def parse_mount_options(options: list[str]) -> MountOptions:
    """Fold ``options`` left to right; a later option overrides an earlier one."""
    o = MountOptions()
    data: list[str] = []
    for opt in options:
        if opt in FLAG_OPTIONS:
            clear, flag = FLAG_OPTIONS[opt]
            if clear:
                o.flags &= ~flag
                o.clear |= flag
            else:
                o.flags |= flag
                o.clear &= ~flag
            if opt == "bind":
                o.bind = True
            elif opt == "rbind":
                o.rbind = True
        elif opt in PROPAGATION_OPTIONS:
            o.propagation.append(PROPAGATION_OPTIONS[opt])
        elif opt in RECURSIVE_OPTIONS:
            clear, attr = RECURSIVE_OPTIONS[opt]
            if clear:
                o.attr_set &= ~attr
                o.attr_clr |= attr
            else:
                o.attr_set |= attr
                o.attr_clr &= ~attr
        elif opt in RECURSIVE_ATIME_OPTIONS:
            o.attr_set = (o.attr_set & ~MOUNT_ATTR__ATIME) | RECURSIVE_ATIME_OPTIONS[opt]
            o.attr_clr |= MOUNT_ATTR__ATIME
        elif opt == "idmap":
            o.idmap = True
        elif opt == "ridmap":
            o.ridmap = True
        elif opt == "tmpcopyup":
            o.tmpcopyup = True
        else:
            data.append(opt)
    o.data = ",".join(data)
    return o
