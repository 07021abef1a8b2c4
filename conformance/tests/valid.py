"""config.md#valid-values ("Runtimes MUST generate an error when invalid or
unsupported values are encountered") applied to the MUSTs that bind the
author of config.json: a config breaking one of them must make create fail
and leave nothing behind.  Each test first creates the valid counterpart
(positive control), so that a runtime refusing everything cannot pass.
"""
from __future__ import annotations

import copy
import os

from conformance.registry import Skip, check, conformance_test

V = "config.md#valid-values"


def _set(path: str, value):
    """Mutation setting the member at a dotted path (list indexes allowed)."""
    *parents, last = path.split(".")

    def mut(cfg):
        d = cfg
        for p in parents:
            d = d[int(p)] if isinstance(d, list) else d.setdefault(p, {})
        if isinstance(d, list):
            d[int(last)] = value
        else:
            d[last] = value
    return mut


def _both(*muts):
    def mut(cfg):
        for m in muts:
            m(cfg)
    return mut


@conformance_test("config-ociversion-invalid", "config.md#specification-version", "MUST",
                  "an ociVersion that is not SemVer 2.0.0 is refused")
def t_ociversion(ctx):
    ctx.expect_create_error(_set("ociVersion", "one"), "ociVersion 'one'",
                            control=_set("ociVersion", "1.0.2"), control_what="ociVersion 1.0.2")


@conformance_test("config-root-missing", "config.md#root", "MUST",
                  "a Linux config without root is refused (root is REQUIRED except on Windows)")
def t_root_missing(ctx):
    ctx.expect_create_error(lambda c: c.pop("root"), "a config without root", control=None)


@conformance_test("hook-path-relative", "config.md#posix-platform-hooks", "MUST",
                  "a hook whose path is not absolute is refused")
def t_hook_rel(ctx):
    ctx.expect_create_error(_set("hooks", {"createRuntime": [{"path": "bin/true"}]}), "hook path bin/true",
                            control=_set("hooks", {"createRuntime": [{"path": "/bin/true"}]}),
                            control_what="hook path /bin/true")


@conformance_test("annotations-value-not-string", "config.md#annotations", "MUST",
                  "an annotation value that is not a string is refused")
def t_ann_value(ctx):
    ctx.expect_create_error(_set("annotations", {"org.example.n": 1}), "annotation value 1 (a number)",
                            control=_set("annotations", {"org.example.n": "1"}), control_what='annotation "1"')


@conformance_test("annotations-empty-key", "config.md#annotations", "MUST",
                  "an annotation with an empty key is refused")
def t_ann_key(ctx):
    ctx.expect_create_error(_set("annotations", {"": "x"}), "annotation key ''",
                            control=_set("annotations", {"org.example.k": "x"}), control_what="annotation key")


@conformance_test("mount-mappings-unpaired", "config.md#posix-platform-mounts", "MUST",
                  "a mount with uidMappings but no gidMappings is refused")
def t_mount_maps(ctx):
    def bad(cfg):
        cfg["mounts"].append({"destination": "/mnt/m", "type": "none", "source": ctx.rootfs_cache,
                              "options": ["bind", "ro"],
                              "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]})
    ctx.expect_create_error(bad, "a mount with uidMappings only", control=None)


# REQUIRED fields (config.md, config-linux.md): one config per missing field.
_SLEEP = ["/bin/sleep", "30"]
_REQUIRED = {
    "root.path": lambda c: c["root"].pop("path"),
    "mounts[].destination": lambda c: c["mounts"][0].pop("destination"),
    "process.cwd": lambda c: c["process"].pop("cwd"),
    "process.user.uid": lambda c: c["process"]["user"].pop("uid"),
    "process.user.gid": lambda c: c["process"]["user"].pop("gid"),
    "process.rlimits[].type": lambda c: c["process"].update(rlimits=[{"soft": 1, "hard": 1}]),
    "process.rlimits[].soft": lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_CORE", "hard": 1}]),
    "hooks.*[].path": lambda c: c.update(hooks={"createRuntime": [{"args": ["true"]}]}),
    "process.consoleSize.height": lambda c: c["process"].update(consoleSize={"width": 80}),
    "linux.namespaces[].type": lambda c: c["linux"]["namespaces"].append({"path": "/proc/self/ns/ipc"}),
    "linux.devices[].type": lambda c: c["linux"].update(devices=[{"path": "/dev/x", "major": 1, "minor": 3}]),
    "linux.devices[].path": lambda c: c["linux"].update(devices=[{"type": "c", "major": 1, "minor": 3}]),
    "linux.devices[].major": lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "c", "minor": 3}]),
    "linux.resources.devices[].allow": lambda c: c["linux"]["resources"]["devices"].append({"access": "r"}),
    "linux.uidMappings[].size": lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                                           c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 100000}],
                                                             gidMappings=[{"containerID": 0, "hostID": 100000,
                                                                           "size": 65536}])),
    "linux.seccomp.defaultAction": lambda c: c["linux"].update(seccomp={"syscalls": []}),
    "linux.seccomp.syscalls[].action": lambda c: c["linux"].update(
        seccomp={"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpriority"]}]}),
    "linux.personality.domain": lambda c: c["linux"].update(personality={"flags": []}),
}


