"""``make run``'s demo users, made the way a marketplace makes its own: through the bridge's API.

password accounts  registered once with the shared secret, kept in demo-users.yaml: the
                   admin (the moderators' Element login) and Carol, who brought her own
                   account (bound to guest-1 with PUT /api/v1/users/guest-1 and a matrix_id)
managed users      buyer-1 and seller-1: PUT /api/v1/users/<id> on every start (an upsert),
                   then a fresh session each (POST /api/v1/users/<id>/sessions, 24 h)
stack.json         what a person or a script needs to use the stack, written atomically
                   once all of this is done; its "users" maps a role to
                   {"user_id": Matrix ID, "password"} (admin), or
                   {"user_id", "market_user_id", "display_name", "managed": false,
                    "password"} (a brought account), or
                   {"user_id", "market_user_id", "display_name", "managed": true,
                    "access_token", "device_id", "expires_at"} (a managed account)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout

from bridge.ops.deployment import write_file

if TYPE_CHECKING:
    from bridge.ops.local_synapse import LocalSynapse

SESSION_SECONDS = 24 * 3600
API_DEADLINE = 60.0  # the bridge connects within a second or two of Synapse answering
RETRY_PAUSE = 0.2


@dataclass(frozen=True, slots=True)
class DemoUser:
    role: str
    market_user_id: str | None  # None: no marketplace user (the admin)
    display_name: str
    localpart: str | None  # a password account's; None: the bridge manages the account


DEMO_USERS = (
    DemoUser("buyer", "buyer-1", "Alice (buyer)", None),
    DemoUser("seller", "seller-1", "Bob (seller)", None),
    DemoUser("guest", "guest-1", "Carol (own account)", "carol"),
    DemoUser("admin", None, "Admin", "admin"),
)
ADMIN_LOCALPART = "admin"


class DemoError(RuntimeError):
    pass


def ensure_password_accounts(synapse: LocalSynapse, data_dir: Path) -> dict[str, dict[str, str]]:
    """Register the password accounts once; their passwords are kept in demo-users.yaml.
    Entries of older runs stay there (an older .dev registered the buyer and seller too)."""
    path = data_dir / "demo-users.yaml"
    accounts = yaml.safe_load(path.read_text()) if path.exists() else {}
    changed = False
    for demo in DEMO_USERS:
        if demo.localpart is None or demo.role in accounts:
            continue
        password = secrets.token_urlsafe(12)
        account = synapse.register_user(demo.localpart, password, admin=demo.role == "admin")
        accounts[demo.role] = {"user_id": account["user_id"], "password": password}
        changed = True
    if changed:
        write_file(path, accounts, 0o600)
    return accounts


class BridgeApi:
    """The bridge's marketplace API, asked again while it is starting or the homeserver
    refuses (connection refused, 503) until API_DEADLINE; any other error is final."""

    def __init__(self, session: ClientSession, api_url: str, token: str) -> None:
        self._session = session
        self._api_url = api_url
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + API_DEADLINE
        while True:
            try:
                async with self._session.request(
                    method, self._api_url + path, json=body, headers=self._headers
                ) as response:
                    answer = await response.json(content_type=None)
                    if response.status < 300:
                        return answer
                    last = f"{response.status} {answer}"
                    if response.status != 503:
                        raise DemoError(f"{method} {path} -> {last}")
            except (ClientError, OSError) as e:
                last = repr(e)
            if loop.time() >= deadline:
                raise DemoError(f"{method} {path}: no answer within {API_DEADLINE}s ({last})")
            await asyncio.sleep(RETRY_PAUSE)


async def make_demo_users(
    api_url: str, api_token: str, server_name: str, accounts: dict[str, dict[str, str]]
) -> dict[str, dict[str, Any]]:
    """The demo users through the bridge's API, each with its way in (stack.json's users)."""
    passwords = {account["user_id"]: account["password"] for account in accounts.values()}
    users: dict[str, dict[str, Any]] = {}
    async with ClientSession(timeout=ClientTimeout(total=30)) as session:
        api = BridgeApi(session, api_url, api_token)
        for demo in DEMO_USERS:
            if demo.market_user_id is None:
                users[demo.role] = dict(accounts[demo.role])
                continue
            body = {"display_name": demo.display_name}
            if demo.localpart is not None:
                body["matrix_id"] = f"@{demo.localpart}:{server_name}"
            user = await api.call("PUT", f"/users/{demo.market_user_id}", body)
            entry = {
                "user_id": user["matrix_id"],
                "market_user_id": user["user_id"],
                "display_name": user["display_name"],
                "managed": user["managed"],
            }
            if user["managed"]:
                made = await api.call(
                    "POST",
                    f"/users/{demo.market_user_id}/sessions",
                    {"ttl_seconds": SESSION_SECONDS},
                )
                entry |= {k: made[k] for k in ("access_token", "device_id", "expires_at")}
            elif user["matrix_id"] in passwords:
                # A brought account, or a .dev from before the demo buyer and seller were
                # managed: the transactions of those runs bound them to their password accounts.
                entry["password"] = passwords[user["matrix_id"]]
            else:
                raise DemoError(
                    f"{demo.market_user_id} is bound to {user['matrix_id']}, whose password is"
                    " not in demo-users.yaml; remove the data directory to start afresh"
                )
            users[demo.role] = entry
    return users


def write_stack_file(path: Path, stack: dict[str, Any]) -> None:
    """Write stack.json (readable by its owner only) in one step: whoever waits for it never
    reads half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(json.dumps(stack, indent=2) + "\n")
    os.replace(partial, path)


