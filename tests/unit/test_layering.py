"""Imports go downward only (ARCHITECTURE.md "Layering")."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[2] / "ocirun"

LEVELS = [
    ("errors", "jsonio", "syscalls", "procfs", "log", "__init__"),
    ("pathres", "mount_options", "capabilities", "rlimits", "user", "namespaces", "devices",
     "rootfs", "hooks", "seccomp", "lsm", "console", "features", "trace", "plantypes"),
    ("state", "config", "process", "cgroups"),
    ("ops",),
    ("commands", "cli", "__main__"),
]


def level_of(mod: str) -> int:
    parts = mod.split(".")
    assert parts[0] == "ocirun"
    head = parts[1] if len(parts) > 1 else "__init__"
    for i, names in enumerate(LEVELS):
        if head in names:
            return i
    raise AssertionError(f"module {mod} is not placed in a layer: add it to LEVELS")


def modules():
    for p in sorted(PKG.rglob("*.py")):
        if p.name.startswith("_ffi_out"):
            continue
        rel = p.relative_to(PKG.parent).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), p


@pytest.mark.parametrize("mod,path", list(modules()), ids=lambda x: str(x))
def test_imports_go_down(mod, path):
    me = level_of(mod)
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            if not n.startswith("ocirun.") or n.count(".") > 1 and not n.startswith(node.module if isinstance(node, ast.ImportFrom) else n):
                continue
            try:
                lvl = level_of(n)
            except AssertionError:
                continue  # `from ocirun import X` names X, checked through the module form
            assert lvl <= me, f"{mod} (layer {me}) imports {n} (layer {lvl})"
