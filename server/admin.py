"""Operator commands answered by the supervisor, asking shards where needed.

What the original offered through its ``trace`` RPC (a count and a dump of
every subscription), and more: stats, list with filters, show one, kill one,
force a refresh. Subscription ids are ``shard:dialog``, as ``list`` prints them.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, Protocol

import psutil

from .. import __version__, compiled
from ..config import Config
from ..ipc.control import ConnectedClient, Peer
from ..ipc.messages import ADMIN_COMMANDS, AdminReply, AdminRequest
from ..metrics.heap import heap_figures
from .registry import Registry
from .shards import ShardPool

COMMANDS = ADMIN_COMMANDS


def _process_figures(pid: int) -> dict[str, Any]:
    """CPU seconds, RSS and open fds of a live process, as psutil reads them."""
    if not pid:
        return {}
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            cpu = proc.cpu_times()
            return {
                "cpu_seconds": round(cpu.user + cpu.system, 3),
                "rss_bytes": proc.memory_info().rss,
                "open_fds": proc.num_fds(),
            }
    except psutil.Error:
        return {}


def _split_id(value: str) -> tuple[int, int]:
    shard, sep, did = value.partition(":")
    if not sep or not shard.isdigit() or not did.isdigit():
        raise ValueError(f"subscription ids look like 'shard:number' (see 'list'), got {value!r}")
    return int(shard), int(did)


class Supervised(Protocol):
    """What the commands read of the supervisor; declared here so that this module
    needs nothing from the supervisor's."""

    @property
    def cfg(self) -> Config: ...
    @property
    def started(self) -> float: ...
    @property
    def pool(self) -> ShardPool: ...
    @property
    def clients(self) -> Mapping[int, ConnectedClient]: ...
    @property
    def registry(self) -> Registry: ...


class AdminCommands:
    def __init__(self, supervisor: Supervised) -> None:
        self.sup = supervisor

    async def run(self, request: AdminRequest, peer: Peer) -> AdminReply:
        command = request.command
        if command not in COMMANDS:
            known = ", ".join(COMMANDS)
            return AdminReply(False, error=f"unknown command {command!r} (try: {known})")
        try:
            data = await getattr(self, f"_{command}")(request.args)
        except ValueError as exc:
            return AdminReply(False, error=str(exc))
        if isinstance(data, AdminReply):
            return data
        return AdminReply(True, data)

    async def _ask_all(self, command: str, args: dict[str, str]) -> list[Any]:
        pool = self.sup.pool
        answers = await asyncio.gather(*(pool.query(s, command, args) for s in pool))
        return [a.data if a.ok else {"error": a.error} for a in answers]

    async def _stats(self, args: dict[str, str]) -> dict[str, Any]:
        sup = self.sup
        shards = await self._ask_all("stats", {})
        now = time.monotonic()
        return {
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - sup.started, 1),
            "version": __version__,
            "compiled": compiled.is_compiled(),
            "shards": [
                {
                    "index": s.index,
                    "pid": s.pid,
                    "up": s.up,
                    "sip_port": s.port,
                    "restarts": max(0, s.starts - 1),
                    "start_failures": s.start_failures,
                    "down_s": round(sup.pool.down_for(s, now), 1),
                    "last_error": s.last_error,
                    **_process_figures(s.pid if s.up else 0),
                    **(detail if isinstance(detail, dict) else {}),
                }
                for s, detail in zip(sup.pool, shards, strict=True)
            ],
            "clients": len(sup.clients),
            "subscriptions": len(sup.registry),
            "log_level": sup.cfg.server.log_level,
            "shard_memory_limit_bytes": sup.cfg.server.shard_memory_limit_bytes,
            **_process_figures(os.getpid()),
        }

    async def _memory(self, args: dict[str, str]) -> dict[str, Any]:
        """Where each process's memory is (metrics/heap.py): live objects or
        the room the allocators keep around them."""
        shards = await self._ask_all("memory", {})
        return {
            "supervisor": {"subscriptions": len(self.sup.registry), **heap_figures()},
            "shards": shards,
        }

    async def _list(self, args: dict[str, str]) -> list[Any]:
        filters = {k: v for k, v in args.items() if k in ("record", "subscriber") and v}
        rows: list[Any] = []
        for part in await self._ask_all("list", filters):
            if isinstance(part, list):
                rows.extend(part)
        return rows

    async def _one(self, command: str, args: dict[str, str]) -> Any:
        shard_index, did = _split_id(args.get("id", ""))
        if not 0 <= shard_index < len(self.sup.pool):
            raise ValueError(f"no shard {shard_index}")
        shard = self.sup.pool.shards[shard_index]
        answer = await self.sup.pool.query(shard, command, {"id": str(did)})
        if not answer.ok:
            return AdminReply(False, error=answer.error)
        return answer.data

    async def _show(self, args: dict[str, str]) -> Any:
        return await self._one("show", args)

    async def _refresh(self, args: dict[str, str]) -> Any:
        return await self._one("refresh", args)

    async def _kill(self, args: dict[str, str]) -> Any:
        data = await self._one("kill", args)
        if isinstance(data, dict):
            for client, sub_id in data.get("clients", []):
                self.sup.registry.forget(client, sub_id)
        return data

    async def _clients(self, args: dict[str, str]) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {
                "id": c.id,
                "name": c.name,
                "pid": c.pid,
                "uid": c.uid,
                "subscriptions": self.sup.registry.count(c.id),
                "connected_s": round(now - c.connected_at, 1),
                "bad_request_records": c.requests.bad_records,
            }
            for c in self.sup.clients.values()
        ]
