"""Device access rules (config-linux.md "Allowed Device List").

Under cgroup v1 the rules go to ``devices.deny``/``devices.allow`` of the
container's devices cgroup: first deny everything, then the config's rules
in order, then the defaults the container always needs (the same list runc
appends: mknod of anything, the default devices, ptys, /dev/ptmx, tun), so a
config cannot lock the container out of its own /dev/null.

Under cgroup v2 the same list becomes an eBPF program (``bpf.py``) loaded
with bpf(2) and attached to the container's cgroup as BPF_CGROUP_DEVICE.
A program already attached there (an earlier filter) is replaced: the new one
is attached first, then the old ones are detached, so there is no moment
without a filter.
"""

from __future__ import annotations

import errno
import posix as os  # os's calls without its Python layer (posixpaths.py): a lean create

from ocirun import posixpaths
from ocirun.cgroups import bpf
from ocirun.errors import CgroupError, oserror_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.syscalls.api import Syscalls

# (type, major, minor, access); None is the wildcard *.
DEFAULT_ALLOW: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    ("c", 1, 3, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 7, "rwm"), ("c", 1, 8, "rwm"),
    ("c", 1, 9, "rwm"), ("c", 5, 0, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"),
    ("c", 10, 200, "rwm"),
)
BPF_F_ALLOW_MULTI = 2  # syscalls.api.BPF_F_ALLOW_MULTI, without importing the seam here


def rule_line(dtype: str, major: int | None, minor: int | None, access: str) -> str:
    """``c 1:3 rwm``; type ``a`` stands for every device."""
    if dtype == "a":
        return "a"
    maj = "*" if major is None else str(major)
    mnr = "*" if minor is None else str(minor)
    return f"{dtype} {maj}:{mnr} {access or 'rwm'}"


def _access_text(bits: int) -> str:
    return "".join(ch for ch, b in (("r", 2), ("w", 4), ("m", 1)) if bits & b)


def parsed_rules(rules: list[dict[str, object]], field: str) -> list[
        tuple[bool, str, int | None, int | None, int]]:
    """The config's rules (checked, each error naming its index) then the defaults."""
    out = [bpf.parse_rule(r, f"{field}[{i}]") for i, r in enumerate(rules)]
    for dtype, major, minor, access in DEFAULT_ALLOW:
        bits = 0
        for ch in access:
            bits |= bpf.ACC[ch]
        out.append((True, dtype, major, minor, bits))
    return out


def v1_lines(rules: list[dict[str, object]],
             field: str = "linux.resources.devices") -> list[tuple[str, str]]:
    """(file, line) writes for a fresh v1 devices cgroup, in order."""
    out = [("devices.deny", "a")]
    for allow, dtype, major, minor, bits in parsed_rules(rules, field):
        out.append(("devices.allow" if allow else "devices.deny",
                    rule_line(dtype, major, minor, _access_text(bits))))
    return out


def apply_v1(directory: str, rules: list[dict[str, object]],
             field: str = "linux.resources.devices") -> None:
    for name, line in v1_lines(rules, field):
        path = posixpaths.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise CgroupError(f"{field}: write `{line}` to `{path}`: {oserror_text(e)}",
                              errno=e.errno) from e


def v2_program(rules: list[dict[str, object]], field: str = "linux.resources.devices") -> bytes:
    return bpf.program(parsed_rules(rules, field))


def apply_v2(directory: str, rules: list[dict[str, object]], sys: Syscalls,
             field: str = "linux.resources.devices") -> None:
    """Load the device filter and attach it to ``directory``, replacing older filters."""
    insns = v2_program(rules, field)
    try:
        prog = sys.bpf_prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, bpf.LICENSE)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.EACCES):
            raise CgroupError(f"{field}: load the eBPF device filter: {oserror_text(e)}",
                              errno=e.errno) from e
        try:  # again with the verifier's log, for the message
            prog = sys.bpf_prog_load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, insns, bpf.LICENSE, 1 << 16)
        except OSError as e2:
            raise CgroupError(f"{field}: the kernel refused the eBPF device filter "
                              f"({len(insns) // 8} instructions): {oserror_text(e2)}",
                              errno=e2.errno) from e2
    try:
        cg = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        _close(prog)
        raise CgroupError(f"{field}: open cgroup `{directory}`: {oserror_text(e)}",
                          errno=e.errno) from e
    try:
        _attach(sys, cg, prog, directory, field)
    finally:
        _close(cg)
        _close(prog)


def _attach(sys: Syscalls, cg: int, prog: int, directory: str, field: str) -> None:
    what = f"{field}: attach the eBPF device filter to `{directory}`"
    try:
        flags, old = sys.bpf_prog_query(cg, bpf.BPF_CGROUP_DEVICE)
    except OSError as e:
        raise CgroupError(f"{what}: query: {oserror_text(e)}", errno=e.errno) from e
    if old and not flags & BPF_F_ALLOW_MULTI:
        # A single program attached without ALLOW_MULTI: attaching with the
        # same flags replaces it in one step (kernel/bpf/cgroup.c).
        try:
            sys.bpf_prog_attach(cg, prog, bpf.BPF_CGROUP_DEVICE, flags)
        except OSError as e:
            raise CgroupError(f"{what}: {oserror_text(e)}", errno=e.errno) from e
        return
    try:
        sys.bpf_prog_attach(cg, prog, bpf.BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    except OSError as e:
        raise CgroupError(f"{what}: {oserror_text(e)}", errno=e.errno) from e
    for prog_id in old:
        try:
            fd = sys.bpf_prog_get_fd_by_id(prog_id)
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue  # detached meanwhile
            raise CgroupError(f"{what}: open the old filter {prog_id}: {oserror_text(e)}",
                              errno=e.errno) from e
        try:
            sys.bpf_prog_detach(cg, fd, bpf.BPF_CGROUP_DEVICE)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise CgroupError(f"{what}: detach the old filter {prog_id}: "
                                  f"{oserror_text(e)}", errno=e.errno) from e
        finally:
            _close(fd)


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
