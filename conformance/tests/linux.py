"""config-linux.md: namespaces, user-namespace mappings, time offsets,
devices and default devices, sysctl, rootfsPropagation, maskedPaths,
readonlyPaths, personality; config.md#hostname/#domainname;
runtime-linux.md#dev-symbolic-links."""
from __future__ import annotations

import os

from conformance.context import mount_of, parse_kv
from conformance.registry import Skip, check, check_eq, conformance_test

SLEEP = ["/bin/sleep", "30"]
NS_FILES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "user": "user",
            "cgroup": "cgroup", "time": "time"}


def set_ns(types):
    def mut(cfg):
        cfg["linux"]["namespaces"] = [{"type": t} for t in types]
    return mut


def _ns_of(pid, t):
    return os.readlink(f"/proc/{pid}/ns/{NS_FILES[t]}")


def _ns_test(t):
    @conformance_test(f"ns-{t}-new", "config-linux.md#namespaces", "MUST",
                      f"a {t} entry without path gives the container a new {t} namespace")
    def tn(ctx):
        if not os.path.exists(f"/proc/self/ns/{NS_FILES[t]}"):
            raise Skip(f"kernel has no {t} namespaces")
        types = ["pid", "mount", "ipc", "uts", "network"]
        extra = {"user": None, "cgroup": None, "time": None}
        mut = set_ns(types + ([t] if t in extra else []))

        def m2(cfg):
            mut(cfg)
            if t == "user":
                cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
                cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]
        c = ctx.created(m2, SLEEP)
        check(_ns_of(c.pid, t) != os.readlink(f"/proc/self/ns/{NS_FILES[t]}"), f"{t} namespace is the host's")
    return tn


for _t in NS_FILES:
    _ns_test(_t)


def _ns_inherit(t):
    @conformance_test(f"ns-{t}-inherited", "config-linux.md#namespaces", "MUST",
                      f"without a {t} entry the container shares the runtime's {t} namespace")
    def ti(ctx):
        types = [x for x in ("pid", "mount", "ipc", "uts", "network") if x != t]

        def mut(cfg):
            set_ns(types)(cfg)
            if t == "uts":
                cfg.pop("hostname", None)
            if t == "network":
                cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]
        c = ctx.created(mut, SLEEP)
        check_eq(_ns_of(c.pid, t), os.readlink(f"/proc/self/ns/{NS_FILES[t]}"), f"{t} namespace")
    return ti


for _t in ("network", "ipc", "uts"):
    _ns_inherit(_t)


@conformance_test("ns-join-path", "config-linux.md#namespaces", "MUST",
                  "a namespace with a path is joined (setns), not created")
def t_join(ctx):
    holder = ctx.created(args=SLEEP)
    path = f"/proc/{holder.pid}/ns/net"

    def mut(cfg):
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": path}]
        cfg.pop("hostname", None)
    c = ctx.created(mut, SLEEP)
    check_eq(_ns_of(c.pid, "network"), _ns_of(holder.pid, "network"), "network namespace")


@conformance_test("ns-join-wrong-type", "config-linux.md#namespaces", "MUST",
                  "a path that is not a namespace of the given type is an error")
def t_join_wrong(ctx):
    holder = ctx.created(args=SLEEP)
    path = f"/proc/{holder.pid}/ns/ipc"

    def mut(cfg):
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": path}]
        cfg.pop("hostname", None)
    def good(cfg):
        mut(cfg)
        cfg["linux"]["namespaces"][2]["path"] = f"/proc/{holder.pid}/ns/net"
    ctx.expect_create_error(mut, "a network namespace path pointing at an ipc namespace",
                            control=good, control_what="network namespace path to a network namespace")


@conformance_test("ns-join-not-destroyed", "runtime.md#delete", "MUST",
                  "delete does not destroy a namespace the container joined")
