"""Which store failures a worker waits out (retriable) and which stop it, per adapter."""

from __future__ import annotations

import sqlite3

import psycopg

from streams.store import postgres, sqlite


def test_a_full_disk_is_waited_out_in_both_stores_and_corruption_is_not() -> None:
    assert sqlite._translate(sqlite3.OperationalError("database or disk is full"), "x").retriable
    assert sqlite._translate(sqlite3.OperationalError("database is locked"), "x").retriable
    malformed = sqlite3.DatabaseError("database disk image is malformed")
    assert not sqlite._translate(malformed, "x").retriable
    assert postgres._translate(psycopg.errors.DiskFull("no space left"), "x").retriable
    assert postgres._translate(psycopg.errors.TooManyConnections("full"), "x").retriable
    assert not postgres._translate(psycopg.errors.UniqueViolation("dup"), "x").retriable
