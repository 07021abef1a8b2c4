"""The rest of runtime-spec v1.3.0 (issue 13): config.md#linux-process
(scheduler, ioPriority, execCPUAffinity), config-linux.md#memory-policy,
#network-devices, #intelrdt, config.md#posix-platform-mounts (uidMappings,
gidMappings, idmap/ridmap), and runc's checkpoint/restore (CRIU).

Observed from inside (/proc/self/stat, /proc/self/numa_maps, busybox ionice,
ip, stat) and from outside (/proc/<pid>).  Host-dependent tests skip, naming
what the host lacks: NUMA, two CPUs, resctrl, CRIU that starts on this
kernel.  Network devices are veth pairs in a network namespace the test
makes, and the runtime is run inside it: the host's interfaces are never
touched.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time

from conformance.registry import Fail, Skip, check, check_eq, conformance_test
from conformance.runtime import Container, Runtime


def setp(**kw):
    def mut(cfg):
        cfg["process"].update(kw)
    return mut


def _stat_fields(text: str) -> list[str]:
    """/proc/<pid>/stat fields numbered as in proc(5) (index 1 = pid)."""
    head, _, rest = text.strip().rpartition(")")
    return ["", head.split(" (", 1)[0], head.split(" (", 1)[1], *rest.split()]


def _rt_budget(cfg):
    # cgroup v1 with RT group scheduling gives a new cgroup no realtime time
    if os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
        cfg["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 50000,
                                                           "realtimePeriod": 1000000}


# --- process.scheduler --------------------------------------------------------


@conformance_test("sched-policy-nice", "config.md#linux-process", "MUST",
                  "process.scheduler policy and nice are the process's (sched_setattr)")
def t_sched(ctx):
    out = ctx.sh("cat /proc/self/stat", setp(scheduler={"policy": "SCHED_BATCH", "nice": 6}))
    f = _stat_fields(out)
    check_eq((f[41], f[19]), ("3", "6"), "policy, nice")


@conformance_test("sched-policy-fifo-priority", "config.md#linux-process", "MUST",
                  "a realtime policy gets its priority")
def t_sched_fifo(ctx):
    def mut(cfg):
        cfg["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 7}
        _rt_budget(cfg)
    _, out = ctx.run(mut, ["/bin/cat", "/proc/self/stat"])
    f = _stat_fields(out)
    check_eq((f[41], f[40]), ("1", "7"), "policy, rt_priority")


@conformance_test("sched-invalid-error", "config.md#linux-process", "MUST",
                  "a scheduler the kernel cannot apply (nice 40) is an error (runtime.md#errors)")
def t_sched_bad(ctx):
    ctx.expect_create_error(setp(scheduler={"policy": "SCHED_OTHER", "nice": 40}), "nice 40",
                            control=setp(scheduler={"policy": "SCHED_OTHER", "nice": 5}),
                            control_what="nice 5")


# --- process.ioPriority -------------------------------------------------------


@conformance_test("io-priority", "config.md#linux-process", "MUST",
                  "process.ioPriority class and priority are the process's (ioprio_set)")
def t_ioprio(ctx):
    c = ctx.created(setp(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 6}),
                    ["/bin/sleep", "30"])
    out = subprocess.run(["ionice", "-p", str(c.pid)], capture_output=True, text=True).stdout
    check_eq(out.strip(), "best-effort: prio 6", "ionice -p of the container process")


# --- process.execCPUAffinity --------------------------------------------------


@conformance_test("exec-cpu-affinity-final", "config.md#linux-process", "SHOULD",
                  "execCPUAffinity.final is the CPU set of a process run with exec")
def t_affinity(ctx):
    if (os.cpu_count() or 1) < 2:
        raise Skip("host has one CPU")
    c = ctx.created(None, ["/bin/sleep", "30"])
    r = c.start()
    if not r.ok:
        raise Fail(f"start failed: {r.brief()}")
    proc = os.path.join(ctx.dir, "process.json")
    with open(proc, "w") as f:
        import json
        json.dump({"args": ["/bin/grep", "Cpus_allowed_list", "/proc/self/status"], "cwd": "/",
                   "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
                   "execCPUAffinity": {"initial": "0", "final": "1"}}, f)
    r = ctx.rt.call("exec", "--process", proc, c.id, timeout=20)
    check(r.ok, f"exec failed: {r.brief()}")
    check_eq(r.out.split()[-1:], ["1"], "Cpus_allowed_list of the exec'd process")


# --- linux.memoryPolicy -------------------------------------------------------


def _need_numa():
    if not os.path.exists("/proc/self/numa_maps"):
        raise Skip("host kernel has no NUMA support")


@conformance_test("memory-policy-bind", "config-linux.md#memory-policy", "MUST",
                  "linux.memoryPolicy is the process's NUMA policy (set_mempolicy)")
def t_mpol(ctx):
    _need_numa()

    def mut(cfg):
        cfg["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0",
                                        "flags": ["MPOL_F_STATIC_NODES"]}
    out = ctx.sh("head -n 1 /proc/self/numa_maps", mut)
    check_eq(out.split()[1:2], ["bind=static:0"], "policy in numa_maps")


@conformance_test("memory-policy-interleave", "config-linux.md#memory-policy", "MUST",
                  "MPOL_INTERLEAVE over the given nodes")
def t_mpol2(ctx):
    _need_numa()
    out = ctx.sh("head -n 1 /proc/self/numa_maps", lambda c: c["linux"].update(
        memoryPolicy={"mode": "MPOL_INTERLEAVE", "nodes": "0"}))
    check_eq(out.split()[1:2], ["interleave:0"], "policy in numa_maps")


@conformance_test("memory-policy-nodes-error", "config-linux.md#memory-policy", "MUST",
                  "MPOL_DEFAULT with nodes (set_mempolicy refuses it) is an error")
def t_mpol_bad(ctx):
    ctx.expect_create_error(lambda c: c["linux"].update(
        memoryPolicy={"mode": "MPOL_DEFAULT", "nodes": "0"}), "MPOL_DEFAULT with nodes",
        control=lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_DEFAULT"}),
        control_what="MPOL_DEFAULT without nodes")


# --- linux.netDevices ---------------------------------------------------------


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _netns(ctx):
    """A network namespace of the test's with veth p9a/p9b: the runtime runs in it."""
    name = f"confnd-{os.getpid()}-{len(ctx.finalizers)}"
    if _ip("netns", "add", name).returncode:
        raise Skip("cannot make network namespaces here (ip netns add)")
    ctx.finalizers.append(lambda: _ip("netns", "del", name))
    r = _ip("-n", name, "link", "add", "p9a", "type", "veth", "peer", "name", "p9b")
    if r.returncode:
        raise Skip(f"host kernel cannot make veth pairs: {r.stderr.strip()}")
    _ip("-n", name, "link", "set", "p9a", "mtu", "1300")
    _ip("-n", name, "addr", "add", "10.78.0.1/24", "dev", "p9a")
    rt = Runtime(f"nsenter --net=/run/netns/{name} " + " ".join(ctx.rt.argv), ctx.rt.root)
    return name, rt


