"""The PostgreSQL adapter's schema and statements, in one place; ``{s}`` is the schema."""

from __future__ import annotations

from streams.store import _codec

SCHEMA_VERSION = "4"
"""The schema's version; a store at an older one in ``UPGRADES_FROM`` is brought up to it by
running the DDL once. At the current version ``migrate`` runs no DDL, so it takes no lock
that running workers could deadlock with. Version 4 added ``device_metrics``."""
UPGRADES_FROM = ("1", "2", "3")

_NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
"""The database's clock in epoch ms: leases are judged by one clock, whichever worker."""

_DDL = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {s}.inbox_offsets (
    group_id text NOT NULL, topic text NOT NULL, kafka_partition integer NOT NULL,
    last_offset bigint NOT NULL, recent_count bigint NOT NULL,
    PRIMARY KEY (group_id, topic, kafka_partition)) WITH (fillfactor = 50);
CREATE TABLE IF NOT EXISTS {s}.devices (
    device_id text PRIMARY KEY, first_seen bigint NOT NULL, last_seen bigint NOT NULL,
    count bigint NOT NULL, first_seq bigint, last_seq bigint, seq_floor bigint,
    gaps text NOT NULL, missing bigint NOT NULL, lost bigint NOT NULL,
    duplicates bigint NOT NULL, out_of_window bigint NOT NULL, invalid_values bigint NOT NULL,
    late text NOT NULL, metrics text NOT NULL) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS {s}.windows (
    device_id text NOT NULL, metric text NOT NULL, size_ms bigint NOT NULL,
    start_ms bigint NOT NULL, count bigint NOT NULL, min double precision NOT NULL,
    max double precision NOT NULL, sum double precision NOT NULL,
    PRIMARY KEY (device_id, metric, size_ms, start_ms)) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS windows_by_start ON {s}.windows (device_id, start_ms);
CREATE TABLE IF NOT EXISTS {s}.recent_events (
    device_id text NOT NULL, event_id text NOT NULL, ts bigint NOT NULL,
    PRIMARY KEY (device_id, event_id));
CREATE TABLE IF NOT EXISTS {s}.alert_states (
    device_id text NOT NULL, rule text NOT NULL, active boolean NOT NULL,
    since bigint NOT NULL, value double precision NOT NULL, cause_event_id text NOT NULL,
    PRIMARY KEY (device_id, rule));
CREATE TABLE IF NOT EXISTS {s}.outbox (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id text NOT NULL UNIQUE,
    topic text NOT NULL, msg_key text NOT NULL, kind text NOT NULL, ts bigint NOT NULL,
    payload text NOT NULL, published_at bigint);
ALTER TABLE {s}.devices ADD COLUMN IF NOT EXISTS boot bigint;
ALTER TABLE {s}.devices ADD COLUMN IF NOT EXISTS seq_resets bigint NOT NULL DEFAULT 0;
ALTER TABLE {s}.devices ADD COLUMN IF NOT EXISTS restart_ts bigint;
ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS lease_owner text;
ALTER TABLE {s}.outbox ADD COLUMN IF NOT EXISTS lease_until bigint;
CREATE INDEX IF NOT EXISTS outbox_unpublished ON {s}.outbox (msg_key, seq)
    WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_published ON {s}.outbox (published_at)
    WHERE published_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {s}.tracking (
    consumer text NOT NULL, event_id text NOT NULL, PRIMARY KEY (consumer, event_id));
ALTER TABLE {s}.tracking ADD COLUMN IF NOT EXISTS ts bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS tracking_by_ts ON {s}.tracking (ts);
CREATE TABLE IF NOT EXISTS {s}.device_metrics (
    metric text NOT NULL, device_id text COLLATE "C" NOT NULL,
    PRIMARY KEY (metric, device_id));
INSERT INTO {s}.device_metrics SELECT m.metric, d.device_id
    FROM {s}.devices d, jsonb_object_keys(d.metrics::jsonb) AS m(metric) ON CONFLICT DO NOTHING;
