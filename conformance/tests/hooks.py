"""config.md#posix-platform-hooks and runtime.md#lifecycle: every hook type,
where it runs, what it gets on stdin, and what a failing hook does."""
from __future__ import annotations

import json
import os
import time

from conformance.registry import Fail, check, check_eq, conformance_test

SLEEP = ["/bin/sleep", "30"]
BB = "/bin/busybox"

# One script for every hook: records stdin, argv, env, cwd and namespaces
# under <out>/<tag>.*, and what it sees of the container process named by the
# state's pid (its pid namespace, mounts and command line: ctr*), appends the
# tag to <out>/order, exits with $HOOK_EXIT.
SCRIPT = r"""#!/bin/sh
d={out}
t=$1
# HOOK_DELAY: a slow hook, so that a runtime that does not wait for it is
# caught deterministically (nothing is recorded before the delay is over)
if [ -n "$HOOK_DELAY" ]; then {bb} sleep "$HOOK_DELAY"; fi
{bb} cat > "$d/$t.state"
echo "$@" > "$d/$t.argv"
{bb} env > "$d/$t.env"
{bb} pwd > "$d/$t.cwd"
{bb} readlink /proc/self/ns/mnt > "$d/$t.mntns"
{bb} readlink /proc/self/ns/pid > "$d/$t.pidns"
pid=$({bb} tr -d ' \n' < "$d/$t.state" | {bb} sed -n 's/.*"pid":\([0-9][0-9]*\).*/\1/p')
if [ -n "$pid" ]; then
  {bb} readlink /proc/$pid/ns/pid > "$d/$t.ctrpidns" 2>/dev/null
  {bb} cat /proc/$pid/mountinfo > "$d/$t.ctrmounts" 2>/dev/null
  # an empty cmdline means "in the middle of execve" (or gone): look again
  for i in 1 2 3 4 5 6 7 8 9 10; do
    {bb} tr '\0' ' ' < /proc/$pid/cmdline > "$d/$t.ctrcmd" 2>/dev/null
    [ -s "$d/$t.ctrcmd" ] && break
    {bb} sleep 0.1
  done
fi
echo "$t" >> "$d/order"
if [ -n "$HOOK_SLEEP" ]; then exec {bb} sleep "$HOOK_SLEEP"; fi
exit ${{HOOK_EXIT:-0}}
"""


class Hooks:
    """Hook scripts for one bundle: a host copy and an in-rootfs copy."""

    def __init__(self, ctx, args=None):
        self.mark = ctx.mark  # in every hook's env, for the leak scan
        self.b = ctx.bundle(args=args or SLEEP)
        self.out = self.b.file("hookout")
        os.makedirs(self.out)
        self.host_script = self.b.file("hook.sh")
        self._write(self.host_script, self.out)
        # startContainer resolves its path inside the container: give it an
        # in-rootfs script writing to a bind mount of the same directory.
        self.ctr_script = "/hook.sh"
        self._write(os.path.join(self.b.rootfs, "hook.sh"), "/hookout")
        self.b.config["mounts"].append({"destination": "/hookout", "type": "none", "source": self.out,
                                        "options": ["rbind", "rw"]})
        self.b.config["hooks"] = {}

    @staticmethod
    def _write(path, out):
        with open(path, "w") as f:
            f.write(SCRIPT.format(out=out, bb=BB))
        os.chmod(path, 0o755)

    def add(self, kind, tag=None, exit=0, env=(), timeout=None, sleep=None, delay=None):
        path = self.ctr_script if kind == "startContainer" else self.host_script
        h = {"path": path, "args": [path, tag or kind], "env": [f"HOOK_EXIT={exit}", *env, self.mark]}
        if sleep:
            h["env"].append(f"HOOK_SLEEP={sleep}")
        if delay:
            h["env"].append(f"HOOK_DELAY={delay}")
        if timeout is not None:
            h["timeout"] = timeout
        self.b.config["hooks"].setdefault(kind, []).append(h)

    def ran(self, tag) -> bool:
        return os.path.exists(os.path.join(self.out, f"{tag}.argv"))

    def wait_ran(self, tag, timeout=5.0) -> bool:
        """For tests about *where* a hook runs, not *when*: give a hook the
        runtime runs asynchronously time to finish (its order file line is
        written last)."""
        end = time.monotonic() + timeout
        while tag not in self.order() and time.monotonic() < end:
            time.sleep(0.05)
        return tag in self.order()

    def read(self, tag, what) -> str:
        try:
            with open(os.path.join(self.out, f"{tag}.{what}")) as f:
                return f.read().strip()
        except OSError:
            raise Fail(f"hook {tag} did not run (no {tag}.{what})") from None

    def state(self, tag) -> dict:
        raw = self.read(tag, "state")
        try:
            return json.loads(raw)
        except ValueError:
            raise Fail(f"hook {tag} stdin is not a JSON state: {raw[:120]!r}") from None

    def order(self) -> list[str]:
        try:
            with open(os.path.join(self.out, "order")) as f:
                return f.read().split()
        except OSError:
            return []