@conformance_test("netdev-moved-renamed", "config-linux.md#network-devices", "MUST",
                  "a host device is moved into the container's network namespace, renamed, "
                  "its global addresses kept and its state up")
def t_netdev(ctx):
    name, rt = _netns(ctx)
    b = ctx.bundle(lambda c: c["linux"].update(netDevices={"p9a": {"name": "ctr0"}}),
                   ["/bin/sh", "-c", "ip addr show ctr0"])
    c = Container(rt, ctx.new_id(), b)
    ctx.containers.append(c)
    r = c.create()
    if not r.ok:
        raise Fail(f"create failed: {r.brief()}")
    r = c.start()
    check(r.ok, f"start failed: {r.brief()}")
    c.wait_exit(15)
    out = c.stdout()
    check("10.78.0.1/24" in out, f"address not kept: {out!r}")
    check("mtu 1300" in out, f"mtu not kept: {out!r}")
    check("UP" in out.split(">")[0], f"not up: {out!r}")
    check(_ip("-n", name, "link", "show", "p9a").returncode != 0,
          "the device is still in the runtime's namespace")


@conformance_test("netdev-missing-error", "config-linux.md#network-devices", "MUST",
                  "a device that cannot be moved (there is none of that name) is an error")
def t_netdev_missing(ctx):
    # in a network namespace of the test's own, with a positive control: a
    # device that is there is moved, so a runtime refusing every netDevices
    # entry does not pass
    from conformance.tests.netdev import NetNs
    ns = NetNs(ctx)
    ns.veth("confhere0")
    ok = ns.container(ctx.bundle(lambda c: c["linux"].update(netDevices={"confhere0": {}}), ["/bin/true"]))
    r = ok.create()
    check(r.ok, f"positive control: moving confhere0, which exists, was refused too ({r.brief()})")
    bad = ns.container(ctx.bundle(lambda c: c["linux"].update(netDevices={"nosuchdev0": {}})))
    check(not bad.create().ok, "create accepted a missing network device")
    check(not bad.state_raw().ok, "create failed on a missing network device but left the container behind")