def t_join_keep(ctx):
    holder = ctx.created(args=SLEEP)
    path = f"/proc/{holder.pid}/ns/net"
    before = os.readlink(path)

    def mut(cfg):
        cfg["linux"]["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "network", "path": path}]
        cfg.pop("hostname", None)
    c, _ = ctx.run(mut, ["/bin/true"])
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    check_eq(os.readlink(path), before, "joined namespace")


@conformance_test("ns-duplicate-type", "config-linux.md#namespaces", "MUST",
                  "the same namespace type twice is an error")
def t_dup(ctx):
    ctx.expect_create_error(lambda c: c["linux"]["namespaces"].append({"type": "ipc"}), "ipc listed twice",
                            control=None)


@conformance_test("ns-unknown-type", "config.md#valid-values", "MUST", "an unknown namespace type is an error")
def t_unknown(ctx):
    ctx.expect_create_error(lambda c: c["linux"]["namespaces"].append({"type": "frobnicate"}),
                            "namespace type frobnicate", control=None)


@conformance_test("ns-pid-init-is-1", "config-linux.md#namespaces", "MUST",
                  "in a new pid namespace the container process is pid 1")
def t_pid1(ctx):
    check_eq(ctx.facts()["pid"], "1", "pid")


def _userns(cfg, host=100000):
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host + 1000, "size": 65536}]
    cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]


@conformance_test("userns-uid-map", "config-linux.md#user-namespace-mappings", "MUST",
                  "uidMappings and gidMappings are written to uid_map/gid_map")
def t_userns(ctx):
    c = ctx.created(_userns, SLEEP)
    with open(f"/proc/{c.pid}/uid_map") as f:
        um = f.read().split()
    with open(f"/proc/{c.pid}/gid_map") as f:
        gm = f.read().split()
    check_eq(um, ["0", "100000", "65536"], "uid_map")
    check_eq(gm, ["0", "101000", "65536"], "gid_map")


@conformance_test("userns-process-host-uid", "config-linux.md#user-namespace-mappings", "MUST",
                  "container uid 0 is the mapped host uid, seen from the host")
def t_userns_host(ctx):
    c = ctx.created(_userns, SLEEP)
    check(c.start().ok, "start failed")
    with open(f"/proc/{c.pid}/status") as f:
        uid = [ln.split()[1] for ln in f if ln.startswith("Uid:")][0]
    check_eq(uid, "100000", "host uid of the container process")


@conformance_test("time-offsets", "config-linux.md#offset-for-time-namespace", "MUST",
                  "timeOffsets shift CLOCK_MONOTONIC/BOOTTIME inside a new time namespace")
def t_timens(ctx):
    if not ctx.host.timens:
        raise Skip("kernel without time namespaces")

    def mut(cfg):
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 86400, "nanosecs": 0},
                                       "boottime": {"secs": 172800, "nanosecs": 0}}
    inside = ctx.facts(mut, ["/probe", "clocks"])
    with open("/proc/uptime") as f:
        up = float(f.read().split()[0])
    mono = int(inside["monotonic"])
    boot = int(inside["boottime"])
    check(abs(mono - (up + 86400)) < 120 or abs(mono - 86400 - time_mono()) < 60, f"monotonic {mono}")
    check(abs(boot - 172800 - time_boot()) < 60, f"boottime {boot}")


def time_mono() -> float:
    import time
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def time_boot() -> float:
    import time
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@conformance_test("hostname", "config.md#hostname", "MUST", "hostname is set in the container's UTS namespace")
def t_hostname(ctx):
    check_eq(ctx.facts(lambda c: c.update(hostname="conf-host"))["hostname"], "conf-host", "hostname")


@conformance_test("domainname", "config.md#domainname", "MUST",
                  "domainname is set in the container's UTS namespace")
def t_domainname(ctx):
    check_eq(ctx.facts(lambda c: c.update(domainname="conf.example"))["domainname"], "conf.example",
             "domainname")


@conformance_test("hostname-host-untouched", "config.md#hostname", "MUST",
                  "setting hostname in a new UTS namespace does not change the host's")
def t_hostname_host(ctx):
    before = os.uname().nodename
    ctx.facts(lambda c: c.update(hostname="conf-other"))
    check_eq(os.uname().nodename, before, "host hostname")