def _host_mntns() -> str:
    return os.readlink("/proc/self/ns/mnt")


def _created(ctx, h):
    return ctx.created(bundle=h.b)


CREATE_HOOKS = ("prestart", "createRuntime", "createContainer")


def _make_runs_test(kind):
    phase = "create" if kind in CREATE_HOOKS else ("start" if kind in ("startContainer", "poststart")
                                                   else "delete")

    @conformance_test(f"hook-{kind}-runs", "config.md#posix-platform-hooks", "MUST",
                      f"{kind} hooks run during {phase}")
    def t(ctx):
        h = Hooks(ctx)
        h.add(kind, delay=0.3)  # the operation must wait for its hooks
        c = _created(ctx, h)
        check_eq(h.ran(kind), phase == "create", f"{kind} ran by the end of create")
        check(c.start().ok, "start failed")
        check_eq(h.ran(kind), phase in ("create", "start"), f"{kind} ran by the end of start")
        c.kill("KILL")
        c.wait_exit(5)
        c.wait_status("stopped", 5)
        check(c.delete().ok, "delete failed")
        check(h.ran(kind), f"{kind} never ran")

    @conformance_test(f"hook-{kind}-state-stdin", "config.md#posix-platform-hooks", "MUST",
                      f"{kind} hooks get the container state on stdin")
    def t2(ctx):
        h = Hooks(ctx)
        h.add(kind)
        c = _created(ctx, h)
        check(c.start().ok, "start failed")
        if kind in ("startContainer", "poststart"):
            h.wait_ran(kind)  # about what the hook gets, not when it runs
        c.kill("KILL")
        c.wait_exit(5)
        c.wait_status("stopped", 5)
        c.delete()
        st = h.state(kind)
        check_eq(st.get("id"), c.id, "state.id on stdin")
        check_eq(os.path.realpath(st.get("bundle", "")), os.path.realpath(h.b.path), "state.bundle on stdin")
        check(isinstance(st.get("ociVersion"), str), "state.ociVersion missing on stdin")
        want = {"prestart": {"creating", "created"}, "createRuntime": {"creating", "created"},
                "createContainer": {"creating", "created"}, "startContainer": {"created"},
                "poststart": {"created", "running"}, "poststop": {"stopped"}}[kind]
        check(st.get("status") in want, f"status {st.get('status')!r}, want one of {sorted(want)}")
        if kind != "poststop":
            check(isinstance(st.get("pid"), int) and st["pid"] > 0, f"pid {st.get('pid')!r} on stdin")
    return t, t2


for _k in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
    _make_runs_test(_k)


@conformance_test("hook-order-create", "runtime.md#lifecycle", "MUST",
                  "prestart, then createRuntime, then createContainer")
def t_order(ctx):
    h = Hooks(ctx)
    for k in ("createContainer", "createRuntime", "prestart"):  # dict order must not matter
        h.add(k)
    _created(ctx, h)
    check_eq(h.order(), ["prestart", "createRuntime", "createContainer"], "hook order")


