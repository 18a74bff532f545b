"""Data flows one way (edge -> domain -> storage): storage never imports the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

STORAGE = Path(__file__).resolve().parent.parent / "storage"


def _imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_storage_imports_nothing_from_bot_or_handlers() -> None:
    modules = sorted(p for p in STORAGE.rglob("*.py") if "migrations" not in p.parts)
    assert len(modules) > 10
    upward = {
        str(path.relative_to(STORAGE.parent)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] in {"bot", "handlers"}
        )
        for path in modules
    }
    assert {path: names for path, names in upward.items() if names} == {}
