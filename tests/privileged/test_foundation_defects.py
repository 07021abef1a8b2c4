"""Regression tests for the defects of issue 7 item 7 (found by running other
projects' tests against ocirun), each against a real container."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any

import pytest

from bundle import DEFAULT_CAPS


def caps_with(*extra: str) -> Any:
    def mutate(cfg: dict[str, Any]) -> None:
        names = DEFAULT_CAPS + list(extra)
        cfg["process"]["capabilities"] = {k: list(names) for k in
                                          ("bounding", "effective", "permitted")}
    return mutate


def userns_mapping(cfg: dict[str, Any], host: int = 100000) -> None:
    """A new user namespace, container 0-65535 -> host ``host``..."""
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": host, "size": 65536}]


def test_no_pivot_hides_the_hosts_full_procfs(lab: Any) -> None:
    """With --no-pivot the old root stays below the chroot.  A nested user
    namespace may mount a fresh proc only while a fully visible one exists in
    the mount namespace, so the host's /proc must be detached or covered."""
    script = ("unshare -mrpf sh -c 'mount -t proc none /proc && echo MOUNTED || echo REFUSED' "
              "2>&1; true")
    b = lab.bundle(["sh", "-c", script], caps_with("CAP_SETFCAP", "CAP_SETUID", "CAP_SETGID"))
    r = lab.run(b, None, "--no-pivot")
    assert r.returncode == 0, r
    assert "MOUNTED" not in r.stdout, r
    assert "REFUSED" in r.stdout, r


def test_cwd_only_root_can_enter(lab: Any) -> None:
    """process.cwd is entered while still root, as runc does: a 0700 directory
    works for user 42 (the process stays in it after the switch)."""
    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["user"] = {"uid": 42, "gid": 42}
        cfg["process"]["cwd"] = "/secret"
        cfg["root"]["readonly"] = False

    b = lab.bundle(["sh", "-c", "pwd; id -u; ls . >/dev/null 2>&1 && echo LISTED || echo NOLIST"],
                   mutate, private_rootfs=True)
    os.mkdir(os.path.join(b.rootfs, "secret"), 0o700)
    r = lab.run(b)
    assert r.returncode == 0, r
    assert r.stdout.split() == ["/secret", "42", "NOLIST"], r


def test_userns_bind_source_the_mapped_root_cannot_reach(lab: Any, tmp_path: Any) -> None:
    """The runtime clones bind sources (open_tree) before the user namespace
    applies: a source below a 0700 host directory still works.  (The rootfs
    itself must stay reachable by the mapped root, as with runc: it lives in
    a world-traversable directory here.)"""
    import shutil
    import tempfile

    import bundle as bundle_mod
    private = tmp_path / "private"
    data = private / "data"
    data.mkdir(parents=True)
    (data / "f").write_text("hello from the host\n")
    private.chmod(0o700)

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["process"]["env"].append(f"OCITEST={lab.token}")
        userns_mapping(cfg)
        cfg["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(data),
                              "options": ["rbind", "ro"]})

    top = tempfile.mkdtemp(prefix="ocirun-userns-")
    try:
        os.chmod(top, 0o755)
        bundle_mod.build_rootfs(os.path.join(top, "rootfs"))
        bundle_mod.write_bundle(top, os.path.join(top, "rootfs"), ["cat", "/mnt/f"], mutate)
        r = lab.cli("run", "--bundle", top, lab.new_id())
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert r.returncode == 0, r
    assert r.stdout == "hello from the host\n"


def test_early_init_failure_reports_the_inits_error(lab: Any) -> None:
    """The init fails before it reads cgroup_ready: the parent must report the
    init's own error, not 'child exited before it got cgroup_ready'."""
    from test_errors import create_fails

    def mutate(cfg: dict[str, Any]) -> None:
        cfg["mounts"].insert(0, {"destination": "/x", "type": "nosuchfs", "source": "none"})

    for _ in range(5):  # it used to depend on timing
        r = create_fails(lab, mutate, "nosuchfs")
        assert "exited" not in r.stderr and "No such device" in r.stderr, r


