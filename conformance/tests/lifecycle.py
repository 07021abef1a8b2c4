"""runtime.md#operations, #lifecycle, #errors: create/start/kill/delete and their error cases."""
from __future__ import annotations

import json
import os
import time

from conformance.registry import Fail, check, check_eq, conformance_test
from conformance.runtime import pid_alive

SLEEP = ["/bin/sleep", "30"]


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode() for a in f.read().split(b"\0")[:-1]]
    except OSError:
        return []


@conformance_test("create-not-exec", "runtime.md#create", "MUST",
                  "process.args are not run by create, only by start")
def t_create_no_exec(ctx):
    c = ctx.created(args=["/bin/sh", "-c", "echo user-program-ran"])
    time.sleep(0.3)
    check("user-program-ran" not in c.stdout(), "the user program ran before start")
    check(_cmdline(c.pid) != ["/bin/sh", "-c", "echo user-program-ran"], "init already exec'd args")
    check(c.start().ok, "start failed")
    c.wait_exit(5)
    check("user-program-ran" in c.stdout(), "the user program did not run after start")


@conformance_test("create-duplicate-id", "runtime.md#create", "MUST",
                  "create with an ID already in use is an error and leaves the first container alone")
def t_dup(ctx):
    c1 = ctx.created(args=SLEEP)
    c2 = ctx.container(cid=c1.id, args=SLEEP)
    r = c2.create()
    check(not r.ok, "second create with the same id succeeded")
    check_eq(c1.status(), "created", "first container's status")
    check(pid_alive(c1.pid), "first container's process died")


@conformance_test("create-invalid-id", "runtime.md#create", "MUST",
                  "create with an invalid container ID is an error and creates nothing")
def t_bad_id(ctx):
    # positive control: a valid id is created and `list --format json` shows it
    good = ctx.created(args=SLEEP)
    check_eq(_listed_ids(ctx), [good.id], "ids in `list --format json` after a valid create")
    b = ctx.bundle()
    for bad in ("../escape", "a/b", ".."):
        c = ctx.container(bundle=b, cid=bad)
        r = c.create()
        check(not r.ok, f"create with id {bad!r} succeeded")
        check_eq(_listed_ids(ctx), [good.id], f"ids in `list --format json` after create {bad!r}")
    for p in ("escape", "root/a"):
        check(not os.path.lexists(os.path.join(ctx.dir, p)), f"create with a bad id made {p} under the test dir")


def _listed_ids(ctx) -> list[str]:
    r = ctx.rt.call("list", "--format", "json")
    check(r.ok, f"list --format json: {r.brief()}")
    try:
        data = json.loads(r.out or "null")
    except ValueError:
        raise Fail(f"list --format json is not JSON: {r.out.strip()[:80]!r}") from None
    check(data is None or isinstance(data, list), f"list --format json gave {type(data).__name__}, want an array")
    return sorted(str(x.get("id")) if isinstance(x, dict) else repr(x) for x in data or [])


@conformance_test("create-missing-bundle", "runtime.md#create", "MUST",
                  "create with a bundle path that does not exist is an error")
def t_missing_bundle(ctx):
    ctx.control(None, "base config")
    cid = ctx.new_id()
    r = ctx.rt.call("create", "--bundle", os.path.join(ctx.dir, "does-not-exist"), cid)
    check(not r.ok, "create accepted a missing bundle")
    check(not ctx.rt.call("state", cid).ok, "a container exists after the failed create")


@conformance_test("create-missing-config", "bundle.md#filesystem-bundle", "MUST",
                  "a bundle without config.json is refused")
def t_missing_config(ctx):
    ctx.control(None, "base config")
    b = ctx.bundle()
    os.unlink(b.file("config.json"))
    cid = ctx.new_id()
    r = ctx.rt.call("create", "--bundle", b.path, cid)
    check(not r.ok, "create accepted a bundle with no config.json")


@conformance_test("create-no-id", "runtime.md#create", "MUST", "create without a container ID is an error")
def t_create_noid(ctx):
    ctx.control(None, "base config")
    b = ctx.bundle()
    r = ctx.rt.call("create", "--bundle", b.path)
    check(not r.ok, "create with no id succeeded")


@conformance_test("create-config-snapshot", "runtime.md#create", "MUST",
                  "edits to config.json after create do not affect the container")
def t_snapshot(ctx):
    c = ctx.created(args=["/bin/sh", "-c", "echo original"])
    cfg = json.load(open(c.bundle.file("config.json")))
    cfg["process"]["args"] = ["/bin/sh", "-c", "echo edited"]
    with open(c.bundle.file("config.json"), "w") as f:
        json.dump(cfg, f)
    check(c.start().ok, "start failed")
    c.wait_exit(5)
    out = c.stdout()
    check("original" in out and "edited" not in out, f"output {out.strip()!r}")


@conformance_test("create-error-no-leftover", "runtime.md#errors", "MUST",
                  "a create that fails late leaves no state, process, mount or cgroup behind")
