"""Self-test of the conformance runner's own logic (no root, no runtime)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from conformance import runner
from conformance.context import parse_kv
from conformance.registry import TestCase, conformance_test
from conformance.runner import FAIL, PASS, SKIP, XFAIL, XPASS, Outcome


def _tc(tid: str, ref: str = "runtime.md#state", level: str = "MUST") -> TestCase:
    return TestCase(tid, ref, level, "summary", lambda ctx: None)


def _outs(*pairs: tuple[str, str]) -> list[Outcome]:
    return [Outcome(_tc(t), r, f"reason {t}", 0.5) for t, r in pairs]


def test_parse_expected_ignores_comments_and_blanks() -> None:
    text = ("# header\n\nstate-id  got 1, want 2  # runc says so\ndelete-created#no space\n  hook-x  \n"
            "kill-x  rc=1 * not supported  # why # with hash\n")
    got = runner.parse_expected(text)
    assert {k: (v.match, v.why) for k, v in got.items()} == {
        "state-id": ("got 1, want 2", "runc says so"), "delete-created": ("", "no space"),
        "hook-x": ("", ""), "kill-x": ("rc=1 * not supported", "why # with hash")}


def test_parse_expected_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="line 1"):
        runner.parse_expected("two/words! # reason\n")
    with pytest.raises(ValueError, match="listed twice"):
        runner.parse_expected("a  x # y\na  z # w\n")


def test_expected_match_rules() -> None:
    e = runner.Expected("create failed*not   implemented YET", "")
    assert e.matches("create failed: rc=1 ocirun: x: not implemented\nyet (seccomp)")
    assert not e.matches("start failed: not implemented yet")
    assert runner.Expected("got [1]? here", "").matches("xx got [1]? here yy")  # no glob classes
    assert runner.Expected("", "").matches("anything")


def test_grade_maps_expected() -> None:
    t = _tc("a")
    exp = {"a": runner.Expected("boom", "why")}
    assert runner.grade(t, FAIL, "it went boom", exp) == (XFAIL, "it went boom [expected: why]")
    assert runner.grade(t, PASS, "", exp)[0] == XPASS
    assert runner.grade(t, SKIP, "no host", exp) == (SKIP, "no host")
    assert runner.grade(t, FAIL, "x", {}) == (FAIL, "x")
    # a listed test failing for another reason is a regression, not an expected failure
    res, reason = runner.grade(t, FAIL, "something else", exp)
    assert res == FAIL and "does not match 'boom'" in reason


def test_resolve_runtime(tmp_path) -> None:
    import shlex
    import sys
    assert runner.resolve_runtime("no-such-runtime-xyz") is None
    assert runner.resolve_runtime(str(tmp_path)) is None  # a directory
    got = shlex.split(runner.resolve_runtime(f"{sys.executable} -m ocirun"))
    assert got[0].startswith("/") and got[1:] == ["-m", "ocirun"]


def test_summary_line_formats() -> None:
    assert runner.summary_line(_outs(("a", PASS), ("b", FAIL))) == "1 passed, 1 failed"
    assert runner.summary_line(_outs(("a", PASS), ("b", XFAIL), ("c", SKIP), ("d", XPASS))) == \
        "2 passed, 1 failed, 1 skipped"


def test_exit_status() -> None:
    assert runner.exit_status(_outs(("a", PASS), ("b", XFAIL), ("c", SKIP))) == 0
    assert runner.exit_status(_outs(("a", PASS), ("b", FAIL))) == 1
    assert runner.exit_status(_outs(("a", XPASS))) == 0
    assert runner.exit_status(_outs(("a", XPASS)), strict=True) == 1


def test_table_has_columns_and_one_line_reasons() -> None:
    outs = _outs(("state-id", PASS), ("kill-x", FAIL))
    outs[1].reason = "line one\nline two"
    table = runner.format_table(outs).splitlines()
    assert table[0].split() == ["TEST", "SPEC", "LEVEL", "RESULT", "REASON"]
    assert len(table) == 3
    assert "line one line two" in table[2] and "MUST" in table[2]


def test_tap_output() -> None:
    tap = runner.format_tap(_outs(("a", PASS), ("b", FAIL), ("c", SKIP), ("d", XFAIL))).splitlines()
    assert tap[:2] == ["TAP version 13", "1..4"]
    assert tap[2].startswith("ok 1 - a")
    assert tap[3].startswith("not ok 2 - b")
    assert "# SKIP" in tap[5]
    assert tap[6].startswith("not ok 4 - d") and "# TODO" in tap[6]


def test_junit_output() -> None:
    xml = runner.format_junit(_outs(("a", PASS), ("b", FAIL), ("c", SKIP)), "runc")
    root = ET.fromstring(xml)
    assert root.tag == "testsuite" and root.get("tests") == "3" and root.get("failures") == "1"
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["a", "b", "c"]
    assert cases[1].find("failure") is not None and cases[2].find("skipped") is not None


def test_select_filters() -> None:
    tests = [_tc("state-id"), _tc("kill-stopped", "runtime.md#kill"), _tc("hook-x", "config.md#hooks", "SHOULD")]
    assert [t.id for t in runner.select(tests, ["kill|hook"])] == ["kill-stopped", "hook-x"]
    assert [t.id for t in runner.select(tests, ["!kill|hook"])] == ["state-id"]
    assert [t.id for t in runner.select(tests, [], ["state-id", "hook-x"])] == ["state-id", "hook-x"]
    assert [t.id for t in runner.select(tests, ["kill"])] == ["kill-stopped"]
    assert [t.id for t in runner.select(tests, ["!kill"])] == ["state-id", "hook-x"]
    assert [t.id for t in runner.select(tests, ["config.md#*"])] == ["hook-x"]
    assert [t.id for t in runner.select(tests, ["should"])] == ["hook-x"]
    assert runner.select(tests, []) == tests


def test_runtime_name() -> None:
    assert runner.runtime_name("/usr/sbin/runc") == "runc"
    assert runner.runtime_name("python3 -m ocirun") == "ocirun"
    assert runner.runtime_name("'/opt/my crun/crun' --debug") == "crun"


def test_registry_rejects_bad_metadata() -> None:
    with pytest.raises(ValueError):
        conformance_test("x-bad-level", "runtime.md#state", "MUSTNT", "s")
    with pytest.raises(ValueError):
        conformance_test("x-bad-ref", "runtime", "MUST", "s")


def test_all_suite_tests_are_well_formed() -> None:
    tests = runner.load_tests()
    assert len(tests) >= 150
    assert len({t.id for t in tests}) == len(tests)
    for t in tests:
        assert t.level in ("MUST", "SHOULD", "MAY") and ".md#" in t.ref and t.summary


def test_expected_files_name_real_tests() -> None:
    import os
    ids = {t.id for t in runner.load_tests()}
    names = sorted(os.listdir(os.path.join(runner.HERE, "expected")))
    assert {"runc.txt", "ocirun.txt", "crun.txt", "crun-v2.txt", "ocirun-v2.txt"} <= set(names)
    for name in names:
        path = os.path.join(runner.HERE, "expected", name)
        listed = runner.load_expected(path)
        assert set(listed) <= ids, f"{name} lists unknown ids {set(listed) - ids}"
        # CI runs --strict: every entry says which failure it expects
        loose = [t for t, e in listed.items() if not e.match or not e.why]
        assert not loose, f"{name}: entries without a reason match or a why: {loose}"


def test_run_one_outcomes_and_cleanup() -> None:
    from conformance.registry import Fail, Skip

    cleaned = []

    class Ctx:
        def cleanup(self) -> list[str]:
            cleaned.append(1)
            return []

    def ok(ctx): return "note"
    def fails(ctx): raise Fail("nope")
    def skips(ctx): raise Skip("no feature")
    def crashes(ctx): raise KeyError("k")
    res = [runner.run_one(TestCase(n, "runtime.md#state", "MUST", "s", f), lambda t: Ctx())[:2]
           for n, f in (("ok", ok), ("f", fails), ("s", skips), ("c", crashes))]
    assert res[0] == (PASS, "note") and res[1] == (FAIL, "nope") and res[2] == (SKIP, "no feature")
    assert res[3][0] == FAIL and "KeyError" in res[3][1]
    assert len(cleaned) == 4


def test_run_one_reports_leftovers_even_on_failure() -> None:
    from conformance.registry import Fail

    class Ctx:
        def cleanup(self) -> list[str]:
            return ["left behind after delete --force: processes 42 (sleep)"]

    def ok(ctx): return None
    def fails(ctx): raise Fail("nope")
    res = [runner.run_one(TestCase(n, "runtime.md#state", "MUST", "s", f), lambda t: Ctx())[:2]
           for n, f in (("ok", ok), ("f", fails))]
    assert res[0][0] == FAIL and "processes 42" in res[0][1]
    assert res[1][0] == FAIL and res[1][1].startswith("nope; cleanup:") and "processes 42" in res[1][1]


def test_parse_kv() -> None:
    assert parse_kv("a=1\nb=x=y\nnot a pair\nc d=3\n") == {"a": "1", "b": "x=y"}


def test_list_mode_needs_no_root(capsys) -> None:
    assert runner.main(["--list", "-k", "state-id"]) == 0
    out = capsys.readouterr().out
    assert "state-id" in out and out.strip().endswith("tests")


def test_strict_refuses_loose_expected_entries(tmp_path, capsys) -> None:
    import os
    if os.geteuid() != 0:
        pytest.skip("main() past --list needs root")
    exp = tmp_path / "exp.txt"
    exp.write_text("state-id  # no match given\n")
    assert runner.main(["--runtime", "/bin/true", "--id", "state-id", "--expected", str(exp), "--strict"]) == 2
    assert "needs a reason match" in capsys.readouterr().err


def test_workdir_is_created_and_kept(tmp_path) -> None:
    """--workdir to a missing directory: made, used for a run directory of its
    own, and left in place (only the run directory is removed)."""
    import io
    import os
    import shutil
    if os.geteuid() != 0 or shutil.which("runc") is None:
        pytest.skip("needs root and runc")
    wd = tmp_path / "missing" / "deeper"
    keep = tmp_path / "missing" / "mine.txt"
    rc = runner.main(["--runtime", "runc", "--id", "state-no-id", "--workdir", str(wd)], out=io.StringIO())
    assert rc == 0
    assert wd.is_dir() and os.listdir(wd) == []
    keep.write_text("x")
    assert runner.main(["--runtime", "/nonexistent/rt", "--id", "state-no-id"], out=io.StringIO()) == 2


def test_readme_lists_the_mutants_and_their_killers() -> None:
    """conformance/README.md carries the table `mutants.py --killers` prints."""
    import os
    import re

    from conformance import mutants
    readme = os.path.join(os.path.dirname(mutants.__file__), "README.md")
    with open(readme, encoding="utf-8") as f:
        m = re.search(r"<!-- killers: begin -->\n(.*?)<!-- killers: end -->", f.read(), re.S)
    assert m, "conformance/README.md lacks the killers table"
    assert m.group(1) == mutants.killers_table(), \
        "conformance/README.md: killers table is stale (python3 conformance/mutants.py --killers)"
