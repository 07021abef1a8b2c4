"""SECURITY.md names, for each defence, the code and the tests that show it:
every ``file.py::test_name`` it names must exist, so the map cannot rot."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def test_every_named_test_exists() -> None:
    text = (REPO / "SECURITY.md").read_text()
    refs = re.findall(r"`?([\w/]*test_\w+\.py)`?((?:::test_\w+|, `::test_\w+`|, `?::test_\w+)*)",
                      text)
    seen = 0
    for rel, tail in refs:
        candidates = [REPO / rel] if "/" in rel else [REPO / "tests" / "privileged" / rel,
                                                         REPO / "tests" / "unit" / rel]
        path = next((p for p in candidates if p.exists()), None)
        assert path is not None, f"SECURITY.md names {rel}, which does not exist"
        for name in re.findall(r"::(test_\w+)", tail):
            assert name in _tests_in(path), f"SECURITY.md names {rel}::{name}, not in {path}"
            seen += 1
    assert seen >= 20  # the table really was read


def test_every_module_named_exists() -> None:
    text = (REPO / "SECURITY.md").read_text()
    for mod in set(re.findall(r"`((?:process/|cgroups/|config/|ops/)?\w+\.py)", text)):
        if mod.startswith("test_"):
            continue
        assert (REPO / "ocirun" / mod).exists() or (REPO / "ocirun" / mod.rstrip("/")).exists(), mod


def _path_of(rel: str) -> Path | None:
    candidates = [REPO / rel] if "/" in rel else [REPO / "tests" / "privileged" / rel,
                                                     REPO / "tests" / "unit" / rel]
    return next((p for p in candidates if p.exists()), None)


def test_every_test_reference_resolves_to_the_file_named_before_it() -> None:
    """Also the short forms: ``file.py::test_a`` ... and ``::test_b`` (in the
    same file), read left to right, line by line."""
    text = (REPO / "SECURITY.md").read_text()
    seen = 0
    for line in text.splitlines():
        current: Path | None = None
        for m in re.finditer(r"([\w/]*test_\w+\.py)|::(test_\w+)", line):
            if m.group(1):
                current = _path_of(m.group(1))
                assert current is not None, f"SECURITY.md names {m.group(1)}, which does not exist"
                continue
            assert current is not None, f"SECURITY.md: ::{m.group(2)} with no file before it"
            assert m.group(2) in _tests_in(current), \
                f"SECURITY.md names {current.name}::{m.group(2)}, not in {current}"
            seen += 1
    assert seen >= 30


def test_conformance_groups_named_exist() -> None:
    """``conformance `seccomp-*` `` and the like name test ids of conformance/."""
    text = (REPO / "SECURITY.md").read_text()
    ids = "\n".join(p.read_text() for p in (REPO / "conformance").rglob("*.py"))
    for prefix in re.findall(r"conformance `([\w-]+)\*`", text):
        assert f'"{prefix}' in ids or f"'{prefix}" in ids, f"no conformance test id {prefix}*"
