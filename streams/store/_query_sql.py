"""Statements of the query reads (``device_page``, ``alert_page``, ``window_range``,
``fleet_counts``) for both adapters.

``device_page`` with ``has_metric`` reads the metric index (``device_metrics``: one
(metric, device_id) row per latest value a device has), which each adapter keeps in the
transaction that writes the devices' rows.

Kept apart from each adapter's write-path statements so the query API's reads can evolve
without touching the batch commit's SQL.
"""

# ruff: noqa: S608 - names are table prefixes and schemas the adapters validated (identifiers)

from __future__ import annotations

from streams.store import _codec

_COLS = ", ".join(_codec.DEVICE_COLUMNS)
_DEVICE_COLS = ", ".join(f"d.{column}" for column in _codec.DEVICE_COLUMNS)


def sqlite_device_page(prefix: str) -> str:
    """Params: after, after, seen_since, seen_since, limit."""
    return (
        f"SELECT {_COLS} FROM {prefix}devices "
        "WHERE (? IS NULL OR device_id > ?) AND (? IS NULL OR last_seen >= ?) "
        "ORDER BY device_id LIMIT ?"
    )


def sqlite_metric_page(prefix: str) -> str:
    """Params: has_metric, after, seen_since, seen_since, limit.

    A range of the metric index's primary key (metric, device_id) from ``after`` (None: from
    the start; no device id is empty), joined to each device's row by its key: a page reads
    the index entries it answers plus those ``seen_since`` passes over, never the devices
    without the metric."""
    return (
        f"SELECT {_DEVICE_COLS} FROM {prefix}device_metrics m "
        f"JOIN {prefix}devices d ON d.device_id = m.device_id "
        "WHERE m.metric = ? AND m.device_id > coalesce(?, '') "
        "AND (? IS NULL OR d.last_seen >= ?) ORDER BY m.device_id LIMIT ?"
    )


def sqlite_alert_page(prefix: str) -> str:
    """Params: after_device, after_device, after_rule, device_id, device_id, active_only, limit.
    Keyset paging on the primary key (device_id, rule), in code point order."""
    return (
        f"SELECT * FROM {prefix}alert_states "
        "WHERE (? IS NULL OR (device_id, rule) > (?, ?)) AND (? IS NULL OR device_id = ?) "
        "AND (NOT ? OR active) ORDER BY device_id, rule LIMIT ?"
    )


def sqlite_window_range(prefix: str) -> str:
    """Params: device_id, metric, size_ms, start_ms (inclusive), end_ms (exclusive)."""
    return (
        f"SELECT * FROM {prefix}windows WHERE device_id = ? AND metric = ? AND size_ms = ? "
        "AND start_ms >= ? AND start_ms < ? ORDER BY start_ms"
    )


def sqlite_fleet_counts(prefix: str) -> str:
    """Params: seen_since. One statement: the three counts come from one snapshot."""
    return (
        f"SELECT (SELECT count(*) FROM {prefix}devices), "
        f"(SELECT count(*) FROM {prefix}devices WHERE last_seen >= ?), "
        f"(SELECT count(*) FROM {prefix}alert_states WHERE active)"
    )


def pg_device_page(schema: str) -> str:
    """Params as :func:`sqlite_device_page`."""
    return (
        f'SELECT {_COLS} FROM "{schema}".devices '
        'WHERE (%s::text IS NULL OR device_id COLLATE "C" > %s) '
        "AND (%s::bigint IS NULL OR last_seen >= %s) "
        'ORDER BY device_id COLLATE "C" LIMIT %s'
    )


def pg_metric_page(schema: str) -> str:
    """Params and plan as :func:`sqlite_metric_page`. The index's ``device_id`` is of
    collation "C" (code point order), so its key order is the page order; the join names the
    devices key's collation, so each row is one lookup of that key."""
    return (
        f'SELECT {_DEVICE_COLS} FROM "{schema}".device_metrics m '
        f'JOIN "{schema}".devices d ON d.device_id = m.device_id COLLATE "default" '
        "WHERE m.metric = %s AND m.device_id > coalesce(%s::text, '') "
        "AND (%s::bigint IS NULL OR d.last_seen >= %s) ORDER BY m.device_id LIMIT %s"
    )


def pg_alert_page(schema: str) -> str:
    """Params as :func:`sqlite_alert_page`."""
    return (
        f'SELECT * FROM "{schema}".alert_states '
        'WHERE (%s::text IS NULL OR (device_id COLLATE "C", rule COLLATE "C") > (%s, %s)) '
        "AND (%s::text IS NULL OR device_id = %s) AND (NOT %s OR active) "
        'ORDER BY device_id COLLATE "C", rule COLLATE "C" LIMIT %s'
    )


def pg_window_range(schema: str) -> str:
    """Params as :func:`sqlite_window_range`."""
    return (
        f'SELECT * FROM "{schema}".windows WHERE device_id = %s AND metric = %s '
        "AND size_ms = %s AND start_ms >= %s AND start_ms < %s ORDER BY start_ms"
    )


def pg_fleet_counts(schema: str) -> str:
    """Params as :func:`sqlite_fleet_counts`."""
    return (
        f'SELECT (SELECT count(*) FROM "{schema}".devices), '
        f'(SELECT count(*) FROM "{schema}".devices WHERE last_seen >= %s), '
        f'(SELECT count(*) FROM "{schema}".alert_states WHERE active)'
    )


def page_params(
    after: str | None, limit: int, seen_since: int | None, has_metric: str | None
) -> tuple[object, ...]:
    """The parameters of a device page: ``*_device_page``'s, or ``*_metric_page``'s with
    ``has_metric``."""
    if has_metric is None:
        return (after, after, seen_since, seen_since, limit)
    return (has_metric, after, seen_since, seen_since, limit)
