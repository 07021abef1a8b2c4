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
