"""A lossy UDP relay on 127.0.0.1 between the service and a presence server:
what netem would do on a real link, in user space (this machine has no netem).

The service sends its SUBSCRIBEs to the relay's front port as if it were the
presence server. The relay forwards each datagram from a source S (a shard's
socket) through a back socket of its own for S to the upstream server, and
rewrites S's port in the Contact header to that back socket's, so the server's
NOTIFYs come back through the relay as well; whatever reaches the back socket
goes out of the front socket to S. Every datagram, both ways, may be

* dropped (``drop``, a probability),
* duplicated (``duplicate``: a second copy right after the first),
* delayed by ``delay_ms`` ± ``jitter_ms`` (uniform), and
* held back an extra ``2 * delay_ms + 20`` ms (``reorder``), so later ones overtake it,

drawn from one seeded RNG, so a run can be repeated. Counters say what it did.

Run as a process: ``python -m tests.peers.lossy_relay --upstream PORT [--drop P] ...``
prints ``ready PORT`` once bound and one JSON line of counters on SIGTERM;
:class:`RelayProcess` does that for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import uvloop

LOOPBACK = "127.0.0.1"
Address = tuple[str, int]

__all__ = ["Impairment", "LossyRelay", "RelayProcess"]


@dataclass(frozen=True)
class Impairment:
    """What happens to each datagram, both ways."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.jitter_ms > self.delay_ms:
            raise ValueError("delay_ms >= jitter_ms >= 0 is required")


@dataclass
class Counters:
    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    by_direction: dict[str, int] = field(default_factory=lambda: {"up": 0, "down": 0})


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # a closed port on loopback
        return


class LossyRelay:
    """The relay on a running loop: ``await start()``, then ``front_port``."""

    def __init__(self, upstream: Address, impairment: Impairment) -> None:
        self.upstream = upstream
        self.imp = impairment
        self.rng = random.Random(impairment.seed)
        self.counts = Counters()
        self.front: _Socket | None = None
        self.front_port = 0
        self._backs: dict[Address, asyncio.Task[_Socket]] = {}
        self._loop: asyncio.AbstractEventLoop  # the running one, from start()

    async def start(self, port: int = 0) -> int:
        self._loop = asyncio.get_running_loop()
        self.front = _Socket(self._from_client)
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self.front, local_addr=(LOOPBACK, port)  # type: ignore[arg-type,return-value]
        )
        self.front_port = transport.get_extra_info("sockname")[1]
        return self.front_port

    async def _back_for(self, client: Address) -> _Socket:
        """The back socket for ``client``, opened once (datagrams that arrive
        while it opens wait for the same one, in order)."""
        opening = self._backs.get(client)
        if opening is None:
            opening = self._backs[client] = self._loop.create_task(self._open_back(client))
        return await opening

    async def _open_back(self, client: Address) -> _Socket:
        back = _Socket(lambda data, addr: self._from_upstream(client, data))
        await self._loop.create_datagram_endpoint(
            lambda: back, local_addr=(LOOPBACK, 0)
        )
        return back

    def _from_client(self, data: bytes, addr: Address) -> None:
        self._loop.create_task(self._up(data, addr))

    async def _up(self, data: bytes, client: Address) -> None:
        back = await self._back_for(client)
        assert back.transport is not None
        port = back.transport.get_extra_info("sockname")[1]
        data = _rewrite_contact(data, client[1], port)
        self._impair(data, back, self.upstream, "up")

    def _from_upstream(self, client: Address, data: bytes) -> None:
        if self.front is not None:
            self._impair(data, self.front, client, "down")

    def _impair(self, data: bytes, via: _Socket, to: Address, direction: str) -> None:
        c, imp, rng = self.counts, self.imp, self.rng
        c.received += 1
        c.by_direction[direction] += 1
        if rng.random() < imp.drop:
            c.dropped += 1
            return
        copies = 1
        if rng.random() < imp.duplicate:
            copies = 2
            c.duplicated += 1
        delay = imp.delay_ms + (rng.uniform(-imp.jitter_ms, imp.jitter_ms) if imp.jitter_ms else 0)
        if rng.random() < imp.reorder:
            delay += 2 * imp.delay_ms + 20.0
            c.reordered += 1
        for _ in range(copies):
            if delay <= 0:
                self._send(data, via, to)
            else:
                self._loop.call_later(delay / 1000.0, self._send, data, via, to)

    def _send(self, data: bytes, via: _Socket, to: Address) -> None:
        if via.transport is not None:
            self.counts.forwarded += 1
            via.transport.sendto(data, to)

    def close(self) -> None:
        backs = [t.result() for t in self._backs.values() if t.done() and not t.exception()]
        for sock in (self.front, *backs):
            if sock is not None and sock.transport is not None:
                sock.transport.close()


_CONTACT = re.compile(rb"^(Contact|m)([ \t]*:[^\r\n]*)", re.IGNORECASE | re.MULTILINE)


def _rewrite_contact(data: bytes, old_port: int, new_port: int) -> bytes:
    """The Contact header(s) of a request naming ``old_port`` name ``new_port``."""
    head, sep, body = data.partition(b"\r\n\r\n")
    old = f":{old_port}".encode()
    new = f":{new_port}".encode()

    def swap(match: re.Match[bytes]) -> bytes:
        return match.group(1) + re.sub(re.escape(old) + rb"(?=[;>\s]|$)", new, match.group(2))

    return _CONTACT.sub(swap, head) + sep + body


# ------------------------------------------------------------------ process


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--upstream", type=int, required=True, help="server's UDP port on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--drop", type=float, default=0.0)
    ap.add_argument("--duplicate", type=float, default=0.0)
    ap.add_argument("--reorder", type=float, default=0.0)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    imp = Impairment(
        args.drop, args.duplicate, args.reorder, args.delay_ms, args.jitter_ms, args.seed
    )

    async def run() -> None:
        relay = LossyRelay((LOOPBACK, args.upstream), imp)
        port = await relay.start(args.port)
        print(f"ready {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        relay.close()
        c = relay.counts
        print(json.dumps({**{k: v for k, v in c.__dict__.items()}}), flush=True)

    uvloop.run(run())


class RelayProcess:
    """The relay as a child process, for tests: ``port`` to send to, ``stop()``
    for its counters."""

    def __init__(self, upstream: int, *, port: int = 0, **impairment: float) -> None:
        args = [f"--{k.replace('_', '-')}={v}" for k, v in impairment.items()]
        args.append(f"--port={port}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.peers.lossy_relay", "--upstream", str(upstream), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "ready":
            self.proc.kill()
            raise RuntimeError(f"lossy relay did not start: {line}")
        self.port = int(line[1])
        self.counts: dict[str, Any] = {}

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            out, _ = self.proc.communicate(timeout=10)
            lines = out.strip().splitlines()
            if lines:
                self.counts = json.loads(lines[-1])
        if self.proc.poll() is None:
            self.proc.kill()
        return self.counts


if __name__ == "__main__":
    main()
