"""Numbered schema migrations, the same on SQLite and PostgreSQL.

Each upgrade runs in its own database transaction and bumps ``bridge_version``. Never edit a
released upgrade: add the next one. Where the SQL dialects differ, branch on the scheme.
"""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme, UpgradeTable

from .upgrades import v12_reconcile_changes, v13_retention, v14_require, v15_lookups_at_scale


def bridge_upgrade_table() -> UpgradeTable:
    table = UpgradeTable(version_table_name="bridge_version", database_name="bridge")
    table.register(description="Inbox of homeserver events and read positions")(_v1_inbox)
    table.register(description="Marketplace users, transactions and bot actions")(_v2_transactions)
    table.register(description="Webhook outbox and the chat list's messages")(_v3_outbox)
    table.register(description="Disputes")(_v4_disputes)
    table.register(description="Admin overrides, settings and the audit trail")(_v5_moderation)
    table.register(description="Policy bot: planned actions, mutes, audit by object")(_v6_policy)
    table.register(description="The chat list: transactions and disputes by party")(_v7_by_party)
    table.register(description="Originals of messages masked before delivery")(_v8_masked)
    table.register(description="Managed accounts, profiles and sessions")(_v9_identity)
    table.register(description="Invitations the invitee blocks")(_v10_blocked_invites)
    table.register(description="Exchanges and follow-ups: reminders, nudges")(_v11_follow_ups)
    table.register(description="Reconcile what changed: stamps, runs")(v12_reconcile_changes)
    table.register(description="Retention: purges by due date, legal holds")(v13_retention)
    table.register(description="Writes kept only with their required part")(v14_require)
    table.register(description="Lookups that read whole tables made indexed")(v15_lookups_at_scale)
    return table


def _sequence(scheme: Scheme) -> str:
    """A primary key that only grows: the order rows were added in."""
    if scheme == Scheme.SQLITE:
        return "INTEGER PRIMARY KEY AUTOINCREMENT"
    return "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"


async def _v1_inbox(conn: Connection, scheme: Scheme) -> None:
    # seq is the arrival order: the inbox worker processes a room's events in seq order.
    seq = _sequence(scheme)
    await conn.execute(f"""
        CREATE TABLE inbox_events (
            seq              {seq},
            event_id         TEXT    NOT NULL UNIQUE,
            room_id          TEXT    NOT NULL,
            event_type       TEXT    NOT NULL,
            sender           TEXT    NOT NULL,
            origin_server_ts BIGINT  NOT NULL,
            event_json       TEXT    NOT NULL,
            status           TEXT    NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'done', 'dead')),
            error            TEXT,
            txn_id           TEXT    NOT NULL,
            received_at      BIGINT  NOT NULL
        )
    """)
    await conn.execute(
        "CREATE INDEX inbox_events_pending ON inbox_events (room_id, seq) WHERE status = 'pending'"
    )
    await conn.execute("""
        CREATE TABLE read_positions (
            room_id    TEXT   NOT NULL,
            user_id    TEXT   NOT NULL,
            event_id   TEXT   NOT NULL,
            ts         BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )
    """)


async def _v2_transactions(conn: Connection, scheme: Scheme) -> None:
    # A marketplace user id is bound to one Matrix ID for good, and the other way round.
    await conn.execute("""
        CREATE TABLE marketplace_users (
            user_id    TEXT   PRIMARY KEY,
            matrix_id  TEXT   NOT NULL UNIQUE,
            created_at BIGINT NOT NULL
        )
    """)
    await conn.execute("""
        CREATE TABLE transactions (
            transaction_id TEXT   PRIMARY KEY,
            title          TEXT   NOT NULL,
            buyer_id       TEXT   NOT NULL REFERENCES marketplace_users (user_id),
            seller_id      TEXT   NOT NULL REFERENCES marketplace_users (user_id),
            state          TEXT   NOT NULL
                           CHECK (state IN ('awaiting_payment', 'paid', 'closed')),
            outcome        TEXT   CHECK (outcome IN ('completed', 'cancelled', 'refunded')),
            room_id        TEXT   UNIQUE,
            room_version   TEXT   NOT NULL,
            created_at     BIGINT NOT NULL,
            paid_at        BIGINT,
            closed_at      BIGINT
        )
    """)
    # What the bot did in Matrix, keyed by intent, so a retry or restart never does it twice.
    await conn.execute("""
        CREATE TABLE bot_actions (
            action_key TEXT   PRIMARY KEY,
            room_id    TEXT   NOT NULL,
            event_id   TEXT,
            created_at BIGINT NOT NULL,
            done_at    BIGINT
        )
    """)


