"""config.md#root, config.md#mounts, config.md#linux-mount-options,
config-linux.md#default-filesystems: the root filesystem and mounts."""
from __future__ import annotations

import os

from conformance.registry import check, check_eq, conformance_test


def mountinfo(out: str) -> dict[str, dict]:
    """Parse /proc/self/mountinfo text into {mountpoint: info} (last mount wins)."""
    res: dict[str, dict] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 10 or "-" not in parts:
            continue
        sep = parts.index("-")
        res[parts[4]] = {"opts": set(parts[5].split(",")), "optional": parts[6:sep], "fstype": parts[sep + 1],
                         "source": parts[sep + 2], "super": set(parts[sep + 3].split(","))}
    return res


def add_mount(m: dict):
    def mut(cfg):
        cfg["mounts"].append(m)
    return mut


def _mi(ctx, mutate=None) -> dict[str, dict]:
    return mountinfo(ctx.sh("cat /proc/self/mountinfo", mutate))


@conformance_test("root-path-relative", "config.md#root", "MUST",
                  "root.path relative to the bundle is the container's /")
def t_root_rel(ctx):
    b = ctx.bundle(args=["/bin/cat", "/marker"])
    with open(os.path.join(b.rootfs, "marker"), "w") as f:
        f.write("rel-root\n")
    _, out = ctx.run(bundle=b)
    check("rel-root" in out, f"output {out!r}")


@conformance_test("root-path-absolute", "config.md#root", "MUST", "an absolute root.path is used")
def t_root_abs(ctx):
    b = ctx.bundle(args=["/bin/cat", "/marker"])
    with open(os.path.join(b.rootfs, "marker"), "w") as f:
        f.write("abs-root\n")
    b.config["root"]["path"] = b.rootfs
    _, out = ctx.run(bundle=b)
    check("abs-root" in out, f"output {out!r}")


@conformance_test("root-path-missing", "config.md#root", "MUST",
                  "a root.path that does not exist is an error")
def t_root_missing(ctx):
    ctx.expect_create_error(lambda c: c["root"].update(path="no-such-rootfs"), "a missing root.path", control=None)


@conformance_test("root-readonly", "config.md#root", "MUST",
                  "root.readonly=true makes the root filesystem read-only")
def t_root_ro(ctx):
    out = ctx.sh("touch /rofile 2>/dev/null && echo WROTE || echo DENIED",
                 lambda c: c["root"].update(readonly=True))
    check("DENIED" in out, f"write to / {out.strip()}")


@conformance_test("root-readwrite", "config.md#root", "MUST",
                  "root.readonly=false leaves the root filesystem writable")
def t_root_rw(ctx):
    out = ctx.sh("touch /rwfile && echo WROTE || echo DENIED", lambda c: c["root"].update(readonly=False))
    check("WROTE" in out, f"write to / {out.strip()}")


@conformance_test("root-is-slash", "config.md#root", "MUST",
                  "the program sees the rootfs as / (host files are not visible)")
def t_root_slash(ctx):
    out = ctx.sh("ls /")
    check("probe" in out.split() and "usr" not in out.split(), f"ls / = {out.split()}")