@conformance_test("hook-order-start", "runtime.md#lifecycle", "MUST",
                  "startContainer before the program, poststart after it")
def t_order_start(ctx):
    h = Hooks(ctx, args=["/bin/sh", "-c", "echo program >> /hookout/order; sleep 30"])
    h.add("poststart")
    h.add("startContainer", delay=0.3)  # a runtime that does not wait for it is caught every time
    c = _created(ctx, h)
    check(not h.ran("poststart"), "poststart ran during create, before the program was started")
    check(c.start().ok, "start failed")
    order = h.order()
    check(order[:1] == ["startContainer"] and "poststart" in order, f"order {order}")
    # poststart must follow the exec of the program: what the hook saw as the
    # container process's command line is the program's, not the runtime's init
    cmd = h.read("poststart", "ctrcmd")
    check(cmd.startswith("/bin/sh -c echo program") or cmd.split()[:2] in (["/bin/sleep", "30"], ["sleep", "30"]),
          f"poststart ran while the container process was still {cmd!r}, not the program")
    # the program's own line may race poststart, so for it only require that
    # startContainer ran before the program wrote
    end = time.time() + 3
    while "program" not in h.order() and time.time() < end:
        time.sleep(0.05)
    order = h.order()
    check("program" in order, f"the program never wrote its line: order {order}")
    check(order.index("startContainer") < order.index("program"), f"order {order}")


@conformance_test("hook-array-order", "config.md#posix-platform-hooks", "MUST",
                  "hooks of one type run in the order listed")
def t_array_order(ctx):
    h = Hooks(ctx)
    for tag in ("first", "second", "third"):
        h.add("createRuntime", tag=tag)
    _created(ctx, h)
    check_eq(h.order(), ["first", "second", "third"], "order")


@conformance_test("hook-args", "config.md#posix-platform-hooks", "MUST",
                  "hook args are passed with execv semantics")
def t_args(ctx):
    h = Hooks(ctx)
    h.b.config["hooks"] = {"createRuntime": [{"path": h.host_script,
                                              "args": [h.host_script, "argtest", "x y", "z"]}]}
    _created(ctx, h)
    check_eq(h.read("argtest", "argv"), "argtest x y z", "hook argv[1:]")


@conformance_test("hook-env", "config.md#posix-platform-hooks", "MUST",
                  "hook env is exactly the configured env (nothing inherited)")
def t_env(ctx):
    os.environ["OCI_CONFORMANCE_LEAK"] = "1"
    ctx.finalizers.append(lambda: os.environ.pop("OCI_CONFORMANCE_LEAK", None))
    h = Hooks(ctx)
    h.add("createRuntime", env=["FOO=bar"])
    _created(ctx, h)
    env = h.read("createRuntime", "env").splitlines()
    check("FOO=bar" in env, f"FOO=bar missing from {env}")
    check(not any(e.startswith("OCI_CONFORMANCE_LEAK=") for e in env), "runtime env leaked into hook")


@conformance_test("hook-createRuntime-runtime-ns", "config.md#createruntime-hooks", "MUST",
                  "createRuntime hooks run in the runtime namespace")
def t_cr_ns(ctx):
    h = Hooks(ctx)
    h.add("createRuntime")
    _created(ctx, h)
    check_eq(h.read("createRuntime", "mntns"), _host_mntns(), "hook mount ns")


@conformance_test("hook-prestart-runtime-ns", "config.md#prestart", "MUST",
                  "prestart hooks run in the runtime namespace")
def t_ps_ns(ctx):
    h = Hooks(ctx)
    h.add("prestart")
    _created(ctx, h)
    check_eq(h.read("prestart", "mntns"), _host_mntns(), "hook mount ns")


@conformance_test("hook-prestart-pid-ns-created", "config.md#prestart", "MUST",
                  "prestart runs after the container namespaces exist (pid in state has a new pid ns)")
