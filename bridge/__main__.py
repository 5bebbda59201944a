"""Command line: ``python -m bridge {run,generate-registration,dev,verify,...}``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import uvloop
import yaml

from appservice.matrix import HomeserverUnavailable, MatrixError
from bridge.app import Bridge, run_bridge
from bridge.config import Config, ConfigError, config_reference, load_config
from bridge.gateway.server import run_gateway
from bridge.ops.deployment import (
    EXAMPLE_CONFIG,
    DeploymentError,
    write_deployment,
    write_registration,
)
from bridge.ops.devstack import run_dev_stack
from bridge.retention.plan import plan, webhooks_to_prune
from bridge.retention.worker import RetentionSettings
from bridge.runtime.process import StartError
from policy.transcript import verify_transcript

DESCRIPTION = """\
The marketplace Matrix bridge: an application service that gives each marketplace
transaction and dispute its own Matrix room and turns messages into signed webhooks.

commands:
  run                      run the bridge with a config file (see config.example.yaml)
  generate-registration    write the appservice registration the homeserver loads
  gateway                  run the client gateway clients connect to, in front of the
                           homeserver (it closes the side channels around a room's lock)
  dev                      a local stack: Synapse from the venv and the bridge on SQLite,
                           both on loopback (what `make run` starts); Ctrl-C stops both
  generate-deployment      write the configs of the compose stack (docker-compose.yml)
  config-reference         print the configuration reference (docs/configuration.md)
  verify                   check a room transcript (evidence export) for tampering
  reconcile                compare every managed room with its plan now, and repair it
  retention                remove the rooms whose retention period ended now (--dry-run:
                           list them, and what holds any, changing nothing)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bridge",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the bridge",
        description="Run the bridge until SIGINT or SIGTERM. Every key of the config file "
        "can be overridden from the environment as BRIDGE_<SECTION>__<KEY>.",
    )
    run.add_argument("-c", "--config", required=True, type=Path, help="path to config.yaml")

    gateway = commands.add_parser(
        "gateway",
        help="run the client gateway",
        description="Run the client gateway until SIGINT or SIGTERM: Matrix clients connect "
        "to it (gateway.host and gateway.port) instead of the homeserver; it forwards to "
        "homeserver.url and refuses what would get around a room's lock (docs/homeserver.md).",
    )
    gateway.add_argument("-c", "--config", required=True, type=Path, help="path to config.yaml")

    registration = commands.add_parser(
        "generate-registration",
        help="write the appservice registration",
        description="Write the registration for the homeserver's app_service_config_files: "
        "the bot and the alias prefix held exclusively, receipts delivered, no rate limits on "
        "the bot. It holds both tokens: the file is written readable by its owner only.",
    )
    registration.add_argument("-c", "--config", required=True, type=Path, help="config.yaml")
    registration.add_argument("-o", "--output", required=True, type=Path, help="where to write")

    dev = commands.add_parser(
        "dev",
        help="run a local Synapse and the bridge (make run)",
        description="Start Synapse from the venv and the bridge on SQLite, both on loopback, "
        "with three demo users; secrets, users and rooms are kept in the data folder between "
        "runs, and stack.json there says how to reach everything. Defaults come from the "
        "environment: DEV_DATA_DIR (.dev), DEV_HOMESERVER_PORT (8008), DEV_BRIDGE_PORT (29330), "
        "DEV_WEBHOOK_PORT (29331, the receiver that prints the webhooks), DEV_DEMO_PORT (29332,"
        " the demo page embedding the web chat).",
    )
    dev.add_argument("--data-dir", type=Path, default=Path(os.environ.get("DEV_DATA_DIR", ".dev")))
    dev.add_argument(
        "--homeserver-port", type=int, default=int(os.environ.get("DEV_HOMESERVER_PORT", 8008))
    )
    dev.add_argument(
        "--bridge-port", type=int, default=int(os.environ.get("DEV_BRIDGE_PORT", 29330))
    )
    dev.add_argument(
        "--webhook-port", type=int, default=int(os.environ.get("DEV_WEBHOOK_PORT", 29331))
    )
    dev.add_argument("--demo-port", type=int, default=int(os.environ.get("DEV_DEMO_PORT", 29332)))

    deployment = commands.add_parser(
        "generate-deployment",
        help="write the compose stack's configs",
        description="Write homeserver.yaml, registration.yaml and bridge.yaml for "
        "docker-compose.yml, with the same code `make run` uses. Secrets come from the "
        "environment (see .env.example); Synapse's files are made readable by its user only.",
    )
    deployment.add_argument("-o", "--output", required=True, type=Path, help="config folder")
    deployment.add_argument(
        "--synapse-uid", type=int, default=991, help="owner of Synapse's files (when root)"
    )
    commands.add_parser(
        "config-reference",
        help="print the configuration reference",
        description="Print every config key with its environment variable, example value, "
        "limits and meaning, as Markdown (what docs/configuration.md holds).",
    )
    reconcile = commands.add_parser(
        "reconcile",
        help="compare every room with its plan now",
        description="Compare every managed room (transactions, disputes, the admins' room) "
        "with its plan and put back what departs from it, as the full run on the "
        "policy.full_reconcile_interval_seconds schedule does; the running bridge only "
        "compares the rooms that changed. It may run beside the bridge processes, on the same "
        "database; it waits for none, and stops (exit status 1) if one of them is running the "
        "full comparison already.",
    )
    reconcile.add_argument("-c", "--config", required=True, type=Path, help="path to config.yaml")
    retention = commands.add_parser(
        "retention",
        help="remove the rooms whose time has come now, or list them",
        description="Take every room whose retention period has ended through its removal "
        "now, as the running bridge does every retention.check_interval_seconds (export, "
        "room.purged, the homeserver's removal, the bridge's rows), and delete old webhooks. "
        "With --dry-run: list the rooms due by --at (default now) and what holds any of them, "
        "and count the webhooks that would be deleted; nothing is changed. It may run beside "
        "the bridge processes: each room is leased to one process.",
    )
    retention.add_argument("-c", "--config", required=True, type=Path, help="path to config.yaml")
    retention.add_argument("--dry-run", action="store_true", help="list, change nothing")
    retention.add_argument(
        "--at", metavar="TIME", help="with --dry-run: as of this ISO 8601 time (default now)"
    )
    verify = commands.add_parser(
        "verify",
        help="check a room transcript for tampering",
        description="Check a room transcript (the JSON evidence export of a transaction or "
        "dispute room): recompute the hash chain from the header through every entry to the "
        "final hash. A removed, added, reordered or edited entry, or a changed header, breaks "
        "the chain. Someone who recomputes the whole chain makes a consistent forgery; what "
        "catches it is the final hash recorded elsewhere when the transcript was made (the "
        "bridge's audit log): pass it with --final-hash. Exit status: 0 intact, 1 tampered or "
        "not the expected final hash, 2 unreadable file or not JSON.",
    )
    verify.add_argument("file", type=Path, metavar="FILE", help="the transcript (JSON)")
    verify.add_argument(
        "--final-hash",
        metavar="HEX",
        help="the final hash recorded when the transcript was made (e.g. in the audit log)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "run":
            config = load_config(args.config)
            configure_logging(config)
            uvloop.run(run_bridge(config))
        elif args.command == "gateway":
            config = load_config(args.config)
            configure_logging(config)
            uvloop.run(run_gateway(config))
        elif args.command == "reconcile":
            config = load_config(args.config)
            configure_logging(config)
            return uvloop.run(reconcile_all(config))
        elif args.command == "retention":
            if args.at is not None and not args.dry_run:
                raise ConfigError("--at is for --dry-run: a removal happens now or not at all")
            config = load_config(args.config)
            configure_logging(config)
            return uvloop.run(apply_retention(config, args.dry_run, parse_time(args.at)))
        elif args.command == "generate-registration":
            write_registration(load_config(args.config), args.output)
            print(f"Wrote the registration to {args.output}")
        elif args.command == "config-reference":
            print(config_reference(yaml.safe_load(EXAMPLE_CONFIG.read_text())), end="")
        elif args.command == "verify":
            return verify_file(args.file, args.final_hash)
        elif args.command == "generate-deployment":
            for path in write_deployment(args.output, os.environ, args.synapse_uid):
                print(f"Wrote {path}")
        else:
            return run_dev_stack(
                args.data_dir,
                args.homeserver_port,
                args.bridge_port,
                args.webhook_port,
                args.demo_port,
            )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (StartError, DeploymentError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


async def reconcile_all(config: Config) -> int:
    """``reconcile``: 0 once every room was compared, 1 when another process is at it."""
    try:
        bridge = await Bridge.open(config)
    except (OSError, ConnectionError, asyncpg.PostgresError, sqlite3.Error) as e:
        raise StartError(f"cannot open the bridge's database: {e}") from e
    try:
        await bridge.bot.ensure_registered()
        compared = await bridge.market.reconciler.run("full")
    except (HomeserverUnavailable, MatrixError) as e:
        raise StartError(f"the homeserver did not answer: {e}") from e
    finally:
        await bridge.close()
    if compared is None:
        print("Another bridge process is comparing every room now", file=sys.stderr)
        return 1
    print(f"Compared {compared} rooms with their plans")
    return 0


def parse_time(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--at: {text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


async def apply_retention(config: Config, dry_run: bool, at: int | None) -> int:
    """``retention``: the rooms due now removed (or, dry run, listed as of ``at``)."""
    try:
        bridge = await Bridge.open(config)
    except (OSError, ConnectionError, asyncpg.PostgresError, sqlite3.Error) as e:
        raise StartError(f"cannot open the bridge's database: {e}") from e
    settings = RetentionSettings.of(config)
    try:
        if dry_run:
            when = at if at is not None else bridge.clock.now_ms()
            planned = await plan(bridge.db, settings, when)
            for item in planned:
                print(item.line())
            going = sum(1 for item in planned if not item.holds)
            pruned = await webhooks_to_prune(bridge.db, settings, when)
            print(
                f"{going} rooms would be removed, {len(planned) - going} kept by holds;"
                f" {pruned} webhooks would be deleted (dry run: nothing changed)"
            )
            return 0
        await bridge.bot.ensure_registered()
        removed = await bridge.workers.retention.drain()
        print(f"Removed {removed} rooms whose retention period ended")
    except (HomeserverUnavailable, MatrixError) as e:
        raise StartError(f"the homeserver did not answer: {e}") from e
    finally:
        await bridge.close()
    return 0


def verify_file(path: Path, final_hash: str | None) -> int:
    """``verify``: 0 intact (and the expected final hash), 1 problems, 2 unreadable."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as e:
        print(f"error: cannot read {path}: {e.strerror or e}", file=sys.stderr)
        return 2
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError
        print(f"error: {path} is not valid JSON: {e}", file=sys.stderr)
        return 2
    problems = verify_transcript(document)
    found = document.get("final_hash") if isinstance(document, dict) else None
    found = found if isinstance(found, str) else None
    if final_hash is not None and found != final_hash.strip().lower():
        problems.append(
            f"the final hash is {found or 'missing'}, not the expected {final_hash.strip()}: the "
            "transcript was changed (or its chain recomputed) after that hash was recorded"
        )
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        print(f"FAILED: {len(problems)} problem(s) in {path}", file=sys.stderr)
        return 1
    print(f"OK: {document['entry_count']} entries, final hash {found}")
    return 0


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
