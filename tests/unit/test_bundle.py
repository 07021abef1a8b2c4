"""Unit tests for ocirun/config/bundle.py (bundle.md, glossary.md#json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ocirun.config.bundle import load_bundle, parse_config
from ocirun.config.template import template
from ocirun.errors import BundleError, ConfigError


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    (tmp_path / "rootfs").mkdir()
    return tmp_path


def write(bundle: Path, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    (bundle / "config.json").write_bytes(raw)


def test_loads_and_returns_raw_bytes(bundle: Path) -> None:
    raw = json.dumps(template(), indent=1).encode()
    write(bundle, raw)
    spec, got = load_bundle(str(bundle))
    assert spec == template()
    assert got == raw


def test_bundle_missing(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"^bundle `.*/nope`: No such file or directory$"):
        load_bundle(str(tmp_path / "nope"))


def test_bundle_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(str(tmp_path / "f"))


def test_config_missing(bundle: Path) -> None:
    with pytest.raises(BundleError, match=r"no config\.json in it"):
        load_bundle(str(bundle))


def test_config_is_a_directory(bundle: Path) -> None:
    (bundle / "config.json").mkdir()
    with pytest.raises(BundleError, match="config.json"):
        load_bundle(str(bundle))


def test_config_unreadable() -> None:
    """Root reads files whatever their mode, so as root the check runs in a
    child that has dropped to nobody (uid/gid 65534, no groups)."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(prefix="ocirun-unreadable-")
    try:
        os.chmod(top, 0o755)  # nobody must reach the bundle, just not read config.json
        bundle = Path(top)
        (bundle / "rootfs").mkdir()
        write(bundle, "{}")
        (bundle / "config.json").chmod(0)

        def check() -> int:
            try:
                load_bundle(str(bundle))
            except BundleError as e:
                return 0 if "Permission denied" in str(e) else 4
            return 5

        if os.geteuid() != 0:
            assert check() == 0
            return
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
                code = check()
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_not_utf8(bundle: Path) -> None:
    write(bundle, b'{"ociVersion": "1.3.0", "hostname": "\xff"}')
    with pytest.raises(ConfigError, match=r"not valid UTF-8 at byte 37 \(line 1\)"):
        load_bundle(str(bundle))


def test_byte_order_mark(bundle: Path) -> None:
    write(bundle, "\ufeff{}".encode())
    with pytest.raises(ConfigError, match="byte order mark"):
        load_bundle(str(bundle))


def test_malformed_json_has_line_and_column(bundle: Path) -> None:
    write(bundle, '{\n  "ociVersion": "1.3.0"\n  "hostname": "x"\n}')
    with pytest.raises(ConfigError, match=r"malformed JSON at line 3 column 3: Expecting ',' delimiter"):
        load_bundle(str(bundle))


def test_nan_rejected(bundle: Path) -> None:
    write(bundle, '{"ociVersion": "1.3.0", "process": {"cwd": "/", "oomScoreAdj": NaN}}')
    with pytest.raises(ConfigError, match="`NaN` is not valid JSON"):
        load_bundle(str(bundle))


def test_duplicate_keys_with_paths(bundle: Path) -> None:
    write(bundle, '{"ociVersion": "1.3.0", "linux": {"namespaces": [{"type": "pid", "type": "uts"}]},'
                  ' "ociVersion": "1.3.0"}')
    with pytest.raises(ConfigError) as info:
        load_bundle(str(bundle))
    msg = str(info.value)
    assert "duplicate object key at" in msg
    assert "$.linux.namespaces[0].type" in msg and "$.ociVersion" in msg


def test_top_level_not_object(bundle: Path) -> None:
    write(bundle, "[1, 2]")
    with pytest.raises(ConfigError, match="top level must be a JSON object, got list"):
        load_bundle(str(bundle))


def test_schema_violation_raised(bundle: Path) -> None:
    doc = template()
    doc["process"]["cwd"] = 5
    write(bundle, json.dumps(doc))
    with pytest.raises(ConfigError, match=r"schema violation: \$\.process\.cwd: 5 is not of type"):
        load_bundle(str(bundle))


def test_messages_are_one_line(bundle: Path) -> None:
    for data in ('{"a": }', "[]", '{"a": 1, "a": 2}', b"\xfe"):
        with pytest.raises(ConfigError) as info:
            parse_config(data.encode() if isinstance(data, str) else data, "x/config.json")
        assert "\n" not in str(info.value) and "`x/config.json`" in str(info.value)
