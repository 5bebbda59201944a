"""Command line: ``python -m bridge {run,generate-registration,dev}``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import signal
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import yaml

from appservice.registration import build_registration

from .app import Bridge
from .config import PLACEHOLDER_PREFIX, Config, ConfigError, build_config, load_config
from .devstack import LocalSynapse

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "config.example.yaml"

DESCRIPTION = """\
The marketplace Matrix bridge: an application service that gives each marketplace
transaction and dispute its own Matrix room and turns messages into signed webhooks.

commands:
  run                      run the bridge with a config file (see config.example.yaml)
  generate-registration    write the appservice registration the homeserver loads
  dev                      a local stack: Synapse from the venv and the bridge on SQLite,
                           both on loopback (what `make run` starts); Ctrl-C stops both
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
        description="Start Synapse from the venv on 127.0.0.1:8008 and the bridge on SQLite "
        "on 127.0.0.1:29330, with secrets generated once into the data directory.",
    )
    dev.add_argument(
        "--data-dir", type=Path, default=Path("data/dev"), help="state of the local stack"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "run":
            config = load_config(args.config)
            configure_logging(config)
            asyncio.run(run_bridge(config))
        elif args.command == "generate-registration":
            write_registration(load_config(args.config), args.output)
            print(f"Wrote the registration to {args.output}")
        else:
            return run_dev_stack(args.data_dir)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def configure_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def registration_for(config: Config) -> dict:
    appservice = config.appservice
    return build_registration(
        appservice_id=appservice.id,
        url=str(appservice.url).rstrip("/"),
        as_token=appservice.as_token.get_secret_value(),
        hs_token=appservice.hs_token.get_secret_value(),
        domain=config.homeserver.domain,
        bot_localpart=appservice.bot_localpart,
        alias_prefix=appservice.alias_prefix,
    )


def write_registration(config: Config, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(registration_for(config), sort_keys=False))


class StartError(Exception):
    """The bridge could not start (database or port unavailable); the message says why."""


async def run_bridge(
    config: Config, before_connect: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM; ``before_connect`` runs once the bridge listens."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bridge = Bridge(config)
    try:
        try:
            await bridge.open()
            await bridge.serve()
        except (OSError, ConnectionError, asyncpg.PostgresError, sqlite3.Error) as e:
            raise StartError(f"cannot start the bridge: {e}") from e
        if before_connect is not None:
            await before_connect()
        bridge.connect()
        await stop.wait()
        logging.getLogger("bridge").info("Stopping")
    finally:
        await bridge.close()


def run_dev_stack(data_dir: Path) -> int:
    data_dir = data_dir.resolve()
    config = dev_config(data_dir)
    configure_logging(config)
    registration = data_dir / "registration.yaml"
    write_registration(config, registration)
    synapse = LocalSynapse(
        data_dir / "synapse",
        server_name=config.homeserver.domain,
        port=config.homeserver.url.port or 8008,
        registration_files=[registration],
    )

    async def start_synapse() -> None:
        # The bridge listens before Synapse starts, so Synapse's first sends succeed.
        await asyncio.to_thread(synapse.start)
        users = await asyncio.to_thread(ensure_demo_users, synapse, data_dir)
        logins = "\n".join(
            f"  {user['user_id']:<22} password {user['password']}  ({role})"
            for role, user in users.items()
        )
        print(
            f"\nSynapse is up at {synapse.url} (server name {synapse.server_name}), ready in "
            f"{synapse.ready_seconds:.1f}s; the bridge at {config.appservice.url}.\n"
            f"Demo users (sign in with Element or any client at {synapse.url}):\n{logins}\n"
            f"Marketplace API token: api.token in {data_dir / 'config.yaml'}\n"
            "Press Ctrl-C to stop both.\n",
            flush=True,
        )

    try:
        asyncio.run(run_bridge(config, before_connect=start_synapse))
    finally:
        synapse.stop()
    return 0


DEMO_USERS = {"buyer": "alice", "seller": "bob", "admin": "admin"}


def ensure_demo_users(synapse: LocalSynapse, data_dir: Path) -> dict[str, dict[str, str]]:
    """Register the demo users once; their passwords are kept in data_dir/demo-users.yaml."""
    path = data_dir / "demo-users.yaml"
    if path.exists():
        return yaml.safe_load(path.read_text())
    users = {}
    for role, localpart in DEMO_USERS.items():
        password = secrets.token_urlsafe(12)
        account = synapse.register_user(localpart, password, admin=role == "admin")
        users[role] = {"user_id": account["user_id"], "password": password}
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(users, sort_keys=False))
    return users


def dev_config(data_dir: Path) -> Config:
    """The dev stack's config: the example's, with secrets generated once and kept.

    Sections the example gained since the file was written are filled in from it.
    """
    path = data_dir / "config.yaml"
    data = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["database"]["url"] = f"sqlite://{data_dir / 'bridge.db'}"
    data["rooms"]["admins"] = [f"@{DEMO_USERS['admin']}:{data['homeserver']['domain']}"]
    if path.exists():
        for section, values in yaml.safe_load(path.read_text()).items():
            data.setdefault(section, {}).update(values)
    for section, key in (("appservice", "as_token"), ("appservice", "hs_token"), ("api", "token")):
        if data[section][key].startswith(PLACEHOLDER_PREFIX):
            data[section][key] = secrets.token_urlsafe(48)
    data_dir.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return build_config(data)


if __name__ == "__main__":
    sys.exit(main())