def test_kill_signal_zero(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.run(b, cid, "--detach").ok()
    lab.cli("kill", cid, "0").ok()
    assert lab.status(cid) == "running"  # a probe delivers nothing
    lab.cli("kill", cid, "KILL").ok()
    lab.wait_status(cid, "stopped")
    r = lab.cli("kill", cid, "0")
    assert r.returncode == 1 and "container not running" in r.stderr
    lab.cli("kill", "--all", cid, "0").ok()  # runc 1.1.5 answers 0 here
    lab.cli("delete", cid).ok()


@pytest.mark.parametrize("name", ["proc", "sys"])
def test_rootfs_proc_or_sys_symlink_is_refused(lab: Any, name: str) -> None:
    from test_errors import assert_clean_failure
    b = lab.bundle(["true"], private_rootfs=True)
    target = os.path.join(b.rootfs, name)
    os.rmdir(target)
    os.symlink("/tmp", target)
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert_clean_failure(lab, r, cid, f"`/{name}` in the rootfs", "symlink")


def test_empty_annotation_key_is_refused(lab: Any) -> None:
    from test_errors import create_fails
    create_fails(lab, lambda c: c.update(annotations={"": "x"}), "annotations")


def test_malformed_config_names_line_and_column(lab: Any) -> None:
    from test_errors import assert_clean_failure
    b = lab.bundle(["true"])
    path = os.path.join(b.path, "config.json")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip().rstrip("}") + ',"x": 1,}')  # a trailing comma
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert_clean_failure(lab, r, cid, "malformed JSON at line", "column")
    assert "SystemError" not in r.stderr and "internal error" not in r.stderr


def test_directory_as_executable_is_permission_denied(lab: Any) -> None:
    from test_errors import create_fails
    create_fails(lab, None, 'exec: "/etc": permission denied', args=["/etc"])


def test_env_entry_without_equals_is_refused(lab: Any) -> None:
    from test_errors import create_fails
    create_fails(lab, lambda c: c["process"]["env"].append("PATHLESS"),
                 "$.process.env[", "PATHLESS", "KEY=value")


def test_run_survives_a_signal_while_the_container_starts(lab: Any) -> None:
    """A signal that reaches foreground `run` while it creates and starts the
    container must not kill the runtime (it used to, leaving a container in
    `created` and its init parked at the exec FIFO forever): it is queued and
    delivered to the program once it runs."""
    script = "trap 'exit 7' USR1; i=0; while [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; exit 0"

    def no_pidns(cfg: dict[str, Any]) -> None:
        # pid 1 of a pid namespace ignores signals it has no handler for, so
        # a signal delivered before sh's trap would vanish: without one, it
        # must show up as either the trap's 7 or a death by SIGUSR1 (138).
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"]
                                      if n["type"] != "pid"]

    b = lab.bundle(["sh", "-c", script], no_pidns)
    for delay_ms in (0, 0, 0, 1, 2, 4, 6, 10, 15, 25):
        cid = lab.new_id()
        p = lab.popen("run", "--bundle", b.path, cid, stdout=subprocess.DEVNULL,
                      stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        # Hit it while create is under way (its state directory exists), and
        # a little later, during start.
        while not os.path.isdir(os.path.join(lab.root, cid)) and p.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.0002)
        time.sleep(delay_ms / 1000)
        p.send_signal(signal.SIGUSR1)
        _, err = p.communicate(timeout=30)
        # exit 7: the trap ran; 138: the signal came before sh set the trap.
        # Never negative (the runtime killed) and never 0 (the signal lost).
        assert p.returncode in (7, 138), (delay_ms, p.returncode, err)
        assert lab.leftovers(cid) == [], delay_ms
        assert not os.path.isdir(os.path.join(lab.root, cid))


def test_status_predicates_refuse_in_runcs_words(lab: Any) -> None:
    b = lab.bundle(["sleep", "100"])
    cid = lab.new_id()
    lab.create(b, cid).ok()
    r = lab.cli("delete", cid)
    assert r.returncode == 1 and f"cannot delete container {cid} that is not stopped: created" in r.stderr
    lab.cli("start", cid).ok()
    r = lab.cli("start", cid)
    assert "cannot start an already running container" in r.stderr
    lab.cli("kill", cid, "KILL").ok()
    lab.wait_status(cid, "stopped")
    assert "cannot start a container that has stopped" in lab.cli("start", cid).stderr
    assert json.loads(lab.cli("state", cid).ok().stdout)["status"] == "stopped"
    lab.cli("delete", cid).ok()
