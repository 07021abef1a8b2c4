"""The committed, pre-built cffi module matches the declarations in ``_build_ffi.CDEF``.

``ocirun/syscalls/_ffi_out.py`` is generated and committed (``_build_ffi``'s docstring says
why), so every install path ships it. These tests fail as soon as someone edits ``CDEF``
without regenerating it; the message names the one command that fixes it.
"""

from __future__ import annotations

import os
import subprocess
import sys

from ocirun.syscalls import _build_ffi

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STALE = "the committed prebuilt cffi module is stale: " + _build_ffi.REGENERATE


def test_committed_module_was_generated_from_this_cdef() -> None:
    from ocirun.syscalls import _ffi_out

    assert getattr(_ffi_out, "CDEF", None) == _build_ffi.CDEF, STALE


def test_committed_module_declares_what_cdef_declares() -> None:
    found = _build_ffi.problems()
    assert not found, STALE + "\n" + "\n".join(found)


def test_seam_uses_the_prebuilt_module_without_pycparser() -> None:
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from ocirun.syscalls import _ffi, linux; "
            "print(_ffi.PREBUILT, 'pycparser' in sys.modules, 'cffi' in sys.modules)")
    out = subprocess.run([sys.executable, "-I", "-c", code, REPO], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"], STALE


def test_check_command_reports_a_stale_module(tmp_path: object) -> None:
    stale = os.path.join(str(tmp_path), "_ffi_out.py")
    text = _build_ffi.generate().replace("int chroot(", "int chroot_renamed(")
    with open(stale, "w", encoding="utf-8") as f:
        f.write(text)
    found = _build_ffi.problems(stale)
    assert any("another CDEF" in p for p in found)
    r = subprocess.run([sys.executable, "-m", "ocirun.syscalls._build_ffi", "--check"], cwd=REPO,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
