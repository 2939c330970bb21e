"""The house's floors (../shared/DESIGN.md): imports point down, never round in a circle.

Every module of the package is parsed (ast, nothing imported) and each ``import`` / ``from ... import``
anywhere in it, in functions too, is an edge.  The test fails on an import circle, on an import from a
lower floor to a higher one, and on torch or PyQt6 imported at module level on the inference path (a
crystallographer predicts with ``pip install crysplugins`` alone).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "crysplugins"

#: floor -> module prefixes (a module belongs to the first floor whose prefix it starts with)
FLOORS = {
    "cli": ("crysplugins.cli", "crysplugins.refine_cli", "crysplugins.templates_cli", "crysplugins.datasets.cli",
            "crysplugins.training.cli", "crysplugins.evaluation.cli"),
    "crystal": ("crysplugins.crystal",),
    "runtime": ("crysplugins.runtime",),
    "plugins": ("crysplugins.plugins",),
    "host": ("crysplugins.host",),
    "inputs": ("crysplugins.inputs",),
    "request": ("crysplugins.request",),
    "training": ("crysplugins.training",),
    "datasets": ("crysplugins.datasets",),
    "evaluation": ("crysplugins.evaluation",),
}

#: floor -> floors it must never import
FORBIDDEN = {
    "crystal": {"runtime", "plugins", "host", "cli", "inputs", "request", "training", "datasets", "evaluation"},
    "runtime": {"plugins", "training", "datasets", "cli"},
    "plugins": {"host", "cli", "inputs", "request", "training", "datasets", "evaluation"},
    "datasets": {"training", "cli"},
}

#: modules on the inference path: no torch or PyQt6 at module level
INFERENCE = ("crysplugins.errors", "crysplugins.interface", "crysplugins.hookspecs", "crysplugins.host",
             "crysplugins.crystal", "crysplugins.runtime", "crysplugins.plugins", "crysplugins.inputs",
             "crysplugins.request", "crysplugins.cli", "crysplugins.examples", "crysplugins.validate")
HEAVY = ("torch", "PyQt6")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of a ``from`` import's module (relative imports resolved against ``module``)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not MODULES[module].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, bool]]:
    """(imported module, at module level?) for every import of ``module``; ``from a import b`` counts as
    ``a.b`` when that is a module of the package."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    top_level = {id(n) for n in tree.body} | {id(n) for stmt in tree.body if isinstance(stmt, (ast.If, ast.Try))
                                               for n in ast.walk(stmt)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if full in MODULES else base, id(node) in top_level))
    return out


def floor(module: str) -> str | None:
    for name, prefixes in FLOORS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return name
    return None


GRAPH = {m: sorted({target for target, _ in imports(m) if target in MODULES and target != m}) for m in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_the_package():
    assert len(MODULES) > 50 and "crysplugins.crystal.metrics" in MODULES
    assert "crysplugins.crystal.fourier" in GRAPH["crysplugins.crystal.metrics"]


def test_no_import_circles():
    assert _cycles() == []


@pytest.mark.parametrize("lower", sorted(FORBIDDEN))
def test_no_import_from_a_lower_floor_to_a_higher_one(lower):
    bad = [f"{m} imports {t}" for m in MODULES if floor(m) == lower
           for t, _ in imports(m) if floor(t) in FORBIDDEN[lower]]
    assert bad == []


def test_the_inference_path_imports_no_torch_or_qt_at_module_level():
    bad = [f"{m} imports {t}" for m in MODULES if m.startswith(INFERENCE)
           for t, top in imports(m) if top and t.split(".")[0] in HEAVY]
    assert bad == []


def test_predicting_loads_neither_torch_nor_qt():
    code = ("import sys; import crysplugins.cli, crysplugins.request, crysplugins.host as h; "
            "h.default_host(); print(sorted(m for m in ('torch', 'PyQt6') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_a_circle_and_a_floor_violation_would_be_found(monkeypatch):
    """The checks can fail: a made-up circle and a made-up upward import are reported."""
    monkeypatch.setitem(GRAPH, "crysplugins.crystal.fourier", GRAPH["crysplugins.crystal.fourier"] +
                        ["crysplugins.crystal.metrics"])
    assert any("crysplugins.crystal.fourier" in c for c in _cycles())
    assert floor("crysplugins.runtime.models") in FORBIDDEN["crystal"]


def test_numpy_commands_import_without_torch():
    """A hand-chirality fit and export, ONNX templates and dataset evaluation need no torch."""
    code = ("import sys; sys.modules['torch'] = None; "
            "import crysplugins.training.cli, crysplugins.training.export, crysplugins.templates_cli, "
            "crysplugins.evaluation.evaluate_dataset, crysplugins.training.hand_chirality; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
