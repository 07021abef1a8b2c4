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
import glob
import importlib
import os
import pkgutil
import shlex
import shutil
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


def select(tests: Iterable[TestCase], filters: list[str], ids: list[str] | None = None) -> list[TestCase]:
    """``-k`` filters: each is a substring or glob matched (case-insensitively)
    against id, module, spec reference and level; ``a|b`` matches either; a
    leading ``!`` negates the whole filter.  Several ``-k`` options must all
    hold."""
    out = []
    for t in tests:
        if ids and t.id not in ids:
            continue
        hay = f"{t.id} {t.module} {t.ref} {t.level}".lower()
        ok = True
        for f in filters:
            neg = f.startswith("!")
            alts = (f[1:] if neg else f).lower().split("|")
            hit = any(fnmatch.fnmatch(hay, f"*{pat}*") if any(ch in pat for ch in "*?[") else pat in hay
                      for pat in alts if pat)
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


class Expected:
    """One expected-failure entry: the failure's reason must contain ``match``.

    ``match`` is compared case-insensitively with whitespace collapsed, and
    ``*`` in it stands for any run of characters.  An empty ``match`` (an
    old-style ``<id>  # why`` line) accepts any reason; ``--strict`` refuses
    such entries.
    """

    __slots__ = ("match", "why")

    def __init__(self, match: str, why: str) -> None:
        self.match, self.why = match, why

    def matches(self, reason: str) -> bool:
        if not self.match:
            return True
        lit = " ".join(self.match.lower().split())
        pat = "*" + "".join(ch if ch == "*" else glob.escape(ch) for ch in lit) + "*"
        return fnmatch.fnmatchcase(" ".join(reason.lower().split()), pat)

    def __repr__(self) -> str:
        return f"Expected({self.match!r}, {self.why!r})"


def resolve_runtime(command: str) -> str | None:
    """The command with its program made absolute (tests run the runtime from
    other directories), or None when there is no such executable."""
    argv = shlex.split(command)
    if not argv:
        return None
    prog = argv[0]
    path = os.path.abspath(prog) if "/" in prog else shutil.which(prog)
    if path is None or not os.access(path, os.X_OK) or os.path.isdir(path):
        return None
    return shlex.join([path, *argv[1:]])


def parse_expected(text: str) -> dict[str, Expected]:
    """``<test-id>  <match>  # <why>`` per line; blank lines and ``#`` comments
    ignored.  ``<match>`` is everything between the id and the first `` #``."""
    out: dict[str, Expected] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, sep, why = line.partition(" #")
        if not sep and "#" in line:  # "id# why" with no space
            head, _, why = line.partition("#")
        parts = head.split(None, 1)
        tid = parts[0] if parts else ""
        if not tid or not all(ch.isalnum() or ch in "-_." for ch in tid):
            raise ValueError(f"line {n}: bad expected-failure line (want `<test-id>  <match>  # <why>`): {raw!r}")
        if tid in out:
            raise ValueError(f"line {n}: {tid} listed twice")
        out[tid] = Expected(parts[1].strip() if len(parts) > 1 else "", why.strip())
    return out


def load_expected(path: str | None) -> dict[str, Expected]:
    if path is None or not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return parse_expected(f.read())


def grade(test: TestCase, raw: str, reason: str, expected: dict[str, Expected]) -> tuple[str, str]:
    """Map a raw PASS/FAIL/SKIP to the final result using the expected list.

    A listed test that fails for a reason its entry does not match is a plain
    FAIL: the known bug may be fixed and a new one in its place."""
    exp = expected.get(test.id)
    if exp is None:
        return raw, reason
    if raw == FAIL:
        if not exp.matches(reason):
            return FAIL, f"{reason} [listed as expected failure, but the reason does not match {exp.match!r}]"
        return XFAIL, f"{reason} [expected: {exp.why}]" if exp.why else reason
    if raw == PASS:
        return XPASS, f"listed as expected failure ({exp.why}) but passed: remove it from the list"
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
    if problems:
        # what the runtime left behind fails the test, whatever it found before
        note = "cleanup: " + "; ".join(problems)
        result, reason = FAIL, f"{reason}; {note}" if result == FAIL and reason else note
    return result, reason, time.monotonic() - t0