# --- linux.intelRdt -----------------------------------------------------------


def _resctrl() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[parts.index("-") + 1] == "resctrl":
                return parts[4]
    return None


@conformance_test("intelrdt-no-resctrl-error", "config-linux.md#intelrdt", "MUST",
                  "intelRdt without a mounted resctrl filesystem is an error")
def t_rdt_none(ctx):
    if _resctrl():
        raise Skip("host has resctrl mounted (this test is for hosts without it)")
    ctx.expect_create_error(lambda c: c["linux"].update(intelRdt={"closID": "conf"}),
                            "intelRdt without resctrl", control=None)


@conformance_test("intelrdt-closid-tasks", "config-linux.md#intelrdt", "MUST",
                  "the container process is in the tasks of the closID group")
def t_rdt(ctx):
    root = _resctrl()
    if not root:
        raise Skip("host has no resctrl filesystem mounted")
    group = f"conf-{os.getpid()}"
    c = ctx.created(lambda cfg: cfg["linux"].update(intelRdt={"closID": group,
                                                              "schemata": []}),
                    ["/bin/sleep", "30"])
    ctx.finalizers.append(lambda: os.rmdir(os.path.join(root, group)))
    with open(os.path.join(root, group, "tasks")) as f:
        check(str(c.pid) in f.read().split(), "pid not in the group's tasks")


# --- mounts[].uidMappings / idmap ---------------------------------------------


def _owned_dir(ctx):
    src = tempfile.mkdtemp(prefix="conf-idmap-", dir=ctx.dir)
    os.chmod(src, 0o755)
    for name, owner in (("f0", 0), ("f1000", 1000)):
        p = os.path.join(src, name)
        open(p, "w").close()
        os.chown(p, owner, owner)
    return src


@conformance_test("idmap-mount-owners", "config.md#posix-platform-mounts", "SHOULD",
                  "uidMappings/gidMappings of an idmap bind mount map the files' owners")
def t_idmap(ctx):
    src = _owned_dir(ctx)
    maps = [{"containerID": 0, "hostID": 3000, "size": 1},
            {"containerID": 1000, "hostID": 4000, "size": 1}]
    out = ctx.sh("stat -c '%n %u %g' /data/f0 /data/f1000", lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": src, "options": ["bind", "idmap"],
         "uidMappings": maps, "gidMappings": maps}))
    check_eq(out.split(), ["/data/f0", "3000", "3000", "/data/f1000", "4000", "4000"],
             "owners seen in the container")


@conformance_test("idmap-without-mapping-error", "config.md#linux-mount-options", "MUST",
                  "idmap with no mount mappings and no user namespace is an error")
def t_idmap_bad(ctx):
    src = _owned_dir(ctx)
    maps = [{"containerID": 0, "hostID": 3000, "size": 1}]
    ctx.expect_create_error(lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": src, "options": ["bind", "idmap"]}),
        "idmap without any mapping", control=lambda c: c["mounts"].append(
            {"destination": "/data", "type": "bind", "source": src, "options": ["bind", "idmap"],
             "uidMappings": maps, "gidMappings": maps}), control_what="idmap with mappings")


@conformance_test("idmap-userns-mapping", "config.md#linux-mount-options", "MUST",
                  "idmap without mount mappings in a user namespace: mapped as the namespace maps, or an error")
