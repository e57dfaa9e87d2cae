"""The one place a store URL becomes a migrated store adapter."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from streams.store.port import Store
from streams.store.postgres import PostgresStore
from streams.store.sqlite import SqliteStore

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    """``sqlite:///path`` or a ``postgresql://`` DSN (``?schema=NAME`` picks the schema,
    ``streams`` by default), migrated and ready."""
    store: Store
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(path)
    elif url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        schema = query.pop("schema", ["streams"])[-1]
        dsn = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
        store = PostgresStore(dsn, schema=schema)
    else:
        raise ValueError(f"unknown store {url!r}: use sqlite:///PATH or postgresql://...")
    store.migrate()
    return store
