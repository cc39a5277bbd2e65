"""The code folders import one another in one direction only: configuration near the
bottom, the command line at the top, and no module imports itself in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[2]

#: Lowest first. A module may import only from its own layer or a lower one. The
#: subscription state machine sits under metrics, whose catalogue labels series by
#: its states and timer kinds; the rest of shard/ sits above the rings it drives.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("presence_b2b.sip", "presence_b2b.presence", "presence_b2b.store"),
    ("presence_b2b.config", "presence_b2b.limits", "presence_b2b.logs", "presence_b2b"),
    (
        "presence_b2b.shard.subscription",
        "presence_b2b.shard.subscription_io",
        "presence_b2b.shard.transitions",
    ),
    ("presence_b2b.metrics",),
    ("presence_b2b.ipc",),
    ("presence_b2b.shard",),
    ("presence_b2b.server",),
    ("presence_b2b.cli",),
)

#: Folder -> import name, as pyproject.toml's package-dir maps them.
FOLDERS = {
    "presence_b2b": "presence_b2b",
    "sip": "presence_b2b.sip",
    "presence": "presence_b2b.presence",
    "metrics": "presence_b2b.metrics",
    "ipc": "presence_b2b.ipc",
    "shard": "presence_b2b.shard",
    "server": "presence_b2b.server",
    "cli": "presence_b2b.cli",
    "store": "presence_b2b.store",
}


def _modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


MODULES = _modules()


def _type_only(tree: ast.Module) -> set[ast.AST]:
    """The import nodes inside ``if TYPE_CHECKING:`` blocks: annotations, never run."""
    nodes: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for inner in node.body:
                nodes.update(ast.walk(inner))
    return nodes


def _imports(name: str, path: Path, *, typing: bool = True) -> set[str]:
    """Every project module ``name`` imports, at any depth of the file (lazy imports
    included; ``TYPE_CHECKING`` blocks too unless ``typing`` is False)."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skip = set() if typing else _type_only(tree)
    for node in ast.walk(tree):
        if node in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if node.module:  # "from . import x" names x, not the package's __init__
                found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
#: What runs at import time: a type-only import back (an annotation naming the
#: class that dispatches through a table of functions) is no circle.
RUNTIME_GRAPH = {name: _imports(name, path, typing=False) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    """Index of the most specific layer entry naming ``module`` or a package above it."""
    best, best_len = -1, -1
    for index, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS"
    return best


def test_every_module_imports_only_from_its_own_layer_or_below() -> None:
    upward = [
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_module_imports_itself_through_others() -> None:
    def reaches(start: str, goal: str) -> bool:
        seen: set[str] = set()
        todo = list(RUNTIME_GRAPH[start])
        while todo:
            module = todo.pop()
            if module == goal:
                return True
            if module not in seen:
                seen.add(module)
                todo.extend(RUNTIME_GRAPH[module])
        return False

    assert [m for m in RUNTIME_GRAPH if reaches(m, m)] == []


def test_the_folder_of_the_configuration_holds_nothing_above_it() -> None:
    config_layer = _layer("presence_b2b.config")
    higher = [
        name for name, path in MODULES.items()
        if path.parent == ROOT / "presence_b2b" and _layer(name) != config_layer
    ]  # fmt: skip
    assert higher == []


def test_the_layer_map_sees_the_command_line_and_the_configuration() -> None:
    assert "presence_b2b.config" in GRAPH["presence_b2b.cli.main"]
    assert _layer("presence_b2b.cli.watch") == len(LAYERS) - 1
    assert _layer("presence_b2b.config") < _layer("presence_b2b.ipc.control")