def welcome(stack: dict[str, Any], ready_seconds: float, stack_path: Path) -> str:
    """What ``make run`` prints once everything is up: the users, and README.md's walk-through
    (the marketplace's side, with curl) with this stack's addresses and token filled in."""
    logins = []
    for role, user in stack["users"].items():
        way_in = (
            f"password {user['password']}"
            if "password" in user
            else "no password: a 24 h session, its access_token in stack.json"
        )
        who = f"{user.get('market_user_id', role):<9} {user.get('display_name', 'moderators'):<20}"
        logins.append(f"    {who} {user['user_id']:<27} {way_in}")
    order = {
        "transaction_id": "bike-1",
        "title": "Vintage bike",
        "buyer": {"user_id": "buyer-2"},
        "seller": {"user_id": "seller-2"},
    }
    auth = '-H "Authorization: Bearer $API_TOKEN"'
    body = "-H 'Content-Type: application/json' -d"
    access = "python3 -c 'import json, sys; print(json.load(sys.stdin)[\"access_token\"])'"
    commands = [
        f"API={stack['api_url']}",
        f"API_TOKEN={stack['api_token']}",
        f"HOMESERVER_URL={stack['homeserver_url']}",
        f'curl -s -X PUT $API/users/buyer-2 {auth} {body} \'{{"display_name": "Dana"}}\'',
        f'curl -s -X PUT $API/users/seller-2 {auth} {body} \'{{"display_name": "Sam"}}\'',
        f"curl -s -X POST $API/transactions {auth} {body} '{json.dumps(order)}'",
        f"curl -s -X POST $API/transactions/bike-1/payment {auth}",
        f"TOKEN=$(curl -s -X POST $API/users/buyer-2/sessions {auth} | {access})",
        'curl "$HOMESERVER_URL/_matrix/client/v3/sync?timeout=0"'
        ' -H "Authorization: Bearer $TOKEN"',
    ]
    flow = "\n".join(f"    {command}" for command in commands)
    return f"""
The local stack is up (Synapse answered {ready_seconds:.1f}s after launch).

  The web chat, embedded for the demo buyer and seller side by side (open it in a browser):
    {stack.get("chat_demo_url", "(not running)")}   order {stack.get("demo_transaction_id", "")}

  Homeserver (the client gateway): {stack["homeserver_url"]}  (server name {stack["server_name"]})
  Demo users, made through the bridge's API:
{chr(10).join(logins)}
  With a password: Element or any Matrix client, "Edit" under the homeserver, enter
  {stack["homeserver_url"]}. A managed account has none: the bridge gives out its sessions.

  The marketplace's side with curl, as in README.md's walk-through:
{flow}

  Webhooks go to a receiver in this process that checks each signature and prints a line.
  All of this is in {stack_path}. Ctrl-C stops everything.
"""