async def _v3_outbox(conn: Connection, scheme: Scheme) -> None:
    # One row per notification; a stream (a room) is delivered strictly in seq order, one row
    # at a time, by whoever holds the head row's lease.
    await conn.execute(f"""
        CREATE TABLE outbox (
            seq             {_sequence(scheme)},
            id              TEXT    NOT NULL UNIQUE,
            stream          TEXT    NOT NULL,
            type            TEXT    NOT NULL,
            body            TEXT    NOT NULL,
            status          TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'delivered', 'dead')),
            attempts        INTEGER NOT NULL DEFAULT 0,
            next_attempt_at BIGINT  NOT NULL,
            retry_until     BIGINT  NOT NULL,
            lease_until     BIGINT  NOT NULL DEFAULT 0,
            created_at      BIGINT  NOT NULL,
            delivered_at    BIGINT,
            last_error      TEXT
        )
    """)
    await conn.execute(
        "CREATE INDEX outbox_pending ON outbox (stream, seq) WHERE status = 'pending'"
    )
    await conn.execute("CREATE INDEX outbox_dead ON outbox (seq) WHERE status = 'dead'")
    # The chat list: each room's messages, their preview, and whether they were deleted.
    await conn.execute("""
        CREATE TABLE messages (
            room_id  TEXT    NOT NULL,
            event_id TEXT    NOT NULL,
            sender   TEXT    NOT NULL,
            ts       BIGINT  NOT NULL,
            preview  TEXT    NOT NULL,
            deleted  BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (room_id, event_id)
        )
    """)
    await conn.execute("CREATE INDEX messages_by_time ON messages (room_id, ts)")


async def _v4_disputes(conn: Connection, scheme: Scheme) -> None:
    await conn.execute("""
        CREATE TABLE disputes (
            dispute_id     TEXT   PRIMARY KEY,
            transaction_id TEXT   NOT NULL REFERENCES transactions (transaction_id),
            reason         TEXT   NOT NULL,
            opened_by      TEXT   NOT NULL CHECK (opened_by IN ('buyer', 'seller', 'marketplace')),
            state          TEXT   NOT NULL CHECK (state IN ('open', 'resolved')),
            decision       TEXT,
            note           TEXT,
            resolved_by    TEXT,
            source         TEXT   CHECK (source IN ('api', 'matrix')),
            room_id        TEXT   UNIQUE,
            room_version   TEXT   NOT NULL,
            created_at     BIGINT NOT NULL,
            resolved_at    BIGINT
        )
    """)
    # At most one open dispute per transaction, held by the database itself.
    await conn.execute(
        "CREATE UNIQUE INDEX disputes_one_open ON disputes (transaction_id) WHERE state = 'open'"
    )


async def _v5_moderation(conn: Connection, scheme: Scheme) -> None:
    # An admin's lock/unlock, cleared by the marketplace's next transition.
    await conn.execute(
        "ALTER TABLE transactions ADD COLUMN access_override TEXT"
        " CHECK (access_override IN ('locked', 'open'))"
    )
    await conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    await conn.execute(f"""
        CREATE TABLE audit (
            seq     {_sequence(scheme)},
            at      BIGINT NOT NULL,
            actor   TEXT   NOT NULL,
            room_id TEXT   NOT NULL,
            action  TEXT   NOT NULL,
            outcome TEXT   NOT NULL,
            detail  TEXT   NOT NULL
        )
    """)


async def _v6_policy(conn: Connection, scheme: Scheme) -> None:
    # The audit trail names the transaction and dispute an action concerns, whom it concerned
    # (a user or an event) and why, and is read back by room, object and time.
    for column in ("transaction_id", "dispute_id", "subject", "reason"):
        await conn.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT")
    await conn.execute("CREATE INDEX audit_by_room ON audit (room_id, seq)")
    await conn.execute("CREATE INDEX audit_by_transaction ON audit (transaction_id, seq)")
    await conn.execute("CREATE INDEX audit_by_dispute ON audit (dispute_id, seq)")
    await conn.execute("CREATE INDEX audit_by_time ON audit (at)")
    # Matrix actions the policy bot decided, written in the transaction that decided them and
    # carried out after it (at least once; `key` makes deciding twice plan them once).
    # `due_at` schedules the ones that wait, like lifting a mute.
    await conn.execute(f"""
        CREATE TABLE planned_actions (
            seq         {_sequence(scheme)},
            key         TEXT    NOT NULL UNIQUE,
            room_id     TEXT    NOT NULL,
            kind        TEXT    NOT NULL,
            params      TEXT    NOT NULL,
            due_at      BIGINT  NOT NULL,
            status      TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'done', 'failed')),
            attempts    INTEGER NOT NULL DEFAULT 0,
            lease_until BIGINT  NOT NULL DEFAULT 0,
            last_error  TEXT,
            created_at  BIGINT  NOT NULL,
            done_at     BIGINT
        )
    """)
    await conn.execute(
        "CREATE INDEX planned_actions_due ON planned_actions (due_at) WHERE status = 'pending'"
    )
    # Who is muted in which room until when; room plans give them power level -1 meanwhile.
    await conn.execute("""
        CREATE TABLE mutes (
            room_id TEXT   NOT NULL,
            user_id TEXT   NOT NULL,
            until   BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )
    """)
    # The flood rule counts a sender's recent messages; transcripts read a room in order.
    await conn.execute(
        "CREATE INDEX inbox_events_by_sender ON inbox_events (room_id, sender, origin_server_ts)"
    )
    await conn.execute("CREATE INDEX inbox_events_by_room ON inbox_events (room_id, seq)")


