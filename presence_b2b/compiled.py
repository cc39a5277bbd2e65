"""Loads the compiled hot modules, when a build of exactly this source exists.

`scripts/compile` turns the modules in HOT_MODULES into C extensions with mypyc
and writes them, with a manifest of the sources they were built from, under
`.compiled/` in the checkout. This finder, put first on `sys.meta_path` when the
package is imported, loads those extensions in place of the Python files, but
only if every source of the package still hashes as it did at build time. A stale build is
never used in part: a compiled module calls the compiled code of the others
directly, so mixing a fresh Python module with a stale extension would run two
versions at once. It is ignored as a whole, with a warning naming what changed.

`PRESENCE_B2B_PURE=1` turns the finder off (the pure run of the test suite).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

__all__ = ["HOT_MODULES", "Build", "install", "is_compiled", "loaded_compiled"]

log = logging.getLogger(__name__)

#: The modules compiled: the NOTIFY and set-up paths (SIP parsing, transactions,
#: dialogs, the subscription machine, the engine, PIDF, timers, fan-out) and the
#: ring. Modules whose classes are msgspec Structs stay interpreted: mypyc drops
#: their class keywords (tag=, frozen=).
HOT_MODULES: tuple[str, ...] = (
    "presence_b2b.packed_strings",
    "presence_b2b.id_map",
    "presence_b2b.packed_map",
    "presence_b2b.sip.message",
    "presence_b2b.sip.headers",
    "presence_b2b.sip.ids",
    "presence_b2b.sip.framing",
    "presence_b2b.sip.timers",
    "presence_b2b.sip.transaction",
    "presence_b2b.sip.dialog",
    "presence_b2b.presence.xmlsafe",
    "presence_b2b.presence.pidf_plain",
    "presence_b2b.presence.pidf",
    "presence_b2b.presence.body",
    "presence_b2b.presence.listing",
    "presence_b2b.metrics.shard",
    "presence_b2b.shard.observer",
    "presence_b2b.shard.engine_metrics",
    "presence_b2b.shard.transitions",
    "presence_b2b.shard.subscription_io",
    "presence_b2b.shard.subscription",
    "presence_b2b.shard.usage",
    "presence_b2b.shard.call_id",
    "presence_b2b.shard.dialogset",
    "presence_b2b.shard.destination",
    "presence_b2b.shard.routing",
    "presence_b2b.shard.requester",
    "presence_b2b.shard.responseinfo",
    "presence_b2b.shard.output",
    "presence_b2b.shard.ratelimit",
    "presence_b2b.shard.pace",
    "presence_b2b.shard.engine",
    "presence_b2b.shard.key_index",
    "presence_b2b.shard.fanout",
    "presence_b2b.shard.network",
    "presence_b2b.shard.transport",
    "presence_b2b.ipc.ring",
)

#: Where the build lives in a checkout, next to the package folders.
BUILD_DIR = Path(__file__).resolve().parent.parent / ".compiled"
MANIFEST = "manifest.json"
PURE_ENV = "PRESENCE_B2B_PURE"


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Build:
    """What a manifest promises and whether the sources still match it."""

    root: Path
    #: module name -> extension file, for the hot modules and mypyc's shared library
    extensions: dict[str, Path] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, root: Path) -> Build | None:
        """The build under root, or None when there is none (no compiler, never built).

        Every source of the package is checked, not only the hot ones: compiled code
        trusts the types of what it calls, so a changed signature elsewhere matters too.
        """
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        checkout = root.parent
        build = cls(root)
        try:
            built_for = manifest["python"]
            if built_for != sys.implementation.cache_tag:
                # Extensions are tied to the interpreter's ABI: another one would not load.
                build.stale.append(f"Python {sys.implementation.cache_tag}, built for {built_for}")
            for source, digest in manifest["sources"].items():
                path = checkout / source
                if not path.is_file() or source_digest(path) != digest:
                    build.stale.append(source)
            for name, extension in manifest["extensions"].items():
                build.extensions[name] = root / extension
        except (KeyError, TypeError, AttributeError) as exc:
            log.warning("compiled build at %s unreadable, running pure Python: %s", root, exc)
            return None
        build.stale.extend(str(p) for p in build.extensions.values() if not p.is_file())
        return build

    @property
    def usable(self) -> bool:
        return not self.stale and all(m in self.extensions for m in HOT_MODULES)


class _CompiledFinder:
    """A meta path finder (by its find_spec: importlib.abc alone would cost every
    command ~9 ms of start-up, importlib.resources with it)."""

    def __init__(self, extensions: dict[str, Path]) -> None:
        self._extensions = extensions

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        extension = self._extensions.get(fullname)
        if extension is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(extension))
        return importlib.util.spec_from_file_location(fullname, extension, loader=loader)


_installed: Build | None = None


def install(root: Path = BUILD_DIR) -> Build | None:
    """Put the finder in front when a matching build exists; the build, or None."""
    global _installed
    if _installed is not None or os.environ.get(PURE_ENV):
        return _installed
    build = Build.read(root)
    if build is None:
        return None
    if not build.usable:
        log.warning(
            "compiled build at %s does not match the source (%s changed); "
            "running pure Python until scripts/compile is run again",
            root, ", ".join(sorted(build.stale)) or "hot module list",
        )
        return None
    sys.meta_path.insert(0, _CompiledFinder(build.extensions))
    _installed = build
    return build


def loaded_compiled(name: str) -> bool:
    """Whether an imported module came from an extension file."""
    module = sys.modules.get(name)
    origin = getattr(module, "__file__", None) or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def is_compiled() -> bool:
    """For --version and ctl stats: whether the hot modules run from the build."""
    return _installed is not None
