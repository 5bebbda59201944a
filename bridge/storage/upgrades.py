"""Migrations 12 on, each a function (bridge.storage.migrations registers them in order)."""

from __future__ import annotations

from mautrix.util.async_db import Connection, Scheme

# Memberships and the state a room plan sets: the only events that can move a room off its
# plan. The reconcile of changed rooms reads them by arrival time, with this very condition.
PLAN_EVENT_TYPES = (
    "'m.room.member', 'm.room.power_levels', 'm.room.name', 'm.room.topic',"
    " 'm.room.join_rules', 'm.room.guest_access', 'm.room.history_visibility'"
)


async def v12_reconcile_changes(conn: Connection, scheme: Scheme) -> None:
    # When each transaction or dispute last changed (the reconcile compares only rooms whose
    # objects changed since its last completed run); older rows get their latest stamp.
    for table, stamps in (
        ("transactions", "closed_at, paid_at, created_at"),
        ("disputes", "resolved_at, created_at"),
    ):
        await conn.execute(f"ALTER TABLE {table} ADD COLUMN changed_at BIGINT NOT NULL DEFAULT 0")
        await conn.execute(f"UPDATE {table} SET changed_at = COALESCE({stamps})")  # noqa: S608
        await conn.execute(f"CREATE INDEX {table}_changed ON {table} (changed_at)")
    await conn.execute(
        "CREATE INDEX inbox_events_plan_changes ON inbox_events (received_at)"
        f" WHERE event_type IN ({PLAN_EVENT_TYPES})"
    )
    # Per kind of run ('changed', 'full'): the last completed one's start and the plans'
    # fingerprint it compared against; a lease, so that one process runs at a time.
    await conn.execute("""
        CREATE TABLE reconcile_runs (
            kind         TEXT   PRIMARY KEY,
            started_at   BIGINT NOT NULL DEFAULT 0,
            completed_at BIGINT NOT NULL DEFAULT 0,
            fingerprint  TEXT   NOT NULL DEFAULT '',
            holder       TEXT   NOT NULL DEFAULT '',
            lease_until  BIGINT NOT NULL DEFAULT 0
        )
    """)
    await conn.execute("INSERT INTO reconcile_runs (kind) VALUES ('changed'), ('full')")
    # Rooms whose last comparison failed, compared by every run until one succeeds.
    await conn.execute("""
        CREATE TABLE reconcile_failures (
            kind      TEXT   NOT NULL CHECK (kind IN ('transaction', 'dispute', 'management')),
            object_id TEXT   NOT NULL,
            failed_at BIGINT NOT NULL,
            error     TEXT   NOT NULL,
            PRIMARY KEY (kind, object_id)
        )
    """)


