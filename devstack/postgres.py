"""PostgreSQL from Debian's packages as a project-owned cluster on its own data dir and port.

``initdb`` and ``postgres`` refuse to run as root, so when the dev stack runs as root the
cluster belongs to the ``postgres`` system user (see ``accounts``).
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from devstack.accounts import owned_dir, service_user
from devstack.errors import ServiceStartError
from devstack.process import LaunchSpec, ProcessHandle
from devstack.service import Probe, Progress, Service
from security.files import chown_to

SUPERUSER = "postgres"


def _bin_dir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").is_file():
            return candidate
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not versions:
        raise ServiceStartError(
            "PostgreSQL is not installed: run `make up` or `apt-get install postgresql`"
        )
    return Path(versions[-1])


class Postgres(Service):
    """A PostgreSQL cluster listening on loopback with the project database and role."""

    name = "postgres"

    @property
    def port(self) -> int:
        return self.settings.pg_port

    @property
    def endpoint(self) -> str:
        return self.settings.pg_dsn(masked=True)

    @property
    def env_port_variable(self) -> str:
        return "IOT_PG_PORT"

    @property
    def run_as(self) -> str | None:
        """The OS user owning the cluster: ``postgres`` when we are root, else ourselves."""
        return service_user(SUPERUSER)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def superuser_password_file(self) -> Path:
        return self.home / "superuser.password"

    def prepare(self, progress: Progress) -> None:
        bin_dir = _bin_dir()
        owned_dir(self.home, self.run_as)
        owned_dir(self.home / "run", self.run_as)
        if not (self.data_dir / "PG_VERSION").is_file():
            self._init_cluster(bin_dir, progress)
        self._admit_own_network()

    def _admit_own_network(self) -> None:
        """On a host of its own, clients connect from its test network: password logins
        from there are accepted too (initdb admits loopback only)."""
        own = self.settings.host_of(self.name)
        if own is None:
            return
        hba = self.data_dir / "pg_hba.conf"
        line = f"host all all {own.network} scram-sha-256\n"
        if line not in hba.read_text():
            with hba.open("a") as rules:
                rules.write(line)

    def _init_cluster(self, bin_dir: Path, progress: Progress) -> None:
        progress(f"creating the PostgreSQL cluster with {bin_dir / 'initdb'}")
        self.superuser_password_file.write_text(secrets.token_urlsafe(24) + "\n")
        os.chmod(self.superuser_password_file, 0o600)
        chown_to(self.superuser_password_file, self.run_as)
        result = subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                f"--pwfile={self.superuser_password_file}",
                "-E",
                "UTF8",
                "--no-locale",
            ],
            capture_output=True,
            text=True,
            check=False,
            user=self.run_as,
            group=self.run_as,
            extra_groups=[] if self.run_as else None,
        )
        if result.returncode != 0:
            raise ServiceStartError(
                f"initdb failed; remove {self.data_dir} to start afresh.\n"
                + (result.stdout + result.stderr)[-2000:]
            )

    @property
    def handle(self) -> ProcessHandle:
        # SIGINT is PostgreSQL's "fast" shutdown: roll back sessions, checkpoint, exit.
        return ProcessHandle(self.pid_file, str(self.data_dir), signal.SIGINT, 30.0)

    def launch(self) -> LaunchSpec:
        return LaunchSpec(
            argv=[
                str(_bin_dir() / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={self.address}",
                "-c",
                f"unix_socket_directories={self.home / 'run'}",
                "-c",
                "max_connections=200",
            ],
            log_file=self.log_file,
            user=self.run_as,
        )

    def _superuser_connect(self, timeout_s: float) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.address,
            port=self.port,
            user=SUPERUSER,
            password=self.superuser_password_file.read_text().strip(),
            dbname="postgres",
            connect_timeout=max(1, int(timeout_s)),
            autocommit=True,
        )

    def probe(self, timeout_s: float = 2.0) -> Probe:
        """Logs in as the project role and runs a query."""
        try:
            with psycopg.connect(
                self.settings.pg_dsn(), connect_timeout=max(1, int(timeout_s))
            ) as conn:
                row = conn.execute("select current_setting('server_version')").fetchone()
        except psycopg.OperationalError as exc:
            if self.superuser_password_file.is_file():
                try:
                    with self._superuser_connect(timeout_s):
                        return Probe(True, "server answers; project role not created yet")
                except psycopg.OperationalError:
                    pass
            return Probe(False, f"connect failed: {str(exc).strip().splitlines()[0]}")
        version = row[0] if row else "?"
        return Probe(True, f"PostgreSQL {version}, database {self.settings.pg_database}")

    def after_start(self, progress: Progress) -> None:
        """Creates the project role and database if they do not exist."""
        user, database = self.settings.pg_user, self.settings.pg_database
        with self._superuser_connect(10) as conn:
            if conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone():
                conn.execute(
                    sql.SQL("alter role {} with login password {}").format(
                        sql.Identifier(user), sql.Literal(self.settings.pg_password)
                    )
                )
            else:
                progress(f"creating role {user} and database {database}")
                conn.execute(
                    sql.SQL("create role {} with login password {}").format(
                        sql.Identifier(user), sql.Literal(self.settings.pg_password)
                    )
                )
            if not conn.execute(
                "select 1 from pg_database where datname = %s", (database,)
            ).fetchone():
                conn.execute(
                    sql.SQL("create database {} owner {}").format(
                        sql.Identifier(database), sql.Identifier(user)
                    )
                )
