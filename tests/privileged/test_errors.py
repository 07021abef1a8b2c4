"""Bad input and refused operations (issue 2, point 10; runtime.md ``create``: on error "no
container may be created"; ``start``/``kill``/``delete``: a container in the wrong state
is an error "with no effect"; RUNC-CLI.md sections 3 and 4 for exit codes and logs).

Every failure must: exit 1, print exactly one line on stderr (``ocirun: ...``; runc's
text log line is accepted when runc is under test), show no traceback, and leave nothing
behind: no ``<root>/<id>``, no mount under the test's directory, no cgroup named after the
id, no process carrying the test's token.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import pytest

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def is_warning(line: str) -> bool:
    return line.startswith("ocirun: warning:") or "level=warning" in line


def assert_clean_failure(
    lab: Any, r: Any, cid: str | None, *phrases: str, runc_lines_ok: bool = False
) -> None:
    """``runc_lines_ok``: runc is known to print several lines for this failure."""
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r
    # Warnings (e.g. an ambient capability the template lists without inheritable) may come
    # first; the failure itself is one line.
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not is_warning(ln)]
    if not (lab.is_runc and runc_lines_ok):
        assert len(lines) == 1, f"want exactly one line on stderr: {r!r}"
    if lab.is_runc:
        # runc's text log line quotes the message: msg="... \"nosuch\" ..."
        lines = [ln.replace('\\"', '"') for ln in lines]
    else:
        assert lines[0].startswith("ocirun: "), lines[0]
    for phrase in phrases:
        assert any(phrase in ln for ln in lines), (phrase, lines)
    if cid is not None:
        assert lab.leftovers(cid) == []
    # A failed command never leaves a state directory, whatever id it was given.
    assert not os.path.isdir(lab.root) or os.listdir(lab.root) == [] or cid is None


def create_fails(lab: Any, mutate: Callable[[dict[str, Any]], Any] | None, *phrases: str,
                 args: list[str] | None = None, runc_lines_ok: bool = False) -> Any:
    b = lab.bundle(args or ["true"], mutate)
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert_clean_failure(lab, r, cid, *phrases, runc_lines_ok=runc_lines_ok)
    return r


# -- the bundle and its config -------------------------------------------------------------

def test_missing_bundle(lab: Any) -> None:
    cid = lab.new_id()
    r = lab.cli("create", "--bundle", os.path.join(lab.workdir, "nonexistent"), cid)
    assert_clean_failure(lab, r, cid)


def test_bundle_without_config(lab: Any) -> None:
    b = lab.bundle(["true"])
    os.unlink(os.path.join(b.path, "config.json"))
    cid = lab.new_id()
    assert_clean_failure(lab, lab.create(b, cid), cid, "config.json")


@pytest.mark.parametrize("text", ["{not json", "", "[]", '{"ociVersion": "1.3.0",'])
def test_malformed_json(lab: Any, text: str) -> None:
    b = lab.bundle(["true"])
    with open(os.path.join(b.path, "config.json"), "w") as f:
        f.write(text)
    cid = lab.new_id()
    assert_clean_failure(lab, lab.create(b, cid), cid)


SCHEMA_VIOLATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "args-not-array": lambda c: c["process"].update(args="sh"),
    "uid-negative-string": lambda c: c["process"]["user"].update(uid="zero"),
    "root-path-number": lambda c: c["root"].update(path=5),
    "mounts-not-array": lambda c: c.update(mounts={"destination": "/x"}),
    "rlimit-soft-string": lambda c: c["process"]["rlimits"][0].update(soft="many"),
    "namespaces-not-array": lambda c: c["linux"].update(namespaces="pid"),
}


@pytest.mark.parametrize("name", sorted(SCHEMA_VIOLATIONS))
def test_schema_violation(lab: Any, name: str) -> None:
    create_fails(lab, SCHEMA_VIOLATIONS[name])


@pytest.mark.runc_differs  # runc 1.1.5 accepts these; the spec's schema does not
@pytest.mark.parametrize("name,mutate", [
    ("no-ociVersion", lambda c: c.pop("ociVersion")),
    ("cwd-relative", lambda c: c["process"].update(cwd="tmp")),
    ("unknown-namespace", lambda c: c["linux"]["namespaces"].append({"type": "bogus"})),
    ("bad-rlimit-type", lambda c: c["process"]["rlimits"].append({"type": "NOFILE", "soft": 1, "hard": 1})),
])
def test_schema_violation_spec_only(lab: Any, name: str, mutate: Any) -> None:
    create_fails(lab, mutate)


def test_schema_violation_names_json_path(lab: Any) -> None:
    r = create_fails(lab, SCHEMA_VIOLATIONS["args-not-array"])
    if not lab.is_runc:
        assert "process.args" in r.stderr or "/process/args" in r.stderr, r.stderr


def test_missing_root_path(lab: Any) -> None:
    create_fails(lab, lambda c: c["root"].update(path=os.path.join(lab.workdir, "no-rootfs")))


def test_root_path_is_a_file(lab: Any) -> None:
    path = os.path.join(lab.workdir, "a-file")
    open(path, "w").close()
    create_fails(lab, lambda c: c["root"].update(path=path))


# -- ids ---------------------------------------------------------------------------------------

def test_duplicate_id(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.create(b, cid).ok()
    before = lab.state(cid)
    r = lab.create(b, cid)
    assert r.returncode == 1 and "already exists" in r.stderr, r
    assert len([ln for ln in r.stderr.splitlines() if ln.strip() and not is_warning(ln)]) == 1, r
    # The existing container is untouched.
    assert lab.state(cid) == before


@pytest.mark.parametrize("bad", ["bad/id", "..", ".", "has space", "semi;colon", "a\nb"])
def test_bad_id(lab: Any, bad: str) -> None:
    b = lab.bundle(["true"])
    r = lab.create(b, bad)
    assert_clean_failure(lab, r, None)
    assert not os.path.isdir(lab.root) or os.listdir(lab.root) == []


# -- failures inside the container's set-up ----------------------------------------------------

def test_executable_not_found(lab: Any) -> None:
    create_fails(lab, None, 'exec: "nosuch": executable file not found in $PATH', args=["nosuch"])


def test_executable_not_found_with_run(lab: Any) -> None:
    b = lab.bundle(["nosuch"])
    cid = lab.new_id()
    r = lab.run(b, cid)
    assert_clean_failure(lab, r, cid, 'exec: "nosuch": executable file not found in $PATH')


def test_absolute_executable_missing(lab: Any) -> None:
    create_fails(lab, None, "no such file or directory", args=["/bin/nosuch"])


def test_executable_not_executable(lab: Any) -> None:
    # /etc/passwd exists but is not executable (mode 0644).
    create_fails(lab, None, "permission denied", args=["/etc/passwd"])


def test_cwd_is_a_file(lab: Any) -> None:
    create_fails(lab, lambda c: c["process"].update(cwd="/etc/passwd"))


def test_missing_mount_source(lab: Any) -> None:
    src = os.path.join(lab.workdir, "no-such-source")
    create_fails(lab, lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "none", "source": src, "options": ["bind"]}))


def test_unknown_filesystem_type(lab: Any) -> None:
    create_fails(lab, lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "nosuchfs", "source": "x"}))


def test_time_offset_the_kernel_refuses(lab: Any) -> None:
    """The kernel refuses offsets beyond KTIME_SEC_MAX (~9.2e9 s) when the
    intermediate writes them (I4).  With a plan that joins no namespace the
    nursery does I4 while the runtime makes the state dir and the cgroup:
    its error is the create's, reported once, with nothing left behind."""
    if not os.path.exists("/proc/self/timens_offsets"):
        pytest.skip("no time namespaces on this kernel")

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["linux"]["namespaces"].append({"type": "time"})
        cfg["linux"]["timeOffsets"] = {"monotonic": {"secs": 10**10, "nanosecs": 0}}

    create_fails(lab, mutate, "timens_offsets", "out of range")


