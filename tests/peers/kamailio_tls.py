"""Kamailio 5.6 as a presence server on UDP, TCP and TLS at once, on 127.0.0.1.

Built on `tests.peers.kamailio` (same presence configuration, schema, start and
stop); this module only adds the stream listeners: `-l tcp:` and `-l tls:`, the
tls module (Debian `kamailio-tls-modules`) with a tls.cfg naming a certificate
from a test CA made at test time (`tests.peers.tls_certs`), and one hook for the
tests: an OPTIONS carrying `X-Close` is answered and its connection then closed
by Kamailio (`set_reply_close()`), to show a pool reopening what a server closed.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.peers.kamailio import CONFIG_TEMPLATE, KamailioPresenceServer, peers_missing
from tests.peers.ports import LOOPBACK
from tests.peers.tls_certs import CertFiles, Pki

TLS_MODULE = "tls.so"

# Kamailio does not verify the certificate of a peer it connects to (our TLS
# listener when it sends a NOTIFY) nor ask us for one; TLS 1.2 at least.
TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = {key}
certificate = {cert}

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
"""


def stream_config() -> str:
    """The presence configuration of `tests.peers.kamailio` with TCP and TLS on.

    tcp_rd_buf_size: Kamailio's default TCP read buffer drops a 20 KB request as
    a "buffer overrun"; tcp_accept_no_cl=no: a stream message needs Content-Length.
    """
    cfg = CONFIG_TEMPLATE.replace(
        "disable_tcp=yes\n",
        "disable_tcp=no\nenable_tls=yes\ntcp_accept_no_cl=no\ntcp_rd_buf_size=65536\n",
    )
    cfg = cfg.replace(
        'loadmodule "presence.so"\n',
        f'loadmodule "{TLS_MODULE}"\nloadmodule "presence.so"\n',
    )
    cfg = cfg.replace(
        'modparam("presence", "db_url"',
        'modparam("tls", "config", "{tls_cfg}")\nmodparam("presence", "db_url"',
    )
    probe = '    if (is_method("OPTIONS")) {{\n'
    if probe not in cfg:
        raise RuntimeError("tests.peers.kamailio's OPTIONS probe changed; update stream_config")
    return cfg.replace(
        probe,
        probe
        + '        if (is_present_hf("X-Close")) {{\n            set_reply_close();\n        }}\n',
    )


def tls_missing() -> str | None:
    """Why the TLS Kamailio cannot run here (None when it can)."""
    why = peers_missing()
    if why is not None:
        return why
    if not list(Path("/usr/lib").glob(f"*/kamailio/modules/{TLS_MODULE}")):
        return "kamailio's tls module is not installed (kamailio-tls-modules)"
    return None


def free_port_pair() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (Kamailio's UDP and TCP port)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOOPBACK, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((LOOPBACK, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class KamailioStreamServer(KamailioPresenceServer):
    """The presence server listening on udp and tcp at `port` and tls at `tls_port`.

    Its certificate is issued by `pki` for `cert_names` (by default 127.0.0.1 and
    "presence.test"); a test that wants a name mismatch connects with another name.
    """

    def __init__(
        self,
        pki: Pki,
        *,
        cert_names: tuple[str, ...] = (LOOPBACK, "presence.test"),
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(free_port_pair(), workdir=workdir)
        self.pki = pki
        self.cert_names = cert_names
        self.tls_port = free_tcp_port()
        self.tls_cfg_path = self.workdir / "tls.cfg"
        self.cert: CertFiles | None = None

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("-l") + 2
        return [
            *cmd[:at],
            "-l", f"tcp:{self.host}:{self.port}",
            "-l", f"tls:{self.host}:{self.tls_port}",
            *cmd[at:],
        ]  # fmt: skip

    def _prepare(self) -> None:
        super()._prepare()
        self.cert = self.pki.server(*self.cert_names)
        self.tls_cfg_path.write_text(TLS_CFG.format(key=self.cert.key, cert=self.cert.cert))
        self.cfg_path.write_text(
            stream_config().format(
                debug=self.debug,
                host=self.host,
                port=self.port,
                db_url=self.db_url,
                tls_cfg=self.tls_cfg_path,
                auth_modules="",
                auth_route="",
            )
        )

    def start(self, ready_timeout: float = 10.0) -> KamailioStreamServer:
        """Start as the UDP server does, then wait for the TLS port to accept too."""
        super().start(ready_timeout)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.tls_port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"kamailio: tls:{self.host}:{self.tls_port} not accepting\n{self.log_tail()}"
        )