async def _v7_by_party(conn: Connection, scheme: Scheme) -> None:
    # The chat list finds a user's transactions as buyer or seller, then each one's disputes;
    # without these indexes both read their whole table (transactions: 9 ms at 100,000).
    await conn.execute("CREATE INDEX transactions_by_buyer ON transactions (buyer_id)")
    await conn.execute("CREATE INDEX transactions_by_seller ON transactions (seller_id)")
    await conn.execute("CREATE INDEX disputes_by_transaction ON disputes (transaction_id)")


async def _v8_masked(conn: Connection, scheme: Scheme) -> None:
    # What a party wrote before the homeserver masked its contact details: for admins only
    # (transcripts and the audit trail), never for the other party.
    await conn.execute("""
        CREATE TABLE masked_originals (
            event_id   TEXT   PRIMARY KEY,
            room_id    TEXT   NOT NULL,
            sender     TEXT   NOT NULL,
            content    TEXT   NOT NULL,
            created_at BIGINT NOT NULL
        )
    """)
    await conn.execute("CREATE INDEX masked_originals_by_room ON masked_originals (room_id)")


async def _v9_identity(conn: Connection, scheme: Scheme) -> None:
    # A user with no Matrix ID of their own gets a managed account (policy.accounts); the
    # profile is what the marketplace sent, avatar_mxc its copy in the media repository.
    for column in (
        "managed BOOLEAN NOT NULL DEFAULT FALSE",
        "display_name TEXT",
        "avatar_url TEXT",
        "avatar_mxc TEXT",
        "email TEXT",
        "updated_at BIGINT",
        "suspended_at BIGINT",
        "erased_at BIGINT",
    ):
        await conn.execute(f"ALTER TABLE marketplace_users ADD COLUMN {column}")
    # Sessions handed out: the homeserver enforces their expiry; this is the list to show.
    await conn.execute("""
        CREATE TABLE user_sessions (
            device_id  TEXT   PRIMARY KEY,
            user_id    TEXT   NOT NULL REFERENCES marketplace_users (user_id),
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            revoked_at BIGINT
        )
    """)
    await conn.execute("CREATE INDEX user_sessions_by_user ON user_sessions (user_id)")


async def _v10_blocked_invites(conn: Connection, scheme: Scheme) -> None:
    # An invitation the homeserver refused with M_INVITE_BLOCKED, until one gets through.
    await conn.execute("""
        CREATE TABLE blocked_invites (
            room_id    TEXT   NOT NULL,
            user_id    TEXT   NOT NULL,
            blocked_at BIGINT NOT NULL,
            PRIMARY KEY (room_id, user_id)
        )
    """)


async def _v11_follow_ups(conn: Connection, scheme: Scheme) -> None:
    # An exchange: a party's message that waits for the other party's first reply (transaction
    # rooms only); responsiveness is read from these, and the seller's nudges hang on them.
    await conn.execute(f"""
        CREATE TABLE exchanges (
            seq            {_sequence(scheme)},
            room_id        TEXT   NOT NULL,
            transaction_id TEXT   NOT NULL,
            responder      TEXT   NOT NULL,
            role           TEXT   NOT NULL CHECK (role IN ('buyer', 'seller')),
            event_id       TEXT   NOT NULL,
            started_at     BIGINT NOT NULL,
            answered_at    BIGINT,
            UNIQUE (room_id, event_id)
        )
    """)
    await conn.execute("CREATE INDEX exchanges_by_responder ON exchanges (responder, started_at)")
    await conn.execute(
        "CREATE INDEX exchanges_open ON exchanges (room_id, responder) WHERE answered_at IS NULL"
    )
    # Reminders, nudges and escalations with their due time: at most one open per kind, room
    # and person; fired under a lease (like planned actions) so one process fires each.
    # pending: due at due_at; waiting: a reminder that fired, its burst still unread (no new
    # one until a read or a reply ends it); done; cancelled: ended before it fired.
    await conn.execute(f"""
        CREATE TABLE follow_ups (
            seq         {_sequence(scheme)},
            kind        TEXT    NOT NULL
                        CHECK (kind IN ('unread_reminder', 'nudge', 'escalation')),
            room_id     TEXT    NOT NULL,
            user_id     TEXT    NOT NULL,
            event_id    TEXT    NOT NULL,
            started_at  BIGINT  NOT NULL,
            due_at      BIGINT  NOT NULL,
            status      TEXT    NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'waiting', 'done', 'cancelled')),
            fired       INTEGER NOT NULL DEFAULT 0,
            attempts    INTEGER NOT NULL DEFAULT 0,
            lease_until BIGINT  NOT NULL DEFAULT 0,
            last_error  TEXT,
            created_at  BIGINT  NOT NULL,
            done_at     BIGINT,
            UNIQUE (kind, room_id, user_id, event_id)
        )
    """)
    await conn.execute(
        "CREATE INDEX follow_ups_due ON follow_ups (due_at) WHERE status = 'pending'"
    )
    await conn.execute(
        "CREATE INDEX follow_ups_open ON follow_ups (room_id, user_id, kind)"
        " WHERE status IN ('pending', 'waiting')"
    )
