"""Soak: is the state bounded? Store size and RSS over a long run at a steady rate.

    .venv/bin/python -m bench.soak [--rate 2000] [--duration 1800] [--sample 10]   # ~32 min

An isolated stack (its own Kafka, Mosquitto and PostgreSQL on free ports, state under
``.local/soak/``; the fault suite's ``tests.faults.stack``) runs one gateway in direct mode
and one stream worker (SQLite store; ``--store postgresql`` for a schema of the stack's
PostgreSQL). ``bench.loadgen`` plays ``--devices`` devices over a few MQTT connections at
``--rate`` QoS 1 messages per second for ``--duration`` seconds, through the gateway into
Kafka and the worker; per-message authorization is off, as in the fault suite and the other
benchmarks (the soak is about state, not the policy). Its alert rule (``temperature-high``
above 26.65 °C) is crossed once per 64 readings of each device, so alerts, the notifier's
commands, the outbox and the notifier's dedupe records all see steady traffic.

Every ``--sample`` seconds it records: PUBACKs, events applied (worker ``/metrics``), the
worker's lag (end offsets of the telemetry topic minus the store's positions), the store's
size on disk (SQLite file + WAL + shared memory, or ``pg_total_relation_size`` of the schema's
tables), row counts of the store's tables, and the worker's and gateway's RSS
(``/proc/<pid>/status``).

State is bounded by retention, and a 30-minute run can only show a plateau if every retention
is shorter than the run. So the soak states short retentions and passes them to the worker:
1-minute windows kept 300 s after they close, 1-hour windows 0 s, published outbox rows 60 s,
the notifier's dedupe records 300 s (production defaults: 7 days, 90 days, 300 s, 7 days).
They are printed and written to the JSON with the results.

The verdict (``bench.soak_report``): after the warm-up (the first third of the run, at least
twice the time the retained state takes to settle), each series is averaged over 60 s (one
pruning period) and a line is fitted to the store size and to each RSS; flat means growth
under ``--tolerance`` % of the mean per 10 minutes. The run kept up when PUBACKs came
at >= 95% of the offered rate and the lag stayed under ``--lag-bound`` seconds of it. Writes
``bench/results/soak.json`` and ``soak.png``; exit status 0 when flat and kept up, 1
otherwise. Loopback only; stops by itself; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import yaml

from bench import soak_report
from bench.gateway_harness import LoadGen
from bench.loadgen import PASSWORD_ENV
from bench.procs import Children, cpu_seconds
from bench.stream_worker import metric
from devstack import DevStackSettings
from streams.projections.windows import DEFAULT_WINDOWS
from streams.store.postgres import PostgresStore
from streams.worker.runtime import OUTBOX_PRUNE_EVERY_S
from tests.e2e.gateway_harness import kill_leftovers
from tests.faults import stack
from tests.faults.collect import end_offsets
from tests.stacks import isolated_settings

RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = "soak"
"""The load generator's topics: ``soak/devices/<device>/telemetry``."""
GROUP = "soak-streams"
SCHEMA = "soak"
RULES = """\
version: 1
rules:
  - {name: temperature-high, metric: temp_c, above: 26.65, clear_below: 26.65}
"""
"""Crossed once per 64 readings of a load-generator device (its temperatures cycle)."""
DRAIN_S = 120.0
"""After the load, how long the worker may take to apply the rest of the log."""
TABLES = soak_report.TABLES
MINUTE = next(spec for spec in DEFAULT_WINDOWS if spec.name == "1m")


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


class StoreUnreadableError(RuntimeError):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"could not read the worker's store: {cause}")


class StoreProbe(Protocol):
    """Reads the worker's store from the side: size, row counts, positions."""

    def read(self) -> dict[str, Any]:
        """``bytes`` (on disk), ``live_bytes`` (None if unknown), ``rows`` per table and
        ``positions`` (next offset per partition of the telemetry topic)."""
        ...

    def close(self) -> None: ...