@conformance_test("mount-tmpfs", "config.md#mounts", "MUST", "a tmpfs mount is mounted at its destination")
def t_tmpfs(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs"}))
    check(mi.get("/mnt/t", {}).get("fstype") == "tmpfs", f"/mnt/t: {mi.get('/mnt/t')}")


@conformance_test("mount-destination-created", "config.md#mounts", "SHOULD",
                  "a missing mount point in the rootfs is created")
def t_mkdir_dest(ctx):
    mi = _mi(ctx, add_mount({"destination": "/new/deep/dir", "type": "tmpfs", "source": "tmpfs"}))
    check("/new/deep/dir" in mi, "the mount point was not created/mounted")


@conformance_test("mount-bind-dir", "config.md#mounts", "MUST",
                  "a bind mount shows the host directory's content")
def t_bind(ctx):
    b = ctx.bundle(args=["/bin/cat", "/mnt/b/f"])
    os.makedirs(b.file("src"))
    with open(b.file("src/f"), "w") as f:
        f.write("bound-content\n")
    b.config["mounts"].append({"destination": "/mnt/b", "type": "none", "source": b.file("src"),
                               "options": ["bind"]})
    _, out = ctx.run(bundle=b)
    check("bound-content" in out, f"output {out!r}")


@conformance_test("mount-bind-file", "config.md#mounts", "MUST", "a file can be bind-mounted onto a file")
def t_bind_file(ctx):
    b = ctx.bundle(args=["/bin/cat", "/etc/bound"])
    with open(b.file("hostfile"), "w") as f:
        f.write("file-content\n")
    b.config["mounts"].append({"destination": "/etc/bound", "type": "none", "source": b.file("hostfile"),
                               "options": ["bind"]})
    _, out = ctx.run(bundle=b)
    check("file-content" in out, f"output {out!r}")


@conformance_test("mount-bind-source-relative", "config.md#mounts", "MUST",
                  "a relative bind source is relative to the bundle")
def t_bind_rel(ctx):
    b = ctx.bundle(args=["/bin/cat", "/mnt/r/f"])
    os.makedirs(b.file("relsrc"))
    with open(b.file("relsrc/f"), "w") as f:
        f.write("relative-source\n")
    b.config["mounts"].append({"destination": "/mnt/r", "type": "none", "source": "relsrc",
                               "options": ["bind"]})
    _, out = ctx.run(bundle=b)
    check("relative-source" in out, f"output {out!r}")


@conformance_test("mount-bind-ro", "config.md#linux-mount-options", "MUST",
                  "bind + ro gives a read-only bind mount")
def t_bind_ro(ctx):
    b = ctx.bundle(args=["/bin/sh", "-c", "touch /mnt/ro/x 2>/dev/null && echo WROTE || echo DENIED"])
    os.makedirs(b.file("rosrc"))
    b.config["mounts"].append({"destination": "/mnt/ro", "type": "none", "source": b.file("rosrc"),
                               "options": ["bind", "ro"]})
    _, out = ctx.run(bundle=b)
    check("DENIED" in out and not os.path.exists(b.file("rosrc/x")), f"write: {out.strip()}")


@conformance_test("mount-rbind-submounts", "config.md#linux-mount-options", "MUST",
                  "rbind brings the source's submounts along")
def t_rbind(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/hostdev", "type": "none", "source": "/dev",
                             "options": ["rbind"]}))
    check(any(p.startswith("/mnt/hostdev/") for p in mi), "no submount of /dev under /mnt/hostdev")


@conformance_test("mount-bind-not-recursive", "config.md#linux-mount-options", "MUST",
                  "bind (not rbind) does not bring submounts")
def t_bind_nonrec(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/hostdev", "type": "none", "source": "/dev",
                             "options": ["bind"]}))
    check("/mnt/hostdev" in mi, "bind mount missing")
    check(not any(p.startswith("/mnt/hostdev/") for p in mi), "submounts came along with a plain bind")


def _opt_test(tid, option, flag, present=True):
    @conformance_test(tid, "config.md#linux-mount-options", "MUST",
                      f"mount option {option} {'sets' if present else 'clears'} {flag} on the mount")
    def t(ctx):
        mi = _mi(ctx, add_mount({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                                 "options": [option]}))
        m = mi.get("/mnt/o")
        check(m is not None and m["fstype"] == "tmpfs", f"no tmpfs at /mnt/o: {m}")
        opts = m["opts"] | m["super"]  # sync shows as a superblock flag
        check((flag in opts) == present, f"/mnt/o options {sorted(opts)}")
    return t


_opt_test("mount-opt-ro", "ro", "ro")
_opt_test("mount-opt-nosuid", "nosuid", "nosuid")
_opt_test("mount-opt-nodev", "nodev", "nodev")
_opt_test("mount-opt-noexec", "noexec", "noexec")
_opt_test("mount-opt-noatime", "noatime", "noatime")
_opt_test("mount-opt-relatime", "relatime", "relatime")
# strictatime clears the kernel's default relatime (and noatime)
_opt_test("mount-opt-strictatime", "strictatime", "relatime", present=False)
_opt_test("mount-opt-nodiratime", "nodiratime", "nodiratime")
_opt_test("mount-opt-sync", "sync", "sync")


_opt_test("mount-opt-dirsync", "dirsync", "dirsync")
_opt_test("mount-opt-lazytime", "lazytime", "lazytime")

