"""The compiled build: used only when it matches the source, as a whole; and the
rules the hot modules follow so that compiled code behaves as the Python does."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from presence_b2b import compiled
from presence_b2b.compiled import HOT_MODULES, MANIFEST, Build, source_digest

ROOT = Path(__file__).resolve().parents[2]
#: import name prefix -> folder, as pyproject.toml's package-dir maps them
FOLDERS = {"presence_b2b.sip": "sip", "presence_b2b.presence": "presence",
           "presence_b2b.shard": "shard", "presence_b2b.ipc": "ipc",
           "presence_b2b.metrics": "metrics", "presence_b2b": "presence_b2b"}


def hot_source(name: str) -> Path:
    package, module = name.rsplit(".", 1)
    return ROOT / FOLDERS[package] / f"{module}.py"


def checkout(tmp_path: Path) -> Path:
    """A checkout with two sources and a build of them: one hot module's extension
    and mypyc's shared library (empty files: only their presence is read)."""
    (tmp_path / "sip").mkdir()
    (tmp_path / "sip" / "message.py").write_text("X = 1\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "main.py").write_text("Y = 2\n")
    lib = tmp_path / ".compiled" / "lib"
    (lib / "presence_b2b" / "sip").mkdir(parents=True)
    extensions = {name: f"lib/{name.replace('.', '/')}.so" for name in HOT_MODULES}
    extensions["abc__mypyc"] = "lib/abc__mypyc.so"
    for relative in extensions.values():
        target = tmp_path / ".compiled" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
    sources = {s: source_digest(tmp_path / s) for s in ("sip/message.py", "cli/main.py")}
    (tmp_path / ".compiled" / MANIFEST).write_text(
        json.dumps(
            {"extensions": extensions, "sources": sources, "python": sys.implementation.cache_tag}
        )
    )
    return tmp_path / ".compiled"


def test_a_build_of_exactly_this_source_is_usable(tmp_path: Path) -> None:
    build = Build.read(checkout(tmp_path))
    assert build is not None and build.usable and build.stale == []
    assert build.extensions["abc__mypyc"].name == "abc__mypyc.so"


def test_a_change_to_any_source_makes_the_whole_build_stale(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    (tmp_path / "cli" / "main.py").write_text("Y = 3\n")  # not a hot module
    build = Build.read(root)
    assert build is not None and not build.usable
    assert build.stale == ["cli/main.py"]


def test_a_deleted_source_or_extension_makes_the_build_stale(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    (tmp_path / "sip" / "message.py").unlink()
    (root / "lib" / "abc__mypyc.so").unlink()
    build = Build.read(root)
    assert build is not None and not build.usable
    assert build.stale == ["sip/message.py", str(root / "lib" / "abc__mypyc.so")]


def test_a_build_for_another_python_is_not_used(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    manifest["python"] = "cpython-39"
    (root / MANIFEST).write_text(json.dumps(manifest))
    build = Build.read(root)
    assert build is not None and not build.usable
    assert build.stale == [f"Python {sys.implementation.cache_tag}, built for cpython-39"]


def test_a_build_missing_a_hot_module_is_not_used(tmp_path: Path) -> None:
    root = checkout(tmp_path)
    manifest = json.loads((root / MANIFEST).read_text())
    del manifest["extensions"][HOT_MODULES[0]]
    (root / MANIFEST).write_text(json.dumps(manifest))
    build = Build.read(root)
    assert build is not None and not build.usable


@pytest.mark.parametrize(
    "text", ["", "{", "[]", '{"extensions": 1, "sources": {}}', '{"extensions": {}, "sources": {}}']
)
def test_no_build_or_a_garbled_manifest_means_pure_python(tmp_path: Path, text: str) -> None:
    assert Build.read(tmp_path / ".compiled") is None
    (tmp_path / ".compiled").mkdir()
    (tmp_path / ".compiled" / MANIFEST).write_text(text)
    assert Build.read(tmp_path / ".compiled") is None


def test_a_stale_build_is_named_and_the_package_runs_pure(tmp_path: Path) -> None:
    """In a fresh interpreter, as a process of the service starts."""
    root = checkout(tmp_path)
    (tmp_path / "sip" / "message.py").write_text("X = 2\n")
    code = (
        "import logging, sys; logging.basicConfig(stream=sys.stdout, format='%(message)s')\n"
        "from pathlib import Path\n"
        "from presence_b2b import compiled\n"
        "compiled._installed = None  # whatever this checkout's own build did at import\n"
        f"print('installed:', compiled.install(Path({str(root)!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert f"compiled build at {root} does not match the source (sip/message.py changed)" in out
    assert out.rstrip().endswith("installed: None")


def test_the_pure_switch_keeps_any_build_out() -> None:
    env = {**os.environ, compiled.PURE_ENV: "1"}
    code = "from presence_b2b import compiled; print(compiled.is_compiled(), compiled.install())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.split() == ["False", "None"]


def test_the_running_code_is_what_the_run_asked_for() -> None:
    for name in HOT_MODULES:
        __import__(name)
    loaded = {name: compiled.loaded_compiled(name) for name in HOT_MODULES}
    if os.environ.get(compiled.PURE_ENV):
        assert not any(loaded.values())
    else:
        assert all(loaded.values()) if compiled.is_compiled() else not any(loaded.values())


def test_every_hot_module_has_a_source_file() -> None:
    assert [name for name in HOT_MODULES if not hot_source(name).is_file()] == []


@pytest.mark.parametrize("name", HOT_MODULES)
def test_a_hot_function_never_names_two_exception_types_alike(name: str) -> None:
    """Compiled, one local has one type: `except A as e` then `except B as e` in one
    function makes a B raise TypeError where the Python catches it."""
    clashes = []
    for fn in ast.walk(ast.parse(hot_source(name).read_text())):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            types: dict[str, set[str]] = {}
            for node in ast.walk(fn):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    caught = ast.unparse(node.type) if node.type else "BaseException"
                    types.setdefault(node.name, set()).add(caught)
            clashes += [f"{fn.name}: {n} {sorted(t)}" for n, t in types.items() if len(t) > 1]
    assert clashes == []
