"""The package's layering, as docs/architecture.md writes it down: every import points down
the layer order, nothing inside the package imports its root, and no modules import each
other in a cycle. Every import counts — at module level, inside a function (a lazy import
is still a dependency), under ``TYPE_CHECKING``, and a module named as a string to
``importlib.import_module`` or ``__import__``. ``_moved.py``, which forwards the old paths
of moved modules for one release, is the one module allowed to name every layer (as
docs/architecture.md says)."""

from __future__ import annotations

import ast
import doctest
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "immunoprofile"
ROOT = "immunoprofile"
#: Modules that may import any layer (docs/architecture.md says why).
EXEMPT = {"immunoprofile._moved"}


def layer_order() -> dict[str, int]:
    """Top-level name (``io``, ``engine``, ``errors``…) → its layer, bottom first, from the
    ```layers block of docs/architecture.md."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/architecture.md has no ```layers block"
    return {name: rank for rank, line in enumerate(block.group(1).splitlines())
            for name in line.split()}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name → (file, is a package)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def imports_of(name: str, path: Path, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports (``from . import x`` counts as ``x``
    where ``x`` is a module, else as the package it names)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != ROOT and not target.startswith(ROOT + "."):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in known else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names
                       if a.name == ROOT or a.name.startswith(ROOT + "."))
        elif isinstance(node, ast.Call) and _names_a_module(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and (
                    first.value == ROOT or first.value.startswith(ROOT + ".")):
                out.add(first.value)
    out.discard(name)
    return out


def _names_a_module(func: ast.expr) -> bool:
    """``importlib.import_module(...)``, ``import_module(...)`` or ``__import__(...)``."""
    if isinstance(func, ast.Attribute):
        return func.attr == "import_module"
    return isinstance(func, ast.Name) and func.id in ("import_module", "__import__")


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, is_package, set(found))
            for name, (path, is_package) in found.items()}


def layer_of(module: str, order: dict[str, int]) -> int | None:
    parts = module.split(".")
    return None if len(parts) == 1 else order.get(parts[1])


def test_every_module_has_a_layer():
    order = layer_order()
    missing = sorted({m.split(".")[1] for m in modules() if "." in m} - set(order))
    assert not missing, f"no layer in docs/architecture.md for: {missing}"


def test_no_upward_import_and_no_import_of_the_package_root():
    order = layer_order()
    wrong = []
    for module, targets in sorted(import_graph().items()):
        if module == ROOT or module in EXEMPT:
            continue
        for target in sorted(targets):
            if target == ROOT:
                wrong.append(f"{module} imports the package root")
            elif layer_of(target, order) is None:
                wrong.append(f"{module} imports {target}, which has no layer (no such "
                             "module, or a folder docs/architecture.md does not list)")
            elif layer_of(target, order) > layer_of(module, order):
                wrong.append(f"{module} imports {target}, a layer above it")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checks_see_a_violation(tmp_path):
    """The walker resolves relative imports as Python does (or the tests above prove
    nothing)."""
    fake = tmp_path / "immunoprofile" / "io" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..gating import panels\nfrom .. import errors\n"
                    "def f():\n    from ..report.html import build_report\n"
                    "import importlib\nimportlib.import_module('immunoprofile.study.cohort')\n"
                    "__import__('immunoprofile.predict.model')\n")
    known = {"immunoprofile.gating.panels", "immunoprofile.errors",
             "immunoprofile.report.html", "immunoprofile.study.cohort",
             "immunoprofile.predict.model"}
    assert imports_of("immunoprofile.io.x", fake, False, known) == known


@pytest.mark.parametrize("module", sorted(m for m, (p, _) in modules().items()
                                          if ">>> " in p.read_text(encoding="utf-8")))
def test_docstring_examples(module):
    """The examples in docstrings (counting/absolute.py, counting/qc.py…) run as written."""
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
