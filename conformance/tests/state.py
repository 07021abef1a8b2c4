"""runtime.md#state and runtime.md#query-state: the state object and its statuses."""
from __future__ import annotations

import json
import os
import time

from conformance.registry import Fail, Skip, check, check_eq, conformance_test
from conformance.runtime import pid_alive

SLEEP = ["/bin/sleep", "30"]


def _state(c) -> dict:
    st = c.state()
    if not isinstance(st, dict):
        raise Fail(f"state failed: {st.brief()}")
    return st


@conformance_test("state-required-fields", "runtime.md#state", "MUST",
                  "state has ociVersion, id, status and bundle")
def t_required(ctx):
    st = _state(ctx.created(args=SLEEP))
    missing = [k for k in ("ociVersion", "id", "status", "bundle") if k not in st]
    check(not missing, f"state lacks {missing}")


@conformance_test("state-id", "runtime.md#state", "MUST", "state.id is the container's ID")
def t_id(ctx):
    c = ctx.created(args=SLEEP)
    check_eq(_state(c).get("id"), c.id, "state.id")


@conformance_test("state-ociversion", "runtime.md#state", "MUST", "state.ociVersion is a non-empty string")
def t_ociversion(ctx):
    v = _state(ctx.created(args=SLEEP)).get("ociVersion")
    check(isinstance(v, str) and v, f"ociVersion {v!r}")


@conformance_test("state-bundle-absolute", "runtime.md#state", "MUST",
                  "state.bundle is the absolute path of the bundle directory")
def t_bundle(ctx):
    c = ctx.created(args=SLEEP)
    b = _state(c).get("bundle")
    check(isinstance(b, str) and os.path.isabs(b), f"bundle {b!r} is not absolute")
    check_eq(os.path.realpath(b), os.path.realpath(c.bundle.path), "state.bundle")


@conformance_test("state-bundle-relative-arg", "runtime.md#state", "MUST",
                  "state.bundle is absolute even when create got a relative bundle path")
def t_bundle_rel(ctx):
    c = ctx.container(args=SLEEP)
    c.bundle.write()
    parent, name = os.path.split(c.bundle.path)
    with open(c.out_path, "ab") as out:
        r = ctx.rt.call("create", "--bundle", name, c.id, cwd=parent, stdout=out)
    check(r.ok, f"create with relative bundle: {r.brief()}")
    b = _state(c).get("bundle")
    check(isinstance(b, str) and os.path.isabs(b), f"bundle {b!r} is not absolute")
    check_eq(os.path.realpath(b), os.path.realpath(c.bundle.path), "state.bundle")


@conformance_test("state-status-created", "runtime.md#state", "MUST",
                  "after create the status is `created`")
def t_created(ctx):
    check_eq(_state(ctx.created(args=SLEEP)).get("status"), "created", "status")


@conformance_test("state-pid-created", "runtime.md#state", "MUST",
                  "pid is present when created, and is a live host process")
def t_pid_created(ctx):
    st = _state(ctx.created(args=SLEEP))
    pid = st.get("pid")
    check(isinstance(pid, int) and pid > 0, f"pid {pid!r}")
    check(pid_alive(pid), f"pid {pid} is not alive on the host")


@conformance_test("state-status-running", "runtime.md#state", "MUST",
                  "after start (program exec'd, not exited) the status is `running`")
def t_running(ctx):
    c = ctx.created(args=SLEEP)
    r = c.start()
    check(r.ok, f"start: {r.brief()}")
    st = _state(c)
    check_eq(st.get("status"), "running", "status")
    pid = st.get("pid")
    check(isinstance(pid, int) and pid > 0, f"running pid {pid!r}")


@conformance_test("state-pid-is-user-process", "runtime.md#state", "MUST",
                  "after start, state.pid is the process running process.args")
def t_pid_running(ctx):
    c = ctx.created(args=SLEEP)
    check(c.start().ok, "start failed")
    pid = _state(c).get("pid")
    check(isinstance(pid, int) and pid > 0, f"pid {pid!r}")
    # the same pid execs the program; a runtime may return from start just
    # before the exec, so give it a moment (the pid itself must not change)
    end = time.monotonic() + 3
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:-1]]
        except OSError:
            argv = []
        if argv == SLEEP or time.monotonic() > end:
            break
        time.sleep(0.05)
    check_eq(argv, SLEEP, f"/proc/{pid}/cmdline")


@conformance_test("state-status-stopped", "runtime.md#state", "MUST",
                  "once the container process has exited the status is `stopped`")
def t_stopped(ctx):
    c, _ = ctx.run(args=["/bin/true"])
    check_eq(c.wait_status("stopped", 5), "stopped", "status")


@conformance_test("state-stopped-after-kill", "runtime.md#lifecycle", "MUST",
                  "a killed container reports `stopped`")
def t_stopped_kill(ctx):
    c = ctx.created(args=SLEEP)
    check(c.start().ok, "start failed")
    r = c.kill("KILL")
    check(r.ok, f"kill: {r.brief()}")
    check_eq(c.wait_status("stopped", 5), "stopped", "status")


@conformance_test("state-annotations", "runtime.md#state", "MUST",
                  "state.annotations holds the config's annotations")
def t_annotations(ctx):
    ann = {"org.example.a": "1", "org.example.b": ""}
    st = _state(ctx.created(lambda c: c.update(annotations=ann), args=SLEEP))
    check_eq(st.get("annotations"), ann, "annotations")


@conformance_test("state-annotations-absent", "runtime.md#state", "MAY",
                  "with no annotations, state.annotations is absent or empty")
def t_no_annotations(ctx):
    st = _state(ctx.created(args=SLEEP))
    check(st.get("annotations") in (None, {}), f"annotations {st.get('annotations')!r}")


@conformance_test("state-unknown-id", "runtime.md#query-state", "MUST",
                  "querying a container that does not exist is an error")
def t_unknown(ctx):
    r = ctx.rt.call("state", "conf-no-such-container")
    check(not r.ok, "state of an unknown id succeeded")


@conformance_test("state-no-id", "runtime.md#query-state", "MUST",
                  "state without a container ID is an error")
def t_noid(ctx):
    r = ctx.rt.call("state")
    check(not r.ok, "state with no id succeeded")


@conformance_test("state-schema", "runtime.md#state", "MUST",
                  "the serialized state validates against schema/state-schema.json")
def t_schema(ctx):
    try:
        import jsonschema
    except ImportError:
        raise Skip("python jsonschema not installed")
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "..", "shared", "oci-runtime-spec", "schema", "state-schema.json")
    path = os.environ.get("OCI_STATE_SCHEMA", path)
    if not os.path.exists(path):
        raise Skip(f"state schema not found at {os.path.normpath(path)} (set OCI_STATE_SCHEMA)")
    with open(path) as f:
        schema = json.load(f)
    c = ctx.created(args=SLEEP)
    for phase in ("created", "running"):
        if phase == "running":
            check(c.start().ok, "start failed")
        st = _state(c)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RefResolver is deprecated but still the simplest file:// resolver
            resolver = jsonschema.RefResolver(base_uri="file://" + os.path.dirname(os.path.abspath(path)) + "/",
                                              referrer=schema)
            validator = jsonschema.Draft4Validator(schema, resolver=resolver)
        try:
            validator.validate(st)
        except jsonschema.ValidationError as e:
            raise Fail(f"{phase} state: {e.message}") from None
