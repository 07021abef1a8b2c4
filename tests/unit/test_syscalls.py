"""The syscall seam: constants, the recording double, the cffi declarations (both paths)."""

from __future__ import annotations

import errno
import importlib.util
import inspect
import os
import subprocess
import sys
from typing import Any

import pytest

from ocirun.syscalls import api
from ocirun.syscalls._build_ffi import build, make_ffi
from ocirun.syscalls.linux import LinuxSyscalls
from ocirun.syscalls.recording import RecordingSyscalls

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FUNCS = ("mount", "umount2", "syscall", "unshare", "setns", "sethostname", "setdomainname",
         "prctl", "personality", "chroot", "ioctl")
STRUCTS = ("struct mount_attr", "struct oci_cap_header", "struct oci_cap_data")
PROTOCOL_METHODS = sorted(n for n, v in vars(api.Syscalls).items()
                          if callable(v) and not n.startswith("_"))


def test_package_import_is_light() -> None:
    code = ("import sys; import ocirun.syscalls, ocirun.mount_options, ocirun.rootfs;"
            "print(sorted(m for m in ('typing', 'cffi', 'dataclasses', 'subprocess',"
            " 'logging', 'shutil', 'ocirun.syscalls._ffi') if m in sys.modules))")
    prog = f"import sys; sys.path.insert(0, {REPO!r}); {code}"
    out = subprocess.run([sys.executable, "-I", "-S", "-c", prog], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("impl", [LinuxSyscalls, RecordingSyscalls])
def test_implementations_follow_the_protocol(impl: type) -> None:
    for name in PROTOCOL_METHODS:
        want = inspect.signature(getattr(api.Syscalls, name))
        got = inspect.signature(getattr(impl, name))
        assert list(got.parameters) == list(want.parameters), name
        assert [p.default for p in got.parameters.values()] == \
            [p.default for p in want.parameters.values()], name


def _describe(ffi: Any) -> dict[str, object]:
    lib = ffi.dlopen(None)
    out: dict[str, object] = {f: ffi.typeof(getattr(lib, f)).cname for f in FUNCS}
    for s in STRUCTS:
        t = ffi.typeof(s)
        out[s] = (ffi.sizeof(t), [(n, f.type.cname, f.offset) for n, f in t.fields])
    return out


def test_prebuilt_and_inline_declarations_agree(tmp_path: Any) -> None:
    path = build(str(tmp_path))
    spec = importlib.util.spec_from_file_location("ffi_out_under_test", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert _describe(mod.ffi) == _describe(make_ffi())


def test_ffi_falls_back_to_inline_mode() -> None:
    # Hide the generated module: _ffi must still work, parsing the cdef itself.
    code = (
        "import sys, importlib.abc\n"
        "class Hide(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'ocirun.syscalls._ffi_out': raise ImportError(name)\n"
        f"sys.meta_path.insert(0, Hide()); sys.path.insert(0, {REPO!r})\n"
        "from ocirun.syscalls import _ffi\n"
        "from ocirun.syscalls.linux import LinuxSyscalls\n"
        "print(_ffi.PREBUILT, _ffi.ffi.typeof(_ffi.lib.mount).cname,"
        " len(LinuxSyscalls().capget()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[0] == "False"
    assert out.stdout.split()[-1] == "3"


def test_linux_calls_that_need_no_privilege() -> None:
    s = LinuxSyscalls()
    eff, perm, _inh = s.capget()
    assert eff & ~perm == 0
    assert s.prctl(api.PR_GET_NO_NEW_PRIVS) in (0, 1)
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert s.ns_get_type(fd) == api.CLONE_NEWNET
    finally:
        os.close(fd)
    with pytest.raises(OSError) as ei:
        s.ns_get_type(0 if not os.isatty(0) else 1000)
    assert ei.value.errno in (errno.ENOTTY, errno.EBADF, errno.EINVAL)
    with pytest.raises(OSError) as ei2:
        s.umount2("/nonexistent/ocirun-test", 0)
    assert ei2.value.errno in (errno.ENOENT, errno.EPERM)
    assert ei2.value.filename == "/nonexistent/ocirun-test"
    with pytest.raises(OSError) as ei3:
        s.setns(-1, 0)
    assert ei3.value.errno == errno.EBADF


def test_recording_records_and_fails() -> None:
    rec = RecordingSyscalls(fail={"umount2": errno.EBUSY})
    rec.mount("a", "/b", "tmpfs", 1, None)
    with pytest.raises(OSError) as ei:
        rec.umount2("/b", 2)
    assert ei.value.errno == errno.EBUSY and ei.value.filename == "/b"
    rec.mount_setattr(-100, "/b", 0x8000, 1, 0)
    assert rec.calls == [("mount", "a", "/b", "tmpfs", 1, None), ("umount2", "/b", 2),
                         ("mount_setattr", -100, "/b", 0x8000, 1, 0, 0, 0)]
    assert rec.names() == ["mount", "umount2", "mount_setattr"]


def test_recording_callable_rule_and_caps() -> None:
    rec = RecordingSyscalls(fail=lambda n, a: errno.EPERM if a and a[0] == 24 else None,
                            caps=(7, 7, 1))
    assert rec.capget() == (7, 7, 1)
    rec.capset(3, 3, 0)
    assert rec.capget() == (3, 3, 0)
    assert rec.prctl(38, 1) == 0
    with pytest.raises(PermissionError):
        rec.prctl(24, 5)
    assert rec.calls[-1] == ("prctl", 24, 5, 0, 0, 0)
    rec.nstypes[5] = api.CLONE_NEWPID
    assert rec.ns_get_type(5) == api.CLONE_NEWPID
    for call in (lambda: rec.unshare(1), lambda: rec.setns(3, 0), lambda: rec.sethostname("h"),
                 lambda: rec.setdomainname("d"), lambda: rec.chroot("/"),
                 lambda: rec.pivot_root(".", "."), lambda: rec.personality(8),
                 lambda: rec.join_session_keyring(None)):
        call()
    assert rec.names()[-8:] == ["unshare", "setns", "sethostname", "setdomainname", "chroot",
                                "pivot_root", "personality", "join_session_keyring"]


def test_recording_mknod_leaves_a_placeholder(tmp_path: Any) -> None:
    rec = RecordingSyscalls()
    rec.mknod(str(tmp_path / "n"), 0o20666, os.makedev(1, 3))
    assert (tmp_path / "n").is_file()
    rec = RecordingSyscalls(create_nodes=False)
    rec.mknod(str(tmp_path / "m"), 0o20666, 0)
    assert not (tmp_path / "m").exists()
