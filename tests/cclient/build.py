"""Building the C client of QSA (clients/c) for the tests, plain and sanitized.

The tests build into a temporary directory with the project's own Makefile,
so what they run is what ``make`` produces from the checked-in sources. The
sanitized build has AddressSanitizer and UndefinedBehaviorSanitizer with
``-fno-sanitize-recover``; its runs get distinctive exit codes, so that a
sanitizer report cannot pass for one of qsa-watch's own exit statuses.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

C_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "c"

ASAN_EXIT = 86
UBSAN_EXIT = 87
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


@dataclass(frozen=True)
class CBuild:
    """One build of clients/c: its binaries and how to run them."""

    directory: Path
    sanitized: bool

    @property
    def watch(self) -> str:
        return str(self.directory / "qsa-watch")

    @property
    def decode(self) -> str:
        return str(self.directory / "qsa-decode")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.sanitized:
            env["ASAN_OPTIONS"] = f"exitcode={ASAN_EXIT}:detect_leaks=1:abort_on_error=0"
            env["UBSAN_OPTIONS"] = f"exitcode={UBSAN_EXIT}:halt_on_error=1:print_stacktrace=1"
        return env

    def check_clean(self, stderr: str) -> None:
        """AssertionError if a sanitizer reported anything."""
        for mark in SANITIZER_MARKS:
            assert mark not in stderr, f"sanitizer report from {self.directory.name}:\n{stderr}"


def need_compiler() -> None:
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("make or a C compiler is missing; run scripts/setup --test")


def build(directory: Path, *, sanitized: bool) -> CBuild:
    """``make`` clients/c into ``directory``; the compiler's output on failure."""
    need_compiler()
    args = ["make", "-s", "-C", str(C_CLIENT), f"BUILD={directory}"]
    if sanitized:
        args.append("SANITIZE=1")
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"building clients/c failed:\n{done.stdout}\n{done.stderr}"
    return CBuild(directory, sanitized)


@pytest.fixture(scope="session", params=["plain", "sanitized"])
def c_build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> CBuild:
    """clients/c built as it ships, then with -fsanitize=address,undefined (built once)."""
    sanitized = request.param == "sanitized"
    return build(tmp_path_factory.mktemp(f"c-client-{request.param}"), sanitized=sanitized)