def t_error_leftover(ctx):
    cg = ctx.cgroup_path()

    def bad(cfg):
        # fails only when mount(2) runs, after the cgroup, namespaces and the
        # first mounts exist: nothing a runtime can reject up front
        cfg["linux"]["cgroupsPath"] = cg
        cfg["mounts"].append({"destination": "/mnt/ok", "type": "tmpfs", "source": "tmpfs"})
        cfg["mounts"].append({"destination": "/mnt/bad", "type": "tmpfs", "source": "tmpfs",
                              "options": ["size=not-a-size"]})
    c = ctx.container(mutate=bad)
    r = c.create()
    check(not r.ok, "create accepted a tmpfs mount with size=not-a-size")
    check(not c.state_raw().ok, "the container still exists after the failed create")
    left = ctx.leftovers([c])
    if left:
        time.sleep(0.3)  # a process may still be on its way out
        left = ctx.leftovers([c])
    check(not left, "left behind by the failed create: " + "; ".join(left))


@conformance_test("create-unknown-properties", "config.md#extensibility", "MUST",
                  "unknown properties are ignored, not an error")
def t_unknown_props(ctx):
    def mut(cfg):
        cfg["org.example.unknownTop"] = {"x": 1}
        cfg["process"]["org.example.unknownProc"] = True
        cfg["linux"]["org.example.unknownLinux"] = [1, 2]
    c, out = ctx.run(mut, ["/bin/echo", "fine"])
    check("fine" in out, f"output {out!r}")


@conformance_test("create-ignores-other-platforms", "config.md#platform-specific-configuration", "MUST",
                  "a windows/solaris object in a Linux config is ignored")
def t_other_platforms(ctx):
    def mut(cfg):
        cfg["solaris"] = {"milestone": "svc:/milestone/container:default"}
        cfg["windows"] = {"layerFolders": ["C:\\x"]}
    c, out = ctx.run(mut, ["/bin/echo", "fine"])
    check("fine" in out, f"output {out!r}")


@conformance_test("start-runs-program", "runtime.md#start", "MUST",
                  "start runs the user-specified program")
def t_start(ctx):
    c, out = ctx.run(args=["/bin/echo", "hello-start"])
    check("hello-start" in out, f"output {out!r}")


@conformance_test("start-twice", "runtime.md#start", "MUST",
                  "start on a running container is an error and leaves it running")
def t_start_twice(ctx):
    c = ctx.created(args=SLEEP)
    check(c.start().ok, "first start failed")
    r = c.start()
    check(not r.ok, "second start succeeded")
    check_eq(c.status(), "running", "status after the second start")


@conformance_test("start-stopped", "runtime.md#start", "MUST", "start on a stopped container is an error")
def t_start_stopped(ctx):
    c, _ = ctx.run(args=["/bin/true"])
    c.wait_status("stopped", 5)
    check(not c.start().ok, "start of a stopped container succeeded")
    check_eq(c.status(), "stopped", "status")


@conformance_test("start-unknown-id", "runtime.md#start", "MUST", "start of an unknown ID is an error")
def t_start_unknown(ctx):
    check(not ctx.rt.call("start", "conf-no-such").ok, "start of an unknown id succeeded")


@conformance_test("start-no-id", "runtime.md#start", "MUST", "start without an ID is an error")
def t_start_noid(ctx):
    check(not ctx.rt.call("start").ok, "start with no id succeeded")


@conformance_test("start-without-process", "config.md#process", "MUST",
                  "process is required by start: a config without it cannot be started")
def t_no_process(ctx):
    ctx.control(None, "base config")
    c = ctx.container(mutate=lambda cfg: cfg.pop("process"))
    r = c.create()
    if not r.ok:
        return "refused at create"
    check(not c.start().ok, "start succeeded with no process in the config")


@conformance_test("start-missing-binary", "runtime.md#start", "MUST",
                  "start (or create) errors when process.args[0] cannot be executed")
def t_missing_binary(ctx):
    ctx.control(None, "base config")
    c = ctx.container(args=["/no/such/binary"])
    r = c.create()
    if not r.ok:
        return "refused at create"
    check(not c.start().ok, "start succeeded though the program does not exist")


@conformance_test("kill-created", "runtime.md#kill", "MUST", "kill works on a created container")
def t_kill_created(ctx):
    c = ctx.created(args=SLEEP)
    r = c.kill("KILL")
    check(r.ok, f"kill: {r.brief()}")
    check(c.wait_exit(5), "process still alive after SIGKILL")
    check_eq(c.wait_status("stopped", 5), "stopped", "status")


@conformance_test("kill-delivers-signal", "runtime.md#kill", "MUST",
                  "kill sends the given signal to the container process")
def t_kill_signal(ctx):
    c = ctx.created(args=["/bin/sh", "-c", "trap 'echo got-usr1; exit 0' USR1; echo ready; "
                          "while :; do sleep 0.05; done"])
    check(c.start().ok, "start failed")
    end = time.time() + 5
    while "ready" not in c.stdout() and time.time() < end:
        time.sleep(0.05)
    r = c.kill("USR1")
    check(r.ok, f"kill USR1: {r.brief()}")
    check(c.wait_exit(5), "process did not exit after its USR1 trap")
    check("got-usr1" in c.stdout(), f"trap did not run: {c.stdout()!r}")


