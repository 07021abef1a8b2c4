"""Command line, selection, execution and reporting for the conformance suite.

Output: a table (id, spec reference, level, result, reason), optionally TAP
(``--tap``) and JUnit XML (``--junit FILE``).  The last line is always
``N passed, M failed`` plus ``, K skipped`` when K > 0 (CI parses it).
Exit status is 0 when every failure is listed in the expected-failures file
(``conformance/expected/<runtime>.txt``), 1 otherwise.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib
import os
import pkgutil
import shlex
import signal
import sys
import time
import traceback
from typing import Iterable, TextIO

from conformance.registry import TESTS, Fail, Skip, TestCase

HERE = os.path.dirname(os.path.abspath(__file__))
TEST_TIMEOUT = 90  # seconds; a hung test is failed, then cleaned up

PASS, FAIL, SKIP, XFAIL, XPASS = "PASS", "FAIL", "SKIP", "XFAIL", "XPASS"


class Outcome:
    __slots__ = ("test", "result", "reason", "seconds")

    def __init__(self, test: TestCase, result: str, reason: str, seconds: float) -> None:
        self.test, self.result, self.reason, self.seconds = test, result, reason, seconds


def load_tests() -> list[TestCase]:
    import conformance.tests as pkg
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        importlib.import_module(f"conformance.tests.{info.name}")
    return list(TESTS)


def select(tests: Iterable[TestCase], filters: list[str]) -> list[TestCase]:
    """``-k`` filters: each is a substring or glob matched (case-insensitively)
    against id, module and spec reference; a leading ``!`` negates.  Several
    ``-k`` options must all hold."""
    out = []
    for t in tests:
        hay = f"{t.id} {t.module} {t.ref} {t.level}".lower()
        ok = True
        for f in filters:
            neg = f.startswith("!")
            pat = f[1:].lower() if neg else f.lower()
            hit = fnmatch.fnmatch(hay, f"*{pat}*") if any(ch in pat for ch in "*?[") else pat in hay
            if hit == neg:
                ok = False
                break
        if ok:
            out.append(t)
    return out


def runtime_name(command: str) -> str:
    """Name used for the expected-failures file: the binary's basename, or the
    module after ``-m`` for commands like ``python3 -m ocirun``."""
    argv = shlex.split(command)
    if "-m" in argv and argv.index("-m") + 1 < len(argv):
        return argv[argv.index("-m") + 1].split(".")[0]
    return os.path.basename(argv[0]) if argv else "unknown"


def parse_expected(text: str) -> dict[str, str]:
    """``<test-id>  # reason`` per line; blank lines and ``#`` comments ignored."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tid, _, reason = line.partition("#")
        tid = tid.strip()
        if not tid or " " in tid:
            raise ValueError(f"bad expected-failure line: {raw!r}")
        out[tid] = reason.strip()
    return out


def load_expected(path: str | None) -> dict[str, str]:
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return parse_expected(f.read())


def grade(test: TestCase, raw: str, reason: str, expected: dict[str, str]) -> tuple[str, str]:
    """Map a raw PASS/FAIL/SKIP to the final result using the expected list."""
    if test.id not in expected:
        return raw, reason
    why = expected[test.id]
    if raw == FAIL:
        return XFAIL, f"{reason} [expected: {why}]" if why else reason
    if raw == PASS:
        return XPASS, f"listed as expected failure ({why}) but passed: remove it from the list"
    return raw, reason


def exit_status(outcomes: list[Outcome], strict: bool = False) -> int:
    bad = {FAIL, XPASS} if strict else {FAIL}
    return 1 if any(o.result in bad for o in outcomes) else 0


def summary_line(outcomes: list[Outcome]) -> str:
    passed = sum(o.result in (PASS, XPASS) for o in outcomes)
    failed = sum(o.result in (FAIL, XFAIL) for o in outcomes)
    skipped = sum(o.result == SKIP for o in outcomes)
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    return line


def format_table(outcomes: list[Outcome]) -> str:
    rows = [("TEST", "SPEC", "LEVEL", "RESULT", "REASON")]
    for o in outcomes:
        rows.append((o.test.id, o.test.ref, o.test.level, o.result, one_line(o.reason)))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:<{w[3]}}  {r[4]}".rstrip()
                     for r in rows)


def one_line(s: str, limit: int = 200) -> str:
    s = " ".join(s.split())
    return s if len(s) <= limit else s[:limit - 3] + "..."


def format_tap(outcomes: list[Outcome]) -> str:
    lines = ["TAP version 13", f"1..{len(outcomes)}"]
    for i, o in enumerate(outcomes, 1):
        desc = f"{o.test.id} - {o.test.ref} {o.test.level}"
        if o.result == PASS:
            lines.append(f"ok {i} - {desc}")
        elif o.result == SKIP:
            lines.append(f"ok {i} - {desc} # SKIP {one_line(o.reason)}")
        elif o.result == XFAIL:
            lines.append(f"not ok {i} - {desc} # TODO {one_line(o.reason)}")
        elif o.result == XPASS:
            lines.append(f"ok {i} - {desc} # TODO {one_line(o.reason)}")
        else:
            lines.append(f"not ok {i} - {desc}")
            lines.append(f"  # {one_line(o.reason)}")
    return "\n".join(lines)


