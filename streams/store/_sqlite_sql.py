"""The SQLite adapter's schema and statements, in one place; ``{p}`` is the table prefix."""

from __future__ import annotations

from streams.store import _codec

SCHEMA_VERSION = "1"

# The whole schema of this adapter; {p} is the table prefix.
SCHEMA = """
CREATE TABLE IF NOT EXISTS {p}meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}inbox_offsets (
    group_id TEXT NOT NULL, topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL,
    last_offset INTEGER NOT NULL, recent_count INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic, kafka_partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}devices (
    device_id TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
    count INTEGER NOT NULL, first_seq INTEGER, last_seq INTEGER, seq_floor INTEGER,
    gaps TEXT NOT NULL, missing INTEGER NOT NULL, lost INTEGER NOT NULL,
    duplicates INTEGER NOT NULL, out_of_window INTEGER NOT NULL,
    invalid_values INTEGER NOT NULL, late TEXT NOT NULL, metrics TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}windows (
    device_id TEXT NOT NULL, metric TEXT NOT NULL, size_ms INTEGER NOT NULL,
    start_ms INTEGER NOT NULL, count INTEGER NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    sum REAL NOT NULL,
    PRIMARY KEY (device_id, metric, size_ms, start_ms)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {p}windows_by_start ON {p}windows (device_id, start_ms);
CREATE TABLE IF NOT EXISTS {p}recent_events (
    device_id TEXT NOT NULL, event_id TEXT NOT NULL, ts INTEGER NOT NULL,
    PRIMARY KEY (device_id, event_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}alert_states (
    device_id TEXT NOT NULL, rule TEXT NOT NULL, active INTEGER NOT NULL,
    since INTEGER NOT NULL, value REAL NOT NULL, cause_event_id TEXT NOT NULL,
    PRIMARY KEY (device_id, rule)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {p}outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL, msg_key TEXT NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL,
    payload TEXT NOT NULL, published_at INTEGER);
CREATE INDEX IF NOT EXISTS {p}outbox_unpublished ON {p}outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS {p}outbox_published
    ON {p}outbox (published_at) WHERE published_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {p}tracking (
    consumer TEXT NOT NULL, event_id TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)) WITHOUT ROWID;
"""


ADDED_COLUMNS = {
    "devices": (
        ("boot", "INTEGER"),
        ("seq_resets", "INTEGER NOT NULL DEFAULT 0"),
        ("restart_ts", "INTEGER"),
    ),
    "tracking": (("ts", "INTEGER NOT NULL DEFAULT 0"),),
}
"""Columns added since a table was first created: a store missing one gains it at start-up
(SQLite has no ADD COLUMN IF NOT EXISTS), at the end of the table in every store."""


ADDED_TABLES = {
    "device_metrics": (
        "CREATE TABLE {p}device_metrics (metric TEXT NOT NULL, device_id TEXT NOT NULL, "
        "PRIMARY KEY (metric, device_id)) WITHOUT ROWID",
        "INSERT INTO {p}device_metrics SELECT m.key, d.device_id "
        "FROM {p}devices d, json_each(d.metrics) m",
    ),
}
"""Tables added since the schema was first created, each with the statement that fills it
from the tables it derives from: a store missing one gains it, filled, in one transaction at
start-up (a new store's is empty). ``device_metrics`` indexes the devices by metric name, one
row per latest value a device has, for ``has_metric`` pages."""


