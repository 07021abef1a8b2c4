"""What ``ocirun check`` says about each finding: the spec section, the level and a fix.

A finding is a JSON path and what is wrong there, found by the parser, the
schema, the meaning checks (checks.py), the plan, the host probes or the
table of runtime differences.  This module adds the explanation: the
runtime-spec v1.3.0 section the path falls under (as a link to the spec's
text), the requirement level (MUST, SHOULD, or portability: valid, but not
every runtime or host runs it the same way), and a fix a person can act on.

Pure data and string work: nothing here touches the host.  Used only by
``ocirun check`` (ops/check.py), never on create's path.
"""

from __future__ import annotations

SPEC_BASE = "https://github.com/opencontainers/runtime-spec/blob/v1.3.0/"

ERROR, WARNING, NOTE = "error", "warning", "note"
MUST, SHOULD, PORTABILITY = "MUST", "SHOULD", "portability"


class Finding:
    """One thing ``check`` found.  ``severity`` decides the verdict: any error means
    the bundle would not run here."""

    __slots__ = ("fix", "level", "message", "path", "section", "severity", "source")

    def __init__(self, path: str, message: str, *, severity: str, level: str, source: str,
                 fix: str = "", section: str = "") -> None:
        self.path = path
        self.message = message
        self.severity = severity
        self.level = level
        self.source = source
        self.section = section or section_for(path)
        self.fix = fix or "see the spec section"

    @property
    def link(self) -> str:
        return SPEC_BASE + self.section

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "severity": self.severity,
                "level": self.level, "section": self.section, "link": self.link, "fix": self.fix,
                "source": self.source}

    def __repr__(self) -> str:
        return f"Finding({self.severity} {self.path}: {self.message})"


# JSON path prefix -> section (file#heading anchor as GitHub renders it); the longest
# matching prefix wins.  tests/unit/test_check.py checks every anchor against the spec text.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("$", "config.md#configuration"),
    ("$.ociVersion", "config.md#specification-version"),
    ("$.root", "config.md#root"),
    ("$.mounts", "config.md#mounts"),
    ("$.process", "config.md#process"),
    ("$.process.rlimits", "config.md#posix-process"),
    ("$.process.user", "config.md#posix-platform-user"),
    ("$.process.capabilities", "config.md#linux-process"),
    ("$.process.apparmorProfile", "config.md#linux-process"),
    ("$.process.selinuxLabel", "config.md#linux-process"),
    ("$.process.noNewPrivileges", "config.md#linux-process"),
    ("$.process.oomScoreAdj", "config.md#linux-process"),
    ("$.process.scheduler", "config.md#linux-process"),
    ("$.process.ioPriority", "config.md#linux-process"),
    ("$.process.execCPUAffinity", "config.md#linux-process"),
    ("$.hostname", "config.md#hostname"),
    ("$.domainname", "config.md#domainname"),
    ("$.hooks", "config.md#posix-platform-hooks"),
    ("$.annotations", "config.md#annotations"),
    ("$.linux", "config-linux.md#linux-container-configuration"),
    ("$.linux.namespaces", "config-linux.md#namespaces"),
    ("$.linux.uidMappings", "config-linux.md#user-namespace-mappings"),
    ("$.linux.gidMappings", "config-linux.md#user-namespace-mappings"),
    ("$.linux.timeOffsets", "config-linux.md#offset-for-time-namespace"),
    ("$.linux.devices", "config-linux.md#devices"),
    ("$.linux.netDevices", "config-linux.md#network-devices"),
    ("$.linux.cgroupsPath", "config-linux.md#cgroups-path"),
    ("$.linux.resources", "config-linux.md#control-groups"),
    ("$.linux.resources.devices", "config-linux.md#allowed-device-list"),
    ("$.linux.resources.memory", "config-linux.md#memory"),
    ("$.linux.resources.cpu", "config-linux.md#cpu"),
    ("$.linux.resources.blockIO", "config-linux.md#block-io"),
    ("$.linux.resources.hugepageLimits", "config-linux.md#huge-page-limits"),
    ("$.linux.resources.network", "config-linux.md#network"),
    ("$.linux.resources.pids", "config-linux.md#pids"),
    ("$.linux.resources.rdma", "config-linux.md#rdma"),
    ("$.linux.resources.unified", "config-linux.md#unified"),
    ("$.linux.intelRdt", "config-linux.md#intelrdt"),
    ("$.linux.memoryPolicy", "config-linux.md#memory-policy"),
    ("$.linux.sysctl", "config-linux.md#sysctl"),
    ("$.linux.seccomp", "config-linux.md#seccomp"),
    ("$.linux.rootfsPropagation", "config-linux.md#rootfs-mount-propagation"),
    ("$.linux.maskedPaths", "config-linux.md#masked-paths"),
    ("$.linux.readonlyPaths", "config-linux.md#readonly-paths"),
    ("$.linux.mountLabel", "config-linux.md#mount-label"),
    ("$.linux.personality", "config-linux.md#personality"),
)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] in ".[")


