"""The gateway as a program: built from the bridge's config, listening until stopped.

python -m bridge gateway -c config.yaml   (its own process, in front of the homeserver)
make run                                  (started beside the bridge, in its process)
"""

from __future__ import annotations

import logging

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, web

from bridge.config import Config
from bridge.runtime.clock import Clock, SystemClock
from bridge.runtime.process import StartError, stop_on_signals
from policy.contact import contains_contact_info
from policy.ids import UserId
from policy.rules import media_type_allowed

from .guards import ChannelRules, Guards, UploadRules
from .proxy import ClientGateway
from .requesters import Requesters
from .upstream import Upstream

# No overall limit: /sync waits up to its timeout, uploads and downloads can be long.
UPSTREAM_TIMEOUT = ClientTimeout(total=None, sock_connect=10)


def upload_rules(config: Config) -> UploadRules:
    """What a party may upload: a type the bytes show that the content rules allow, at most
    the rules' size; text only when it carries no contact details."""
    policy = config.policy
    allowed = frozenset(
        media_type
        for media_type in config.lockdown.upload_types
        if media_type_allowed(media_type, tuple(policy.allowed_media_types))
    )
    hosts, terms = tuple(policy.allowed_link_hosts), tuple(policy.off_platform_terms)
    return UploadRules(
        allowed_types=allowed,
        max_bytes=policy.max_media_bytes,
        breaks_rules=lambda text: contains_contact_info(text, hosts, terms),
    )


async def start_gateway(config: Config, clock: Clock) -> tuple[web.AppRunner, ClientSession]:
    """Listen on ``gateway.host:port``; the runner and the session to close when stopping."""
    # No cookie jar: a cookie Synapse sets for one client must never ride on another's request.
    session = ClientSession(
        timeout=UPSTREAM_TIMEOUT, auto_decompress=False, cookie_jar=DummyCookieJar()
    )
    upstream = Upstream(session, str(config.homeserver.url), config.gateway.client_url)
    exempt = frozenset({config.bot_mxid, *(UserId(admin) for admin in config.rooms.admins)})
    rules = ChannelRules(
        alias_prefix=config.appservice.alias_prefix,
        visible=exempt,
        parties_may_create_rooms=config.lockdown.parties_may_create_rooms,
        uploads=upload_rules(config),
        user_prefix=config.identity.user_prefix,
        domain=config.homeserver.domain,
    )
    guards = Guards(upstream, config.appservice.as_token.get_secret_value(), rules, clock)
    app = web.Application(client_max_size=config.appservice.max_transaction_bytes)
    ClientGateway(upstream, guards, Requesters(upstream, clock), exempt).add_to(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.gateway.host, config.gateway.port).start()
    return runner, session


async def run_gateway(config: Config) -> None:
    """The client gateway alone, until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    try:
        runner, session = await start_gateway(config, SystemClock())
    except OSError as e:
        raise StartError(f"cannot start the gateway: {e}") from e
    logging.getLogger("bridge.gateway").info(
        "Gateway on %s:%d in front of %s",
        config.gateway.host,
        config.gateway.port,
        config.homeserver.url,
    )
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await session.close()
