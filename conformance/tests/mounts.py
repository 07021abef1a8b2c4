"""config.md#root, config.md#mounts, config.md#linux-mount-options,
config-linux.md#default-filesystems: the root filesystem and mounts."""
from __future__ import annotations

import os

from conformance.registry import Fail, check, check_eq, conformance_test


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
    ctx.expect_create_error(lambda c: c["root"].update(path="no-such-rootfs"), "a missing root.path")


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
        m = mi.get("/mnt/o", {})
        opts = m.get("opts", set()) | m.get("super", set())  # sync shows as a superblock flag
        check((flag in opts) == present, f"/mnt/o options {sorted(opts)}")
    return t


_opt_test("mount-opt-ro", "ro", "ro")
_opt_test("mount-opt-nosuid", "nosuid", "nosuid")
_opt_test("mount-opt-nodev", "nodev", "nodev")
_opt_test("mount-opt-noexec", "noexec", "noexec")
_opt_test("mount-opt-noatime", "noatime", "noatime")
_opt_test("mount-opt-relatime", "relatime", "relatime")
_opt_test("mount-opt-strictatime", "strictatime", "relatime", present=False)
_opt_test("mount-opt-nodiratime", "nodiratime", "nodiratime")
_opt_test("mount-opt-sync", "sync", "sync")


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
                            "an unknown filesystem type")


@conformance_test("mount-bind-missing-source", "config.md#mounts", "MUST",
                  "a bind mount of a missing source is an error")
def t_bind_missing(ctx):
    ctx.expect_create_error(add_mount({"destination": "/mnt/x", "type": "none",
                                       "source": "/nonexistent/conformance/src", "options": ["bind"]}),
                            "a missing bind source")


@conformance_test("mount-propagation-private", "config.md#linux-mount-options", "MUST",
                  "the private option makes the mount private")
def t_private(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/p", "type": "tmpfs", "source": "tmpfs",
                             "options": ["private"]}))
    check(not any(x.startswith(("shared:", "master:")) for x in mi.get("/mnt/p", {}).get("optional", ["?"])),
          f"/mnt/p {mi.get('/mnt/p')}")


@conformance_test("mount-propagation-shared", "config.md#linux-mount-options", "MUST",
                  "the shared option makes the mount shared")
def t_shared(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/s", "type": "tmpfs", "source": "tmpfs",
                             "options": ["shared"]}))
    check(any(x.startswith("shared:") for x in mi.get("/mnt/s", {}).get("optional", [])),
          f"/mnt/s {mi.get('/mnt/s')}")


@conformance_test("mount-propagation-unbindable", "config.md#linux-mount-options", "MUST",
                  "the unbindable option makes the mount unbindable")
def t_unbindable(ctx):
    mi = _mi(ctx, add_mount({"destination": "/mnt/u", "type": "tmpfs", "source": "tmpfs",
                             "options": ["unbindable"]}))
    check("unbindable" in mi.get("/mnt/u", {}).get("optional", []), f"/mnt/u {mi.get('/mnt/u')}")


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
