"""The package as a whole: imports that point one way, one list of backends, one version."""

import ast
import re
from pathlib import Path

import pytest

import backends
import tinycnn_xp
from tinycnn_xp import _backends

PACKAGE = Path(tinycnn_xp.__file__).parent
ROOT = PACKAGE.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_imports(path: Path) -> set[str]:
    """Every module of the package that ``path`` imports, at any depth (function-level too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            target = f"{base}.{node.module}" if node.module else base
            for alias in node.names:  # ``from . import checkpoint`` imports a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if _is_module(candidate) else target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            found.update(n for n in names if n and n.startswith("tinycnn_xp"))
    return {module for module in found if module != name}


def _is_module(dotted: str) -> bool:
    relative = Path(*dotted.split("."))
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(path): internal_imports(path) for path in PACKAGE.rglob("*.py")}


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "tinycnn_xp.training" in graph["tinycnn_xp.models"]
    assert "tinycnn_xp.models" in graph["tinycnn_xp.cli.train"]


def test_no_import_cycle_anywhere():
    graph = import_graph()
    # A package's __init__ imports its submodules to re-export them: that edge is not a cycle
    # (the submodules never need the package's namespace), so it is left out.
    edges = {m: {t for t in targets if not (m.startswith(t + ".") and graph.get(t) is not None
                                           and t != m)}
             for m, targets in graph.items()}
    state: dict[str, int] = {}

    def visit(module, path):
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycle = [*path[path.index(target):], target] if target in path else [module, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])


def test_training_and_checkpoint_never_import_models():
    graph = import_graph()
    for module in ("tinycnn_xp.training", "tinycnn_xp.checkpoint", "tinycnn_xp.evaluation",
                   "tinycnn_xp.layers", "tinycnn_xp.optim", "tinycnn_xp.history"):
        assert "tinycnn_xp.models" not in graph[module], module


def test_no_module_reaches_into_another_modules_privates():
    """``other._name`` of another module is private to it (tests may reach into what they test)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                # ``from . import _checks`` takes a package-private module: fine
                offenders += [f"{path.name}: from {node.module} import {a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name) \
                    and node.value.id not in ("self", "cls"):
                offenders.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offenders, offenders


def test_backends_of_the_test_matrix_and_of_the_package_are_the_same():
    assert tuple(backends.MODULES) == _backends.NAMES


def test_the_version_is_written_once():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject
    assert 'version = { attr = "tinycnn_xp.__version__" }' in pyproject
    assert len(re.findall(r"\d+\.\d+\.\d+", (PACKAGE / "__init__.py").read_text())) == 1
    assert re.fullmatch(r"\d+\.\d+\.\d+", tinycnn_xp.__version__)


def test_the_command_line_is_a_package_of_short_modules():
    lengths = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert {"parser.py", "common.py", "train.py", "sweep.py", "gradcheck.py", "progress.py"} <= set(lengths)
    assert max(lengths.values()) <= 250, lengths
