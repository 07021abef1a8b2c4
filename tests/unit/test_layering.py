"""Imports go downward only (ARCHITECTURE.md "Layering")."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[2] / "ocirun"

LEVELS = [
    ("errors", "jsonio", "syscalls", "procfs", "log", "steps", "__init__", "cmdtable"),
    ("pathres", "mount_options", "capabilities", "rlimits", "user", "namespaces", "devices",
     "rootfs", "hooks", "seccomp", "lsm", "console", "features", "trace", "plantypes"),
    ("state", "config", "process", "cgroups"),
    ("ops",),
    ("commands", "cli", "__main__", "cmdhelp", "manpage", "completion", "check"),
]
# issue 13's modules: scheduling, NUMA policy, Intel RDT, id-mapped mounts,
# network devices, CRIU (a line of their own, so merges stay easy)
LEVELS[1] += ("sched", "mempolicy", "resctrl", "netdev", "criu")
# issue 11: the os-free ground floor of state derivation, and the launcher's
# fast path above everything (it falls back to cli)
LEVELS[0] += ("ground", "posixpaths", "plainargs")
LEVELS[4] += ("quick", "launcher")
# issue 8: rootless mode (it builds on cgroups)
LEVELS[2] += ("rootless",)
# issue 11: the launcher's code cache (stdlib only, below everything it serves)
LEVELS[0] += ("codecache",)


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


# What runs in the children (after the fork) works from plans only: it must
# never reach for the config layer (schema, meaning checks, the bundle
# loader), nor for the planner that turns a config into plans.
CHILD_SIDE = ("ocirun.process.init", "ocirun.process.setup", "ocirun.process.tenant",
              "ocirun.process.intermediate", "ocirun.rootfs", "ocirun.devices", "ocirun.user",
              "ocirun.capabilities", "ocirun.rlimits", "ocirun.pathres", "ocirun.namespaces",
              "ocirun.plantypes")
NEVER_FROM_CHILD_SIDE = ("ocirun.config", "ocirun.process.plan", "ocirun.ops", "jsonschema",
                         "fastjsonschema", "json")


@pytest.mark.parametrize("mod", CHILD_SIDE)
def test_child_side_never_reads_config(mod):
    path = PKG.parent / (mod.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for n in names:
            for bad in NEVER_FROM_CHILD_SIDE:
                assert n != bad and not n.startswith(bad + "."), f"{mod} imports {n}"


# -- no import cycles ---------------------------------------------------------------------
# Every import counts, also the ones inside functions (a lazy import still ties two modules
# together, and a cycle of them is a tangle however late it is resolved). `from ocirun.x
# import y` is an edge to ocirun.x.y when y is a module, else to ocirun.x.



def import_graph():
    mods = dict(modules())
    graph = {}
    for mod, path in mods.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        graph[mod] = {d for d in deps if d in mods and d != mod}
    return graph


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(comp)
    return found


def test_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
    assert sorted(sorted(c) for c in cycles(g)) == [["a", "b", "c"], ["e", "f"]]


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles in ocirun/: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_command_handlers_live_on_the_top_layer():
    """The command table names its handlers by string (the parser imports them lazily),
    so the import scan above cannot see those edges: check them here."""
    from ocirun import cmdtable
    for row in cmdtable.COMMANDS:
        handler = row[cmdtable.C_HANDLER]
        if handler:
            assert level_of(handler.partition(":")[0]) == len(LEVELS) - 1, handler
