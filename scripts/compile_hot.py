"""mypyc over the hot modules; the extensions and their manifest go to .compiled/.

--if-stale builds only when the present build does not match the source.
Run by scripts/compile after scripts/import-tree. The build is made in a fresh
directory and moved into place only when complete, so a failed or interrupted
build never leaves a half-built .compiled/ behind for the package to load.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".typecheck"
sys.path.insert(0, str(TREE))  # the import tree, for HOT_MODULES

from presence_b2b.compiled import BUILD_DIR, HOT_MODULES, MANIFEST, Build, source_digest  # noqa: E402

#: The folders of the package, as pyproject.toml's package-dir maps them.
PACKAGE_FOLDERS = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    .values()
)


def toolchain_ok() -> bool:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    return shutil.which(cc) is not None and include.is_file()


def module_path(name: str) -> str:
    return str(TREE.joinpath(*name.split(".")).with_suffix(".py").relative_to(ROOT))


def build(out: Path) -> None:
    # Here, not at the top: --check-toolchain runs before mypyc is known to be there.
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # noqa: PLC0415

    extensions = mypycify(
        [module_path(m) for m in HOT_MODULES],
        opt_level="3",
        target_dir=str(out / "c"),
    )
    dist = Distribution({"name": "presence-b2b-compiled", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.build_lib = str(out / "lib")  # type: ignore[attr-defined]
    command.build_temp = str(out / "tmp")  # type: ignore[attr-defined]
    command.parallel = 2  # type: ignore[attr-defined]
    dist.run_command("build_ext")


def manifest(out: Path) -> dict[str, object]:
    lib = out / "lib"
    extensions: dict[str, str] = {}
    for so in lib.rglob("*.so"):
        relative = so.relative_to(lib)
        name = ".".join((*relative.parent.parts, relative.name.split(".", 1)[0]))
        extensions[name] = str(Path("lib") / relative)
    missing = [m for m in HOT_MODULES if m not in extensions]
    if missing:
        raise SystemExit(f"compile: no extension built for {', '.join(missing)}")
    sources = {
        str(path.relative_to(ROOT)): source_digest(path)
        for folder in PACKAGE_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
    }
    return {"extensions": extensions, "sources": sources, "python": sys.implementation.cache_tag}


def main() -> None:
    if sys.argv[1:] == ["--check-toolchain"]:
        raise SystemExit(0 if toolchain_ok() else 1)
    if sys.argv[1:] == ["--if-stale"]:
        current = Build.read(BUILD_DIR)
        if current is not None and current.usable:
            print("compile: the build matches the source")
            return
    work = Path(tempfile.mkdtemp(prefix=".compiled-", dir=ROOT))
    try:
        os.chdir(ROOT)  # mypyc reads the project's mypy settings from pyproject.toml
        build(work)
        for scratch in ("tmp", "c"):  # objects and generated C: not needed to run
            shutil.rmtree(work / scratch, ignore_errors=True)
        (work / MANIFEST).write_text(json.dumps(manifest(work), indent=1, sort_keys=True))
        shutil.rmtree(BUILD_DIR, ignore_errors=True)
        work.rename(BUILD_DIR)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"compile: {len(HOT_MODULES)} hot modules built into {BUILD_DIR.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