@conformance_test("config-required-fields", "config.md#configuration", "MUST",
                  "a config missing a REQUIRED field (one at a time) is refused")
def t_required(ctx):
    ctx.control(None, "base config")
    accepted = []
    for field, mut in _REQUIRED.items():
        c = ctx.container(mutate=mut, args=_SLEEP)
        if c.create().ok:
            accepted.append(field)
        c.destroy()
    check(not accepted, f"create accepted a config without the REQUIRED {', '.join(accepted)}")


@conformance_test("ns-path-relative", "config-linux.md#namespaces", "MUST",
                  "a namespace path that is not absolute is refused")
def t_ns_rel(ctx):
    def with_path(p):
        def mut(cfg):
            cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
            cfg["linux"]["namespaces"].append({"type": "network", "path": p})
            cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]
        return mut
    mine = f"/proc/{os.getpid()}/ns/net"  # the suite's own (the runtime's) network namespace
    ctx.expect_create_error(with_path(mine.lstrip("/")), f"namespace path {mine.lstrip('/')}",
                            control=with_path(mine), control_what=f"namespace path {mine}")


@conformance_test("masked-paths-relative", "config-linux.md#masked-paths", "MUST",
                  "a maskedPaths entry that is not absolute is refused")
def t_masked_rel(ctx):
    ctx.expect_create_error(_set("linux.maskedPaths", ["proc/kcore"]), "maskedPaths proc/kcore",
                            control=_set("linux.maskedPaths", ["/proc/kcore"]), control_what="maskedPaths /proc/kcore")


@conformance_test("readonly-paths-relative", "config-linux.md#readonly-paths", "MUST",
                  "a readonlyPaths entry that is not absolute is refused")
def t_ro_rel(ctx):
    ctx.expect_create_error(_set("linux.readonlyPaths", ["proc/sys"]), "readonlyPaths proc/sys",
                            control=_set("linux.readonlyPaths", ["/proc/sys"]), control_what="readonlyPaths /proc/sys")


@conformance_test("blkio-weight-device-empty", "config-linux.md#block-io", "MUST",
                  "a blockIO weightDevice entry with neither weight nor leafWeight is refused")
def t_weightdev(ctx):
    ctx.expect_create_error(_set("linux.resources.blockIO", {"weightDevice": [{"major": 7, "minor": 0}]}),
                            "a weightDevice entry with neither weight nor leafWeight", control=None)


@conformance_test("rdma-entry-empty", "config-linux.md#rdma", "MUST",
                  "an rdma entry with neither hcaHandles nor hcaObjects is refused")
def t_rdma(ctx):
    ctx.expect_create_error(_set("linux.resources.rdma", {"mlx5_1": {}}),
                            "an rdma entry with neither hcaHandles nor hcaObjects", control=None)


@conformance_test("cg-unified-unknown-controller", "config-linux.md#unified", "MUST",
                  "a unified key for a controller that does not exist is refused")
def t_unified_bad(ctx):
    ctx.expect_create_error(_both(_set("linux.cgroupsPath", ctx.cgroup_path()),
                                  _set("linux.resources.unified", {"nosuchcontroller.max": "1"})),
                            "unified key nosuchcontroller.max", control=None)


def _seccomp(**kw):
    sc = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]}
    sc.update(kw)
    return _set("linux.seccomp", copy.deepcopy(sc))


@conformance_test("seccomp-default-errnoret-invalid-action", "config-linux.md#seccomp", "MUST",
                  "defaultErrnoRet with a default action that takes no errno is an error")
def t_def_errnoret_bad(ctx):
    if os.uname().machine not in ("x86_64", "aarch64"):
        raise Skip(f"no seccomp check for {os.uname().machine}")
    ctx.expect_create_error(_seccomp(defaultErrnoRet=5), "defaultErrnoRet with SCMP_ACT_ALLOW",
                            control=_seccomp(), control_what="the same filter without defaultErrnoRet")


@conformance_test("seccomp-empty-names", "config-linux.md#seccomp", "MUST",
                  "a seccomp rule with an empty names list is refused")
def t_empty_names(ctx):
    if os.uname().machine not in ("x86_64", "aarch64"):
        raise Skip(f"no seccomp check for {os.uname().machine}")
    ctx.expect_create_error(_seccomp(syscalls=[{"names": [], "action": "SCMP_ACT_ERRNO"}]), "a rule with no names",
                            control=_seccomp(), control_what="a rule naming getpriority")
