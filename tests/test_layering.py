"""The tree's roles hold: data flows one way (edge -> domain -> storage), the composition root and the
development tools sit above everything, and no two modules import each other (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "handlers", "storage")
COMPOSITION_ROOT = ("bot.app", "bot.jobs", "bot.cli", "bot.devtools", "bot.__main__")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(path): path
    for package in PACKAGES
    for path in sorted((ROOT / package).rglob("*.py"))
    if "versions" not in path.parts
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The project module an import names (a module, or the package holding a name), if any."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, at_load_only: bool = True) -> set[str]:
    """Project modules `module` imports; with `at_load_only`, only those imported when it loads (not under
    TYPE_CHECKING, not inside functions): the ones that can form a cycle."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    nodes: list[ast.stmt] = []
    if at_load_only:
        pending = list(tree.body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and not _is_type_checking(node):
                pending += node.body + node.orelse
            elif isinstance(node, ast.Try):
                pending += node.body + node.orelse + node.finalbody
            elif isinstance(node, ast.Import | ast.ImportFrom):
                nodes.append(node)
    else:
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}".strip(".")
            # `from a.b import c`: module a.b.c when there is one, else the names a.b holds
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for name in names:
            resolved = _resolve(name)
            if resolved and resolved != module and resolved.split(".")[0] in PACKAGES:
                found.add(resolved)
    return found


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_storage_imports_nothing_from_bot_or_handlers_migrations_included() -> None:
    storage = [m for m in MODULES if m.startswith("storage")]
    assert "storage.migrations.env" in storage and len(storage) > 20
    upward = {m: sorted(i for i in imports(m, at_load_only=False) if not i.startswith("storage")) for m in storage}
    assert {m: names for m, names in upward.items() if names} == {}


def test_handlers_never_import_the_cli_the_devtools_or_the_composition_root() -> None:
    handlers = [m for m in MODULES if m.startswith("handlers")]
    wrong = {m: sorted(i for i in imports(m, at_load_only=False) if _in(i, COMPOSITION_ROOT)) for m in handlers}
    assert {m: names for m, names in wrong.items() if names} == {}


def test_the_domain_never_imports_an_edge_when_it_loads() -> None:
    domain = [m for m in MODULES if m.startswith("bot") and not _in(m, COMPOSITION_ROOT)]
    assert "bot.reports" in domain and "bot.services" in domain
    wrong = {m: sorted(i for i in imports(m) if i.startswith("handlers") or _in(i, COMPOSITION_ROOT)) for m in domain}
    assert {m: names for m, names in wrong.items() if names} == {}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the import graph, every import counted
    (at load, in functions, for typing): Tarjan's algorithm."""
    graph = {m: imports(m, at_load_only=False) for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles_between_modules_of_any_package() -> None:
    assert len(MODULES) > 60
    assert _cycles() == []
