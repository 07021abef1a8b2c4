"""``ocirun check`` (issue 12 item 4): broken bundles, each explained by JSON path, spec
section and a fix; exit 0 / 1 / 2; host probes on fixtures; nothing created."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

import bundle as bundle_mod
from ocirun import cli
from ocirun.config import explain
from ocirun.ops import check, hostcheck

REPO = pathlib.Path(__file__).resolve().parents[2]
SPEC_TEXT = REPO.parent / "shared" / "oci-runtime-spec" / "text"
GENERIC = {"see the spec section", "correct the value as the section describes"}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    return bundle_mod.build_rootfs(str(tmp_path_factory.mktemp("check") / "rootfs"))


def _ns(cfg, kind):
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != kind]


def _mount(cfg):
    cfg["mounts"].append({"destination": "/data", "source": "nosuch", "options": ["bind"]})
    return f"$.mounts[{len(cfg['mounts']) - 1}].source"


# name -> (mutation, (JSON path, section) that must be reported as an error)
BROKEN = {
    "uid is a string": (lambda c: c["process"]["user"].update(uid="root"),
                        ("$.process.user.uid", "config.md#posix-platform-user")),
    "relative cwd": (lambda c: c["process"].update(cwd="work"), ("$.process.cwd", "config.md#process")),
    "missing bind source": (_mount, (None, "config.md#mounts")),
    "hostname, no uts namespace": (lambda c: (c.update(hostname="box"), _ns(c, "uts")),
                                   ("$.hostname", "config.md#hostname")),
    "host-wide sysctl": (lambda c: c["linux"].update(sysctl={"vm.swappiness": "10"}),
                         ('$.linux.sysctl["vm.swappiness"]', "config-linux.md#sysctl")),
    "uid map, no user namespace": (
        lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
                                    gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
        ("$.linux.uidMappings", "config-linux.md#user-namespace-mappings")),
    "rlimit soft above hard": (lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}]),
        ("$.process.rlimits[0]", "config.md#posix-process")),
    "hook not on the host": (lambda c: c.update(hooks={"prestart": [{"path": "/nonexistent/hook"}]}),
                             ("$.hooks.prestart[0].path", "config.md#posix-platform-hooks")),
    "program not in the rootfs": (lambda c: c["process"].update(args=["nosuch-program"]),
                                  ("$.process.args[0]", "config.md#process")),
    "time offsets, no time namespace": (
        lambda c: c["linux"].update(timeOffsets={"monotonic": {"secs": 5, "nanosecs": 0}}),
        ("$.linux.timeOffsets", "config-linux.md#offset-for-time-namespace")),
    "namespace listed twice": (lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
                               (None, "config-linux.md#namespaces")),
    "seccomp bad action": (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}),
                           ("$.linux.seccomp.defaultAction", "config-linux.md#seccomp")),
    "bad device type": (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "x"}]),
                        (None, "config-linux.md#devices")),
}


def _bundle(tmp_path, rootfs, mutate=None):
    b = tmp_path / "bundle"
    cfg = bundle_mod.write_bundle(str(b), rootfs=rootfs, args=["sh"], mutate=mutate)
    return b, cfg


def run_check(argv, capfd):
    status = cli.main(["check", *argv])
    out, err = capfd.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_bundle_is_explained(name, tmp_path, rootfs, capfd):
    mutate, (path, section) = BROKEN[name]
    paths = []
    b, cfg = _bundle(tmp_path, rootfs, lambda c: paths.append(mutate(c)))
    if path is None and isinstance(paths[0], str):
        path = paths[0]
    status, out, err = run_check(["--format", "json", "-b", str(b)], capfd)
    assert status == 1 and err == ""
    doc = json.loads(out)
    assert doc["runs"] is False and doc["error"] >= 1
    errors = [f for f in doc["findings"] if f["severity"] == "error"]
    hits = [f for f in errors if (path is None or f["path"] == path) and f["section"] == section]
    assert hits, f"{name}: no error at {path} / {section} in {errors}"
    f = hits[0]
    assert f["link"] == explain.SPEC_BASE + section
    assert f["level"] in ("MUST", "SHOULD", "portability")
    assert f["fix"] and f["fix"] not in GENERIC, f
    assert f["message"]
    # the text form says the same
    status, text, _ = run_check(["-b", str(b)], capfd)
    assert status == 1 and f"error: {f['path']}: {f['message']}" in text
    assert f"fix:  {f['fix']}" in text and text.rstrip().splitlines()[-1].startswith("would NOT run here")


def test_malformed_json_names_line_and_column(tmp_path, capfd):
    b = tmp_path / "b"
    b.mkdir()
    (b / "config.json").write_text('{\n  "ociVersion": "1.3.0",\n}\n')
    status, out, _ = run_check(["--format=json", str(b / "config.json")], capfd)
    doc = json.loads(out)
    assert status == 1 and doc["bundle"] == str(b)
    (f,) = doc["findings"]
    assert f["path"] == "$" and "line 3 column 1" in f["message"] and "trailing comma" in f["fix"]


def test_missing_bundle(tmp_path, capfd):
    status, out, _ = run_check(["-b", str(tmp_path / "nope")], capfd)
    assert status == 1 and "does not exist" in out and "bundle.md#container-format" in out


def test_good_bundle_runs(tmp_path, rootfs, capfd):
    b, _ = _bundle(tmp_path, rootfs)
    status, out, _ = run_check(["-f", "json", "-b", str(b)], capfd)
    doc = json.loads(out)
    assert status == 0 and doc["runs"] is True and doc["error"] == 0, doc["findings"]
    # from inside the bundle, with no argument at all
    old = os.getcwd()
    os.chdir(b)
    try:
        assert cli.main(["check"]) == 0
    finally:
        os.chdir(old)
    assert capfd.readouterr().out.rstrip().splitlines()[-1].startswith("would run here")


@pytest.mark.parametrize("argv", [["--format", "xml"], ["a", "b"], ["--nope"]])
def test_bad_usage_exits_2(argv, capfd):
    status, _, err = run_check(argv, capfd)
    assert status == 2 and err.startswith("ocirun: ")


def test_runc_compatible_usage_status_elsewhere(capfd):
    assert cli.main(["state", "--nope", "x"]) == 1


def test_runtime_differences_are_notes(tmp_path, rootfs, capfd):
    def mutate(c):
        c["domainname"] = "example.org"
        c["linux"]["personality"] = {"domain": "LINUX32"}
        c["linux"]["namespaces"].append({"type": "time"})
    b, _ = _bundle(tmp_path, rootfs, mutate)
    status, out, _ = run_check(["-f", "json", "-b", str(b)], capfd)
    doc = json.loads(out)
    assert status == 0, doc
    notes = {f["path"]: f for f in doc["findings"] if f["source"] == "runtimes"}
    for path in ("$.domainname", "$.linux.personality", "$.linux.namespaces.type", "$.ociVersion"):
        assert path in notes and notes[path]["level"] == "portability", sorted(notes)
    assert "runc 1.1.5" in notes["$.domainname"]["message"]


def test_check_creates_nothing(tmp_path, rootfs, capfd):
    b, _ = _bundle(tmp_path, rootfs)
    root = tmp_path / "state"
    before = sorted(os.listdir("/sys/fs/cgroup")) if os.path.isdir("/sys/fs/cgroup") else []
    assert cli.main(["--root", str(root), "check", "-b", str(b)]) == 0
    assert not root.exists()
    assert (sorted(os.listdir("/sys/fs/cgroup")) if before else []) == before
    capfd.readouterr()


def test_create_does_not_import_check_code(tmp_path):
    code = ("import sys; sys.path.insert(0, %r); from ocirun.cli import main; "
            "main(['--root', %r, 'create', '-b', '/nonexistent', 'c1'])" % (str(REPO), str(tmp_path)))
    r = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", "-c", code],
                       capture_output=True, text=True, check=False)
    mods = {ln.rsplit("|", 1)[1].strip() for ln in r.stderr.splitlines() if ln.startswith("import time:")}
    assert "ocirun.ops.create" in mods
    assert not mods & {"ocirun.ops.check", "ocirun.ops.hostcheck", "ocirun.config.explain"}


# -- host probes on fixtures -----------------------------------------------------------

def test_namespace_the_kernel_lacks(tmp_path):
    (tmp_path / "self" / "ns").mkdir(parents=True)
    for link in ("pid", "mnt"):
        (tmp_path / "self" / "ns" / link).write_text("")
    spec = {"linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "time"},
                                     {"type": "network", "path": "/proc/1/ns/net"}]}}
    found = hostcheck.namespaces(spec, proc=str(tmp_path))
    assert [(f.path, f.severity) for f in found] == [("$.linux.namespaces[2].type", "error")]
    assert "no time namespace" in found[0].message


def test_capability_outside_the_bounding_set(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "sys" / "kernel").mkdir(parents=True)
    (tmp_path / "sys" / "kernel" / "cap_last_cap").write_text("39\n")
    bounding = (1 << 21) - 1 & ~(1 << 12)  # 0..20 without CAP_NET_ADMIN (12)
    (tmp_path / "self" / "status").write_text(f"Name:\tx\nCapBnd:\t{bounding:016x}\n")
    spec = {"process": {"capabilities": {"bounding": ["CAP_KILL", "CAP_NET_ADMIN", "CAP_CHECKPOINT_RESTORE"],
                                         "effective": ["CAP_NET_ADMIN"]}}}
    found = hostcheck.capabilities(spec, proc=str(tmp_path))
    assert [f.path for f in found] == ["$.process.capabilities.bounding[1]",
                                       "$.process.capabilities.bounding[2]"]
    assert "bounding set" in found[0].message and "newer than this kernel" in found[1].message
    assert all(f.severity == "warning" and f.level == "SHOULD" for f in found)


def test_seccomp_architectures(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tx\nSeccomp:\t0\n")
    spec = {"linux": {"seccomp": {"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_PPC64LE"]}}}
    found = hostcheck.seccomp(spec, proc=str(tmp_path))
    if os.uname().machine == "x86_64":
        assert [f.path for f in found] == ["$.linux.seccomp.architectures[1]"]
        assert found[0].severity == "note"
    (tmp_path / "self" / "status").write_text("Name:\tx\n")
    assert any(f.severity == "error" for f in hostcheck.seccomp(spec, proc=str(tmp_path)))


def test_lsm_off(tmp_path):
    spec = {"process": {"apparmorProfile": "p", "selinuxLabel": "l"}, "linux": {"mountLabel": "m"}}
    found = hostcheck.lsm(spec, sys_root=str(tmp_path))
    assert [f.path for f in found] == ["$.process.apparmorProfile", "$.process.selinuxLabel",
                                       "$.linux.mountLabel"]
    # ocirun refuses them there (ocirun/lsm.py), as runc 1.1.5 fails
    assert {f.severity for f in found} == {"error"}


def test_cgroup_v2_device_rules_and_missing_controller(tmp_path):
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "cgroup.controllers").write_text("cpu memory\n")
    mi = tmp_path / "mountinfo"
    mi.write_text(f"30 20 0:26 / {cg} rw,nosuid shared:4 - cgroup2 cgroup2 rw\n")
    spec = {"linux": {"resources": {"devices": [{"allow": False, "access": "rwm"}],
                                    "pids": {"limit": 10}, "memory": {"limit": 1 << 30}}}}
    found = hostcheck.cgroups(spec, sys_root=str(cg), mountinfo=str(mi))
    paths = {f.path: f for f in found}
    assert set(paths) == {"$.linux.resources.devices", "$.linux.resources.pids"}
    assert "pids controller" in paths["$.linux.resources.pids"].message


# -- the explanations ------------------------------------------------------------------

def test_sections_for_paths():
    assert explain.section_for("$.mounts[3].options") == "config.md#linux-mount-options"
    assert explain.section_for('$.linux.sysctl["net.ipv4.ip_forward"]') == "config-linux.md#sysctl"
    assert explain.section_for("$.linux.resources.memory.limit") == "config-linux.md#memory"
    assert explain.section_for("$.linux.resourcesX") == "config-linux.md#linux-container-configuration"
    assert explain.section_for("$.processX") == "config.md#configuration"


def _slugs(md_text):
    """Heading anchors as GitHub renders them (lower case, punctuation dropped, - for space)."""
    out = set()
    for line in md_text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            title = re.sub(r"<[^>]*>", "", m.group(1)).strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.skipif(not SPEC_TEXT.is_dir(), reason="the spec text (../shared) is not available")
def test_every_section_anchor_exists_in_the_spec():
    used = {s for _, s in explain.SECTIONS} | {"config.md#linux-mount-options", "bundle.md#container-format"}
    used |= {f.section for f in [explain.Finding("$.x", "m", severity="note", level="MUST", source="t")]}
    for section in sorted(used):
        doc, anchor = section.split("#")
        assert anchor in _slugs((SPEC_TEXT / doc).read_text()), section


def test_every_meaning_check_has_a_fix():
    from ocirun.config import checks
    names = {one.__name__ for one in checks.CHECKS}
    covered = {name for name, _, _ in explain.MEANING_FIXES}
    missing = names - covered
    assert not missing, f"meaning checks without a fix in explain.MEANING_FIXES: {sorted(missing)}"