def section_for(path: str) -> str:
    best = "config.md#configuration"
    best_len = 0
    for prefix, section in SECTIONS:
        if len(prefix) > best_len and _under(path, prefix):
            best, best_len = section, len(prefix)
    if _under(path, "$.mounts") and path.endswith(".options"):
        return "config.md#linux-mount-options"
    return best


# -- fixes for the meaning checks (checks.py), by check function and message ------------
# (check function, substring of "JSON path: message" or "", fix).  First match wins.
MEANING_FIXES: tuple[tuple[str, str, str], ...] = (
    ("check_oci_version", "newer", "set ociVersion to 1.3.0 or older, or use a runtime that knows it"),
    ("check_oci_version", "", 'set ociVersion to the spec version the config follows, e.g. "1.3.0"'),
    ("check_root", "", ("create the root filesystem directory, or point root.path at it "
                       "(a relative path is taken from the bundle directory)")),
    ("check_process", "$.process.args", "give process.args at least the program to run, e.g. [\"sh\"]"),
    ("check_process", "absolute", "make process.cwd an absolute path inside the container, e.g. \"/\""),
    ("check_process", "$.process.user", "add process.user with a numeric uid and gid, e.g. {\"uid\": 0, \"gid\": 0}"),
    ("check_process", "$.process.oomScoreAdj", "use a value from -1000 to 1000"),
    ("check_process", "ioPriority", "give ioPriority.priority from 0 (highest) to 7 (lowest)"),
    ("check_rdma", "hcaHandles", "give the device a limit: hcaHandles, hcaObjects or both"),
    ("check_rlimits", "not a Linux", "use a name from getrlimit(2), such as RLIMIT_NOFILE"),
    ("check_rlimits", "more than once", "keep one entry per limit type"),
    ("check_rlimits", "above", "make soft lower than or equal to hard"),
    ("check_capabilities", "", "correct the name (CAP_ and the name in capabilities(7)) or remove it"),
    ("check_mounts", "must not be empty", "give the absolute path in the container to mount on"),
    ("check_mounts", "relative", "make destination absolute (relative destinations are deprecated)"),
    ("check_mounts", "bind mount", "give the source to bind: a host path, or one relative to the bundle"),
    ("check_mounts", "missing mount source", ("create the source, or correct the path (a relative "
                                             "source is taken from the bundle directory)")),
    ("check_mounts", "together", "give both uidMappings and gidMappings, or neither"),
    ("check_mounts", "idmap", "add uidMappings and gidMappings to the mount, or a user namespace"),
    ("check_hooks", "", "give the hook program's absolute path on the host"),
    ("check_uts", "", ('add {"type": "uts"} to linux.namespaces, or remove the field: '
                      "without it the host's own name would change")),
    ("check_namespaces", "twice", "list each namespace type once"),
    ("check_namespaces", "absolute", "use an absolute namespace file such as /proc/PID/ns/net"),
    ("check_namespaces", "does not exist", ("point path at an existing namespace file (/proc/PID/ns/TYPE, "
                                           "or a bind mount of one), or drop path to get a new namespace")),
    ("check_id_mappings", "needs a", 'add {"type": "user"} to linux.namespaces, or remove the mappings'),
    ("check_id_mappings", "joined", "drop the mappings: a joined user namespace keeps its own"),
    ("check_id_mappings", "required", "give both uidMappings and gidMappings for a new user namespace"),
    ("check_id_mappings", "", "correct the mapping entries (containerID, hostID, size at least 1)"),
    ("check_time_offsets", "unknown clock", "use the clocks monotonic and boottime only"),
    ("check_time_offsets", "", 'add {"type": "time"} (without path) to linux.namespaces'),
    ("check_sysctl", "network", 'add {"type": "network"} to linux.namespaces, or remove the sysctl'),
    ("check_sysctl", "ipc", 'add {"type": "ipc"} to linux.namespaces, or remove the sysctl'),
    ("check_sysctl", "uts", 'add {"type": "uts"} to linux.namespaces, or remove the sysctl'),
    ("check_sysctl", "hostname", "set $.hostname instead"),
    ("check_sysctl", "", "remove it: only sysctls isolated by the container's namespaces may be set"),
    ("check_devices", "one of", "use type c (character), b (block), u (unbuffered) or p (FIFO)"),
    ("check_devices", "absolute", "give the device's absolute path in the container, e.g. /dev/fuse"),
    ("check_devices", "twice", "list each device once"),
    ("check_devices", "", "give major and minor numbers (ls -l /dev/NAME on the host shows them)"),
    ("check_path_lists", "", "make the path absolute"),
    ("check_rootfs_propagation", "", "use private, shared, slave or unbindable"),
    ("check_personality", "flags", "remove flags: the spec defines none"),
    ("check_personality", "", "use LINUX or LINUX32"),
)


