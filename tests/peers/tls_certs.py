"""A throwaway CA and certificates for the TLS tests, made at test time (trustme).

Nothing secret or expiring is committed: each test session gets a fresh CA.
`Pki.server(*names)` writes a certificate and key for those names (host names
or IP addresses) as PEM files, for Kamailio's tls.cfg or our own listener.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True, slots=True)
class CertFiles:
    """One certificate chain and its private key, as PEM files."""

    cert: Path
    key: Path


class Pki:
    """A test CA whose certificate and issued certificates live in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def server(self, *names: str) -> CertFiles:
        """A certificate for `names` signed by this CA (the first name names the files)."""
        cert = self.ca.issue_cert(*names)
        stem = names[0].replace(":", "_")
        files = CertFiles(self.directory / f"{stem}.crt", self.directory / f"{stem}.key")
        cert.private_key_and_cert_chain_pem.write_to_path(str(files.cert))
        cert.private_key_pem.write_to_path(str(files.key))
        return files

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A TLS server context presenting a certificate for `names`."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        files = self.server(*names)
        ctx.load_cert_chain(str(files.cert), str(files.key))
        return ctx
