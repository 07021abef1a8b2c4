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


def test_malformed_json_reports_line_and_column_in_a_fresh_interpreter() -> None:
    # The C scanner needs json.decoder in sys.modules to raise its error on
    # Python 3.11; the runtime never imports json, so try it in a clean
    # interpreter (-I -S, like the launcher) with the object_pairs_hook path.
    import subprocess
    import sys
    code = (
        "from ocirun import jsonio\n"
        "for doc in ('{\"a\": [1,2,],}', '{\"a\": 1,}', '{\"a\": [1, 2'):\n"
        "    try:\n"
        "        jsonio.loads(doc, pairs_hook=dict)\n"
        "    except jsonio.JSONError as e:\n"
        "        print(e.lineno, e.colno, e.msg)\n"
    )
    repo = __file__.rsplit("/tests/", 1)[0]
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {repo!r})\n" + code],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert len(lines) == 3, out
    assert all(line.split()[0] == "1" for line in lines)