UPDATE {s}.tracking SET ts = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    WHERE ts = 0;
"""

_UPSERT = "INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays}) "
_ON_CONFLICT = "ON CONFLICT ({key}) DO UPDATE SET {updates}"
# Big row sets go in by binary COPY into a session-local staging table, then one upsert.
_STAGE = "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS"
_COPY = "COPY {stage} ({columns}) FROM STDIN (FORMAT BINARY)"
_MERGE = "INSERT INTO {table} ({columns}) SELECT {columns} FROM {stage} "
DEVICE_TYPES = ("text", *["int8"] * 6, "text", *["int8"] * 5, "text", "text", *["int8"] * 3)
WINDOW_TYPES = ("text", "text", "int8", "int8", "int8", "float8", "float8", "float8")

# Every statement of the adapter.
_STATEMENTS = {
    "set_version": "INSERT INTO {s}.meta VALUES ('schema_version', %s) "
    "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
    "version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "layout": "SELECT value FROM {s}.meta WHERE key = %s",
    "add_gap": "INSERT INTO {s}.meta AS m VALUES (%s, %s) ON CONFLICT (key) "
    "DO UPDATE SET value = (m.value::bigint + excluded.value::bigint)::text RETURNING value",
    "gaps": "SELECT key, value FROM {s}.meta WHERE key LIKE %s",
    "insert_layout": "INSERT INTO {s}.meta VALUES (%s, %s) ON CONFLICT DO NOTHING",
    "update_layout": "UPDATE {s}.meta SET value = %s WHERE key = %s AND value = %s",
    "positions": "SELECT topic, kafka_partition, last_offset FROM {s}.inbox_offsets "
    "WHERE group_id = %s",
    "offset": "SELECT last_offset FROM {s}.inbox_offsets "
    "WHERE group_id = %s AND topic = %s AND kafka_partition = %s",
    "insert_offset": "INSERT INTO {s}.inbox_offsets VALUES (%s, %s, %s, %s, 0) "
    "ON CONFLICT DO NOTHING",
    "update_offset": "UPDATE {s}.inbox_offsets SET last_offset = %s "
    "WHERE group_id = %s AND topic = %s AND kafka_partition = %s AND last_offset = %s",
    "remember": "INSERT INTO {s}.recent_events "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING",
    "forget": "DELETE FROM {s}.recent_events r USING unnest(%s::text[], %s::bigint[]) "
    "AS x(device_id, cutoff) WHERE r.device_id = x.device_id AND r.ts < x.cutoff",
    "load_recent": "SELECT r.* FROM {s}.devices d JOIN {s}.recent_events r USING (device_id) "
    "WHERE d.device_id = ANY(%s) AND r.ts >= d.last_seen - %s",
    "append_outbox": "INSERT INTO {s}.outbox ({outbox_cols}) SELECT {outbox_cols} FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[]) "
    "WITH ORDINALITY AS u({outbox_cols}, ord) ORDER BY ord ON CONFLICT (event_id) DO NOTHING",
    "notify": "SELECT pg_notify(%s, '')",
    "index_metrics": "INSERT INTO {s}.device_metrics SELECT * FROM unnest(%s::text[], %s::text[]) "
    "ON CONFLICT DO NOTHING",
    "load_devices": "SELECT {device_cols} FROM {s}.devices WHERE device_id = ANY(%s)",
    "load_windows": "SELECT w.* FROM {s}.devices d JOIN {s}.windows w USING (device_id) "
    "WHERE d.device_id = ANY(%s) AND w.start_ms > d.last_seen - %s "
    "AND w.start_ms + w.size_ms > d.last_seen - %s",
    "expire_windows": "DELETE FROM {s}.windows w USING unnest(%s::text[], %s::bigint[], "
    "%s::bigint[]) AS x(device_id, size_ms, through) WHERE w.device_id = x.device_id "
    "AND w.size_ms = x.size_ms AND w.start_ms <= x.through",
    "load_alerts": "SELECT * FROM {s}.alert_states WHERE device_id = ANY(%s)",
    "device": "SELECT {device_cols} FROM {s}.devices WHERE device_id = %s",
    "devices": "SELECT {device_cols} FROM {s}.devices",
    "windows": "SELECT * FROM {s}.windows WHERE %s::text IS NULL OR device_id = %s",
    "alerts": "SELECT * FROM {s}.alert_states WHERE %s::text IS NULL OR device_id = %s",
    # Claiming a key = leasing its oldest unpublished row and the rows after it, in one short
    # transaction: keys whose oldest row another relay holds an unexpired lease on (or is
    # leasing right now: SKIP LOCKED) are skipped. Publishing happens after the commit.
    "claim_heads": "WITH heads AS (SELECT DISTINCT ON (msg_key) seq FROM {s}.outbox "
    "WHERE published_at IS NULL ORDER BY msg_key, seq) "
    "SELECT o.msg_key FROM {s}.outbox o JOIN heads h ON o.seq = h.seq "
    "WHERE o.published_at IS NULL AND (o.lease_until IS NULL OR o.lease_until < {now_ms}) "
    "ORDER BY o.seq LIMIT %s FOR UPDATE OF o SKIP LOCKED",
    "claim_rows": "UPDATE {s}.outbox SET lease_owner = %s, lease_until = {now_ms} + %s "
    "WHERE seq IN (SELECT seq FROM {s}.outbox WHERE published_at IS NULL AND msg_key = ANY(%s) "
    "ORDER BY seq LIMIT %s FOR UPDATE) RETURNING seq, {outbox_cols}",
    "mark_published": "UPDATE {s}.outbox SET published_at = %s, lease_owner = NULL, "
    "lease_until = NULL WHERE seq = ANY(%s) AND published_at IS NULL AND lease_owner = %s",
    "release": "UPDATE {s}.outbox SET lease_owner = NULL, lease_until = NULL "
    "WHERE seq = ANY(%s) AND lease_owner = %s",
    "prune": "DELETE FROM {s}.outbox WHERE published_at IS NOT NULL AND published_at < %s",
    "backlog": "SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL",
    "track": "INSERT INTO {s}.tracking (consumer, event_id, ts) VALUES (%s, %s, %s) "
    "ON CONFLICT DO NOTHING",
    "prune_tracking": "DELETE FROM {s}.tracking WHERE ts < %s",
}


def _on_conflict(columns: tuple[str, ...], key: int) -> str:
    return _ON_CONFLICT.format(
        key=", ".join(columns[:key]),
        updates=", ".join(f"{col} = EXCLUDED.{col}" for col in columns[key:]),
    )


def _upsert(table: str, columns: tuple[str, ...], types: tuple[str, ...], key: int) -> str:
    """A set-based upsert of column arrays (one array parameter per column)."""
    insert = _UPSERT.format(
        table=table,
        columns=", ".join(columns),
        arrays=", ".join(f"%s::{kind}[]" for kind in types),
    )
    return insert + _on_conflict(columns, key)


class Staged:
    """Statements to upsert a table's rows through a staging table (binary COPY)."""

    def __init__(self, table: str, stage: str, columns: tuple[str, ...], key: int) -> None:
        names = ", ".join(columns)
        self.stage = _STAGE.format(stage=stage, table=table)
        self.copy = _COPY.format(stage=stage, columns=names)
        self.merge = _MERGE.format(table=table, columns=names, stage=stage) + _on_conflict(
            columns, key
        )