def meaning_fix(check_name: str, message: str) -> str:
    for name, needle, fix in MEANING_FIXES:
        if name == check_name and needle in message:
            return fix
    return "correct the value as the section describes"


def schema_fix(validator: str, expected: object, instance: object) -> str:
    """A fix for one jsonschema error, from its validator keyword and value."""
    if validator == "required" and isinstance(expected, list):
        if isinstance(instance, dict):
            missing = [k for k in expected if k not in instance]
            if missing:
                return "add " + ", ".join(f'"{k}"' for k in missing)
        return "add the required fields"
    if validator == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return "make it " + " or ".join(f"a{'n' if str(k)[0] in 'aeiou' else ''} {k}" for k in kinds)
    if validator == "enum" and isinstance(expected, list):
        return "use one of: " + ", ".join(str(v) for v in expected)
    if validator == "pattern":
        return f"make it match the pattern {expected}"
    if validator in ("minimum", "exclusiveMinimum"):
        return f"use a value of at least {expected}"
    if validator in ("maximum", "exclusiveMaximum"):
        return f"use a value of at most {expected}"
    if validator == "minItems":
        return f"give at least {expected} entr{'y' if expected == 1 else 'ies'}"
    if validator == "minLength":
        return "give a non-empty value"
    if validator == "uniqueItems":
        return "remove the duplicate entries"
    if validator in ("oneOf", "anyOf"):
        return "use one of the forms the section describes"
    if validator == "additionalProperties":
        return "remove the fields the schema does not define here"
    return "correct the value as the section describes"


def parse_fix(message: str) -> str:
    if "UTF-8" in message:
        return "save config.json as UTF-8"
    if "byte order mark" in message:
        return "save config.json without a byte order mark"
    if "duplicate" in message:
        return "keep one of the duplicate keys"
    if "top level" in message:
        return "make config.json one JSON object: { ... }"
    if "nested" in message:
        return "flatten the document"
    return ("fix the JSON there (often a trailing comma, a missing comma or quote, "
            "or an unclosed brace); python3 -m json.tool config.json shows the place too")


# -- where runc, crun and ocirun behave differently on the same config -------------------
# Facts checked on this project's test VM with runc 1.1.5 and crun 1.8.1 (specs/cli.md).
# (JSON path, what to look for, the difference, the fix for a portable config)
# "what to look for": "present" (the path holds a value), or "VALUE=x" (the path holds x).
DIFFERENCES: tuple[tuple[str, str, str, str], ...] = (
    ("$.domainname", "present",
     "runc 1.1.5 ignores domainname (the container keeps \"(none)\"); ocirun sets it",
     "set it from a startContainer hook or the program itself if runc must give the same result"),
    ("$.linux.personality", "present",
     "runc 1.1.5 ignores personality (uname -m stays the host's); ocirun applies it",
     "run the program through setarch/linux32 if runc must give the same result"),
    ("$.linux.timeOffsets", "present",
     ("runc 1.1.5 refuses a time namespace (\"namespace time does not exist\"); ocirun applies "
     "timeOffsets"), "leave out the time namespace and timeOffsets for runc 1.1.5"),
    ("$.linux.namespaces[].type", "VALUE=time",
     "runc 1.1.5 refuses a time namespace (\"namespace time does not exist\"); ocirun makes one",
     "leave out the time namespace for runc 1.1.5"),
    ("$.linux.rootfsPropagation", "VALUE=unbindable",
     ("runc 1.1.5 fails with unbindable (it applies propagation before binding the rootfs: "
     "EINVAL); ocirun sets it on the container's / after pivot_root"),
     "use private for runc 1.1.5"),
    ("$.hooks.poststart", "present",
     ("runc 1.1.5 runs poststart hooks during create, before the program starts; ocirun runs them "
     "in start, after the program was executed (runtime.md \"Lifecycle\" step 8)"),
     "do not rely on poststart hooks running before the program"),
    ("$.hooks.startContainer", "present",
     ("a failing startContainer hook: runc 1.1.5 still reports success; ocirun stops and deletes "
     "the container and runs the poststop hooks (runtime.md \"Lifecycle\")"),
     "make the hook succeed, or fail on purpose only where ocirun's behaviour is wanted"),
    ("$.ociVersion", "VALUE>=1.2",
     ("crun 1.8.1 refuses ociVersion 1.2.0 and later (\"unknown version specified\"); runc 1.1.5 "
     "and ocirun accept it"),
     'write "ociVersion": "1.1.0" if crun 1.8.1 must run it and no newer field is used'),
)
