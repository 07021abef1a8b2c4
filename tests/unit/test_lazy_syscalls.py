"""syscalls/lazy.py: the real seam is loaded at the first call, not before."""

from __future__ import annotations

import subprocess
import sys

from ocirun.syscalls import api
from ocirun.syscalls.lazy import LazySyscalls, lazy_syscalls


def test_loads_at_first_use_and_forwards() -> None:
    s = LazySyscalls()
    assert not s.loaded()
    assert s.prctl(api.PR_GET_DUMPABLE, 0) in (0, 1, 2)  # type: ignore[attr-defined]
    assert s.loaded()


def test_making_it_imports_no_cffi() -> None:
    code = ("import sys\nfrom ocirun.syscalls.lazy import lazy_syscalls\nlazy_syscalls()\n"
            "assert '_cffi_backend' not in sys.modules, 'cffi loaded'\n"
            "assert 'ocirun.syscalls.linux' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_typed_as_the_seam() -> None:
    s = lazy_syscalls()
    assert isinstance(s, LazySyscalls)