class Statements:
    """Every SQL text of the adapter, qualified with the (validated) schema name."""

    def __init__(self, schema: str) -> None:
        s = f'"{schema}"'
        names = {
            "s": s,
            "device_cols": ", ".join(_codec.DEVICE_COLUMNS),
            "outbox_cols": ", ".join(_codec.OUTBOX_COLUMNS),
            "now_ms": _NOW_MS,
        }
        sql = {key: template.format(**names) for key, template in _STATEMENTS.items()}
        self.schema_name = schema
        self.channel = f"{schema}_outbox"
        self.listen = f'LISTEN "{self.channel}"'
        self.schema = [part.strip() for part in _DDL.format(s=s).split(";") if part.strip()]
        self.set_version = sql["set_version"]
        self.version = sql["version"]
        self.layout = sql["layout"]
        self.add_gap = sql["add_gap"]
        self.gaps = sql["gaps"]
        self.insert_layout = sql["insert_layout"]
        self.update_layout = sql["update_layout"]
        self.positions = sql["positions"]
        self.offset = sql["offset"]
        self.remember = sql["remember"]
        self.forget = sql["forget"]
        self.load_recent = sql["load_recent"]
        self.insert_offset = sql["insert_offset"]
        self.update_offset = sql["update_offset"]
        self.append_outbox = sql["append_outbox"]
        self.notify = sql["notify"]
        self.index_metrics = sql["index_metrics"]
        self.load_devices = sql["load_devices"]
        self.load_windows = sql["load_windows"]
        self.load_alerts = sql["load_alerts"]
        self.expire_windows = sql["expire_windows"]
        self.device = sql["device"]
        self.devices = sql["devices"]
        self.windows = sql["windows"]
        self.alerts = sql["alerts"]
        self.claim_heads = sql["claim_heads"]
        self.claim_rows = sql["claim_rows"]
        self.mark_published = sql["mark_published"]
        self.release = sql["release"]
        self.prune = sql["prune"]
        self.backlog = sql["backlog"]
        self.track = sql["track"]
        self.prune_tracking = sql["prune_tracking"]
        self.devices_staged = Staged(f"{s}.devices", "stage_devices", _codec.DEVICE_COLUMNS, 1)
        self.windows_staged = Staged(f"{s}.windows", "stage_windows", _codec.WINDOW_COLUMNS, 4)
        alert_types = ("text", "text", "boolean", "bigint", "float8", "text")
        self.upsert_alerts = _upsert(f"{s}.alert_states", _codec.ALERT_COLUMNS, alert_types, 2)

    def table(self, name: str) -> str:
        return f'"{self.schema_name}"."{name}"'
