"""Statements of generations and replay swaps (``SwapStore``) for both adapters.

The generation is one row of each store's ``meta`` table (``key = 'generation'``; a store
that never saw a swap has none, which reads as 0).
"""

# ruff: noqa: S608 - names are table prefixes and schemas the adapters validated (identifiers)

from __future__ import annotations

# The projection tables a swap replaces, and the inbox tables it replaces for one group.
PROJECTION_TABLES = ("devices", "device_metrics", "windows", "alert_states", "recent_events")
INBOX_TABLES = ("inbox_offsets",)


def sqlite_generation(prefix: str) -> str:
    return f"SELECT value FROM \"{prefix}meta\" WHERE key = 'generation'"


def sqlite_set_generation(prefix: str) -> str:
    return (
        f"INSERT INTO \"{prefix}meta\" VALUES ('generation', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )


def sqlite_swap(target: str, source: str) -> list[tuple[str, bool]]:
    """(statement, takes the group as its parameter) copying ``source``'s projections and
    one group's inbox over ``target``'s; both are ``schema."prefix`` of a table name."""
    steps: list[tuple[str, bool]] = []
    for table in PROJECTION_TABLES:
        steps.append((f'DELETE FROM {target}{table}"', False))
        steps.append((f'INSERT INTO {target}{table}" SELECT * FROM {source}{table}"', False))
    for table in INBOX_TABLES:
        steps.append((f'DELETE FROM {target}{table}" WHERE group_id = ?', True))
        steps.append(
            (
                f'INSERT INTO {target}{table}" SELECT * FROM {source}{table}" WHERE group_id = ?',
                True,
            )
        )
    return steps


def pg_generation(schema: str) -> str:
    return f"SELECT value FROM \"{schema}\".meta WHERE key = 'generation'"


def pg_set_generation(schema: str) -> str:
    return (
        f"INSERT INTO \"{schema}\".meta VALUES ('generation', %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )


def pg_lock_live(live: str) -> str:
    """Locks the live inbox and meta tables: in-flight batches finish first, later ones wait
    and then find the new generation (names re-resolve after a lock wait, also in prepared
    statements)."""
    lv = f'"{live}"'
    return f"LOCK TABLE {lv}.meta, {lv}.inbox_offsets IN ACCESS EXCLUSIVE MODE"


def pg_swap(live: str, shadow: str, retired: str) -> list[tuple[str, bool]]:
    """(statement, takes the group as its parameter): makes schema ``shadow`` the schema
    ``live``, carrying over what a rebuild does not produce (other groups' inbox rows, the
    outbox and the idempotent-consumer records), and keeps the old one as ``retired``.

    Run after ``pg_lock_live``.
    """
    lv, sh = f'"{live}"', f'"{shadow}"'
    return [
        *[
            (
                f"INSERT INTO {sh}.{table} SELECT * FROM {lv}.{table} WHERE group_id <> %s "
                "ON CONFLICT DO NOTHING",
                True,
            )
            for table in INBOX_TABLES
        ],
        (f"DROP TABLE {sh}.outbox, {sh}.tracking", False),
        (f"ALTER TABLE {lv}.outbox SET SCHEMA {sh}", False),
        (f"ALTER TABLE {lv}.tracking SET SCHEMA {sh}", False),
        (f'ALTER SCHEMA {lv} RENAME TO "{retired}"', False),
        (f"ALTER SCHEMA {sh} RENAME TO {lv}", False),
    ]


def sqlite_merge(target: str, source: str) -> list[str]:
    """Statements copying every row of ``source``'s store into ``target``'s (both
    ``schema."prefix`` of a table name), for rebuilds split between processes by partition.

    Plain INSERTs: a primary key present on both sides (a device on two partitions) fails the
    merge instead of overwriting. Outbox rows keep their per-source order and get new ``seq``.
    """
    columns = "event_id, topic, msg_key, kind, ts, payload, published_at"
    return [
        *(
            f'INSERT INTO {target}{table}" SELECT * FROM {source}{table}"'
            for table in (*PROJECTION_TABLES, *INBOX_TABLES, "tracking")
        ),
        f'INSERT INTO {target}outbox" ({columns}) '
        f'SELECT {columns} FROM {source}outbox" ORDER BY seq',
    ]