# The options that clear a flag (dev clears nodev ...) are what mount(2) does
# when the flag is not passed, so alone they are only observable as "accepted,
# not handed to the filesystem as data, flag not set".  Whether a clearing
# option cancels a setting one earlier in the same list is not specified
# (the spec orders mount entries, not the options of one entry), so no test
# pairs them.
CLEARING = {"async": "sync", "atime": "noatime", "dev": "nodev", "diratime": "nodiratime", "exec": "noexec",
            "suid": "nosuid", "norelatime": None, "nostrictatime": None, "nolazytime": "lazytime"}


@conformance_test("mount-opt-clearing", "config.md#linux-mount-options", "MUST",
                  "async, atime, dev, diratime, exec, suid, norelatime, nostrictatime and nolazytime are "
                  "understood: the mount is made and none of the flags they clear is set")
def t_clearing(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                             "options": list(CLEARING)}))
    m = mi.get("/mnt/o")
    check(m is not None and m["fstype"] == "tmpfs", f"no tmpfs at /mnt/o: {m}")
    opts = m["opts"] | m["super"]
    bad = sorted(opts & ({f for f in CLEARING.values() if f} | set(CLEARING)))
    check(not bad, f"/mnt/o options {sorted(opts)}: {bad} should not be there")


@conformance_test("mount-opt-defaults", "config.md#linux-mount-options", "MUST",
                  "defaults gives a writable mount with suid, dev and exec")
def t_defaults_opt(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs", "options": ["defaults"]}))
    m = mi.get("/mnt/o")
    check(m is not None and m["fstype"] == "tmpfs", f"no tmpfs at /mnt/o: {m}")
    bad = m["opts"] & {"ro", "nosuid", "nodev", "noexec"}
    check(not bad, f"/mnt/o options {sorted(m['opts'])}")


@conformance_test("mount-opt-accepted", "config.md#linux-mount-options", "MUST",
                  "iversion, noiversion, silent and loud are accepted (their effect is not visible on tmpfs)")
def t_accepted(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                             "options": ["iversion", "noiversion", "silent", "loud"]}))
    m = mi.get("/mnt/o")
    check(m is not None and m["fstype"] == "tmpfs", f"no tmpfs at /mnt/o: {m}")
    leaked = m["super"] & {"iversion", "noiversion", "silent", "loud"}
    check(not leaked, f"flag names passed to the filesystem as data: {sorted(leaked)}")


@conformance_test("mount-opt-remount", "config.md#linux-mount-options", "MUST",
                  "a second entry with remount,ro changes the existing mount to read-only")
def t_remount(ctx):
    def mut(cfg):
        cfg["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs"})
        cfg["mounts"].append({"destination": "/mnt/o", "type": "tmpfs", "source": "tmpfs",
                              "options": ["remount", "ro"]})
    out = ctx.sh("grep -c ' /mnt/o ' /proc/self/mountinfo; touch /mnt/o/x 2>/dev/null && echo WROTE || echo DENIED",
                 mut)
    check_eq(out.split(), ["1", "DENIED"], "mounts at /mnt/o, write")


def _tree(ctx, shared):
    """A host directory of the test with a tmpfs mounted below it, itself a
    shared mount (``shared``) or part of the private mount holding the bundle:
    the source for the (r)propagation tests."""
    b = ctx.bundle(args=["/bin/cat", "/proc/self/mountinfo"])
    src = b.file("tree")
    os.makedirs(src)
    if shared:
        ctx.shared_mount(src)
    elif _shared(b.path):
        ctx.shared_mount(src, "private")
    os.makedirs(os.path.join(src, "sub"))
    ctx.host_mount(["-t", "tmpfs", "conf-sub"], os.path.join(src, "sub"))
    return b, src


def _shared(path):
    with open("/proc/self/mountinfo") as f:
        best = max((ln.split() for ln in f if path.startswith(ln.split()[4].rstrip("/") + "/")
                    or path == ln.split()[4]), key=lambda p: len(p[4]))
    return any(x.startswith("shared:") for x in best[6:best.index("-")])