def _ancestors(path: str) -> list[str]:
    out = []
    p = os.path.dirname(os.path.abspath(path))
    while p and p != "/":
        out.append(p)
        p = os.path.dirname(p)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m conformance",
                                description="OCI runtime-spec v1.3.0 conformance suite for runc-compatible runtimes")
    p.add_argument("--runtime", required=False, default=None,
                   help="runtime binary or command (e.g. /usr/sbin/runc, 'python3 -m ocirun')")
    p.add_argument("-k", dest="filters", action="append", default=[],
                   help="select tests whose id/module/spec ref contains this (glob ok; '!' negates; repeatable)")
    p.add_argument("--id", dest="ids", action="append", default=[], metavar="TEST_ID",
                   help="select this test by its exact id (repeatable: any of them)")
    p.add_argument("--tap", action="store_true", help="print TAP instead of the table")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("--keep", action="store_true", help="keep bundles and runtime roots for inspection")
    p.add_argument("--expected", metavar="FILE",
                   help="expected-failures file (default: conformance/expected/<runtime name>.txt)")
    p.add_argument("--strict", action="store_true",
                   help="also fail on unexpected passes, expected entries without a reason match, "
                        "and ids the suite does not have")
    p.add_argument("--workdir", help="directory under which a fresh run directory for the bundles is made "
                                     "(created if missing; default: /tmp)")
    p.add_argument("--json", metavar="FILE", help="also write one JSON object per test to FILE")
    p.add_argument("--cache", default=os.environ.get("OCI_CONFORMANCE_CACHE", "/var/tmp/oci-conformance-cache"),
                   help="rootfs + probe cache dir (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list selected tests and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="print each result as it happens")
    return p


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    all_tests = load_tests()
    bad_ids = sorted(set(args.ids) - {t.id for t in all_tests})
    if bad_ids:
        print(f"error: --id: no such test: {', '.join(bad_ids)}", file=sys.stderr)
        return 2
    tests = select(all_tests, args.filters, args.ids)
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
    resolved = resolve_runtime(args.runtime)
    if resolved is None:
        print(f"error: --runtime {args.runtime!r}: no such executable", file=sys.stderr)
        return 2
    args.runtime = resolved
    name = runtime_name(args.runtime)
    exp_path = args.expected or os.path.join(HERE, "expected", f"{name}.txt")
    try:
        expected = load_expected(exp_path)
    except ValueError as e:
        print(f"error: {exp_path}: {e}", file=sys.stderr)
        return 2
    loose = sorted(t for t, e in expected.items() if not e.match)
    unknown = sorted(set(expected) - {t.id for t in TESTS})
    if args.strict and (loose or unknown):
        if loose:
            print(f"error: {exp_path}: --strict needs a reason match for every entry "
                  f"(`<test-id>  <match>  # <why>`); none for: {', '.join(loose)}", file=sys.stderr)
        if unknown:
            print(f"error: {exp_path}: unknown test ids: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        if args.workdir:
            os.makedirs(args.workdir, exist_ok=True)
        # always a fresh directory of our own, so that removing it at the end
        # never touches what the caller keeps in --workdir
        workdir = tempfile.mkdtemp(prefix="oci-conf-", dir=args.workdir)
    except OSError as e:
        print(f"error: --workdir {args.workdir}: {e.strerror}", file=sys.stderr)
        return 2
    # user-namespace tests run as a mapped (unprivileged) root that must be
    # able to traverse down to each bundle's rootfs
    os.chmod(workdir, 0o755)
    blocked = [d for d in _ancestors(workdir) if not os.stat(d).st_mode & 0o001]
    if blocked:
        print(f"warning: {blocked[0]} is not searchable by other users: user-namespace tests "
              "(a mapped, unprivileged root) will fail to reach their rootfs; use another --workdir",
              file=sys.stderr)
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
    from conformance.context import remove_suite_cgroups
    remove_suite_cgroups(host)
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print(format_tap(outcomes) if args.tap else format_table(outcomes), file=out)
    if args.junit:
        with open(args.junit, "w", encoding="utf-8") as f:
            f.write(format_junit(outcomes, name))
    if args.json:
        import json
        with open(args.json, "w", encoding="utf-8") as f:
            for o in outcomes:
                f.write(json.dumps({"id": o.test.id, "result": o.result, "reason": o.reason,
                                    "seconds": round(o.seconds, 3)}) + "\n")
    stale = unknown
    xf = sum(o.result == XFAIL for o in outcomes)
    xp = sum(o.result == XPASS for o in outcomes)
    unexpected = sum(o.result == FAIL for o in outcomes)
    print(f"# runtime {args.runtime} ({name}); expected failures from "
          f"{exp_path if os.path.exists(exp_path) else 'none (no ' + exp_path + ')'}: "
          f"{xf} expected, {unexpected} unexpected failures, {xp} unexpected passes"
          + (f"; unknown ids in expected file: {', '.join(stale)}" if stale else ""), file=out)
    if args.keep:
        print(f"# bundles kept in {workdir}", file=out)
    print(summary_line(outcomes), file=out)
    return exit_status(outcomes, args.strict)