def t_ps_after_ns(ctx):
    h = Hooks(ctx)
    h.add("prestart")
    c = _created(ctx, h)
    pid = h.state("prestart").get("pid")
    check(isinstance(pid, int) and pid > 0, f"prestart state pid {pid!r}")
    # recorded by the hook itself while it ran, so no race with the process
    seen = h.read("prestart", "ctrpidns")
    check(seen != os.readlink("/proc/self/ns/pid"), f"the process prestart saw was in the host pid namespace ({seen})")
    check_eq(seen, os.readlink(f"/proc/{c.pid}/ns/pid"), "pid namespace of the process prestart saw")


@conformance_test("hook-createContainer-container-ns", "config.md#createcontainer-hooks", "MUST",
                  "createContainer hooks run in the container's mount namespace")
def t_cc_ns(ctx):
    h = Hooks(ctx)
    h.add("createContainer")
    c = _created(ctx, h)
    check_eq(h.read("createContainer", "mntns"), os.readlink(f"/proc/{c.pid}/ns/mnt"), "hook mount ns")


@conformance_test("hook-startContainer-container-ns", "config.md#startcontainer-hooks", "MUST",
                  "startContainer hooks run in the container namespace, path resolved inside it")
def t_sc_ns(ctx):
    h = Hooks(ctx)
    h.add("startContainer")
    c = _created(ctx, h)
    check(c.start().ok, "start failed")
    h.wait_ran("startContainer")
    check_eq(h.read("startContainer", "mntns"), os.readlink(f"/proc/{c.pid}/ns/mnt"), "hook mount ns")
    check_eq(h.read("startContainer", "pidns"), os.readlink(f"/proc/{c.pid}/ns/pid"), "hook pid ns")


@conformance_test("hook-poststart-runtime-ns", "config.md#poststart", "MUST",
                  "poststart hooks run in the runtime namespace")
def t_pst_ns(ctx):
    h = Hooks(ctx)
    h.add("poststart")
    c = _created(ctx, h)
    check(c.start().ok, "start failed")
    h.wait_ran("poststart")
    check_eq(h.read("poststart", "mntns"), _host_mntns(), "hook mount ns")


@conformance_test("hook-poststop-runtime-ns", "config.md#poststop", "MUST",
                  "poststop hooks run in the runtime namespace")
def t_psp_ns(ctx):
    h = Hooks(ctx, args=["/bin/true"])
    h.add("poststop")
    c = _created(ctx, h)
    check(c.start().ok, "start failed")
    c.wait_exit(5)
    c.wait_status("stopped", 5)
    check(c.delete().ok, "delete failed")
    check_eq(h.read("poststop", "mntns"), _host_mntns(), "hook mount ns")


def _make_create_fail(kind):
    @conformance_test(f"hook-{kind}-fail", "runtime.md#lifecycle", "MUST",
                      f"a failing {kind} hook makes create fail and the container is destroyed")
    def t(ctx):
        h = Hooks(ctx)
        h.add(kind, exit=1)
        c = ctx.container(bundle=h.b)
        r = c.create()
        check(not r.ok, f"create succeeded despite a failing {kind} hook")
        check(h.ran(kind), f"{kind} hook never ran")
        # "stop the container and continue at step 12": destroyed, not left stopped
        st = c.state()
        check(not isinstance(st, dict),
              f"container left behind in status {st.get('status') if isinstance(st, dict) else '?'}")
    return t


for _k in CREATE_HOOKS:
    _make_create_fail(_k)


@conformance_test("hook-startContainer-fail", "runtime.md#lifecycle", "MUST",
                  "a failing startContainer hook makes start fail, the program never runs")
def t_sc_fail(ctx):
    h = Hooks(ctx, args=["/bin/sh", "-c", "echo program-ran; sleep 30"])
    h.add("startContainer", exit=1)
    c = _created(ctx, h)
    r = c.start()
    check(not r.ok, "start succeeded despite a failing startContainer hook")
    time.sleep(0.2)
    check("program-ran" not in c.stdout(), "the user program ran")
    check(c.wait_exit(5), "container process still alive")
    st = c.state()  # the lifecycle continues at step 12: destroy
    check(not isinstance(st, dict), "container not destroyed after the startContainer failure")