# Every statement of this adapter; {p} is the table prefix.
_STATEMENTS = {
    "set_version": "INSERT OR IGNORE INTO {p}meta VALUES ('schema_version', ?)",
    "version": "SELECT value FROM {p}meta WHERE key = 'schema_version'",
    "layout": "SELECT value FROM {p}meta WHERE key = ?",
    "add_gap": "INSERT INTO {p}meta VALUES (?, ?) ON CONFLICT (key) "
    "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER) AS TEXT) "
    "RETURNING value",
    "gaps": "SELECT key, value FROM {p}meta WHERE key LIKE ?",
    "insert_layout": "INSERT INTO {p}meta VALUES (?, ?) ON CONFLICT DO NOTHING",
    "update_layout": "UPDATE {p}meta SET value = ? WHERE key = ? AND value = ?",
    "positions": "SELECT topic, kafka_partition, last_offset FROM {p}inbox_offsets "
    "WHERE group_id = ?",
    "offset": "SELECT last_offset FROM {p}inbox_offsets "
    "WHERE group_id = ? AND topic = ? AND kafka_partition = ?",
    "insert_offset": "INSERT INTO {p}inbox_offsets VALUES (?, ?, ?, ?, 0) ON CONFLICT DO NOTHING",
    "update_offset": "UPDATE {p}inbox_offsets SET last_offset = ? "
    "WHERE group_id = ? AND topic = ? AND kafka_partition = ? AND last_offset = ?",
    "remember": "INSERT INTO {p}recent_events VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
    "forget": "DELETE FROM {p}recent_events WHERE device_id = ? AND ts < ?",
    "load_recent": "SELECT r.* FROM {p}devices d JOIN {p}recent_events r USING (device_id) "
    "WHERE d.device_id IN (SELECT value FROM json_each(?)) AND r.ts >= d.last_seen - ?",
    "upsert_device": "INSERT OR REPLACE INTO {p}devices ({device_cols}) VALUES ({device_marks})",
    "index_metrics": "INSERT INTO {p}device_metrics VALUES (?, ?) ON CONFLICT DO NOTHING",
    # An update in place, not OR REPLACE's delete and insert: the index by start is untouched.
    "upsert_window": "INSERT INTO {p}windows VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (device_id, metric, size_ms, start_ms) DO UPDATE SET count = excluded.count, "
    "min = excluded.min, max = excluded.max, sum = excluded.sum",
    "expire_windows": "DELETE FROM {p}windows WHERE device_id = ? AND start_ms <= ? "
    "AND size_ms = ?",
    "upsert_alert": "INSERT OR REPLACE INTO {p}alert_states VALUES (?, ?, ?, ?, ?, ?)",
    "append_outbox": "INSERT INTO {p}outbox ({outbox_cols}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO NOTHING",
    "load_devices": "SELECT {device_cols} FROM {p}devices "
    "WHERE device_id IN (SELECT value FROM json_each(?))",
    "load_windows": "SELECT w.* FROM {p}devices d JOIN {p}windows w USING (device_id) "
    "WHERE d.device_id IN (SELECT value FROM json_each(?)) "
    "AND w.start_ms > d.last_seen - ? AND w.start_ms + w.size_ms > d.last_seen - ?",
    "load_alerts": "SELECT * FROM {p}alert_states "
    "WHERE device_id IN (SELECT value FROM json_each(?))",
    "device": "SELECT {device_cols} FROM {p}devices WHERE device_id = ?",
    "devices": "SELECT {device_cols} FROM {p}devices",
    "windows": "SELECT * FROM {p}windows WHERE ? IS NULL OR device_id = ?",
    "alerts": "SELECT * FROM {p}alert_states WHERE ? IS NULL OR device_id = ?",
    "unpublished": "SELECT seq, {outbox_cols} FROM {p}outbox "
    "WHERE published_at IS NULL ORDER BY seq",
    "mark_published": "UPDATE {p}outbox SET published_at = ? "
    "WHERE seq IN (SELECT value FROM json_each(?)) AND published_at IS NULL",
    "prune": "DELETE FROM {p}outbox WHERE published_at IS NOT NULL AND published_at < ?",
    "backlog": "SELECT count(*) FROM {p}outbox WHERE published_at IS NULL",
    "track": "INSERT INTO {p}tracking (consumer, event_id, ts) VALUES (?, ?, ?) "
    "ON CONFLICT DO NOTHING",
    "prune_tracking": "DELETE FROM {p}tracking WHERE ts < ?",
    "date_tracking": "UPDATE {p}tracking SET ts = ? WHERE ts = 0",
    "tracking_by_ts": "CREATE INDEX IF NOT EXISTS {p}tracking_by_ts ON {p}tracking (ts)",
    "has_table": "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?",
}


def statements(prefix: str) -> dict[str, str]:
    names = {
        "p": prefix,
        "device_cols": ", ".join(_codec.DEVICE_COLUMNS),
        "device_marks": ", ".join("?" * len(_codec.DEVICE_COLUMNS)),
        "outbox_cols": ", ".join(_codec.OUTBOX_COLUMNS),
    }
    return {key: template.format(**names) for key, template in _STATEMENTS.items()}
