"""The generated validator's plain-Python pattern matchers equal the regexes."""

import re

import pytest

from ocirun.config import _fastcheck

SAMPLES = ["", "RLIMIT_", "RLIMIT_NOFILE", "RLIMIT_NOFILE\n", "rlimit_nofile", "RLIMIT_NO FILE",
           "RLIMIT_É", "XRLIMIT_A", "0-3,7", "0-3, 7", "1a", "2MB", "1GB", "10KB", "0MB", "2MB\n",
           "2mB", "21MB", "2²MB", "2TB", "MB", "MB:", "MB:0=70", "MB:0=70\n", "MB:a\nb", "L3:0=ff",
           " MB:1", "\n", "123", "٣"]


@pytest.mark.parametrize("key", sorted(_fastcheck._PLAIN))
def test_plain_matchers_equal_regex(key):
    assert key in _fastcheck._PATTERN_SOURCES, "matcher for a pattern the schema no longer has"
    rx = re.compile(_fastcheck._PATTERN_SOURCES[key])
    fn = _fastcheck._PLAIN[key]
    for s in SAMPLES:
        assert bool(fn(s)) == bool(rx.search(s)), (key, s)


def test_every_schema_pattern_has_a_plain_matcher():
    # otherwise the validator falls back to importing re on the hot path
    assert set(_fastcheck._PATTERN_SOURCES) == set(_fastcheck._PLAIN)
