"""Kamailio 5.6 as a real presence server on 127.0.0.1, for integration tests.

`KamailioPresenceServer` writes a minimal presence configuration (presence +
presence_xml with force_active, so no XCAP authorization; sqlite state in a temp
file), runs Debian's kamailio in the foreground and waits until it answers an
OPTIONS probe. PUBLISH helpers drive presentity state through SIPp.

With `auth=KamailioAuth(...)` it also challenges every SUBSCRIBE with a 401
(auth + auth_db, users in the sqlite `subscriber` table), the way a registrar
domain's presence server does.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

from tests.peers.ports import LOOPBACK, free_udp_port, start_with_port_retries, udp_bound_by
from tests.peers.process import stop_group
from tests.peers.sipp import SippError, SippProcess

SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql")
AUTH_SCHEMA_FILE = "auth_db-create.sql"

# Presence server: PUBLISH/SUBSCRIBE go through a transaction to handle_publish /
# handle_subscribe; OPTIONS is answered statelessly as the readiness probe.
# subs_respond_200: 200 instead of 202 to SUBSCRIBE. force_active: no XCAP rules.
CONFIG_TEMPLATE = """#!KAMAILIO
debug={debug}
log_stderror=yes
fork=yes
auto_aliases=no
disable_tcp=yes
alias="{host}"

