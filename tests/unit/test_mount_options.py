"""mount_options: every option of config.md "Linux mount options" and runc's table."""

from __future__ import annotations

import pytest

from ocirun.mount_options import KNOWN_MOUNT_OPTIONS, MS_POSIXACL, parse_mount_options
from ocirun.syscalls import api as k

# option -> (flags, clear) after parsing it alone
FLAG_CASES = {
    "acl": (MS_POSIXACL, 0), "noacl": (0, MS_POSIXACL),
    "async": (0, k.MS_SYNCHRONOUS), "sync": (k.MS_SYNCHRONOUS, 0),
    "atime": (0, k.MS_NOATIME), "noatime": (k.MS_NOATIME, 0),
    "bind": (k.MS_BIND, 0), "rbind": (k.MS_BIND | k.MS_REC, 0),
    "defaults": (0, 0),
    "dev": (0, k.MS_NODEV), "nodev": (k.MS_NODEV, 0),
    "diratime": (0, k.MS_NODIRATIME), "nodiratime": (k.MS_NODIRATIME, 0),
    "dirsync": (k.MS_DIRSYNC, 0),
    "exec": (0, k.MS_NOEXEC), "noexec": (k.MS_NOEXEC, 0),
    "iversion": (k.MS_I_VERSION, 0), "noiversion": (0, k.MS_I_VERSION),
    "lazytime": (k.MS_LAZYTIME, 0), "nolazytime": (0, k.MS_LAZYTIME),
    "loud": (0, k.MS_SILENT), "silent": (k.MS_SILENT, 0),
    "mand": (k.MS_MANDLOCK, 0), "nomand": (0, k.MS_MANDLOCK),
    "relatime": (k.MS_RELATIME, 0), "norelatime": (0, k.MS_RELATIME),
    "strictatime": (k.MS_STRICTATIME, 0), "nostrictatime": (0, k.MS_STRICTATIME),
    "suid": (0, k.MS_NOSUID), "nosuid": (k.MS_NOSUID, 0),
    "symfollow": (0, k.MS_NOSYMFOLLOW), "nosymfollow": (k.MS_NOSYMFOLLOW, 0),
    "remount": (k.MS_REMOUNT, 0),
    "ro": (k.MS_RDONLY, 0), "rw": (0, k.MS_RDONLY),
}

PROP_CASES = {
    "private": k.MS_PRIVATE, "shared": k.MS_SHARED, "slave": k.MS_SLAVE,
    "unbindable": k.MS_UNBINDABLE, "rprivate": k.MS_PRIVATE | k.MS_REC,
    "rshared": k.MS_SHARED | k.MS_REC, "rslave": k.MS_SLAVE | k.MS_REC,
    "runbindable": k.MS_UNBINDABLE | k.MS_REC,
}

# option -> (attr_set, attr_clr)
REC_CASES = {
    "rro": (k.MOUNT_ATTR_RDONLY, 0), "rrw": (0, k.MOUNT_ATTR_RDONLY),
    "rnosuid": (k.MOUNT_ATTR_NOSUID, 0), "rsuid": (0, k.MOUNT_ATTR_NOSUID),
    "rnodev": (k.MOUNT_ATTR_NODEV, 0), "rdev": (0, k.MOUNT_ATTR_NODEV),
    "rnoexec": (k.MOUNT_ATTR_NOEXEC, 0), "rexec": (0, k.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (k.MOUNT_ATTR_NODIRATIME, 0), "rdiratime": (0, k.MOUNT_ATTR_NODIRATIME),
    "rnosymfollow": (k.MOUNT_ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, k.MOUNT_ATTR_NOSYMFOLLOW),
    # the atime field: always clear the whole field, set one value
    "ratime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
    "rnoatime": (k.MOUNT_ATTR_NOATIME, k.MOUNT_ATTR__ATIME),
    "rrelatime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
    "rnorelatime": (k.MOUNT_ATTR_STRICTATIME, k.MOUNT_ATTR__ATIME),
    "rstrictatime": (k.MOUNT_ATTR_STRICTATIME, k.MOUNT_ATTR__ATIME),
    "rnostrictatime": (k.MOUNT_ATTR_RELATIME, k.MOUNT_ATTR__ATIME),
}

# The spec's lists (config.md, v1.3.0), MUST + SHOULD + MAY.
SPEC_OPTIONS = ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "iversion", "lazytime", "loud", "noatime", "nodev", "nodiratime", "noexec", "noiversion", "nolazytime", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "sync", "unbindable", "nosymfollow", "symfollow", "ratime", "rdev", "rdiratime", "rexec", "rnoatime", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "rrelatime", "rro", "rrw", "rstrictatime", "rsuid", "rsymfollow", "idmap", "ridmap", "mand", "nomand", "tmpcopyup"]


