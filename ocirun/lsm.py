"""LSM labels: config.md "POSIX process" (apparmorProfile, selinuxLabel) and
config-linux.md "Mount Label" (mountLabel).

In the parent, :func:`plan_labels` and :func:`plan_mount_label` decide what the
children apply, and refuse a label the host cannot apply: runc 1.1.5 fails
such a create too (checked on a host without LSMs: an AppArmor profile fails
its init with ``write /proc/self/attr/exec: invalid argument``, an SELinux
process label fails its validation with "selinux label is specified in
config, but selinux is disabled or not supported", and a mount label fails
the first tmpfs mount with EINVAL); ocirun says why before anything is
created.  As with runc, that includes the profile ``unconfined``.

In the process step (process/setup.py), before the ids change and before a
seccomp filter is loaded, the labels are written to the task's
``/proc/thread-self/attr/`` files, as libapparmor's ``aa_change_onexec`` and
libselinux's ``setexeccon``/``setkeycreatecon`` do: they take effect at the
next execve (and, for keycreate, on the session keyring joined next).  The
mount label is a ``context="..."`` mount option on the filesystems runc labels
(tmpfs, devpts and other plain filesystems; not proc, sysfs, mqueue, cgroup
or binds).
"""

from __future__ import annotations

import os

from ocirun.errors import ConfigError, SyscallError

# mounts[].type that take no context= option (runc labels only the rest)
UNLABELED_FSTYPES = frozenset({"proc", "sysfs", "mqueue", "cgroup", "cgroup2", "bind", "rbind"})


def apparmor_enabled(sys_root: str = "/sys") -> bool:
    """The kernel runs AppArmor (runc's test: securityfs dir + module parameter)."""
    if not os.path.isdir(f"{sys_root}/kernel/security/apparmor"):
        return False
    try:
        with open(f"{sys_root}/module/apparmor/parameters/enabled", "rb") as f:
            return f.read(1) == b"Y"
    except OSError:
        return False


def selinux_enabled(sys_root: str = "/sys") -> bool:
    """selinuxfs is there (mounted at its standard place)."""
    return os.path.exists(f"{sys_root}/fs/selinux/enforce")


def plan_labels(apparmor: object, selinux: object, where: str = "$.process",
                sys_root: str = "/sys") -> tuple[str | None, str | None]:
    """(AppArmor profile, SELinux label) for the process plan; ConfigError when
    the host cannot apply one."""
    profile = str(apparmor) if apparmor else None
    label = str(selinux) if selinux else None
    if profile is not None and not apparmor_enabled(sys_root):
        raise ConfigError(f"config.json: {where}.apparmorProfile: AppArmor is not enabled on "
                          f"this host, so the process cannot run under profile `{profile}` "
                          "(runc 1.1.5 fails too)")
    if label is not None and not selinux_enabled(sys_root):
        raise ConfigError(f"config.json: {where}.selinuxLabel: SELinux is not enabled on this "
                          f"host, so the process cannot be labelled `{label}` (runc 1.1.5 fails too)")
    return profile, label


def plan_mount_label(label: object, sys_root: str = "/sys") -> str | None:
    if not label:
        return None
    if not selinux_enabled(sys_root):
        raise ConfigError(f"config.json: $.linux.mountLabel: SELinux is not enabled on this host, "
                          f"so the mounts cannot be labelled `{label}` (runc 1.1.5 fails too)")
    return str(label)


def mount_data(data: str, fstype: str, label: str | None) -> str:
    """Mount data with ``context="<label>"`` added where runc adds it."""
    if not label or fstype in UNLABELED_FSTYPES:
        return data
    opt = f'context="{label}"'
    return f"{data},{opt}" if data else opt


def _write_attr(proc: str, names: tuple[str, ...], value: str, what: str) -> None:
    """Write the first of ``names`` under <proc>/thread-self/attr/ that exists."""
    base = f"{proc}/thread-self/attr/"
    path = base + names[-1]
    for name in names:
        if os.path.exists(base + name):
            path = base + name
            break
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SyscallError(f"{what}: write `{path}`: {e.strerror}", errno=e.errno,
                           stage="lsm") from e


def apply_exec_labels(apparmor: str | None, selinux: str | None, proc: str = "/proc") -> None:
    """Labels that take effect at the next execve (the user's program)."""
    if apparmor:
        _write_attr(proc, ("apparmor/exec", "exec"), f"exec {apparmor}",
                    f"process.apparmorProfile `{apparmor}`")
    if selinux:
        _write_attr(proc, ("exec",), selinux, f"process.selinuxLabel `{selinux}`")


def apply_keycreate_label(selinux: str | None, proc: str = "/proc") -> None:
    """The label of keys this task creates (its new session keyring)."""
    if selinux:
        _write_attr(proc, ("keycreate",), selinux, f"process.selinuxLabel `{selinux}` (keyring)")