@pytest.mark.parametrize("path", ["/nonexistent/ns/net", "/etc/hostname"])
def test_bad_namespace_path(lab: Any, path: str) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        for ns in cfg["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = path

    # runc 1.1.5 prints its nsexec failure plus cgroup-removal warnings for the second case.
    create_fails(lab, mutate, runc_lines_ok=True)


@pytest.mark.parametrize("phase", ["prestart", "createRuntime", "createContainer"])
def test_failing_hook(lab: Any, phase: str) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["hooks"] = {phase: [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]}

    create_fails(lab, mutate)


def test_hook_timeout(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]}

    create_fails(lab, mutate)


def test_hook_path_missing(lab: Any) -> None:
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["hooks"] = {"createRuntime": [{"path": "/no/such/hook"}]}

    create_fails(lab, mutate)


def test_terminal_without_console_socket(lab: Any) -> None:
    create_fails(lab, lambda c: c["process"].update(terminal=True))


def test_console_socket_without_terminal(lab: Any) -> None:
    b = lab.bundle(["true"])
    cid = lab.new_id()
    r = lab.create(b, cid, "--console-socket", os.path.join(lab.workdir, "sock"))
    assert_clean_failure(lab, r, cid)


# -- operations in the wrong state -------------------------------------------------------------

def running(lab: Any) -> str:
    cid = lab.new_id()
    lab.run(lab.bundle(["sleep", "100"]), cid, "--detach").ok()
    return cid


