"""The package's import graph, read from the source: the core imports no shell, and the
subpackages of ``aewatch`` import each other without a cycle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import aewatch

PACKAGE = Path(aewatch.__file__).parent
CORE_MAY_IMPORT = ("aewatch.core", "aewatch.errors")


def test_the_core_imports_nothing_of_aewatch_but_itself_and_errors() -> None:
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for target, line in _imports(path)
        if _is_aewatch(target) and not any(_within(target, ok) for ok in CORE_MAY_IMPORT)
    ]
    assert wrong == [], "aewatch.core must not import the shells:\n" + "\n".join(wrong)


def test_the_subpackages_import_each_other_without_a_cycle() -> None:
    graph = _unit_graph()
    assert graph["core"] <= {"errors"}
    assert "core" in graph["model"] and "core" in graph["daemon"]
    assert _cycle(graph) is None, f"import cycle between aewatch's parts: {_cycle(graph)}"


def test_a_cycle_is_found() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def _unit_graph() -> dict[str, set[str]]:
    """Each part of ``aewatch`` (a subpackage or a top-level module) -> the parts it imports."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(_module_name(path))
        imported = {_unit(t) for t, _ in _imports(path) if _is_aewatch(t)}
        graph.setdefault(unit, set()).update(imported - {unit, "aewatch"})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, [*path, node])
            if found is not None:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found is not None:
            return found
    return None


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (anywhere in the file, relative ones resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                # ``from aewatch import model`` imports the subpackage, not a name.
                full = f"{base}.{alias.name}"
                yield (full if _is_module(full) else base), node.lineno


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """``aewatch.model.scorer`` -> ``model``; ``aewatch.cli`` -> ``cli``; ``aewatch`` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if _is_aewatch(name) else None
    return relative is not None and (
        (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file()
    )


def _is_aewatch(name: str) -> bool:
    return _within(name, "aewatch")


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")
