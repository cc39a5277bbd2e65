"""``presence-b2b``: serve, watch, ctl, check-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from typing import Any, cast

from .. import __version__, compiled, limits, logs
from .. import config as config_mod
from ..ipc.messages import ADMIN_COMMANDS
from ..toml_writer import toml_value

EXIT_CONFIG = 2
EXIT_UNREACHABLE = 2


def _load_config(path: str | None) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print(f"presence-b2b: configuration refused: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _check_credentials(cfg: config_mod.Config) -> int:
    """Load the credentials file the configuration names, so a bad one stops
    check-config and the start (shards read it again when they are wired to it).
    Returns the number of entries; exits with EXIT_CONFIG naming the problem."""
    from ..credentials import CredentialsError, load_credentials, resolve_credentials_path

    if not cfg.auth.credentials_file:
        return 0
    try:
        return len(load_credentials(resolve_credentials_path(cfg.auth.credentials_file)))
    except CredentialsError as exc:
        print(f"presence-b2b: credentials refused: auth.credentials_file: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvloop

    from ..server.supervisor import serve

    cfg = _load_config(args.config)
    overrides: dict[str, dict[str, Any]] = {}
    if args.shards is not None:
        overrides.setdefault("server", {})["shards"] = args.shards
    if args.sip_port is not None:
        overrides.setdefault("sip", {})["port"] = args.sip_port
    if args.control_socket is not None:
        overrides.setdefault("server", {})["control_socket"] = args.control_socket
    if args.metrics_listen is not None:
        overrides.setdefault("metrics", {})["listen"] = args.metrics_listen
    if overrides:
        from ..server.supervisor import config_tables

        tables = config_tables(cfg)
        for section, values in overrides.items():
            tables[section].update(values)
        try:
            cfg = config_mod.from_mapping(tables)
        except config_mod.ConfigError as exc:
            print(f"presence-b2b: option refused: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    _check_credentials(cfg)
    logs.setup(args.log_level or cfg.server.log_level)
    limits.raise_fd_limit()
    logging.getLogger("presence_b2b").info(
        "%s starting: %d shards, SIP %s:%d..., control socket %s",
        version_line(),
        cfg.server.shard_count(),
        " ".join(cfg.sip.listen),
        cfg.sip.port,
        cfg.server.control_socket_path(),
    )
    try:
        return uvloop.run(serve(cfg, args.config))
    except OSError as exc:
        logging.getLogger("presence_b2b").error("cannot start: %s", exc)
        return 1
    except RuntimeError as exc:
        logging.getLogger("presence_b2b").error("cannot start: %s", exc)
        return 1


def _cmd_check_config(args: argparse.Namespace) -> int:
    if args.defaults:
        for key, default, doc in config_mod.describe():
            print(f"{key} = {toml_value(default)}  # {doc}")
        return 0
    if not args.path:
        print("presence-b2b check-config: give a PATH or --defaults", file=sys.stderr)
        return EXIT_CONFIG
    cfg = _load_config(args.path)
    entries = _check_credentials(cfg)
    credentials = f" ({entries} credentials)" if cfg.auth.credentials_file else ""
    print(f"{args.path}: OK{credentials}")
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from . import watch

    return watch.run(args)


def _print_human(command: str, data: Any) -> None:
    if command == "list" and isinstance(data, list):
        if not data:
            print("no subscriptions")
        for row in data:
            print(
                f"{row.get('id', '?'):>10}  {row.get('state') or '-':<24} "
                f"clients={row.get('clients', 0):<3} {row.get('package', 'presence'):<15} "
                f"{row.get('record')}"
                f"  as {row.get('subscriber')}"
            )
        return
    if command == "stats" and isinstance(data, dict):
        print(
            f"pid {data.get('pid')}  up {data.get('uptime_s')} s  clients {data.get('clients')}  "
            f"subscriptions {data.get('subscriptions')}  "
            f"{'compiled' if data.get('compiled') else 'pure Python'}"
        )
        for s in data.get("shards", []):
            state = "up" if s.get("up") else "DOWN"
            print(
                f"  shard {s.get('index')}: {state} pid {s.get('pid')} port {s.get('sip_port')} "
                f"restarts {s.get('restarts')} dialogs {s.get('dialogs', '-')} "
                f"connections {s.get('connections', '-')} "
                f"pace {s.get('subscribe_pace', '-')}/s "
                f"states {s.get('states', {})}"
            )
            store = s.get("store")
            if isinstance(store, dict):
                print(
                    f"    store {store.get('backend')} node {store.get('node')}: "
                    f"partitions held {store.get('partitions_held')} "
                    f"lost {store.get('partitions_lost')}  restored {store.get('restored')} "
                    f"adopted {store.get('adopted')}  rows written "
                    f"{store.get('rows_batched', 0) + store.get('rows_synchronous', 0)} "
                    f"waiting {store.get('waiting_rows')}  "
                    f"unavailable {store.get('unavailable')} refused {store.get('refused')}"
                )
        return
    if command == "memory" and isinstance(data, dict):
        _print_memory(data)
        return
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _mib(value: Any) -> str:
    return "-" if not isinstance(value, int) else f"{value / 2**20:.1f}"


def _print_memory(data: dict[str, Any]) -> None:
    """One line per process: RSS, then what pymalloc and malloc hold of it (MiB)."""
    sup = data.get("supervisor", {})
    rows = [("supervisor", f"subscriptions {sup.get('subscriptions', '-')}", sup)]
    for s in data.get("shards", []):
        what = f"dialogs {s.get('dialogs', '-')} resting {s.get('resting', '-')}"
        rows.append((f"shard {s.get('shard', '?')}", what, s))
    for name, what, figures in rows:
        if "error" in figures:
            print(f"{name:<11} {figures['error']}")
            continue
        py, c = figures.get("pymalloc", {}), figures.get("malloc", {})
        print(
            f"{name:<11} rss {_mib(figures.get('rss_bytes'))} MiB  {what}  "
            f"pymalloc: blocks {_mib(py.get('allocated_blocks_bytes'))}, "
            f"free {_mib(py.get('available_blocks_bytes'))}, "
            f"unused pools {_mib(py.get('unused_pools_bytes'))}, "
            f"arenas {_mib(py.get('arenas_bytes'))}  "
            f"malloc: in use {_mib(c.get('in_use_bytes'))}, free {_mib(c.get('free_bytes'))}"
        )


def _cmd_ctl(args: argparse.Namespace) -> int:
    from ..ipc.client import QsaError, admin
    from .watch import control_socket_of

    try:
        path = args.control_socket or control_socket_of(args.config)
    except config_mod.ConfigError as exc:
        print(f"presence-b2b ctl: configuration refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    extra: dict[str, str] = {}
    if args.command == "list":
        if args.record:
            extra["record"] = args.record
        if args.subscriber:
            extra["subscriber"] = args.subscriber
    elif args.command in ("show", "kill", "refresh"):
        if not args.id:
            print(f"presence-b2b ctl {args.command}: give the subscription ID", file=sys.stderr)
            return EXIT_CONFIG
        extra["id"] = args.id
    try:
        reply = asyncio.run(admin(path, args.command, **cast(Any, extra)))
    except (QsaError, OSError) as exc:
        print(f"presence-b2b ctl: {path}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if not reply.ok:
        print(f"presence-b2b ctl {args.command}: {reply.error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply.data, sort_keys=True, default=str))
    elif reply.data is None:
        print("ok")
    else:
        _print_human(args.command, reply.data)
    return 0


def version_line() -> str:
    """The version and whether the hot path runs compiled (scripts/compile)."""
    build = "compiled" if compiled.is_compiled() else "pure Python"
    return f"presence-b2b {__version__} ({build})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="presence-b2b", description="Presence back-to-back user agent (QSA over SIP)."
    )
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="cmd", required=True)

    serve = sub.add_parser("serve", help="run the service in the foreground")
    serve.add_argument("--config", help="TOML configuration file (default: built-in defaults)")
    serve.add_argument("--shards", type=int, help="override server.shards")
    serve.add_argument("--sip-port", type=int, help="override sip.port")
    serve.add_argument("--control-socket", help="override server.control_socket")
    serve.add_argument("--metrics-listen", help="override metrics.listen ('' disables)")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=_cmd_serve)

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("path", nargs="?")
    check.add_argument("--defaults", action="store_true", help="print every key and default")
    check.set_defaults(func=_cmd_check_config)

    from . import watch

    w = sub.add_parser("watch", help="subscribe and print statuses as they arrive")
    watch.add_arguments(w)
    w.set_defaults(func=_cmd_watch)

    ctl = sub.add_parser("ctl", help="admin commands over the control socket")
    ctl.add_argument("--control-socket", help="QSA control socket path")
    ctl.add_argument("--config", help="take the control socket path from this configuration")
    ctl.add_argument("--json", action="store_true", help="machine-readable output")
    ctl.add_argument("command", choices=ADMIN_COMMANDS)
    ctl.add_argument("id", nargs="?", help="subscription id (shard:number) for show/kill/refresh")
    ctl.add_argument("--record", help="list: only records containing this")
    ctl.add_argument("--subscriber", help="list: only subscribers containing this")
    ctl.set_defaults(func=_cmd_ctl)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
