"""v1 device rules: deny all, the config's rules in order, then the defaults."""

import pytest

from ocirun.cgroups import devices
from ocirun.errors import NotSupportedError


def test_runc_template_rules():
    lines = devices.v1_lines([{"allow": False, "access": "rwm"}])
    assert lines[0] == ("devices.deny", "a")
    assert lines[1] == ("devices.deny", "a")
    assert ("devices.allow", "c 1:3 rwm") in lines
    assert ("devices.allow", "c *:* m") in lines
    assert ("devices.allow", "c 136:* rwm") in lines


def test_rules_keep_order_and_wildcards():
    rules = [{"allow": True, "type": "c", "major": 10, "access": "rw"},
             {"allow": False, "type": "b", "major": 8, "minor": 0, "access": "m"}]
    lines = devices.v1_lines(rules)
    assert lines[1:3] == [("devices.allow", "c 10:* rw"), ("devices.deny", "b 8:0 m")]


def test_apply_writes_files(tmp_path):
    for n in ("devices.allow", "devices.deny"):
        (tmp_path / n).write_text("")
    devices.apply_v1(str(tmp_path), [{"allow": True, "type": "c", "major": 4, "minor": 1}])
    # a plain file keeps only the last write; the real files take each line
    assert (tmp_path / "devices.allow").read_text() == "c 10:200 rwm"


def test_v2_refuses_rules_but_not_nothing():
    devices.refuse_v2([])
    with pytest.raises(NotSupportedError, match="eBPF"):
        devices.refuse_v2([{"allow": False, "access": "rwm"}])
