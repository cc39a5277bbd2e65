"""A throw-away PostgreSQL server on 127.0.0.1 for the store's tests.

initdb refuses to run as root, so the cluster belongs to the unprivileged
``postgres`` user (Debian's package creates it) when the tests run as root, and
to the current user otherwise. The cluster, its socket and its log live in one
temporary directory that is removed at the end; trust authentication is fine
for a server that listens on the loopback only and lives for one test module.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.peers.ports import LOOPBACK, free_tcp_port

__all__ = ["PostgresServer", "postgres_missing"]


def _bindir() -> Path | None:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "initdb").exists() and (base / "pg_ctl").exists():
            return base
    return None


def postgres_missing() -> str | None:
    """Why the server cannot be started here, or None."""
    if _bindir() is None:
        return "PostgreSQL server binaries are not installed; run scripts/setup --test"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


class PostgresServer:
    """``start()`` a cluster, ``url(db)`` to reach it, ``create_database()``,
    ``stop()`` and ``cleanup()``."""

    def __init__(self) -> None:
        bindir = _bindir()
        assert bindir is not None, postgres_missing()
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="pb2b-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_tcp_port()
        self.user = "presence"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._databases = 0

    def _run(self, *args: str) -> None:
        # cwd: the postgres user may not be allowed into the checkout (/root/...).
        subprocess.run(
            [*self._as, *args], check=True, capture_output=True, timeout=60, cwd=self.dir
        )

    def start(self) -> PostgresServer:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
            "--auth=trust", "--no-sync",
        )  # fmt: skip
        options = (
            f"-k {self.dir} -p {self.port} -c listen_addresses={LOOPBACK}"
            " -c fsync=off -c full_page_writes=off"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
            "-l", str(self.log), "-w", "-t", "30", "start",
        )  # fmt: skip
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._databases += 1
        name = f"t{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [*self._as, str(self.bindir / "pg_ctl"), "-D", str(self.data),
                 "-m", "fast", "-w", "stop"],
                capture_output=True, timeout=60, check=False, cwd=self.dir,
            )  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
