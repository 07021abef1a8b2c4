"""Device access rules (config-linux.md "Allowed Device List").

Under cgroup v1 the rules go to ``devices.deny``/``devices.allow`` of the
container's devices cgroup: first deny everything, then the config's rules
in order, then the defaults the container always needs (the same list runc
appends: mknod of anything, the default devices, ptys, /dev/ptmx, tun), so a
config cannot lock the container out of its own /dev/null.

Under cgroup v2 device access is an eBPF program attached to the cgroup;
that is not built yet, so non-empty rules on a v2-only host are refused.
"""

from __future__ import annotations

import os

from ocirun.errors import CgroupError, NotSupportedError

# (type, major, minor, access); None is the wildcard *.
DEFAULT_ALLOW: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),
    ("c", 10, 200, "rwm"),
)


def rule_line(dtype: str, major: int | None, minor: int | None, access: str) -> str:
    """``c 1:3 rwm``; type ``a`` stands for every device."""
    if dtype == "a":
        return "a"
    maj = "*" if major is None else str(major)
    mnr = "*" if minor is None else str(minor)
    return f"{dtype} {maj}:{mnr} {access or 'rwm'}"


def v1_lines(rules: list[dict[str, object]]) -> list[tuple[str, str]]:
    """(file, line) writes for a fresh v1 devices cgroup, in order."""
    out = [("devices.deny", "a")]
    for r in rules:
        line = rule_line(str(r.get("type") or "a"), r.get("major"), r.get("minor"),  # type: ignore[arg-type]
                         str(r.get("access") or "rwm"))
        out.append(("devices.allow" if r.get("allow") else "devices.deny", line))
    out += [("devices.allow", rule_line(*d)) for d in DEFAULT_ALLOW]
    return out


def apply_v1(directory: str, rules: list[dict[str, object]]) -> None:
    for name, line in v1_lines(rules):
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise CgroupError(f"write `{line}` to `{path}`: {e.strerror}", errno=e.errno) from e


def refuse_v2(rules: list[dict[str, object]]) -> None:
    if rules:
        raise NotSupportedError("linux.resources.devices: device rules on a cgroup v2 host need an "
                                "eBPF device filter, which is not supported yet")
