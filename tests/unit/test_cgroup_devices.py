"""v1 device rules: deny all, the config's rules in order, then the defaults."""

import pytest

from ocirun.cgroups import devices
from ocirun.errors import ConfigError


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


@pytest.mark.parametrize("rule,msg", [
    ({"allow": True, "type": "x"}, r"devices\[0\].type: 'x' is not one of a, b, c"),
    ({"allow": True, "access": "rwz"}, r"devices\[0\].access: 'rwz' is not a combination"),
    ({"type": "c"}, r"devices\[0\].allow: required"),
    ({"allow": True, "type": "c", "major": "1"}, r"devices\[0\].major: '1' is not a device number"),
])
def test_bad_rules_name_the_entry(rule, msg):
    with pytest.raises(ConfigError, match=msg):
        devices.v1_lines([rule])