class SqliteProbe:
    """The worker's SQLite file, read-only (WAL: never blocks the worker's commits)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        size = sum(
            file.stat().st_size
            for file in (self.path, *(Path(f"{self.path}{end}") for end in ("-wal", "-shm")))
            if file.exists()
        )
        uri = f"file:{self.path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
            page = db.execute("PRAGMA page_size").fetchone()[0]
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            positions = db.execute(
                "SELECT kafka_partition, last_offset FROM inbox_offsets "
                "WHERE group_id = ? AND topic = ?",
                (GROUP, stack.TELEMETRY_TOPIC),
            ).fetchall()
        return {
            "bytes": size,
            "live_bytes": page * (pages - free),
            "rows": rows,
            "positions": {int(p): int(o) + 1 for p, o in positions},
        }

    def close(self) -> None:
        pass


class PostgresProbe:
    """The worker's schema of the stack's PostgreSQL (sizes include indexes and TOAST)."""

    def __init__(self, dsn: str, schema: str) -> None:
        self.schema = schema
        self.connection = psycopg.connect(dsn, autocommit=True)

    def read(self) -> dict[str, Any]:
        s = self.schema
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (s,),
            )
            size = int(cursor.fetchone()[0])  # type: ignore[index]
            rows = {}
            for table in TABLES:
                cursor.execute(f'SELECT count(*) FROM "{s}".{table}')  # noqa: S608
                rows[table] = int(cursor.fetchone()[0])  # type: ignore[index]
            cursor.execute(
                f'SELECT kafka_partition, last_offset FROM "{s}".inbox_offsets '  # noqa: S608
                "WHERE group_id = %s AND topic = %s",
                (GROUP, stack.TELEMETRY_TOPIC),
            )
            positions = {int(p): int(o) + 1 for p, o in cursor.fetchall()}
        return {"bytes": size, "live_bytes": None, "rows": rows, "positions": positions}

    def close(self) -> None:
        self.connection.close()


@dataclass(frozen=True, slots=True)
class Retention:
    """The retentions the soak gives the worker (seconds), stated with the results."""

    window_1m_s: float
    window_1h_s: float
    outbox_keep_s: float
    dedupe_horizon_s: float

    def settle_s(self) -> float:
        """How long until every bounded kind of state lives its whole life at least once: a
        1-minute window (size + grace + retention), a published outbox row and a dedupe
        record (each + one pruning period). The 1-hour windows are left out: one per device
        and metric is open at any time, plus the previous hour's during its grace."""
        return max(
            MINUTE.size_ms / 1000 + MINUTE.grace_ms / 1000 + self.window_1m_s,
            self.outbox_keep_s + OUTBOX_PRUNE_EVERY_S,
            self.dedupe_horizon_s + OUTBOX_PRUNE_EVERY_S,
        )

    def worker_env(self) -> dict[str, str]:
        return {
            "IOT_STREAMS_WINDOW_RETENTION_S": json.dumps(
                {"1m": self.window_1m_s, "1h": self.window_1h_s}
            ),
            "IOT_STREAMS_OUTBOX_KEEP_S": str(self.outbox_keep_s),
            "IOT_STREAMS_NOTIFIER__ENABLED": "true",
            "IOT_STREAMS_NOTIFIER__DEDUPE_HORIZON_S": str(self.dedupe_horizon_s),
        }

    def text(self) -> str:
        return (
            f"1m windows kept {self.window_1m_s:g} s after they close, 1h windows "
            f"{self.window_1h_s:g} s, published outbox rows {self.outbox_keep_s:g} s, the "
            f"notifier's dedupe records {self.dedupe_horizon_s:g} s (stated for this run; the "
            "production defaults are 7 days, 90 days, 300 s and 7 days)"
        )