def t_idmap_userns(ctx):
    """The spec lets a runtime use the container's user-namespace mapping (MAY)
    or refuse (error MUST); an idmap option quietly ignored fails.  Through
    the namespace's mapping, on-disk 0 and 1000 are seen inside as 0 and
    1000; a plain bind shows them unmapped (65534)."""
    src = _owned_dir(ctx)

    def userns_bind(options):
        def mut(cfg):
            cfg["linux"]["namespaces"].append({"type": "user"})
            cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
            cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 101000, "size": 65536}]
            cfg["mounts"] = [m for m in cfg["mounts"] if m["destination"] != "/sys"]
            # /mnt exists in the rootfs: the mapped root may not create /data there
            cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": src, "options": options})
        return mut

    ctx.control(userns_bind(["bind"]), "bind mount in a user namespace, without idmap")
    c = ctx.container(mutate=userns_bind(["bind", "idmap"]),
                      args=["/bin/sh", "-c", "stat -c '%n %u %g' /mnt/f0 /mnt/f1000"])
    if not c.create().ok:
        check(not c.state_raw().ok, "create failed but left the container behind")
        return  # refused: allowed, as the runtime need not map by the namespace
    check(c.start().ok, "start failed")
    check(c.wait_exit(15), "container process still running after 15s")
    check_eq(c.stdout().split(), ["/mnt/f0", "0", "0", "/mnt/f1000", "1000", "1000"],
             "owners seen in the container (accepted idmap must map by the user namespace)")


# --- checkpoint / restore (runc's CLI; CRIU) -----------------------------------

_CRIU: list[str | None] = []


def _need_criu():
    if not _CRIU:
        try:
            r = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=120)
            _CRIU.append(None if r.returncode == 0 else "`criu check` fails on this kernel")
        except FileNotFoundError:
            _CRIU.append("criu is not installed")
    if _CRIU[0]:
        raise Skip(_CRIU[0])


def _numbers(fd, timeout, want):
    out, end = b"", time.monotonic() + timeout
    while time.monotonic() < end and len(out.split()) < want:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            out += chunk
    return [int(x) for x in out.split() if x.isdigit()]


@conformance_test("checkpoint-restore-continues", "runtime.md#operations", "MAY",
                  "checkpoint, then restore: the process goes on from where it was (runc CLI)")
def t_cr(ctx):
    _need_criu()
    b = ctx.bundle(None, ["/bin/sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); "
                                           "sleep 0.2; done"])
    b.write()
    c = Container(ctx.rt, ctx.new_id(), b)
    ctx.containers.append(c)
    pipes = [os.pipe() for _ in range(3)]
    ctx.finalizers.append(lambda: [os.close(fd) for p in pipes for fd in p])
    p = subprocess.run(ctx.rt.cmd("run", "-d", "--bundle", b.path, c.id), stdin=pipes[0][0],
                       stdout=pipes[1][1], stderr=pipes[2][1], timeout=120)
    check(p.returncode == 0, "run -d failed")
    first = _numbers(pipes[1][0], 60, 2)
    check(bool(first), "the counter prints nothing")
    image = os.path.join(ctx.dir, "image")
    r = ctx.rt.call("checkpoint", "--image-path", image, c.id, timeout=300)
    check(r.ok, f"checkpoint failed: {r.brief()}")
    os.set_blocking(pipes[1][0], False)
    seen = b""
    try:
        while chunk := os.read(pipes[1][0], 65536):
            seen += chunk
    except BlockingIOError:
        pass
    last = [int(x) for x in seen.split() if x.isdigit()][-1:] or first[-1:]
    new = [os.pipe() for _ in range(3)]
    ctx.finalizers.append(lambda: [os.close(fd) for p in new for fd in p])
    p = subprocess.run(ctx.rt.cmd("restore", "-d", "--image-path", image, "--bundle", b.path,
                                  c.id), stdin=new[0][0], stdout=new[1][1], stderr=new[2][1],
                       timeout=300)
    check(p.returncode == 0, "restore -d failed")
    after = _numbers(new[1][0], 60, 1)
    check(bool(after) and after[0] == last[0] + 1, f"restored at {after[:1]}, last was {last}")
    st = c.state()
    check(isinstance(st, dict) and st.get("status") == "running", f"state after restore: {st}")
    if isinstance(st, dict):
        c.extra_pids.append(int(st.get("pid") or 0))
    shutil.rmtree(image, ignore_errors=True)