@conformance_test("hook-poststart-fail", "runtime.md#lifecycle", "MUST",
                  "a failing poststart hook makes start fail and stops the container (v1.3.0)")
def t_pst_fail(ctx):
    h = Hooks(ctx)
    h.add("poststart", exit=1)
    c = _created(ctx, h)
    r = c.start()
    check(not r.ok, "start succeeded despite a failing poststart hook")
    check(c.wait_exit(5), "container still running after the poststart failure")
    st = c.state()  # the lifecycle continues at step 12: destroy
    check(not isinstance(st, dict), "container not destroyed after the poststart failure")


@conformance_test("hook-poststop-fail-warning", "runtime.md#lifecycle", "MUST",
                  "a failing poststop hook is only a warning: delete succeeds and later hooks run")
def t_psp_fail(ctx):
    h = Hooks(ctx, args=["/bin/true"])
    h.add("poststop", tag="bad", exit=1)
    h.add("poststop", tag="good")
    c = _created(ctx, h)
    check(c.start().ok, "start failed")
    c.wait_exit(5)
    c.wait_status("stopped", 5)
    r = c.delete()
    check(r.ok, f"delete failed because of the poststop hook: {r.brief()}")
    check(h.ran("good"), "the poststop hook after the failing one did not run")
    check(not c.state_raw().ok, "container still exists")


@conformance_test("hook-timeout", "config.md#posix-platform-hooks", "SHOULD",
                  "a hook running past its timeout is aborted and counts as failed")
def t_timeout(ctx):
    h = Hooks(ctx)
    h.add("createRuntime", sleep=20, timeout=1)
    c = ctx.container(bundle=h.b)
    t0 = time.monotonic()
    r = c.create(timeout=30)
    took = time.monotonic() - t0
    check(not r.ok, "create succeeded although the hook overran its timeout")
    check(took < 15, f"create took {took:.1f}s: the hook was not aborted")


@conformance_test("hook-timeout-zero", "config.md#posix-platform-hooks", "MUST",
                  "a hook timeout of 0 is invalid (must be > 0) and is refused")
def t_timeout_zero(ctx):
    def mut(cfg):
        cfg["hooks"] = {"createRuntime": [{"path": "/bin/true", "timeout": 0}]}
    ctx.expect_create_error(mut, "hook timeout 0",
                            control=lambda cfg: cfg.update(hooks={"createRuntime": [{"path": "/bin/true",
                                                                                     "timeout": 5}]}),
                            control_what="createRuntime hook with timeout 5")


@conformance_test("hook-poststart-pid", "runtime.md#state", "MUST",
                  "poststart (runtime namespace) gets the host PID of the container process")
def t_pst_pid(ctx):
    h = Hooks(ctx)
    h.add("poststart")
    c = _created(ctx, h)
    check(c.start().ok, "start failed")
    h.wait_ran("poststart")
    check_eq(h.state("poststart").get("pid"), c.pid, "pid on poststart stdin")


@conformance_test("hook-createRuntime-sees-mounts", "config.md#createruntime-hooks", "MUST",
                  "createRuntime runs after the container's mounts are set up")
def t_cr_mounts(ctx):
    h = Hooks(ctx)
    h.b.config["mounts"].append({"destination": "/mnt/hookmark", "type": "tmpfs", "source": "hookmark"})
    h.add("createRuntime")
    c = _created(ctx, h)
    pid = h.state("createRuntime")["pid"]
    check_eq(pid, c.pid, "pid on createRuntime stdin")
    # what the hook read from /proc/<pid>/mountinfo while it ran: the configured
    # tmpfs is there (under the rootfs path before pivot_root, or at /mnt/hookmark)
    mounts = [ln.split() for ln in h.read("createRuntime", "ctrmounts").splitlines()]
    hit = [m for m in mounts if len(m) > 4 and m[4].endswith("/mnt/hookmark") and "tmpfs" in m]
    check(hit, f"the container's mounts as the createRuntime hook saw them lack /mnt/hookmark "
               f"({len(mounts)} mounts)")