loadmodule "db_sqlite.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "presence.so"
loadmodule "presence_xml.so"
{auth_modules}
modparam("presence", "db_url", "{db_url}")
modparam("presence", "server_address", "sip:{host}:{port}")
modparam("presence", "subs_respond_200", 1)
modparam("presence", "min_expires", 0)
modparam("presence", "clean_period", 5)
modparam("presence_xml", "db_url", "{db_url}")
modparam("presence_xml", "force_active", 1)
modparam("presence_xml", "integrated_xcap_server", 0)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
{auth_route}    if (is_method("PUBLISH|SUBSCRIBE")) {{
        if (!t_newtran()) {{
            sl_reply_error();
            exit;
        }}
        if (is_method("PUBLISH")) {{
            handle_publish();
        }} else {{
            handle_subscribe();
        }}
        exit;
    }}
    if (is_method("ACK")) {{
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"""


# auth_db reads the `subscriber` table: with calculate_ha1=1 the plain `password`
# column, with 0 the `ha1` column (one or the other per server: a module setting).
# nonce_count=1 makes Kamailio check that nc grows for a reused nonce, so a test
# proves a refresh's nc=00000002 against the real thing.
AUTH_MODULES_TEMPLATE = """loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth", "nonce_count", 1)
modparam("auth", "algorithm", "{algorithm}")
modparam("auth_db", "db_url", "{db_url}")
modparam("auth_db", "calculate_ha1", {calculate_ha1})
modparam("auth_db", "password_column", "{password_column}")
modparam("auth_db", "use_domain", 0)
"""

# SUBSCRIBE must carry credentials for the realm; qop=auth (www_challenge flag 1).
AUTH_ROUTE_TEMPLATE = """    if (is_method("SUBSCRIBE")) {{
        if (!www_authorize("{realm}", "subscriber")) {{
            www_challenge("{realm}", "1");
            exit;
        }}
        consume_credentials();
    }}
"""


@dataclass(frozen=True)
class AuthUser:
    """One row of the `subscriber` table: a plain password, an HA1, or both."""

    username: str
    password: str = ""
    ha1: str = ""


@dataclass(frozen=True)
class KamailioAuth:
    """Digest challenges on SUBSCRIBE: realm, users, and which column holds the
    secret (`plain`: the password column; `ha1`: the precomputed ha1 column)."""

    users: tuple[AuthUser, ...]
    realm: str = "presence.test"
    storage: Literal["plain", "ha1"] = "plain"
    algorithm: Literal["MD5", "SHA-256"] = "MD5"


def kamailio_binary() -> str | None:
    """Path of the kamailio executable, or None when it is not installed."""
    return shutil.which("kamailio") or (
        "/usr/sbin/kamailio" if os.access("/usr/sbin/kamailio", os.X_OK) else None
    )


def peers_missing() -> str | None:
    """Why the Kamailio fixture cannot run here (None when it can)."""
    if kamailio_binary() is None:
        return "kamailio is not installed"
    if shutil.which("sqlite3") is None:
        return "sqlite3 is not installed"
    for name in SCHEMA_FILES:
        if not (SCHEMA_DIR / name).exists():
            return f"{SCHEMA_DIR / name} is missing (kamailio-sqlite-modules)"
    if not Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so").exists() and not list(
        Path("/usr/lib").glob("*/kamailio/modules/presence.so")
    ):
        return "kamailio presence modules are not installed"
    return None


def _sql_text(value: str) -> str:
    """A SQL string literal (test data only: quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def options_ping(port: int, host: str = LOOPBACK, timeout: float = 0.3) -> int | None:
    """Send one OPTIONS over UDP and return the status code, None if no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        lport = sock.getsockname()[1]
        branch = "z9hG4bK-probe-" + uuid.uuid4().hex[:12]
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{lport};branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: probe-{uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), (host, port))
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        except OSError:  # ICMP port unreachable surfaces as ECONNREFUSED
            return None
        match = re.match(rb"SIP/2\.0 (\d{3})", data)
        return int(match.group(1)) if match else None


class KamailioPresenceServer:
    """Debian's kamailio 5.6 as a permissive presence server on 127.0.0.1:port.

    One worker (`-n 1`): 5.6's db_sqlite has no busy timeout, so two workers
    writing at once get "database is locked" and answer 500.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        shm_mb: int = 128,
        debug: int = 2,
        workdir: str | os.PathLike[str] | None = None,
        auth: KamailioAuth | None = None,
    ) -> None:
        binary = kamailio_binary()
        if binary is None:
            raise RuntimeError("kamailio is not installed (scripts/install-peers installs it)")
        self.binary = binary
        self.host = LOOPBACK
        self.port = port if port is not None else free_udp_port()
        self._port_chosen_here = port is None
        self.shm_mb = shm_mb
        self.debug = debug
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kamailio-presence-"))
        self.db_path = self.workdir / "presence.db"
        self.cfg_path = self.workdir / "kamailio.cfg"
        self.log_path = self.workdir / "kamailio.log"
        self.run_dir = self.workdir / "run"
        self.auth = auth
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def db_url(self) -> str:
        """db_sqlite URL: four slashes for an absolute path."""
        return f"sqlite:///{self.db_path}"

    @property
    def uri(self) -> str:
        """SIP URI of the server (what a test puts as outbound proxy / target host)."""
        return f"sip:{self.host}:{self.port}"

    def record_uri(self, user: str) -> str:
        """Presentity URI as Kamailio stores it: user@host, no port."""
        return f"sip:{user}@{self.host}"

    def command(self) -> list[str]:
        """The kamailio command line."""
        return [
            self.binary,
            "-DD",  # no daemon, stay in the foreground
            "-E",  # log to stderr
            "-n", "1",
            "-m", str(self.shm_mb),
            "-a", "no",
            "-l", f"udp:{self.host}:{self.port}",
            "-Y", str(self.run_dir),
            "-w", str(self.workdir),
            "-f", str(self.cfg_path),
        ]  # fmt: skip

    def _prepare(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.db_path.unlink(missing_ok=True)
        names = (*SCHEMA_FILES, AUTH_SCHEMA_FILE) if self.auth else SCHEMA_FILES
        sql = "".join((SCHEMA_DIR / name).read_text() for name in names)
        if self.auth:
            sql += "".join(
                "INSERT INTO subscriber (username, domain, password, ha1) VALUES "
                f"({_sql_text(u.username)}, {_sql_text(self.auth.realm)}, "
                f"{_sql_text(u.password)}, {_sql_text(u.ha1)});\n"
                for u in self.auth.users
            )
        subprocess.run(
            ["sqlite3", str(self.db_path)], input=sql.encode(), check=True, capture_output=True
        )
        auth_modules = auth_route = ""
        if self.auth:
            plain = self.auth.storage == "plain"
            auth_modules = AUTH_MODULES_TEMPLATE.format(
                db_url=self.db_url,
                algorithm=self.auth.algorithm,
                calculate_ha1=1 if plain else 0,
                password_column="password" if plain else "ha1",
            )
            auth_route = AUTH_ROUTE_TEMPLATE.format(realm=self.auth.realm)
        self.cfg_path.write_text(
            CONFIG_TEMPLATE.format(
                debug=self.debug,
                host=self.host,
                port=self.port,
                db_url=self.db_url,
                auth_modules=auth_modules,
                auth_route=auth_route,
            )
        )

    def start(self, ready_timeout: float = 10.0) -> Self:
        """Write config and db, start kamailio, return once OPTIONS gets a 200."""
        if self._proc is not None:
            raise RuntimeError("already started")
        move_to = self._move_to if self._port_chosen_here else None
        if not start_with_port_retries(lambda: self._spawn(ready_timeout), move_to):
            raise RuntimeError(
                f"kamailio could not bind udp:{self.host}:{self.port}\n"
                f"log tail:\n{self.log_tail()}"
            )
        return self

    def _move_to(self, port: int) -> None:
        self.port = port

    def _spawn(self, ready_timeout: float) -> bool:
        """Run kamailio; True once it answers OPTIONS on its own port, False if it
        exited because the port was taken."""
        self._prepare()
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaps the workers too
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if not udp_bound_by(self._proc.pid, self.port):
                time.sleep(0.01)
            elif options_ping(self.port) == 200:
                return True
        code = self._proc.poll()
        if code is not None and "Address already in use" in self.log():
            return False
        self.stop()
        state = f"exited with {code}" if code is not None else f"no 200 in {ready_timeout:g} s"
        raise RuntimeError(
            f"kamailio on udp:{self.host}:{self.port} not ready ({state})\n"
            f"command: {' '.join(self.command())}\nlog tail:\n{self.log_tail()}"
        )

    def running(self) -> bool:
        """True while the main process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        """Everything kamailio wrote to stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        return "\n".join(self.log().rstrip("\n").split("\n")[-lines:])

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        stop_group(self._proc, grace)

    def cleanup(self) -> None:
        """Stop and delete the temp dir (config, db, log) it owns."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- presentity state through PUBLISH ----------------------------------

    def publish(
        self,
        user: str,
        *,
        basic: str = "open",
        note: str = "online",
        expires: int = 60,
        timeout: float = 10.0,
    ) -> str:
        """PUBLISH a PIDF for user@127.0.0.1 (SIPp publish.xml); return the SIP-ETag."""
        pub = SippProcess(
            "publish",
            role="uac",
            remote_port=self.port,
            keys={"user": user, "basic": basic, "note": note, "expires": expires},
        ).start()
        try:
            if pub.wait(timeout) != 0:
                raise SippError(pub.report() + "\n\nkamailio log:\n" + self.log_tail())
            ok = pub.received(200, cseq_method="PUBLISH")
            etag = ok[-1].header("SIP-ETag") if ok else ""
            if not etag:
                raise SippError("PUBLISH 200 carries no SIP-ETag\n" + pub.report())
            return etag
        finally:
            pub.cleanup()

    def unpublish(self, user: str, etag: str, timeout: float = 10.0) -> None:
        """Remove a publication: PUBLISH Expires: 0 with SIP-If-Match (unpublish.xml)."""
        pub = SippProcess(
            "unpublish", role="uac", remote_port=self.port, keys={"user": user, "etag": etag}
        ).start()
        try:
            if pub.wait(timeout) != 0:
                raise SippError(pub.report() + "\n\nkamailio log:\n" + self.log_tail())
        finally:
            pub.cleanup()