def rss_bytes(pid: int | None) -> int | None:
    """VmRSS of a process, or None if it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
        return str(response.read().decode())


@dataclass(slots=True)
class Soak:
    """The running world: the stack's settings, its processes, the load and the probe."""

    settings: DevStackSettings
    gateway: stack.AppProcess
    worker: stack.AppProcess
    probe: StoreProbe
    load: LoadGen | None = None
    load_started: float = 0.0

    def apps(self) -> list[stack.AppProcess]:
        return [self.gateway, self.worker]

    async def sample(self, phase: str) -> dict[str, Any]:
        t = time.monotonic() - self.load_started
        read = asyncio.to_thread(self.probe.read)
        ends = end_offsets(stack.client_for(self.settings), stack.TELEMETRY_TOPIC)
        text = asyncio.to_thread(_get, f"http://127.0.0.1:{self.worker.http_port}/metrics")
        store, offsets, metrics = await asyncio.gather(read, ends, text, return_exceptions=True)
        if isinstance(store, BaseException):
            raise StoreUnreadableError(store) from store
        positions = store.pop("positions")
        lag = (
            None
            if isinstance(offsets, BaseException)
            else sum(max(0, end - positions.get(p, 0)) for p, end in offsets.items())
        )
        values = {} if isinstance(metrics, BaseException) else _worker_metrics(metrics)
        return {
            "t": round(t, 1),
            "phase": phase,
            "acked": self._acked(),
            **values,
            "lag": lag,
            "store": {"bytes": store["bytes"], "live_bytes": store["live_bytes"]},
            "rows": store["rows"],
            "rss": {app: rss_bytes(p.pid) for app, p in self._named()},
            "cpu_s": {app: cpu_seconds(p.pid) for app, p in self._named()},
        }

    def _acked(self) -> int:
        """PUBACKs so far: the load generator's last progress line, or its final count."""
        if self.load is None:
            return 0
        return int(self.load.final["acked"]) if self.load.final else self.load.acked

    def _named(self) -> list[tuple[str, stack.AppProcess]]:
        return [("worker", self.worker), ("gateway", self.gateway)]

    def check_alive(self) -> None:
        for app in self.apps():
            if not app.running():
                code = app.process.returncode if app.process else None
                raise RuntimeError(
                    f"the {app.name} exited ({code}); its log is {app.log}, ending:\n{app.tail()}"
                )


def _worker_metrics(text: str) -> dict[str, float | None]:
    return {
        "applied": metric(text, "iot_streams_events_applied_total"),
        "outbox_backlog": metric(text, "iot_streams_outbox_backlog"),
        "outbox_pruned": metric(text, "iot_streams_outbox_pruned_total"),
        "tracking_pruned": metric(text, "iot_streams_notifier_tracking_pruned_total"),
        "commands": metric(text, "iot_streams_notifier_commands_total"),
    }


def progress(sample: dict[str, Any], previous: dict[str, Any]) -> str:
    mb = soak_report.MB
    elapsed = sample["t"] - previous["t"]
    rate = (sample["acked"] - previous["acked"]) / elapsed if elapsed > 0 else 0.0
    rows, rss = sample["rows"], sample["rss"]
    return (
        f"[{sample['t']:7.1f}s] acked {sample['acked']:,} ({rate:,.0f}/s) | applied "
        f"{sample.get('applied') or 0:,.0f} | lag {sample['lag']} | store "
        f"{sample['store']['bytes'] / mb:.1f} MiB | rows windows {rows['windows']:,} outbox "
        f"{rows['outbox']:,} tracking {rows['tracking']:,} | RSS worker "
        f"{(rss['worker'] or 0) / mb:.0f} MiB gateway {(rss['gateway'] or 0) / mb:.0f} MiB"
    )


def gateway_config(settings: DevStackSettings, folder: Path) -> Path:
    """The fault suite's direct-mode gateway config, its route on the load generator's
    topics (``soak/devices/+/telemetry``)."""
    path = stack.write_gateway_config(
        folder / "gateway.yaml", settings, "direct", settings.mqtt_port
    )
    config = yaml.safe_load(path.read_text())
    device_filter = f"{PREFIX}/devices/+/telemetry"
    config["mqtt"]["filters"] = [f"{device_filter}/#"]
    config["routes"][0]["filter"] = device_filter
    path.write_text(yaml.safe_dump(config))
    return path