# -- devices -------------------------------------------------------------------
DEFAULT_DEVICES = {"/dev/null": (1, 3), "/dev/zero": (1, 5), "/dev/full": (1, 7), "/dev/random": (1, 8),
                   "/dev/urandom": (1, 9), "/dev/tty": (5, 0)}


def _stat(ctx, paths, mutate=None) -> dict[str, str]:
    script = "; ".join(f"stat -c '%n=%F:%t:%T:%a:%u:%g' {p} 2>/dev/null || echo '{p}=missing'" for p in paths)
    return parse_kv(ctx.sh(script, mutate))


def _default_dev(path, mm):
    @conformance_test(f"dev-default-{path.rsplit('/', 1)[1]}", "config-linux.md#default-devices", "MUST",
                      f"{path} is provided as char device {mm[0]}:{mm[1]}")
    def t(ctx):
        got = _stat(ctx, [path])[path]
        parts = got.split(":")
        check(parts[0] == "character special file" and (int(parts[1], 16), int(parts[2], 16)) == mm,
              f"{path}: {got}")
    return t


for _p, _mm in DEFAULT_DEVICES.items():
    _default_dev(_p, _mm)


@conformance_test("dev-default-usable", "config-linux.md#default-devices", "MUST",
                  "the default devices work (write to /dev/null, read /dev/zero and /dev/urandom)")
def t_dev_use(ctx):
    out = ctx.sh("echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c; head -c 4 /dev/urandom | wc -c")
    check(out.split() == ["null-ok", "4", "4"], f"output {out.split()}")


@conformance_test("dev-ptmx", "config-linux.md#default-devices", "MUST",
                  "/dev/ptmx is a bind mount of or symlink to /dev/pts/ptmx")
def t_ptmx(ctx):
    out = ctx.sh("readlink /dev/ptmx; stat -L -c '%t:%T:%d' /dev/ptmx /dev/pts/ptmx")
    lines = out.split()
    ok = (lines and lines[0] in ("pts/ptmx", "/dev/pts/ptmx")) or (len(lines) >= 2 and lines[-1] == lines[-2])
    check(ok, f"/dev/ptmx: {lines}")


@conformance_test("dev-ptmx-opens", "config-linux.md#default-devices", "MUST",
                  "/dev/ptmx can be opened to get a new pty")
def t_ptmx_open(ctx):
    out = ctx.run(args=["/probe", "open", "/dev/ptmx"])[1]
    check("errno=0" in out, f"open /dev/ptmx: {out.strip()}")


def _dev_cfg(dev, allow=True):
    def mut(cfg):
        cfg["linux"]["devices"] = [dev]
        if allow:
            cfg["linux"]["resources"]["devices"].append(
                {"allow": True, "type": dev["type"], "major": dev["major"], "minor": dev["minor"], "access": "rwm"})
    return mut


@conformance_test("dev-char", "config-linux.md#devices", "MUST",
                  "a listed character device exists with its type, major and minor")
def t_dev_char(ctx):
    got = _stat(ctx, ["/dev/conf-null"], _dev_cfg({"path": "/dev/conf-null", "type": "c", "major": 1,
                                                    "minor": 3, "fileMode": 0o666}))["/dev/conf-null"]
    check(got.startswith("character special file:1:3:"), f"/dev/conf-null: {got}")


@conformance_test("dev-filemode-uid-gid", "config-linux.md#devices", "MUST",
                  "fileMode, uid and gid of a listed device are applied")
def t_dev_mode(ctx):
    got = _stat(ctx, ["/dev/conf-zero"], _dev_cfg({"path": "/dev/conf-zero", "type": "c", "major": 1, "minor": 5,
                                                    "fileMode": 0o640, "uid": 12, "gid": 34}))["/dev/conf-zero"]
    check(got.endswith(":640:12:34"), f"/dev/conf-zero: {got}")


@conformance_test("dev-block", "config-linux.md#devices", "MUST", "a listed block device exists")
def t_dev_block(ctx):
    got = _stat(ctx, ["/dev/conf-loop"], _dev_cfg({"path": "/dev/conf-loop", "type": "b", "major": 7,
                                                    "minor": 200, "fileMode": 0o600}))["/dev/conf-loop"]
    check(got.startswith("block special file:7:c8:"), f"/dev/conf-loop: {got}")


