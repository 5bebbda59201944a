"""The local stack (``make run``): its config, its Synapse (bridge.ops.local_synapse, shared
with the tests and benchmarks), the bridge, the client gateway and the demo.

    run_dev_stack: config (secrets generated once) -> registration -> bridge listens
                   -> Synapse from the venv starts -> password accounts -> bridge connects
                   -> demo users through the bridge's API (bridge.ops.demo) -> stack.json
                   ... SIGINT/SIGTERM -> bridge stops -> Synapse stops
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bridge.app import run_bridge
from bridge.config import Config, build_config
from bridge.gateway.server import start_gateway
from bridge.ops.chat_demo import ChatDemo, start_chat_demo
from bridge.ops.demo import (
    ADMIN_LOCALPART,
    DemoError,
    ensure_password_accounts,
    make_demo_users,
    welcome,
    write_stack_file,
)
from bridge.ops.deployment import (
    BRIDGE_SECRET_KEYS,
    bridge_settings,
    lockdown_module,
    new_secret,
    new_webhook_secret,
    write_file,
    write_registration,
)
from bridge.ops.local_synapse import LocalSynapse, free_loopback_port
from bridge.ops.webhook_sink import start_webhook_sink
from bridge.runtime.clock import SystemClock

SERVER_NAME = "localhost"


def run_dev_stack(
    data_dir: Path, homeserver_port: int, bridge_port: int, sink_port: int, demo_port: int
) -> int:
    """``homeserver_port`` is the address clients use: the client gateway's. Synapse itself
    listens on another loopback port, chosen afresh at each start and advertised nowhere."""
    data_dir = data_dir.resolve()
    (data_dir / "stack.json").unlink(missing_ok=True)  # written again once all is up
    # Synapse's own port: only the bridge and the gateway call it.
    synapse_port = free_loopback_port({homeserver_port, bridge_port, sink_port, demo_port})
    demo_url = f"http://127.0.0.1:{demo_port}"
    config = dev_config(
        data_dir,
        synapse_port,
        bridge_port,
        sink_port,
        gateway_port=homeserver_port,
        chat_origins=[demo_url],
    )
    logging.basicConfig(
        level=config.logging.level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    registration = data_dir / "registration.yaml"
    write_registration(config, registration)
    synapse = LocalSynapse(
        data_dir / "synapse",
        server_name=SERVER_NAME,
        port=config.homeserver.url.port or 80,
        registration_files=[registration],
        module=lockdown_module(config.model_dump(mode="json")),
        # Clients (and single sign-on's redirects) reach Synapse through the gateway.
        oidc=config.identity.oidc,
        public_baseurl=config.gateway.client_url + "/",
        sso_client_whitelist=[str(web)] if (web := config.identity.web_client_url) else [],
    )

    api_url = f"{str(config.appservice.url).rstrip('/')}/api/v1"
    chat_demo = ChatDemo(api_url, config.api.token.get_secret_value(), str(config.appservice.url))
    background: list[asyncio.Task] = []
    failed: list[Exception] = []

    async def start_synapse() -> None:
        # The bridge listens before Synapse starts, so Synapse's first sends succeed.
        await asyncio.to_thread(synapse.start)
        accounts = await asyncio.to_thread(ensure_password_accounts, synapse, data_dir)
        # The bridge connects once this returns: the demo users are made through its API then.
        background.append(asyncio.create_task(announce(accounts), name="demo users"))

    async def announce(accounts: dict[str, dict[str, str]]) -> None:
        stack = stack_contents(config, synapse)
        try:
            stack["users"] = await make_demo_users(
                stack["api_url"], stack["api_token"], SERVER_NAME, accounts
            )
            await chat_demo.make_transaction()
            stack |= {
                "chat_demo_url": demo_url + "/",
                "demo_transaction_id": chat_demo.transaction_id,
            }
        except Exception as e:
            log = logging.getLogger("bridge.dev")
            if isinstance(e, DemoError):
                log.error("The demo users could not be made: %s", e)
            else:
                log.exception("The demo users could not be made")
            failed.append(e)
            signal.raise_signal(signal.SIGTERM)  # stops the stack as Ctrl-C would
            return
        path = data_dir / "stack.json"
        print(welcome(stack, synapse.ready_seconds or 0.0, path), flush=True)
        write_stack_file(path, stack)  # last: whoever waits for it finds everything done

    async def stack() -> None:
        sink = await start_webhook_sink(
            sink_port, [secret.get_secret_value() for secret in config.webhooks.secrets]
        )
        gateway, gateway_session = await start_gateway(config, SystemClock())
        demo = await start_chat_demo(chat_demo, demo_port)
        try:
            await run_bridge(config, before_connect=start_synapse)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await demo.cleanup()
            await gateway.cleanup()
            await gateway_session.close()
            await sink.cleanup()

    try:
        asyncio.run(stack())
    finally:
        synapse.stop()
    return 1 if failed else 0


def stack_contents(config: Config, synapse: LocalSynapse) -> dict[str, Any]:
    """stack.json but its users: everything a person or a script needs to use the stack."""
    return {
        "homeserver_url": config.gateway.client_url,
        "server_name": synapse.server_name,
        "registration_shared_secret": synapse.shared_secret,
        "api_url": f"{str(config.appservice.url).rstrip('/')}/api/v1",
        "chat_url": f"{str(config.appservice.url).rstrip('/')}/chat/",
        "api_token": config.api.token.get_secret_value(),
        "users": {},
    }


# Sections of the stack's config.yaml that are the operator's to tune (the rest is rewritten
# from the example and the stack's ports on every start).
OPERATOR_SECTIONS = ("reminders", "deals", "retention")


def dev_config(
    data_dir: Path,
    homeserver_port: int,
    bridge_port: int,
    sink_port: int = 29331,
    gateway_port: int = 8008,
    chat_origins: Sequence[str] = (),
) -> Config:
    """The stack's bridge config; its secrets are generated on the first run and kept, and so
    are the operator's reminders, deals and retention settings."""
    path = data_dir / "config.yaml"
    old = yaml.safe_load(path.read_text()) if path.exists() else {}
    data = bridge_settings(
        homeserver_url=f"http://127.0.0.1:{homeserver_port}",
        domain=SERVER_NAME,
        appservice_url=f"http://127.0.0.1:{bridge_port}",
        host="127.0.0.1",
        port=bridge_port,
        database_url=f"sqlite://{data_dir / 'bridge.db'}",
        admins=[f"@{ADMIN_LOCALPART}:{SERVER_NAME}"],
        webhook_url=f"http://127.0.0.1:{sink_port}/webhooks",
        gateway_host="127.0.0.1",
        gateway_port=gateway_port,
    )
    data["webchat"]["allowed_origins"] = list(chat_origins)
    data["retention"]["transcripts_directory"] = str(data_dir / "transcripts")
    for section in OPERATOR_SECTIONS:  # an operator's edits of these survive a restart
        if isinstance(old.get(section), dict):
            data[section] |= old[section]
    for section, key in BRIDGE_SECRET_KEYS:
        fresh = [new_webhook_secret()] if key == "secrets" else new_secret()
        data[section][key] = old.get(section, {}).get(key) or fresh
    write_file(path, data, 0o600)
    return build_config(data)
