import json

import pytest

from ocirun import jsonio

DOCS = [{"a": [1, 2, {"b": "é\n\"x"}], "c": None, "d": True, "e": 1.5, "f": {}, "g": []},
        [], {}, "x", [[1], [{}]], {"k": -3, "n": 12345678901234567890}]


@pytest.mark.parametrize("doc", DOCS)
@pytest.mark.parametrize("indent", [None, 2, 4])
def test_dumps_matches_json(doc, indent):
    ref = json.dumps(doc, indent=indent, separators=(",", ":") if indent is None else None)
    assert jsonio.dumps(doc, indent) == ref


@pytest.mark.parametrize("doc", DOCS)
def test_roundtrip(doc):
    assert jsonio.loads(json.dumps(doc, indent=1)) == doc


@pytest.mark.parametrize("bad", ['{"a":}', '{"a":1} x', "", "[1,2", "NaN", '{"a":1,}', "{'a':1}"])
def test_bad_json_has_position(bad):
    with pytest.raises(jsonio.JSONError) as ei:
        jsonio.loads(bad)
    assert "line 1 column" in str(ei.value)


def test_pairs_hook_sees_duplicates():
    assert jsonio.loads('{"a":1,"a":2}', pairs_hook=lambda p: p) == [("a", 1), ("a", 2)]


def test_line_numbers():
    with pytest.raises(jsonio.JSONError) as ei:
        jsonio.loads('{\n  "a": 1,\n  "b": ]\n}')
    assert ei.value.lineno == 3
