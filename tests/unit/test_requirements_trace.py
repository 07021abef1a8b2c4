"""Consistency of specs/requirements.md, the MUST traceability table (issue 3).

Checks, without root and without running any container:
- every row ID is unique and its prefix matches the spec file it cites;
- every reference is ``file.md#anchor`` with an anchor that exists in the v1.3.0 file;
- the tests column is either a list of conformance test ids that exist in the registry
  (loaded the way ``python3 -m conformance`` loads it), or ``untestable: why`` /
  ``not yet tested: what``;
- the summary table at the end agrees with the rows.
"""
from __future__ import annotations

import os
import re
from collections import Counter

import pytest

from conformance.runner import load_tests

REQ = os.path.join(os.path.dirname(__file__), "..", "..", "specs", "requirements.md")

# Row: | ID | file.md#anchor | summary | tests |
ROW = re.compile(r"^\| ([A-Z]+(?:-[A-Z0-9]+)+) \| ([^|]+?) \| ([^|]+?) \| ([^|]+?) \|$")
TEST_ID = re.compile(r"^[a-z][A-Za-z0-9-]*$")
NO_TEST = ("untestable: ", "not yet tested: ")

# ID prefix -> the spec file its rows must cite (N- rows are the non-MUST section).
PREFIX_FILE = {"RT": "runtime.md", "RL": "runtime-linux.md", "C": "config.md", "L": "config-linux.md"}

# GitHub heading anchors of the runtime-spec v1.3.0 files (plus the one bundle.md section the
# non-MUST table mentions). Kept by hand: the spec text is not part of this repository.
ANCHORS = {
    "runtime.md": {"scope-of-a-container", "state", "lifecycle", "errors", "warnings", "operations",
                   "query-state", "create", "start", "kill", "delete", "hooks"},
    "runtime-linux.md": {"file-descriptors", "dev-symbolic-links"},
    "config.md": {"configuration", "specification-version", "root", "mounts", "linux-mount-options",
                  "posix-platform-mounts", "process", "posix-process", "linux-process", "user",
                  "posix-platform-user", "hostname", "domainname", "platform-specific-configuration",
                  "posix-platform-hooks", "prestart", "createruntime-hooks", "createcontainer-hooks",
                  "startcontainer-hooks", "poststart", "poststop", "annotations", "extensibility",
                  "valid-values"},
    "config-linux.md": {"linux-container-configuration", "default-filesystems", "namespaces",
                        "user-namespace-mappings", "offset-for-time-namespace", "devices",
                        "default-devices", "network-devices",
                        "namespace-lifecycle-and-container-termination", "control-groups",
                        "cgroups-path", "cgroup-ownership", "allowed-device-list", "memory", "cpu",
                        "block-io", "huge-page-limits", "network", "pids", "rdma", "unified",
                        "intelrdt", "memory-policy", "sysctl", "seccomp",
                        "the-container-process-state", "rootfs-mount-propagation", "masked-paths",
                        "readonly-paths", "mount-label", "personality"},
    "bundle.md": {"filesystem-bundle"},
}


class Row:
    __slots__ = ("id", "file", "anchor", "summary", "tests", "line")

    def __init__(self, rid: str, ref: str, summary: str, tests: str, line: int) -> None:
        self.id, self.summary, self.tests, self.line = rid, summary, tests, line
        self.file, _, self.anchor = ref.partition("#")

    @property
    def kind(self) -> str:
        if self.tests.startswith(NO_TEST[0]):
            return "untestable"
        if self.tests.startswith(NO_TEST[1]):
            return "not yet tested"
        return "covered"

    def test_ids(self) -> list[str]:
        if self.kind != "covered":
            return []
        # ids come first; anything after the first "; " is a free-text note
        return [t.strip() for t in self.tests.split("; ", 1)[0].split(",")]


def _text() -> str:
    with open(REQ, encoding="utf-8") as f:
        return f.read()


def parse_rows(text: str) -> list[Row]:
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        m = ROW.match(line)
        if m:
            rows.append(Row(*m.groups(), n))
    return rows


def parse_summary(text: str) -> dict[str, tuple[int, int, int, int]]:
    """The ``| file | MUSTs | covered | untestable | not yet tested |`` table."""
    _, _, after = text.partition("\n## Summary\n")
    out = {}
    for line in after.splitlines():
        m = re.match(r"^\| ([a-z.-]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", line)
        if m:
            out[m.group(1)] = tuple(int(x) for x in m.groups()[1:])
    return out


@pytest.fixture(scope="module")
def rows() -> list[Row]:
    r = parse_rows(_text())
    assert len(r) > 150, f"only {len(r)} rows parsed: did the table format change?"
    return r


@pytest.fixture(scope="module")
def registry() -> set[str]:
    return {t.id for t in load_tests()}


def test_every_table_line_parses() -> None:
    # a row with a stray "|" in its summary would silently vanish from the parse
    bad = [line for line in _text().splitlines()
           if re.match(r"^\| [A-Z]+-", line) and not ROW.match(line)]
    assert not bad, f"unparseable rows: {bad}"


def test_ids_unique(rows: list[Row]) -> None:
    dup = [k for k, v in Counter(r.id for r in rows).items() if v > 1]
    assert not dup, f"duplicate requirement ids: {dup}"


def test_prefix_matches_file(rows: list[Row]) -> None:
    wrong = []
    for r in rows:
        prefix = r.id.split("-")[0]
        if prefix == "N":
            continue
        if PREFIX_FILE.get(prefix) != r.file:
            wrong.append(f"{r.id} cites {r.file}")
    assert not wrong, wrong


