"""The local PostgreSQL is the project's own cluster, with the project role and database."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from devstack import DevStackSettings


def test_project_role_owns_its_database_and_transactions_roll_back(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    table = sql.Identifier(unique("table").replace(".", "_"))
    with psycopg.connect(settings.pg_dsn()) as conn:
        owner = conn.execute(
            "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
        ).fetchone()
        assert owner == (settings.pg_user,)
        conn.execute(sql.SQL("create table {} (id int primary key)").format(table))
        conn.commit()
        insert = sql.SQL("insert into {} values (1)").format(table)

        def insert_twice() -> None:
            with conn.transaction():
                conn.execute(insert)
                conn.execute(insert)

        with pytest.raises(psycopg.errors.UniqueViolation):
            insert_twice()
        count = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()
        assert count == (0,)
        conn.execute(sql.SQL("drop table {}").format(table))


def test_cluster_data_lives_under_the_state_dir(settings: DevStackSettings) -> None:
    with psycopg.connect(settings.pg_dsn()) as conn:
        port = conn.execute("select current_setting('port')").fetchone()
    assert port == (str(settings.pg_port),)
    assert (settings.state_dir / "postgres" / "data" / "PG_VERSION").is_file()
