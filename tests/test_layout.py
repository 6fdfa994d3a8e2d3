"""The library's shape: no import cycle, layers that only point down, a short top-level folder.

Imports inside functions count: a lazy import still ties two modules together.
"""

import ast
from pathlib import Path

from seg_core.core.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "seg_core"
#: Bottom first; a module may import its own layer and the ones before it.
LAYERS = ("core", "data", "models", "runtime", "outputs", "evaluation", "service")
MAX_TOP_LEVEL_MODULES = 10


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's own modules that ``path`` imports (the longest known prefix of each target)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base] if base else parents)
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {name: imported(path, name, set(known)) for name, path in known.items()}
    # A package's __init__ importing its own children is how packages work, not a cycle.
    return {
        n: {t for t in ts if not (known[n].name == "__init__.py" and t.startswith(n + "."))} for n, ts in edges.items()
    }


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def layer(name: str) -> int:
    """Rank of a module: its subpackage's place in LAYERS; top-level modules (commands, face) sit above all."""
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def test_cycles_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_the_library_modules():
    assert cycles(graph()) == []


def test_layers_only_point_down():
    upward = sorted(
        f"{source} imports {target}"
        for source, targets in graph().items()
        for target in targets
        if layer(target) > layer(source)
    )
    assert upward == []


def test_the_top_level_folder_holds_only_the_commands():
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top
    for stem in top:
        assert "def main(" in (PACKAGE / f"{stem}.py").read_text(), f"seg_core/{stem}.py is not a command"


def test_the_package_face():
    import seg_core

    assert {"load_predictor", "available_predictors", "segment", "DEFAULT_MODEL"} <= set(seg_core.__all__)
    assert seg_core.DEFAULT_MODEL in seg_core.available_predictors()