def _rprop_test(option, want, root, recursive=True):
    """The source and ``root`` (the rootfsPropagation) are chosen so that the
    bind's propagation without the option differs from ``want`` whatever the
    runtime's own defaults: for rshared a private source (its copy cannot be a
    peer of anything), for the others a shared source with a shared rootfs
    propagation (the copy stays in the host's peer group)."""
    @conformance_test(f"mount-propagation-{option}", "config.md#linux-mount-options", "MUST",
                      f"the {option} option gives the bind{' and its submounts' if recursive else ''} "
                      f"{want} propagation")
    def t(ctx):
        b, src = _tree(ctx, shared=want != "shared")
        b.config["linux"]["rootfsPropagation"] = root
        b.config["mounts"].append({"destination": "/mnt/r", "type": "none", "source": src,
                                   "options": ["rbind", option]})
        mi = mountinfo(ctx.run(bundle=b)[1])
        points = ["/mnt/r", "/mnt/r/sub"] if recursive else ["/mnt/r"]
        for p in points:
            m = mi.get(p)
            check(m is not None, f"no mount at {p}")
            opt = m["optional"]
            if want == "private":
                ok = not any(x.startswith(("shared:", "master:")) for x in opt)
            elif want == "shared":
                ok = any(x.startswith("shared:") for x in opt)
            elif want == "slave":
                ok = any(x.startswith("master:") for x in opt)
            else:
                ok = "unbindable" in opt
            check(ok, f"{p} is not {want}: optional fields {opt}")
    return t


_rprop_test("rprivate", "private", "shared")
_rprop_test("rshared", "shared", "private")
_rprop_test("rslave", "slave", "shared")
_rprop_test("runbindable", "unbindable", "shared")
_rprop_test("slave", "slave", "shared", recursive=False)


@conformance_test("mount-opt-data", "config.md#linux-mount-options", "SHOULD",
                  "unrecognised options are passed as filesystem data (tmpfs size=, mode=)")
def t_data(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/d", "type": "tmpfs", "source": "tmpfs",
                             "options": ["size=1m", "mode=710"]}))
    sup = mi.get("/mnt/d", {}).get("super", set())
    check("size=1024k" in sup and "mode=710" in sup, f"superblock options {sorted(sup)}")


@conformance_test("mount-opt-rw-default", "config.md#linux-mount-options", "MUST",
                  "rw (and no options) gives a writable mount")
def t_rw(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/w", "type": "tmpfs", "source": "tmpfs",
                             "options": ["rw"]}))
    check("rw" in mi.get("/mnt/w", {}).get("opts", set()), f"/mnt/w {mi.get('/mnt/w')}")


@conformance_test("mount-order", "config.md#mounts", "MUST",
                  "mounts are done in the order listed (a later mount covers an earlier one)")