def test_known_options_cover_the_spec_and_every_case() -> None:
    assert set(SPEC_OPTIONS) <= set(KNOWN_MOUNT_OPTIONS)
    tested = {*FLAG_CASES, *PROP_CASES, *REC_CASES, "idmap", "ridmap", "tmpcopyup"}
    assert tested == set(KNOWN_MOUNT_OPTIONS)
    assert list(KNOWN_MOUNT_OPTIONS) == sorted(KNOWN_MOUNT_OPTIONS)


@pytest.mark.parametrize("opt", sorted(FLAG_CASES))
def test_flag_option(opt: str) -> None:
    o = parse_mount_options([opt])
    assert (o.flags, o.clear) == FLAG_CASES[opt]
    assert o.propagation == [] and o.attr_set == 0 and o.attr_clr == 0 and o.data == ""
    assert o.bind == (opt == "bind") and o.rbind == (opt == "rbind")
    assert o.is_bind == (opt in ("bind", "rbind"))


@pytest.mark.parametrize("opt", sorted(PROP_CASES))
def test_propagation_option(opt: str) -> None:
    o = parse_mount_options([opt])
    assert o.propagation == [PROP_CASES[opt]]
    assert o.flags == 0 and o.data == ""


@pytest.mark.parametrize("opt", sorted(REC_CASES))
def test_recursive_option(opt: str) -> None:
    o = parse_mount_options([opt])
    assert (o.attr_set, o.attr_clr) == REC_CASES[opt]
    assert o.flags == 0 and o.data == "" and o.propagation == []


@pytest.mark.parametrize("opt", ["idmap", "ridmap", "tmpcopyup"])
def test_extension_options_never_reach_the_kernel(opt: str) -> None:
    o = parse_mount_options([opt])
    assert getattr(o, opt) is True
    assert o.flags == 0 and o.data == ""


def test_later_options_override_earlier_ones() -> None:
    o = parse_mount_options(["ro", "rw"])
    assert o.flags == 0 and o.clear == k.MS_RDONLY
    o = parse_mount_options(["rw", "ro"])
    assert o.flags == k.MS_RDONLY and o.clear == 0
    o = parse_mount_options(["rro", "rrw"])
    assert (o.attr_set, o.attr_clr) == (0, k.MOUNT_ATTR_RDONLY)
    o = parse_mount_options(["rnoatime", "rstrictatime", "rnosuid"])
    assert o.attr_set == k.MOUNT_ATTR_STRICTATIME | k.MOUNT_ATTR_NOSUID
    assert o.attr_clr == k.MOUNT_ATTR__ATIME


def test_unknown_options_are_data_in_order() -> None:
    o = parse_mount_options(["nosuid", "newinstance", "noexec", "ptmxmode=0666",
                             "mode=0620", "gid=5"])
    assert o.flags == k.MS_NOSUID | k.MS_NOEXEC
    assert o.data == "newinstance,ptmxmode=0666,mode=0620,gid=5"


def test_runc_template_mounts() -> None:
    o = parse_mount_options(["nosuid", "noexec", "nodev", "relatime", "ro"])
    assert o.flags == k.MS_NOSUID | k.MS_NOEXEC | k.MS_NODEV | k.MS_RELATIME | k.MS_RDONLY
    o = parse_mount_options(["rbind", "rprivate", "ro"])
    assert o.flags == k.MS_BIND | k.MS_REC | k.MS_RDONLY
    assert o.propagation == [k.MS_PRIVATE | k.MS_REC] and o.rbind and o.is_bind


def test_empty() -> None:
    o = parse_mount_options([])
    assert (o.flags, o.clear, o.propagation, o.attr_set, o.attr_clr, o.data) == \
        (0, 0, [], 0, 0, "")
    assert "flags=0" in repr(o)