@conformance_test("dev-fifo", "config-linux.md#devices", "MUST", "a listed fifo (type p) exists")
def t_dev_fifo(ctx):
    def mut(cfg):
        cfg["linux"]["devices"] = [{"path": "/dev/conf-fifo", "type": "p", "fileMode": 0o600}]
    got = _stat(ctx, ["/dev/conf-fifo"], mut)["/dev/conf-fifo"]
    check(got.startswith("fifo"), f"/dev/conf-fifo: {got}")


@conformance_test("dev-outside-dev", "config-linux.md#devices", "MUST",
                  "a device path may lie outside /dev")
def t_dev_outside(ctx):
    got = _stat(ctx, ["/mnt/conf-null"], _dev_cfg({"path": "/mnt/conf-null", "type": "c", "major": 1, "minor": 3,
                                                    "fileMode": 0o666}))["/mnt/conf-null"]
    check(got.startswith("character special file:1:3:"), f"/mnt/conf-null: {got}")


@conformance_test("dev-usable", "config-linux.md#devices", "MUST",
                  "a listed device with an allow rule can be used")
def t_dev_usable(ctx):
    # fuse (c 10:229) is not one of the default devices a runtime allows anyway,
    # so only the listed allow rule lets the container open it
    if not os.path.exists("/sys/class/misc/fuse"):
        raise Skip("this kernel has no fuse device (c 10:229)")
    out = ctx.run(_dev_cfg({"path": "/dev/conf-fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666}),
                  ["/probe", "open", "/dev/conf-fuse"])[1]
    check("errno=0" in out.split(), f"opening the allowed device: {out.strip()}")


@conformance_test("dev-cgroup-deny", "config-linux.md#allowed-device-list", "MUST",
                  "a device not allowed by resources.devices cannot be opened")
def t_dev_deny(ctx):
    out = ctx.run(_dev_cfg({"path": "/dev/conf-mem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o600},
                           allow=False), ["/probe", "open", "/dev/conf-mem"])[1]
    check("errno=1" in out.split(), f"opening a denied device: {out.strip()}")


@conformance_test("dev-cgroup-rule-order", "config-linux.md#allowed-device-list", "MUST",
                  "device rules apply in order: a later deny overrides an earlier allow")
def t_dev_order(ctx):
    def mut(cfg):
        # c 1:11 (kmsg) is not a default device, so no implicit rule interferes
        _dev_cfg({"path": "/dev/conf-kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o666})(cfg)
        cfg["linux"]["resources"]["devices"].append({"allow": False, "type": "c", "major": 1, "minor": 11,
                                                     "access": "r"})
    out = ctx.run(mut, ["/probe", "open", "/dev/conf-kmsg"])[1]
    check("errno=1" in out.split(), f"open after a later deny rule: {out.strip()}")


@conformance_test("dev-mknod-denied", "config-linux.md#allowed-device-list", "SHOULD",
                  "with a deny-all rule the container cannot mknod arbitrary devices")
def t_mknod(ctx):
    # c 10:229 (fuse) is not a default device.  Either mknod is refused, or
    # the node is created but the device cgroup refuses to open it (EPERM).
    # in /dev (the config's own tmpfs): the rootfs may sit on a nodev mount, which
    # would refuse the open (EACCES) before the device rules are asked
    out = ctx.sh("/probe mknod /dev/conf-n 10 229 && /probe open /dev/conf-n")
    errs = [ln for ln in out.split() if ln.startswith("errno=")]
    check(errs and errs[-1] == "errno=1", f"an unlisted device node got past the device rules: {out.split()}")


@conformance_test("dev-existing-mismatch", "config-linux.md#devices", "MUST",
                  "a device path already holding a different file is an error")
def t_dev_mismatch(ctx):
    ctx.control(_dev_cfg({"path": "/etc/devok", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}),
                "device at a free path")
    b = ctx.bundle()
    with open(os.path.join(b.rootfs, "etc", "devclash"), "w") as f:
        f.write("plain file")
    b.config["linux"]["devices"] = [{"path": "/etc/devclash", "type": "c", "major": 1, "minor": 3,
                                     "fileMode": 0o666}]
    c = ctx.container(bundle=b)
    r = c.create()
    check(not r.ok, "create accepted a device path that already holds a regular file")


@conformance_test("dev-symlinks", "runtime-linux.md#dev-symbolic-links", "MUST",
                  "/dev/fd, /dev/stdin, /dev/stdout and /dev/stderr symlinks exist")
def t_devlinks(ctx):
    out = ctx.sh("for l in fd stdin stdout stderr; do echo $l=$(readlink /dev/$l); done")
    kv = parse_kv(out)
    check_eq(kv, {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
                  "stderr": "/proc/self/fd/2"}, "/dev symlinks")


@conformance_test("dev-symlinks-after-mounts", "runtime-linux.md#dev-symbolic-links", "MUST",
                  "the /dev symlinks are made after mounts, so they exist on a tmpfs /dev")
def t_devlinks_tmpfs(ctx):
    out = ctx.sh("grep ' /dev ' /proc/self/mountinfo | head -n1; readlink /dev/fd")
    check("tmpfs" in out and "/proc/self/fd" in out, f"output {out.strip()!r}")


# -- sysctl, propagation, masked/readonly paths, personality -------------------------
@conformance_test("sysctl", "config-linux.md#sysctl", "MUST", "sysctl values are set in the container")
def t_sysctl(ctx):
    out = ctx.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/msgmax",
                 lambda c: c["linux"].update(sysctl={"net.ipv4.ip_forward": "1", "kernel.msgmax": "12345"}))
    check_eq(out.split(), ["1", "12345"], "sysctl values")


@conformance_test("sysctl-host-untouched", "config-linux.md#sysctl", "MUST",
                  "a namespaced sysctl does not change the host's value")
def t_sysctl_host(ctx):
    with open("/proc/sys/kernel/msgmax") as f:
        before = f.read()
    ctx.sh("true", lambda c: c["linux"].update(sysctl={"kernel.msgmax": "23456"}))
    with open("/proc/sys/kernel/msgmax") as f:
        check_eq(f.read(), before, "host kernel.msgmax")


@conformance_test("sysctl-invalid", "config-linux.md#sysctl", "MUST", "an unknown sysctl key is an error")
def t_sysctl_bad(ctx):
    ctx.expect_create_error(lambda c: c["linux"].update(sysctl={"kernel.no_such_key_conf": "1"}),
                            "an unknown sysctl",
                            control=lambda c: c["linux"].update(sysctl={"kernel.msgmax": "12345"}),
                            control_what="sysctl kernel.msgmax")


def _prop(value, marker):
    # The sentence ("sets the rootfs's mount propagation") carries no RFC 2119
    # keyword; graded SHOULD.
    @conformance_test(f"rootfs-propagation-{value}", "config-linux.md#rootfs-mount-propagation", "SHOULD",
                      f"rootfsPropagation={value} is applied to the rootfs mount")
    def t(ctx):
        b = ctx.bundle(lambda c: c["linux"].update(rootfsPropagation=value),
                       ["/bin/sh", "-c", "awk '$5 == \"/\"' /proc/self/mountinfo"])
        if value in ("slave", "private"):
            # The bundle sits on a shared mount of the host: a slave rootfs
            # then has a master to show, and "private" must really cut the
            # peer link a runtime's default (often rslave) would keep.
            mp, opt = mount_of(b.path)
            if not any(x.startswith("shared:") for x in opt):
                ctx.shared_mount(b.path)
        # field 5 is the mount point; field 4 (the mount's root) is the rootfs
        # directory for a bind-mounted rootfs, so grep ' / / ' would miss it
        out = ctx.run(bundle=b)[1]
        lines = [ln for ln in out.splitlines() if " - " in ln]
        check(lines, f"no / mount in the container's mountinfo (output {out.strip()[:120]!r})")
        opt = lines[-1].split(" - ")[0].split()[6:]
        check(marker(opt), f"/ optional fields {opt}")
    return t


_prop("private", lambda o: not any(x.startswith(("shared:", "master:")) for x in o))
_prop("shared", lambda o: any(x.startswith("shared:") for x in o))
_prop("slave", lambda o: any(x.startswith("master:") for x in o))
_prop("unbindable", lambda o: "unbindable" in o)


@conformance_test("rootfs-propagation-invalid", "config-linux.md#rootfs-mount-propagation", "MUST",
                  "an invalid rootfsPropagation value is an error")
def t_prop_bad(ctx):
    ctx.expect_create_error(lambda c: c["linux"].update(rootfsPropagation="sideways"), "rootfsPropagation=sideways",
                            control=lambda c: c["linux"].update(rootfsPropagation="private"),
                            control_what="rootfsPropagation=private")


@conformance_test("masked-paths-file", "config-linux.md#masked-paths", "MUST",
                  "a masked file cannot be read")
def t_masked_file(ctx):
    out = ctx.sh("cat /proc/kcore 2>/dev/null | head -c 10 | wc -c; cat /etc/passwd | wc -c",
                 lambda c: c["linux"].update(maskedPaths=["/proc/kcore", "/etc/passwd"]))
    check_eq(out.split(), ["0", "0"], "bytes readable from masked files")


@conformance_test("masked-paths-dir", "config-linux.md#masked-paths", "MUST",
                  "a masked directory appears empty")
def t_masked_dir(ctx):
    out = ctx.sh("ls /proc/sys | wc -l", lambda c: c["linux"].update(maskedPaths=["/proc/sys"]))
    check_eq(out.strip(), "0", "entries in masked /proc/sys")


@conformance_test("masked-paths-missing", "config-linux.md#masked-paths", "SHOULD",
                  "a masked path that does not exist is ignored")
def t_masked_missing(ctx):
    out = ctx.sh("echo ran", lambda c: c["linux"].update(maskedPaths=["/no/such/path"]))
    check("ran" in out, f"output {out!r}")


@conformance_test("readonly-paths", "config-linux.md#readonly-paths", "MUST",
                  "a readonly path cannot be written")
def t_ro_paths(ctx):
    out = ctx.sh("echo 1 > /proc/sys/kernel/msgmax 2>/dev/null && echo WROTE || echo DENIED; "
                 "touch /tmp/x 2>/dev/null && echo WROTE || echo DENIED",
                 lambda c: c["linux"].update(readonlyPaths=["/proc/sys", "/tmp"]))
    check_eq(out.split(), ["DENIED", "DENIED"], "writes to read-only paths")


@conformance_test("readonly-paths-readable", "config-linux.md#readonly-paths", "MUST",
                  "a readonly path can still be read")
def t_ro_read(ctx):
    out = ctx.sh("cat /etc/group | head -n1", lambda c: c["linux"].update(readonlyPaths=["/etc"]))
    check("root:" in out, f"output {out!r}")


@conformance_test("personality-linux32", "config-linux.md#personality", "MUST",
                  "personality LINUX32 makes uname report a 32-bit machine")
def t_pers32(ctx):
    if ctx.host.arch not in ("x86_64", "aarch64"):
        raise Skip(f"no 32-bit personality check for {ctx.host.arch}")
    f = ctx.facts(lambda c: c["linux"].update(personality={"domain": "LINUX32"}))
    check(f["machine"] in ("i686", "i386", "armv8l", "armv7l"), f"uname machine {f['machine']}")
    check_eq(f["personality"], "0x8", "personality()")


@conformance_test("personality-linux", "config-linux.md#personality", "MUST",
                  "personality LINUX keeps the native personality")
def t_pers(ctx):
    f = ctx.facts(lambda c: c["linux"].update(personality={"domain": "LINUX"}))
    check_eq((f["personality"], f["machine"]), ("0x0", os.uname().machine), "personality/machine")


@conformance_test("personality-invalid", "config-linux.md#personality", "MUST",
                  "an unknown personality domain is an error")
def t_pers_bad(ctx):
    ctx.expect_create_error(lambda c: c["linux"].update(personality={"domain": "LINUX128"}),
                            "personality domain LINUX128",
                            control=lambda c: c["linux"].update(personality={"domain": "LINUX"}),
                            control_what="personality domain LINUX")