def t_order(ctx):
    def mut(cfg):
        cfg["mounts"].append({"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=1m"]})
        cfg["mounts"].append({"destination": "/mnt/a/b", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=2m"]})
        cfg["mounts"].append({"destination": "/mnt/a", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=3m"]})
    out = ctx.sh("ls /mnt/a; grep ' /mnt/a ' /proc/self/mountinfo | tail -n 1", mut)
    check("size=3072k" in out and "b" not in out.split()[:1], f"top of /mnt/a: {out.strip()!r}")


@conformance_test("mount-dest-through-symlink", "config.md#mounts", "MUST",
                  "a destination through a symlink in the rootfs stays inside the rootfs")
def t_symlink(ctx):
    b = ctx.bundle(args=["/bin/sh", "-c", "grep ' /mnt/real ' /proc/self/mountinfo"])
    os.makedirs(os.path.join(b.rootfs, "mnt", "real"))
    os.symlink("/mnt/real", os.path.join(b.rootfs, "mnt", "link"))
    # an absolute symlink must be resolved inside the rootfs, not on the host
    b.config["mounts"].append({"destination": "/mnt/link", "type": "tmpfs", "source": "tmpfs"})
    _, out = ctx.run(bundle=b)
    check("tmpfs" in out, f"/mnt/real is not the tmpfs: {out.strip()!r}")
    check(not os.path.ismount("/mnt/real"), "mounted on the host's /mnt/real")


@conformance_test("mount-dest-relative", "config.md#mounts", "MUST",
                  "a relative destination is taken relative to / (deprecated form)")
def t_rel_dest(ctx):
    mi = _mi(ctx, add_mount({"destination": "mnt/reldest", "type": "tmpfs", "source": "tmpfs"}))
    check("/mnt/reldest" in mi, "relative destination not mounted at /mnt/reldest")


@conformance_test("mount-invalid-type", "config.md#mounts", "MUST",
                  "a mount whose type the kernel does not know is an error")
def t_bad_type(ctx):
    ctx.expect_create_error(add_mount({"destination": "/mnt/x", "type": "no-such-fs", "source": "x"}),
                            "an unknown filesystem type",
                            control=add_mount({"destination": "/mnt/x", "type": "tmpfs", "source": "x"}),
                            control_what="tmpfs mount")


@conformance_test("mount-bind-missing-source", "config.md#mounts", "MUST",
                  "a bind mount of a missing source is an error")
def t_bind_missing(ctx):
    ctx.expect_create_error(add_mount({"destination": "/mnt/x", "type": "none",
                                       "source": "/nonexistent/conformance/src", "options": ["bind"]}),
                            "a missing bind source",
                            control=add_mount({"destination": "/mnt/x", "type": "none", "source": ctx.rootfs_cache,
                                               "options": ["bind", "ro"]}),
                            control_what="bind mount of an existing directory")


@conformance_test("mount-propagation-private", "config.md#linux-mount-options", "MUST",
                  "the private option makes the mount private")
def t_private(ctx):
    # The source is a shared mount on the host, so without the option the
    # container's bind would stay in (or become a slave of) its peer group.
    b = ctx.bundle(args=["/bin/cat", "/proc/self/mountinfo"])
    src = b.file("shared-src")
    os.makedirs(src)
    ctx.shared_mount(src)
    b.config["mounts"].append({"destination": "/mnt/p", "type": "none", "source": src,
                               "options": ["rbind", "private"]})
    mi = mountinfo(ctx.run(bundle=b)[1])
    m = mi.get("/mnt/p")
    check(m is not None, "no mount at /mnt/p")
    check(not any(x.startswith(("shared:", "master:")) for x in m["optional"]), f"/mnt/p {m}")


def _prop_mount(ctx, dest, option):
    mi = _mi(ctx, add_mount({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": [option]}))
    m = mi.get(dest)
    check(m is not None and m["fstype"] == "tmpfs", f"no tmpfs at {dest}: {m}")
    return m["optional"]


@conformance_test("mount-propagation-shared", "config.md#linux-mount-options", "MUST",
                  "the shared option makes the mount shared")
def t_shared(ctx):
    opt = _prop_mount(ctx, "/mnt/s", "shared")
    check(any(x.startswith("shared:") for x in opt), f"/mnt/s is not shared: optional fields {opt}")


@conformance_test("mount-propagation-unbindable", "config.md#linux-mount-options", "MUST",
                  "the unbindable option makes the mount unbindable")
def t_unbindable(ctx):
    opt = _prop_mount(ctx, "/mnt/u", "unbindable")
    check("unbindable" in opt, f"/mnt/u is not unbindable: optional fields {opt}")


@conformance_test("mount-recursive-rro", "config.md#linux-mount-options", "SHOULD",
                  "rro makes a bind mount and its submounts read-only (mount_setattr)")
def t_rro(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/hostdev", "type": "none", "source": "/dev",
                             "options": ["rbind", "rro"]}))
    subs = [p for p in mi if p.startswith("/mnt/hostdev/")]
    check(subs, "no submounts")
    check(all("ro" in mi[p]["opts"] for p in subs + ["/mnt/hostdev"]), "a submount is still writable")


@conformance_test("default-fs-proc", "config-linux.md#default-filesystems", "SHOULD",
                  "/proc is a proc filesystem")
def t_proc(ctx):
    mi = _mi(ctx)
    check(mi.get("/proc", {}).get("fstype") == "proc", f"/proc {mi.get('/proc')}")


@conformance_test("default-fs-sys-pts-shm", "config-linux.md#default-filesystems", "SHOULD",
                  "/sys is sysfs, /dev/pts devpts and /dev/shm tmpfs")
def t_defaults(ctx):
    mi = _mi(ctx)
    got = {p: mi.get(p, {}).get("fstype") for p in ("/sys", "/dev/pts", "/dev/shm")}
    check_eq(got, {"/sys": "sysfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs"}, "filesystem types")
