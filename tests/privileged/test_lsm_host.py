"""LSM labels on this host, which runs no LSM (config.md apparmorProfile/selinuxLabel,
config-linux.md mountLabel; issue 8 item 4).

runc 1.1.5 fails a container asking for any of the three here (its init cannot write
/proc/self/attr/exec; it refuses an SELinux label when SELinux is off; the kernel
refuses the context= mount option). ocirun fails it too, before anything is created,
saying which field the host cannot honour. Also: in the process step the labels are
written before no_new_privs, the seccomp filter and the id switch.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from ocirun import lsm

pytestmark = pytest.mark.skipif(lsm.apparmor_enabled() or lsm.selinux_enabled(),
                                reason="this host runs AppArmor or SELinux")

CASES = {
    "apparmor": (lambda c: c["process"].__setitem__("apparmorProfile", "docker-default"),
                 "$.process.apparmorProfile: AppArmor is not enabled on this host"),
    "apparmor-unconfined": (lambda c: c["process"].__setitem__("apparmorProfile", "unconfined"),
                            "$.process.apparmorProfile: AppArmor is not enabled on this host"),
    "selinux": (lambda c: c["process"].__setitem__("selinuxLabel",
                                                   "system_u:system_r:container_t:s0:c1,c2"),
                "$.process.selinuxLabel: SELinux is not enabled on this host"),
    "mount-label": (lambda c: c["linux"].__setitem__("mountLabel",
                                                     "system_u:object_r:container_file_t:s0"),
                    "$.linux.mountLabel: SELinux is not enabled on this host"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_label_without_the_lsm_fails_create_cleanly(lab: Any, name: str) -> None:
    mutate, phrase = CASES[name]
    b = lab.bundle(["true"], mutate)
    cid = lab.new_id()
    r = lab.create(b, cid)
    assert r.returncode != 0, r
    assert "Traceback" not in r.stderr
    assert lab.leftovers(cid) == []
    if not lab.is_runc:
        errs = [ln for ln in r.stderr.splitlines() if ln.strip() and "warning:" not in ln]
        assert len(errs) == 1 and phrase in errs[0], r


@pytest.mark.requires_runc
@pytest.mark.parametrize("name", sorted(CASES))
def test_runc_fails_these_too(make_lab: Any, name: str) -> None:
    lab = make_lab(["runc"])
    r = lab.run(lab.bundle(["true"], CASES[name][0]))
    assert r.returncode != 0, r


def test_empty_labels_ask_for_nothing(lab: Any) -> None:
    def mutate(c: dict[str, Any]) -> None:
        c["process"]["apparmorProfile"] = ""
        c["process"]["selinuxLabel"] = ""
        c["linux"]["mountLabel"] = ""
    assert lab.sh("echo ok", mutate).strip() == "ok"


def test_process_step_writes_labels_before_nnp_seccomp_and_ids() -> None:
    """With the attr writes recorded (this host would refuse them), the order is:
    keycreate label, keyring, exec labels, no_new_privs, ..., capabilities, seccomp."""
    from ocirun import seccomp
    from ocirun.capabilities import compute_caps
    from ocirun.plantypes import ProcessPlan
    from ocirun.process import setup
    from ocirun.syscalls import api
    from ocirun.syscalls.recording import RecordingSyscalls

    prog = seccomp.compile_program({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}, cache_dir=None)
    caps, _ = compute_caps({k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")})
    plan = ProcessPlan(args=("/bin/true",), env=("PATH=/bin",), no_new_privileges=True,
                       caps=caps, seccomp=prog, apparmor_profile="p", selinux_label="l",
                       keyring="_ses.test")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            rec = RecordingSyscalls()
            lsm.apply_exec_labels = lambda a, s, proc="/proc": rec.calls.append(("exec_labels", a, s))  # type: ignore[assignment]
            lsm.apply_keycreate_label = lambda s, proc="/proc": rec.calls.append(("keycreate", s))  # type: ignore[assignment]
            setup.prepare_process(plan, rec)
            names = [c[0] if c[0] != "prctl" or c[1] != api.PR_SET_NO_NEW_PRIVS else "nnp"
                     for c in rec.calls]
            os.write(w, json.dumps(names).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = os.read(r, 65536)
    os.close(r)
    os.waitpid(pid, 0)
    names = json.loads(data)
    order = [n for n in names if n in ("keycreate", "join_session_keyring", "exec_labels", "nnp",
                                       "capset", "seccomp_set_filter")]
    assert order == ["keycreate", "join_session_keyring", "exec_labels", "nnp", "capset",
                     "seccomp_set_filter"], names