@conformance_test("kill-numeric-signal", "runtime.md#kill", "SHOULD",
                  "kill takes a numeric signal, as callers send it")
def t_kill_numeric(ctx):
    c = ctx.created(args=SLEEP)
    check(c.start().ok, "start failed")
    r = c.kill("9")
    check(r.ok, f"kill 9: {r.brief()}")
    check(c.wait_exit(5), "process still alive after kill 9")


@conformance_test("kill-stopped", "runtime.md#kill", "MUST", "kill on a stopped container is an error")
def t_kill_stopped(ctx):
    c, _ = ctx.run(args=["/bin/true"])
    c.wait_status("stopped", 5)
    check(not c.kill("KILL").ok, "kill of a stopped container succeeded")


@conformance_test("kill-unknown-id", "runtime.md#kill", "MUST", "kill of an unknown ID is an error")
def t_kill_unknown(ctx):
    check(not ctx.rt.call("kill", "conf-no-such", "KILL").ok, "kill of an unknown id succeeded")


@conformance_test("kill-no-id", "runtime.md#kill", "MUST", "kill without an ID is an error")
def t_kill_noid(ctx):
    check(not ctx.rt.call("kill").ok, "kill with no id succeeded")


@conformance_test("delete-running", "runtime.md#delete", "MUST",
                  "delete of a running container is an error with no effect")
def t_delete_running(ctx):
    c = ctx.created(args=SLEEP)
    check(c.start().ok, "start failed")
    check(not c.delete().ok, "delete of a running container succeeded")
    check_eq(c.status(), "running", "status after the refused delete")


@conformance_test("delete-created", "runtime.md#delete", "MUST",
                  "delete of a created (not stopped) container is an error with no effect")
def t_delete_created(ctx):
    c = ctx.created(args=SLEEP)
    r = c.delete()
    check(not r.ok, "delete of a created container succeeded")
    check_eq(c.status(), "created", "status after the refused delete")


@conformance_test("delete-stopped", "runtime.md#delete", "MUST",
                  "delete of a stopped container removes it; state then errors")
def t_delete_stopped(ctx):
    c, _ = ctx.run(args=["/bin/true"])
    c.wait_status("stopped", 5)
    r = c.delete()
    check(r.ok, f"delete: {r.brief()}")
    check(not c.state_raw().ok, "state still works after delete")


@conformance_test("delete-id-reuse", "runtime.md#delete", "MUST",
                  "after delete the ID can be used again")
def t_id_reuse(ctx):
    c, _ = ctx.run(args=["/bin/true"])
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    c2 = ctx.container(cid=c.id, args=["/bin/echo", "second"])
    r = c2.create()
    check(r.ok, f"re-create with the same id: {r.brief()}")


@conformance_test("delete-unknown-id", "runtime.md#delete", "MUST", "delete of an unknown ID is an error")
def t_delete_unknown(ctx):
    check(not ctx.rt.call("delete", "conf-no-such").ok, "delete of an unknown id succeeded")


@conformance_test("delete-no-id", "runtime.md#delete", "MUST", "delete without an ID is an error")
def t_delete_noid(ctx):
    check(not ctx.rt.call("delete").ok, "delete with no id succeeded")


@conformance_test("delete-removes-cgroup", "runtime.md#delete", "MUST",
                  "delete removes the cgroup that create made")
def t_delete_cgroup(ctx):
    ctx.need_v1("pids") if not ctx.host.cgroup_v2_unified else None
    cg = ctx.cgroup_path()
    c = ctx.created(lambda cfg: cfg["linux"].__setitem__("cgroupsPath", cg), args=SLEEP)
    p = ctx.host.controller_file("pids", cg, "")
    check(os.path.isdir(p), f"cgroup {p} not created")
    check(c.kill("KILL").ok, "kill failed")
    c.wait_exit(5)
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    check(not os.path.isdir(p), f"cgroup {p} still exists after delete")


@conformance_test("delete-keeps-bind-source", "runtime.md#delete", "MUST",
                  "delete does not remove resources it did not create (a bind-mount source)")
def t_delete_keeps(ctx):
    b = ctx.bundle(args=["/bin/true"])
    src = b.file("shared-src")
    os.makedirs(src)
    open(os.path.join(src, "keep"), "w").close()
    b.config["mounts"].append({"destination": "/mnt/x", "type": "none", "source": src,
                               "options": ["bind"]})
    c, _ = ctx.run(bundle=b)
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    check(os.path.exists(os.path.join(src, "keep")), "bind source content was removed")


@conformance_test("lifecycle-exit-stops", "runtime.md#lifecycle", "MUST",
                  "when the process exits the container becomes stopped and the init is gone")
def t_exit(ctx):
    c, _ = ctx.run(args=["/bin/sh", "-c", "exit 3"])
    check_eq(c.wait_status("stopped", 5), "stopped", "status")
    check(not pid_alive(c.pid), "init still alive")