async def start_load(soak: Soak, args: argparse.Namespace, children: Children) -> None:
    username, password = stack.device_login(soak.settings)
    argv = [
        sys.executable, "-m", "bench.loadgen", "--prefix", PREFIX,
        "--devices", str(args.devices), "--connections", str(args.connections),
        "--rate", str(args.rate), "--duration", str(args.duration), "--progress", "1",
        "--host", soak.settings.host, "--port", str(soak.settings.mqtt_port),
    ]  # fmt: skip
    env = dict(os.environ)
    if username is not None:
        argv += ["--username", username]
        env[PASSWORD_ENV] = password or ""
    child = await children.spawn(
        "loadgen", *argv, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    soak.load_started = time.monotonic()
    soak.load = LoadGen(child)


async def soak_loop(soak: Soak, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Samples every ``args.sample`` seconds until the load generator is done, then until
    the worker has applied the rest of the log (at most ``DRAIN_S``)."""
    assert soak.load is not None
    samples: list[dict[str, Any]] = []
    process = soak.load.child.process
    next_at = soak.load_started
    while process.returncode is None:
        next_at += args.sample
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), max(0.0, next_at - time.monotonic()))
        soak.check_alive()
        if process.returncode is None:
            samples.append(await soak.sample("load"))
            say(progress(samples[-1], samples[-2] if len(samples) > 1 else {"t": 0, "acked": 0}))
    final = await soak.load.wait(30, check=False)
    say(
        f"load done: {final['acked']:,} PUBACKs ({final['rate']:,} msg/s), {final['failed']} failed"
    )
    deadline = time.monotonic() + DRAIN_S
    while True:
        sample = await soak.sample("drain")
        if (sample["lag"] == 0 and not sample.get("outbox_backlog")) or (
            time.monotonic() > deadline
        ):
            break
        await asyncio.sleep(2)
    samples.append(sample)
    say(f"drained: lag {sample['lag']}, outbox backlog {sample.get('outbox_backlog')}")
    return samples


@dataclass(frozen=True, slots=True)
class Store:
    """The worker's store: its URL and a probe reading it from the side."""

    url: str
    probe: StoreProbe


def open_store(args: argparse.Namespace, settings: DevStackSettings, folder: Path) -> Store:
    if args.store == "sqlite":
        path = folder / "state.db"
        return Store(f"sqlite:///{path}", SqliteProbe(path))
    dsn = settings.pg_dsn()
    migrated = PostgresStore(dsn, schema=SCHEMA)
    migrated.migrate()
    migrated.close()
    return Store(f"{dsn}?schema={SCHEMA}", PostgresProbe(dsn, SCHEMA))


async def start_apps(
    settings: DevStackSettings, folder: Path, store: Store, retention: Retention
) -> Soak:
    """The gateway and the worker (with ``retention``), each ready before the next starts
    (as the fault suite does: the first creates the schema registry's topic)."""
    rules = folder / "alerts.yaml"
    rules.write_text(RULES)
    gateway = stack.gateway_process(settings, gateway_config(settings, folder), 1, folder)
    gateway.env |= {
        "IOT_GATEWAY_MQTT__CLIENT_ID": "soak-gw",
        "IOT_GATEWAY_EDGE__INSTANCE": "soak-gw",
    }
    worker = stack.worker_process(
        settings, stack.WorkerStore(folder / "state.db", GROUP), rules, folder
    )
    worker.env |= {"IOT_STREAMS_STORE": store.url, **retention.worker_env()}
    soak = Soak(settings, gateway, worker, store.probe)
    for app in soak.apps():
        app.start()
        await asyncio.to_thread(app.wait_ready, 120)
    say(f"gateway (pid {gateway.pid}) and worker (pid {worker.pid}) ready; load starts")
    return soak


def run_config(args: argparse.Namespace, retention: Retention) -> dict[str, Any]:
    return {
        "rate": args.rate,
        "duration_s": args.duration,
        "sample_s": args.sample,
        "devices": args.devices,
        "connections": args.connections,
        "store": args.store,
        "alert_rules": yaml.safe_load(RULES)["rules"],
        "retention_s": asdict(retention),
        "retention_note": retention.text(),
        "settle_s": retention.settle_s(),
    }


def criteria_for(args: argparse.Namespace, retention: Retention) -> soak_report.Criteria:
    warmup = args.warmup
    if warmup is None:
        warmup = max(args.duration / 3, 2 * retention.settle_s())
    return soak_report.Criteria(
        warmup_s=warmup,
        tolerance_pct=args.tolerance,
        rate=args.rate,
        lag_bound_s=args.lag_bound,
    )


async def run(args: argparse.Namespace) -> int:
    retention = Retention(
        args.retention_1m, args.retention_1h, args.outbox_keep, args.dedupe_horizon
    )
    criteria = criteria_for(args, retention)
    if args.duration - criteria.warmup_s < criteria.smooth_s + 3 * args.sample:
        say(
            f"the warm-up ({criteria.warmup_s:.0f} s: a third of the run, at least twice the "
            f"{retention.settle_s():g} s the retained state takes to settle) leaves too little "
            f"to judge (one {criteria.smooth_s:.0f} s averaging span and three samples): run "
            "longer (--duration), or shorten the retentions or --warmup"
        )
        return 2
    folder = (args.work / f"soak-{time.strftime('%Y%m%dT%H%M%S')}").resolve()
    folder.mkdir(parents=True)
    shared = DevStackSettings.from_env()
    settings = isolated_settings(folder / "stack", secure=shared.secure, gateway_mode="direct")
    say(
        f"soak: {args.rate:g} msg/s from {args.devices} devices for {args.duration:.0f} s, "
        f"{args.store} store, sampled every {args.sample:g} s; warm-up {criteria.warmup_s:.0f} s"
    )
    say(f"retention: {retention.text()}")
    say(f"starting an isolated stack in {folder} (Kafka {settings.kafka_bootstrap})")
    children = Children()
    soak: Soak | None = None
    try:
        try:
            await asyncio.to_thread(stack.start_stack, settings, lambda _: None)
        except Exception as exc:
            raise RuntimeError(
                f"the isolated stack did not start ({exc}); `make bootstrap` installs Kafka, "
                f"Mosquitto and PostgreSQL; their logs are under {folder / 'stack'}"
            ) from exc
        probe = open_store(args, settings, folder)
        soak = await start_apps(settings, folder, probe, retention)
        await start_load(soak, args, children)
        samples = await soak_loop(soak, args)
        exits = {app.name: await asyncio.to_thread(app.terminate) for app in soak.apps()}
        assert soak.load is not None
        verdict = soak_report.judge(samples, criteria)
        report = {
            "benchmark": "soak",
            "what": "one direct-mode gateway and one stream worker under steady load: "
            "store size and RSS after a warm-up",
            "config": run_config(args, retention),
            "criteria": asdict(criteria),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg_at_end": os.getloadavg(),
            },
            "verdict": verdict,
            "loadgen": soak.load.final,
            "exit_codes": exits,
            "run_dir": str(folder),
            "samples": samples,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        soak_report.chart(report, args.out.with_suffix(".png"))
        print(soak_report.summary(report), flush=True)
        say(f"wrote {args.out} and {args.out.with_suffix('.png')}; logs in {folder}")
        if not verdict["ok"]:
            say(
                "not flat or not kept up: see the table above, the chart, and the logs; a "
                "series still growing may need a longer run (--duration) or points at state "
                "that is not bounded"
            )
        return 0 if verdict["ok"] else 1
    finally:
        await children.stop_all()
        if soak is not None:
            for app in soak.apps():
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(app.terminate, 20)
        if soak is not None:
            soak.probe.close()
        kill_leftovers()
        await asyncio.to_thread(stack.stop_stack, settings, lambda _: None)
        say("isolated stack stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=(__doc__ or "").split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--rate", type=float, default=2000.0, help="messages/s offered (default 2000)")
    add("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    add("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    add("--devices", type=int, default=1000, help="simulated devices (default 1000)")
    add("--connections", type=int, default=8, help="MQTT connections they share (default 8)")
    add("--store", choices=("sqlite", "postgresql"), default="sqlite", help="(default sqlite)")
    add("--retention-1m", type=float, default=300.0, help="1m windows kept, s (default 300)")
    add("--retention-1h", type=float, default=0.0, help="1h windows kept, s (default 0)")
    add("--outbox-keep", type=float, default=60.0, help="published outbox rows kept, s (60)")
    add("--dedupe-horizon", type=float, default=300.0, help="notifier dedupe records, s (300)")
    add("--warmup", type=float, default=None, help="s (default: a third, >= 2x settling)")
    add(
        "--tolerance", type=float, default=5.0, help="flat: growth < this %% of the mean per 10 min"
    )
    add("--lag-bound", type=float, default=10.0, help="kept up: lag < this many seconds of load")
    add("--out", type=Path, default=RESULTS / "soak.json", help="JSON (and .png beside it)")
    add("--work", type=Path, default=Path(".local/soak"), help="the stack's state and logs")
    args = parser.parse_args(argv)
    if min(args.rate, args.duration, args.sample) <= 0:
        parser.error("--rate, --duration and --sample must be positive")

    async def guarded() -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await asyncio.wait_for(run(args), args.duration + 900)

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; everything the soak started was stopped", file=sys.stderr)
        return 130
    except TimeoutError:
        print(f"the soak overran {args.duration + 900:.0f} s and was stopped", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
