"""Debian's dnsmasq as a real DNS server on 127.0.0.1, for the resolver's tests.

`DnsServer` writes its own configuration (no system files: ``--no-resolv``,
``--no-hosts``, ``--conf-file`` only), runs dnsmasq in the foreground on a free
loopback port and waits until it answers. The zone `ZONE` is what the tests
and the DNS benchmark resolve; `SilentDnsServer` is a UDP socket that never
answers, for timeouts.

dnsmasq facts the zone relies on: ``--local=/test/`` makes an unknown name
under ``.test`` NXDOMAIN (REFUSED otherwise); ``--local-ttl`` gives its own
records a TTL (0 otherwise, which nothing may cache); ``--port`` moves the DNS
service, and no ``dhcp-range`` means no DHCP.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from tests.peers.ports import LOOPBACK, free_udp_port
from tests.peers.process import stop_group

#: TTL of every record of the zone, in seconds.
TTL = 60

#: The test zone, as dnsmasq configuration lines. The SIP ports are never
#: listened on: the resolver only turns names into addresses.
ZONE = """\
# presence.test: NAPTR prefers TCP, then UDP; SRV for both, two UDP targets.
naptr-record=presence.test,10,50,s,SIP+D2T,,_sip._tcp.presence.test
naptr-record=presence.test,20,50,s,SIP+D2U,,_sip._udp.presence.test
srv-host=_sip._tcp.presence.test,tcp1.presence.test,5072,10,10
srv-host=_sip._udp.presence.test,a.presence.test,5070,10,10
srv-host=_sip._udp.presence.test,b.presence.test,5071,20,10
host-record=tcp1.presence.test,127.0.0.3
host-record=a.presence.test,127.0.0.1
host-record=b.presence.test,127.0.0.2,::1

# weighted.test: no NAPTR; one priority, weights 90 and 10 (RFC 2782).
srv-host=_sip._udp.weighted.test,heavy.weighted.test,5080,10,90
srv-host=_sip._udp.weighted.test,light.weighted.test,5081,10,10
host-record=heavy.weighted.test,127.0.0.10
host-record=light.weighted.test,127.0.0.11

# plain.test: an address and nothing else (no NAPTR, no SRV).
host-record=plain.test,127.0.0.20

# v6.test: an IPv6 address only.
host-record=v6.test,::1

# Anything else under .test does not exist (NXDOMAIN).
local=/test/
"""


def dnsmasq_binary() -> str | None:
    """Path of the dnsmasq executable, or None when it is not installed."""
    return shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if os.access("/usr/sbin/dnsmasq", os.X_OK) else None
    )


def dns_probe(port: int, name: str = "plain.test", timeout: float = 0.3) -> int | None:
    """Send one A query over UDP to 127.0.0.1:port; the rcode, None if no answer."""
    qid = os.getpid() & 0xFFFF
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    packet = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (LOOPBACK, port))
        try:
            data = sock.recv(4096)
        except OSError:  # timeout, or ICMP port unreachable as ECONNREFUSED
            return None
    if len(data) < 4 or struct.unpack("!H", data[:2])[0] != qid:
        return None
    rcode: int = data[3] & 0x0F
    return rcode


class DnsServer:
    """dnsmasq serving `ZONE` (or the lines given) on 127.0.0.1:port over UDP and TCP."""

    def __init__(self, zone: str = ZONE, *, port: int | None = None, ttl: int = TTL) -> None:
        binary = dnsmasq_binary()
        if binary is None:
            raise RuntimeError("dnsmasq is not installed (scripts/setup --test installs it)")
        self.binary = binary
        self.zone = zone
        self.port = port if port is not None else free_udp_port()
        self.ttl = ttl
        self.workdir = Path(tempfile.mkdtemp(prefix="dnsmasq-"))
        self.conf_path = self.workdir / "dnsmasq.conf"
        self.log_path = self.workdir / "dnsmasq.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """The ``ip:port`` form that ``[dns] servers`` takes."""
        return f"{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        """The dnsmasq command line: foreground, loopback only, nothing from the system."""
        return [
            self.binary,
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={LOOPBACK}",
            f"--port={self.port}",
            f"--conf-file={self.conf_path}",
            "--pid-file=",  # none
            "--user=root",  # keep the privileges it starts with: no setuid dance
            f"--local-ttl={self.ttl}",
            "--log-queries",
            f"--log-facility={self.log_path}",
        ]

    def start(self, ready_timeout: float = 5.0) -> Self:
        """Write the configuration, start dnsmasq, return once it answers a query."""
        if self._proc is not None:
            raise RuntimeError("already started")
        self.conf_path.write_text(self.zone)
        with open(self.workdir / "stderr.log", "wb") as err:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if dns_probe(self.port) is not None:
                return self
            time.sleep(0.02)
        code = self._proc.poll()
        self.stop()
        state = f"exited with {code}" if code is not None else f"silent for {ready_timeout:g} s"
        raise RuntimeError(
            f"dnsmasq on {self.server} not ready ({state})\ncommand: {' '.join(self.command())}\n"
            f"stderr: {(self.workdir / 'stderr.log').read_text(errors='replace')[-2000:]}"
        )

    def queries(self) -> list[str]:
        """The questions dnsmasq logged, as "TYPE name" in arrival order."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        asked: list[str] = []
        for line in lines:
            # dnsmasq[pid]: query[SRV] _sip._udp.presence.test from 127.0.0.1
            _, sep, rest = line.partition(": query[")
            if sep:
                rdtype, _, tail = rest.partition("] ")
                asked.append(f"{rdtype} {tail.split(' ', 1)[0]}")
        return asked

    def stop(self) -> None:
        """SIGTERM dnsmasq and wait; SIGKILL if it lingers."""
        stop_group(self._proc)

    def cleanup(self) -> None:
        """Stop and delete the directory it owns."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class SilentDnsServer:
    """A bound UDP socket on 127.0.0.1 that reads nothing and answers nothing."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self.port: int = self._sock.getsockname()[1]

    @property
    def server(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def close(self) -> None:
        self._sock.close()