def test_refs_are_known_anchors(rows: list[Row]) -> None:
    bad = [f"{r.id}: {r.file}#{r.anchor}" for r in rows
           if r.anchor not in ANCHORS.get(r.file, set())]
    assert not bad, f"unknown file or section anchor: {bad}"


def test_tests_column_form(rows: list[Row]) -> None:
    bad = []
    for r in rows:
        if r.kind != "covered":
            reason = r.tests.split(": ", 1)[1].strip()
            if len(reason) < 10:
                bad.append(f"{r.id}: reason too short")
            continue
        for tid in r.test_ids():
            if not TEST_ID.match(tid):
                bad.append(f"{r.id}: {tid!r} is not a test id (no wildcards)")
    assert not bad, bad


def test_cited_test_ids_exist(rows: list[Row], registry: set[str]) -> None:
    missing = sorted({f"{r.id}: {t}" for r in rows for t in r.test_ids() if t not in registry})
    assert not missing, f"cited test ids not in the conformance registry: {missing}"


def test_summary_matches_rows(rows: list[Row]) -> None:
    want: dict[str, Counter] = {}
    for r in rows:
        if r.id.startswith("N-"):
            continue
        want.setdefault(r.file, Counter())[r.kind] += 1
    got = parse_summary(_text())
    for f, c in want.items():
        expect = (sum(c.values()), c["covered"], c["untestable"], c["not yet tested"])
        assert got.get(f) == expect, f"summary for {f}: table says {got.get(f)}, rows give {expect}"
    totals = tuple(sum(v[i] for k, v in got.items() if k != "total") for i in range(4))
    assert got.get("total") == totals, f"summary total {got.get('total')} != {totals}"


def test_parser_on_sample() -> None:
    text = ("| RT-01 | runtime.md#state | a | state-id, state-schema; note here |\n"
            "| C-01 | config.md#root | b | untestable: because reasons |\n"
            "| bad row |\n")
    r = parse_rows(text)
    assert [x.id for x in r] == ["RT-01", "C-01"]
    assert r[0].test_ids() == ["state-id", "state-schema"]
    assert r[1].kind == "untestable" and r[1].test_ids() == []


# -- cross-check against the released v1.3.0 Markdown (when it is around) -----
SPEC_TEXT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "oci-runtime-spec", "text")
# sections whose MUSTs bind other platforms only, or sit under a sub-heading of
# a section the rows cite (the "Example" of config-linux.md#unified)
NOT_TRACED = {"config.md#platform-specific-configuration", "config-linux.md#example"}


def _anchor(heading: str) -> str:
    h = re.sub(r'<a name="[^"]*"\s*/>', "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", h).replace(" ", "-")


def _sections_with_must(name: str) -> tuple[set[str], set[str]]:
    """(all heading anchors, anchors of sections holding an upper-case MUST)."""
    heads, musts = set(), set()
    cur, in_code = "", False
    with open(os.path.join(SPEC_TEXT, name), encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            m = re.match(r"^#+ (.*)", line)
            if m and not in_code:
                cur = _anchor(m.group(1))
                heads.add(cur)
            elif not in_code and re.search(r"\bMUST\b", line):
                musts.add(cur)
    return heads, musts


@pytest.mark.skipif(not os.path.isdir(SPEC_TEXT), reason="../shared/oci-runtime-spec/text not here (a clone elsewhere)")
def test_against_released_text(rows: list[Row]) -> None:
    cited = {f"{r.file}#{r.anchor}" for r in rows}
    missing_anchor, untraced = [], []
    for name in ("runtime.md", "runtime-linux.md", "config.md", "config-linux.md"):
        heads, musts = _sections_with_must(name)
        missing_anchor += [c for c in cited if c.startswith(name + "#") and c.split("#")[1] not in heads]
        untraced += [f"{name}#{a}" for a in musts if f"{name}#{a}" not in cited | NOT_TRACED]
    assert not missing_anchor, f"cited anchors that the released text does not have: {sorted(missing_anchor)}"
    assert not untraced, f"sections of the released text with a MUST and no row: {sorted(untraced)}"


def _must_sentences(name: str) -> tuple[int, int]:
    """(sentences with an upper-case MUST outside code blocks, those binding another platform)."""
    n = other = 0
    in_code = False
    with open(os.path.join(SPEC_TEXT, name), encoding="utf-8") as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
                continue
            if in_code:
                continue
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if re.search(r"\bMUST\b", sentence):
                    n += 1
                    other += bool(re.search(r"Windows|Solaris|Hyper-V|For all other platforms", sentence))
    return n, other


@pytest.mark.skipif(not os.path.isdir(SPEC_TEXT), reason="../shared/oci-runtime-spec/text not here (a clone elsewhere)")
def test_sentence_counts_match_released_text(rows: list[Row]) -> None:
    """The per-file MUST-sentence counts requirements.md states are those of
    the released text, and its row counts are those of the tables."""
    table = {}
    for m in re.finditer(r"^\| ([a-z-]+\.md) \| (\d+) \| (\d+) \| (\d+) \|$", _text(), re.M):
        table[m.group(1)] = tuple(int(x) for x in m.groups()[1:])
    assert set(table) == set(PREFIX_FILE.values()), f"sentence-count table lists {sorted(table)}"
    per_file = Counter(r.file for r in rows if not r.id.startswith("N-"))
    for name, (sentences, other, nrows) in table.items():
        assert _must_sentences(name) == (sentences, other), \
            f"{name}: the released text has {_must_sentences(name)} (MUST sentences, other platforms), table says {(sentences, other)}"
        assert per_file[name] == nrows, f"{name}: {per_file[name]} rows, table says {nrows}"