def format_junit(outcomes: list[Outcome], suite: str) -> str:
    import xml.etree.ElementTree as ET
    root = ET.Element("testsuite", name=f"oci-conformance[{suite}]", tests=str(len(outcomes)),
                      failures=str(sum(o.result == FAIL for o in outcomes)),
                      skipped=str(sum(o.result in (SKIP, XFAIL) for o in outcomes)),
                      time=f"{sum(o.seconds for o in outcomes):.3f}")
    for o in outcomes:
        tc = ET.SubElement(root, "testcase", classname=f"conformance.{o.test.module}", name=o.test.id,
                           time=f"{o.seconds:.3f}")
        ET.SubElement(tc, "properties").extend([
            ET.Element("property", name="spec", value=o.test.ref),
            ET.Element("property", name="level", value=o.test.level)])
        if o.result == FAIL:
            ET.SubElement(tc, "failure", message=one_line(o.reason)).text = o.reason
        elif o.result == SKIP:
            ET.SubElement(tc, "skipped", message=one_line(o.reason))
        elif o.result == XFAIL:
            ET.SubElement(tc, "skipped", message="expected failure: " + one_line(o.reason))
    return ET.tostring(root, encoding="unicode")


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout()


def run_one(test: TestCase, ctx_factory) -> tuple[str, str, float]:
    """Run one test with its own context; cleanup always happens."""
    t0 = time.monotonic()
    ctx = ctx_factory(test)
    result, reason = PASS, ""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        note = test.func(ctx)
        reason = note if isinstance(note, str) else ""
    except Skip as e:
        result, reason = SKIP, str(e)
    except Fail as e:
        result, reason = FAIL, str(e) or "assertion failed"
    except _Timeout:
        result, reason = FAIL, f"test timed out after {TEST_TIMEOUT}s"
    except Exception as e:  # noqa: BLE001 - a crashing test is a failed test, with a clue
        tb = traceback.extract_tb(e.__traceback__)[-1]
        result, reason = FAIL, f"error {type(e).__name__}: {e} ({os.path.basename(tb.filename)}:{tb.lineno})"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        problems = ctx.cleanup()
    if problems and result == PASS:
        result, reason = FAIL, "cleanup: " + "; ".join(problems)
    return result, reason, time.monotonic() - t0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conformance",
                                description="OCI runtime-spec v1.3.0 conformance suite for runc-compatible runtimes")
    p.add_argument("--runtime", required=False, default=None,
                   help="runtime binary or command (e.g. /usr/sbin/runc, 'python3 -m ocirun')")
    p.add_argument("-k", dest="filters", action="append", default=[],
                   help="select tests whose id/module/spec ref contains this (glob ok; '!' negates; repeatable)")
    p.add_argument("--tap", action="store_true", help="print TAP instead of the table")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("--keep", action="store_true", help="keep bundles and runtime roots for inspection")
    p.add_argument("--expected", metavar="FILE",
                   help="expected-failures file (default: conformance/expected/<runtime name>.txt)")
    p.add_argument("--strict", action="store_true", help="also fail on unexpected passes")
    p.add_argument("--workdir", help="where bundles go (default: a fresh dir under /tmp)")
    p.add_argument("--cache", default=os.environ.get("OCI_CONFORMANCE_CACHE", "/var/tmp/oci-conformance-cache"),
                   help="rootfs + probe cache dir (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list selected tests and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print each result as it happens")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    tests = select(load_tests(), args.filters)
    if args.list:
        for t in tests:
            print(f"{t.id}  {t.ref}  {t.level}  {t.summary}", file=out)
        print(f"{len(tests)} tests", file=out)
        return 0
    if not args.runtime:
        print("error: --runtime is required", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("error: the conformance suite needs root (it creates real containers)", file=sys.stderr)
        return 2
    from conformance.bundle import SetupError, build_cache
    from conformance.context import Context, Host
    import tempfile
    try:
        rootfs = build_cache(args.cache)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    name = runtime_name(args.runtime)
    exp_path = args.expected or os.path.join(HERE, "expected", f"{name}.txt")
    try:
        expected = load_expected(exp_path)
    except ValueError as e:
        print(f"error: {exp_path}: {e}", file=sys.stderr)
        return 2
    workdir = args.workdir or tempfile.mkdtemp(prefix="oci-conf-")
    # user-namespace tests run as a mapped (unprivileged) root that must be
    # able to traverse down to each bundle's rootfs
    os.chmod(workdir, 0o755)
    host = Host()

    def factory(test: TestCase):
        safe = test.id.replace("/", "_")
        return Context(args.runtime, os.path.join(workdir, safe), rootfs, host, args.keep)

    outcomes: list[Outcome] = []
    for t in tests:
        raw, reason, secs = run_one(t, factory)
        res, reason = grade(t, raw, reason, expected)
        outcomes.append(Outcome(t, res, reason, secs))
        if args.verbose:
            print(f"{res:<5} {t.id} ({secs:.1f}s) {one_line(reason, 150)}", file=sys.stderr, flush=True)
    if not args.keep:
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    print(format_tap(outcomes) if args.tap else format_table(outcomes), file=out)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(format_junit(outcomes, name))
    stale = sorted(set(expected) - {t.id for t in tests} - {t.id for t in TESTS})
    xf = sum(o.result == XFAIL for o in outcomes)
    xp = sum(o.result == XPASS for o in outcomes)
    unexpected = sum(o.result == FAIL for o in outcomes)
    print(f"# runtime {args.runtime} ({name}); expected failures from {exp_path if expected else 'none'}: "
          f"{xf} expected, {unexpected} unexpected failures, {xp} unexpected passes"
          + (f"; unknown ids in expected file: {', '.join(stale)}" if stale else ""), file=out)
    if args.keep:
        print(f"# bundles kept in {workdir}", file=out)
    print(summary_line(outcomes), file=out)
    return exit_status(outcomes, args.strict)