async def v13_retention(conn: Connection, scheme: Scheme) -> None:
    # What stays of a purged room on its object: when the purge was announced and the final
    # hash of the transcript exported before it. A transaction's legal hold lives on its row,
    # so that placing one and a purge's announcement take the same row lock.
    for table in ("transactions", "disputes"):
        for column in ("purged_at BIGINT", "transcript_hash TEXT"):
            await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    for column in ("held_at BIGINT", "held_by TEXT", "hold_reason TEXT"):
        await conn.execute(f"ALTER TABLE transactions ADD COLUMN {column}")
    await conn.execute("CREATE INDEX transactions_held ON transactions (held_at)")
    await conn.execute("CREATE INDEX disputes_resolved ON disputes (resolved_at)")
    # One row per room whose retention clock runs (its object closed or resolved), stepping
    # scheduled -> exported -> announced -> removed -> done under a lease; due_at NULL: kept.
    await conn.execute("""
        CREATE TABLE purges (
            room_id             TEXT    PRIMARY KEY,
            kind                TEXT    NOT NULL CHECK (kind IN ('transaction', 'dispute')),
            object_id           TEXT    NOT NULL,
            transaction_id      TEXT    NOT NULL,
            outcome             TEXT    NOT NULL,
            ended_at            BIGINT  NOT NULL,
            due_at              BIGINT,
            status              TEXT    NOT NULL DEFAULT 'scheduled'
                                CHECK (status IN ('scheduled', 'exported', 'announced',
                                                  'removed', 'done')),
            transcript_location TEXT,
            transcript_hash     TEXT,
            entry_count         INTEGER,
            attempts            INTEGER NOT NULL DEFAULT 0,
            lease_until         BIGINT  NOT NULL DEFAULT 0,
            last_error          TEXT,
            updated_at          BIGINT  NOT NULL,
            done_at             BIGINT
        )
    """)
    await conn.execute("CREATE INDEX purges_due ON purges (due_at) WHERE status <> 'done'")
    await conn.execute("CREATE INDEX purges_by_transaction ON purges (transaction_id)")
    # Rooms closed or resolved before retention existed start their clocks from those times
    # (due dates follow from the settings at the next start).
    await conn.execute("""
        INSERT INTO purges (room_id, kind, object_id, transaction_id, outcome, ended_at,
                            updated_at)
        SELECT room_id, 'transaction', transaction_id, transaction_id, outcome,
               COALESCE(closed_at, changed_at), COALESCE(closed_at, changed_at)
        FROM transactions WHERE state = 'closed' AND room_id IS NOT NULL
    """)
    await conn.execute("""
        INSERT INTO purges (room_id, kind, object_id, transaction_id, outcome, ended_at,
                            updated_at)
        SELECT room_id, 'dispute', dispute_id, transaction_id, 'resolved',
               COALESCE(resolved_at, changed_at), COALESCE(resolved_at, changed_at)
        FROM disputes WHERE state = 'resolved' AND room_id IS NOT NULL
    """)
    # A removed room's own rows are deleted by room (retention's last step).
    for table in ("bot_actions", "planned_actions", "exchanges", "follow_ups"):
        await conn.execute(f"CREATE INDEX {table}_by_room ON {table} (room_id)")
    # Pruning delivered webhooks by age (dead letters have their own index, outbox_dead).
    await conn.execute(
        "CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE status = 'delivered'"
    )


async def v14_require(conn: Connection, scheme: Scheme) -> None:
    # PostgreSQL: what a query of gathered writes (bridge.storage.writes) calls on a part that
    # must have changed a row, an event's done mark say. Failing the query keeps none of its
    # parts, without a transaction around it. SQLite runs the parts in a transaction instead.
    if scheme == Scheme.SQLITE:
        return
    await conn.execute("""
        CREATE FUNCTION bridge_require(changed BOOLEAN) RETURNS BOOLEAN
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            IF NOT changed THEN
                RAISE EXCEPTION 'a required write changed no row: nothing of the query kept'
                    USING ERRCODE = 'serialization_failure';
            END IF;
            RETURN TRUE;
        END
        $$
    """)


async def v15_lookups_at_scale(conn: Connection, scheme: Scheme) -> None:
    # Indexes for statements that read a whole growing table (tests/db/test_plans.py): the
    # 'changed' reconcile's users suspended or erased since its last run (every few seconds),
    # the open transactions (the scheduled reconcile, the catch-up after an outage), and a
    # user's data export (audit rows about or by them, their masked originals).
    await conn.execute(
        "CREATE INDEX marketplace_users_suspended ON marketplace_users (suspended_at)"
        " WHERE suspended_at IS NOT NULL"
    )
    await conn.execute(
        "CREATE INDEX marketplace_users_erased ON marketplace_users (erased_at)"
        " WHERE erased_at IS NOT NULL"
    )
    await conn.execute(
        "CREATE INDEX transactions_open ON transactions (transaction_id) WHERE state <> 'closed'"
    )
    await conn.execute("CREATE INDEX audit_by_subject ON audit (subject)")
    await conn.execute("CREATE INDEX audit_by_actor ON audit (actor)")
    await conn.execute("CREATE INDEX masked_originals_by_sender ON masked_originals (sender)")