def stopped(lab: Any) -> str:
    cid = lab.new_id()
    lab.run(lab.bundle(["true"]), cid, "--detach").ok()
    lab.wait_status(cid, "stopped")
    return cid


def test_kill_stopped_container(lab: Any) -> None:
    cid = stopped(lab)
    r = lab.cli("kill", cid, "KILL")
    assert_clean_failure(lab, r, None, "container not running")
    assert lab.status(cid) == "stopped"


def test_delete_running_container(lab: Any) -> None:
    cid = running(lab)
    before = lab.state(cid)
    r = lab.cli("delete", cid)
    assert_clean_failure(lab, r, None)
    assert lab.state(cid) == before


def test_start_running_container(lab: Any) -> None:
    cid = running(lab)
    before = lab.state(cid)
    r = lab.cli("start", cid)
    assert_clean_failure(lab, r, None, "running")
    assert lab.state(cid) == before


def test_start_stopped_container(lab: Any) -> None:
    cid = stopped(lab)
    r = lab.cli("start", cid)
    assert_clean_failure(lab, r, None, "stopped")
    assert lab.status(cid) == "stopped"


@pytest.mark.parametrize("args", [("state",), ("start",), ("kill",), ("delete",)])
def test_unknown_container(lab: Any, args: tuple[str, ...]) -> None:
    cid = lab.new_id()
    r = lab.cli(*args, cid)
    assert_clean_failure(lab, r, cid, "does not exist")


def test_missing_id_argument(lab: Any) -> None:
    r = lab.cli("state")
    assert r.returncode == 1 and "Traceback" not in r.stderr


def test_unknown_flag(lab: Any) -> None:
    r = lab.cli("state", "--no-such-flag", lab.new_id())
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "flag provided but not defined" in r.stderr + r.stdout


# -- --log / --log-format json -----------------------------------------------------------------

@pytest.mark.parametrize("what", ["unknown-id", "bad-config"])
def test_json_log_has_one_error_line(lab: Any, what: str) -> None:
    log = os.path.join(lab.workdir, "log.json")
    cid = lab.new_id()
    glob = ("--log", log, "--log-format", "json")
    if what == "unknown-id":
        r = lab.cli("state", cid, global_args=glob)
        phrase = "does not exist"
    else:
        b = lab.bundle(["nosuch"])
        r = lab.cli("create", "--bundle", b.path, cid, global_args=glob)
        phrase = "executable file not found"
    assert r.returncode == 1
    with open(log) as f:
        lines = [ln for ln in f.read().splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert list(entry) == ["level", "msg", "time"]
    assert entry["level"] == "error" and phrase in entry["msg"]
    assert RFC3339.match(entry["time"]), entry["time"]
    # With --log, stderr still carries the bare message (what conmon shows the user).
    assert phrase in r.stderr and "Traceback" not in r.stderr
    assert lab.leftovers(cid) == []


def test_invalid_log_format(lab: Any) -> None:
    r = lab.cli("state", lab.new_id(), global_args=("--log-format", "xml"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
