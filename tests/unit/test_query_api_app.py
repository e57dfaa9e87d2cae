"""The query API without services: token scopes per route, the pages' CSP, SSE slots,
resumes and heartbeats, alert paging and history by positions, start-up failures.

No services: the ``/api`` sub-application runs on aiohttp's test server with a fake query
service; streams run against fake log readers on a real socket (``AppRunner``), so a client
leaving is a real closed connection.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
import types
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from contracts.kafka import KafkaClientSettings
from security import TokenStore
from streams.errors import ConfigError
from streams.projections.alerts import AlertState
from streams.query import BadParameterError, QueryApi
from streams.query import api as api_module
from streams.query.auth import ROUTE_SCOPES
from streams.query.history import alert_history
from streams.query.logtail import LogReader, parse_vector
from streams.query.metrics import QueryMetrics
from streams.query.pages import CSP, mount_pages, ui_files
from streams.query.params import (
    AlertsQuery,
    Consistency,
    DevicesQuery,
    HistoryQuery,
    parse_alerts,
)
from streams.query.positions import Reflects
from streams.query.service import QueryService
from streams.query.sse import SseLimits, Subscriptions, stream_log
from streams.settings import QueryAuthSettings, QuerySettings
from streams.store.sqlite import SqliteStore

# -- 1. auth: the scope is the route's, not whatever query parameter is there ----------------

POLICY = """\
version: 1
principals:
  - {id: dashboard, kind: api_client}
rules:
  - id: dashboard-reads-sensors
    effect: allow
    principals: [dashboard]
    http: {devices: ["sensor-*"], topics: ["devices/+/telemetry"]}
"""


class _AnyService:
    """Answers every pull query with 200 (the handlers' parsing still runs)."""

    def __getattr__(self, name: str) -> Callable[..., Awaitable[dict[str, object]]]:
        async def answer(*_: object, **__: object) -> dict[str, object]:
            return {"ok": name}

        return answer


@pytest.fixture
async def scoped_client(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], str]]:
    (tmp_path / "policy.yaml").write_text(POLICY)
    token = TokenStore(tmp_path / "tokens.json").add("dashboard").token
    auth = QueryAuthSettings(
        policy_file=tmp_path / "policy.yaml", tokens_file=tmp_path / "tokens.json", reload_every_s=0
    )
    runtime = types.SimpleNamespace(
        settings=types.SimpleNamespace(query=QuerySettings(auth=auth)),
        metrics=types.SimpleNamespace(registry=CollectorRegistry()),
        store=None,
    )
    api = QueryApi(runtime)  # type: ignore[arg-type]
    api.service = _AnyService()  # type: ignore[assignment]
    root = web.Application()
    root.add_subapp("/api", api.app())
    async with TestClient(TestServer(root)) as client:
        yield client, token


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/devices", 403),
        ("/api/devices?device_id=sensor-1", 403),  # the list is every device, whatever ?device_id
        ("/api/devices/sensor-1", 200),
        ("/api/devices/plant-7", 403),
        ("/api/alerts?device_id=sensor-1", 200),
        ("/api/alerts?device_id=plant-7", 403),
        ("/api/alerts", 403),
        ("/api/alerts/history?device_id=plant-7&from=0", 403),
        ("/api/overview", 403),  # the fleet is every device
    ],
)
async def test_a_device_scoped_token_reads_only_what_the_route_scopes_to_its_devices(
    scoped_client: tuple[TestClient[Any, Any], str], path: str, status: int
) -> None:
    client, token = scoped_client
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status == status, await response.text()


async def test_commanding_a_device_needs_a_rule_for_its_commands_topic(
    scoped_client: tuple[TestClient[Any, Any], str], tmp_path: Path
) -> None:
    client, token = scoped_client
    headers = {"Authorization": f"Bearer {token}"}
    body = {"name": "reboot"}
    response = await client.post("/api/devices/sensor-1/commands", json=body, headers=headers)
    assert response.status == 403  # reading sensor-1 is not commanding it
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace('"devices/+/telemetry"', '"devices/+/commands"'))
    os.utime(policy, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a visible change
    response = await client.post("/api/devices/sensor-1/commands", json=body, headers=headers)
    assert response.status == 503, await response.text()  # let through; no store here
    response = await client.post("/api/devices/plant-7/commands", json=body, headers=headers)
    assert response.status == 403


async def test_a_narrowed_policy_applies_without_a_restart(
    scoped_client: tuple[TestClient[Any, Any], str], tmp_path: Path
) -> None:
    client, token = scoped_client
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/devices/sensor-1", headers=headers)).status == 200
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace('"sensor-*"', '"plant-*"'))
    os.utime(policy, ns=(time.time_ns(), time.time_ns() + 1_000_000))  # a visible change
    assert (await client.get("/api/devices/sensor-1", headers=headers)).status == 403


def test_the_api_refuses_to_run_open_unless_told_to() -> None:
    runtime = types.SimpleNamespace(
        settings=types.SimpleNamespace(query=QuerySettings()),
        metrics=types.SimpleNamespace(registry=CollectorRegistry()),
    )
    with pytest.raises(ConfigError, match=r"query\.auth\.enabled=false explicitly"):
        QueryApi(runtime).app()  # type: ignore[arg-type]


def test_every_route_of_the_api_has_a_scope() -> None:
    runtime = types.SimpleNamespace(
        settings=types.SimpleNamespace(query=QuerySettings(auth=QueryAuthSettings(enabled=False))),
        metrics=types.SimpleNamespace(registry=CollectorRegistry()),
    )
    app = QueryApi(runtime).app()  # type: ignore[arg-type]
    names = {resource.name for resource in app.router.resources()}
    assert names == set(ROUTE_SCOPES)


# -- 2. the pages: data is text, never markup; a CSP forbids anything else -------------------

PAGES = ("/ui", "/ui/devices/sensor-1", "/ui/alerts")


def _ui_texts(suffix: str) -> dict[str, str]:
    return {
        entry.name: entry.read_text()
        for entry in ui_files().iterdir()
        if entry.name.endswith(suffix)
    }


def test_the_pages_never_parse_api_data_as_html() -> None:
    scripts = _ui_texts(".js")
    assert {"common.js", "chart.js", "overview.js", "device.js", "alerts.js"} <= set(scripts)
    for name, script in scripts.items():
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in script, f"{name}: {sink}"
    for name, html in _ui_texts(".html").items():
        assert re.search(r"<script[^>]*>\s*[^<\s]", html) is None, f"{name}: an inline script"
        assert "<style" not in html, f"{name}: an inline style"
        assert re.search(r"\son[a-z]+=", html) is None, f"{name}: an inline event handler"


@pytest.fixture
async def pages_client() -> AsyncIterator[TestClient[Any, Any]]:
    app = web.Application()
    mount_pages(app)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_every_page_and_file_is_served_with_a_csp_that_allows_only_its_own_origin(
    pages_client: TestClient[Any, Any],
) -> None:
    directives = dict(part.partition(" ")[::2] for part in CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"  # no 'unsafe-inline'
    assert directives["connect-src"] == "'self'"
    for path in PAGES:
        response = await pages_client.get(path)
        assert response.status == 200, path
        assert response.headers["Content-Security-Policy"] == CSP
        html = await response.text()
        for asset in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html):
            served = await pages_client.get(asset)
            assert served.status == 200, asset
            assert served.headers["Content-Security-Policy"] == CSP
            assert served.content_type in ("text/javascript", "text/css"), asset
    imported = set()
    for script in _ui_texts(".js").values():
        imported.update(re.findall(r'from "(/ui/static/[^"]+)"', script))
    for asset in imported:
        assert (await pages_client.get(asset)).status == 200, asset


@pytest.mark.parametrize("name", ["overview.html", "nothing.js", "..%2Fpages.py"])
async def test_only_the_pages_scripts_and_styles_are_static_files(
    pages_client: TestClient[Any, Any], name: str
) -> None:
    assert (await pages_client.get(f"/ui/static/{name}")).status == 404


# -- 3, 4, 6. streams: slots released, departed clients noticed, backlogs served -------------


def _subscriptions() -> Subscriptions:
    return Subscriptions(64, QueryMetrics(CollectorRegistry()))


class _Idle:
    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]:
        await asyncio.sleep(0.05)
        return []

    async def behind(self, partitions: object) -> int | None:
        return 0


class _BusyOtherDevices:
    """A partition that always has records, none of them for the subscribed device."""

    def __init__(self) -> None:
        self.offset = 0

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]:
        await asyncio.sleep(0.01)
        self.offset += 1
        return [(0, types.SimpleNamespace(offset=self.offset, key=b"other", value=b""))]

    async def behind(self, partitions: object) -> int | None:
        return 0


class _Backlog:
    """A partition ``backlog`` records past the client's position, growing 1 per read."""

    def __init__(self, backlog: int) -> None:
        self.pos = 0
        self.high = backlog

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]:
        await asyncio.sleep(0)
        n = min(max_records, self.high - self.pos)
        records = [
            (0, types.SimpleNamespace(offset=self.pos + i, key=b"d", value=b"")) for i in range(n)
        ]
        self.pos += n
        self.high += 1
        return records

    async def behind(self, partitions: object) -> int | None:
        return self.high - self.pos


async def _none(record: object) -> dict[str, object] | None:
    return None


async def _offset(record: Any) -> dict[str, object] | None:
    return {"x": record.offset}


async def _serve(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/s", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


async def test_a_client_gone_before_the_response_started_releases_its_slot() -> None:
    subs = _subscriptions()

    async def handler(request: web.Request) -> web.StreamResponse:
        assert subs.admit() is None
        await asyncio.sleep(0.3)  # the LogReader starting and seeking; the client leaves
        return await stream_log(
            request, _Idle(), {0: 0}, _none, event="x", limits=SseLimits(), subscriptions=subs
        )

    runner = await _serve(handler)
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        writer.write(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await asyncio.sleep(0.6)
        assert subs.open == 0
    finally:
        await runner.cleanup()


async def test_a_failing_prepare_releases_the_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: web.StreamResponse, request: object) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    monkeypatch.setattr(web.StreamResponse, "prepare", refuse)
    subs = _subscriptions()
    assert subs.admit() is None
    request: Any = object()
    await stream_log(
        request, _Idle(), {0: 0}, _none, event="x", limits=SseLimits(), subscriptions=subs
    )
    assert subs.open == 0


async def test_an_abandoned_stream_on_a_busy_partition_is_noticed_within_heartbeats() -> None:
    subs = _subscriptions()
    limits = SseLimits(max_behind=10_000, write_timeout_s=1.0, heartbeat_s=0.2)

    async def handler(request: web.Request) -> web.StreamResponse:
        assert subs.admit() is None
        return await stream_log(
            request,
            _BusyOtherDevices(),
            {0: 0},
            _none,
            event="r",
            limits=limits,
            subscriptions=subs,
        )

    runner = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/s")
            await response.content.readuntil(b"\n\n")  # hello
            response.close()
        await asyncio.sleep(2.0)  # ten heartbeats
        assert subs.open == 0
    finally:
        subs.stopping.set()
        await runner.cleanup()


async def test_a_client_resuming_far_behind_is_served_its_whole_backlog() -> None:
    subs = _subscriptions()
    backlog = 12_000  # more than max_behind (10,000)

    async def handler(request: web.Request) -> web.StreamResponse:
        assert subs.admit() is None
        return await stream_log(
            request,
            _Backlog(backlog),
            {0: 0},
            _offset,
            event="reading",
            limits=SseLimits(),
            subscriptions=subs,
        )

    runner = await _serve(handler)
    readings = 0
    try:
        async with aiohttp.ClientSession() as session:
            response = await session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/s")
            while readings <= backlog:
                frame = await asyncio.wait_for(response.content.readuntil(b"\n\n"), 10)
                assert not frame.startswith(b"event: disconnect"), frame
                readings += frame.startswith(b"event: reading")
            response.close()
    finally:
        subs.stopping.set()
        await runner.cleanup()
    assert readings > backlog


# -- 5. a resume position retention removed is reported, not skipped silently ----------------


async def test_hello_names_the_records_retention_removed_before_the_resume_position() -> None:
    subs = _subscriptions()
    frames: list[bytes] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        assert subs.admit() is None
        subs.stopping.set()  # serve the hello, then end
        return await stream_log(
            request,
            _Idle(),
            {0: 500},
            _none,
            event="r",
            limits=SseLimits(),
            subscriptions=subs,
            requested={0: 42},
        )

    runner = await _serve(handler)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/s"
            async with session.get(url) as response:
                frames.append(await response.content.readuntil(b"\n\n"))
    finally:
        await runner.cleanup()
    assert b"id: 0:499\n" in frames[0]
    assert b'"gap":[{"partition":0,"from":42,"to":500}]' in frames[0]


async def test_log_readers_never_jump_to_the_end_on_a_lost_position() -> None:
    reader = LogReader(KafkaClientSettings(), "t")
    try:
        assert reader._consumer._auto_offset_reset == "earliest"
    finally:
        await reader._consumer.stop()  # never started: only closes it


# -- 7. /api/alerts is paged ------------------------------------------------------------------


class _Positions:
    partitions = 2

    def partition_of(self, device_id: str) -> int:
        return 0

    async def eventual(self, partitions: list[int]) -> Reflects:
        return Reflects("eventual", {}, {}, 0, 0)


class _AlertStore:
    def __init__(self, states: list[AlertState]) -> None:
        self.states = sorted(states, key=lambda a: (a.device_id, a.rule))

    def alert_page(
        self,
        after: tuple[str, str] | None,
        limit: int,
        *,
        device_id: str | None = None,
        active_only: bool = False,
    ) -> list[AlertState]:
        """The store's keyset page (the real adapters are held to it by the contract)."""
        return [
            a
            for a in self.states
            if device_id in (None, a.device_id)
            and (after is None or (a.device_id, a.rule) > after)
            and (a.active or not active_only)
        ][:limit]


def test_alert_pages_are_bounded_and_a_limit_above_1000_is_refused() -> None:
    assert parse_alerts({}).limit == 100
    with pytest.raises(BadParameterError) as caught:
        parse_alerts({"limit": "1001"})
    assert caught.value.parameter == "limit"
    with pytest.raises(BadParameterError):
        parse_alerts({"after": "no-rule"})


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 3), st.booleans()), unique_by=lambda t: t[:2]
    ),
    st.integers(1, 7),
)
def test_paging_alerts_returns_each_state_once(
    rows: list[tuple[int, int, bool]], limit: int
) -> None:
    states = [AlertState(f"d-{d:02d}", f"r{r}", active, 0, 1.0, "e") for d, r, active in rows]
    service = QueryService([_AlertStore(states)], _Positions(), None, None)  # type: ignore[list-item, arg-type]

    async def every_page() -> list[tuple[object, object]]:
        seen: list[tuple[object, object]] = []
        after = None
        for _ in range(len(states) + 2):
            body = await service.active_alerts(
                AlertsQuery(None, True, after, limit), Consistency("eventual", 1)
            )
            page: Any = body["alerts"]
            assert len(page) <= limit
            seen += [(a["device_id"], a["rule"]) for a in page]
            if body["next_after"] is None:
                return seen
            device, _, rule = str(body["next_after"]).partition("/")
            after = (device, rule)
        raise AssertionError("paging did not end")

    seen = asyncio.run(every_page())
    assert seen == [
        (a.device_id, a.rule)
        for a in sorted(states, key=lambda a: (a.device_id, a.rule))
        if a.active
    ]


# -- 8. alert history: paged by positions, scan cap per record, bad records skipped ----------


class _FakeLog:
    """partition -> [(key, ts)]; reads up to max_records of the lowest unread partition."""

    def __init__(self, parts: Mapping[int, list[tuple[bytes, int]]], first: int = 0) -> None:
        self.parts = parts
        self.first = first
        self.pos: dict[int, int] = {}

    async def offsets_at(self, partitions: list[int], at_ms: int) -> dict[int, int]:
        return dict.fromkeys(partitions, self.first)

    async def end_offsets(self, partitions: list[int]) -> dict[int, int]:
        return {p: len(self.parts[p]) for p in partitions}

    async def seek(self, starts: Mapping[int, int]) -> dict[int, int]:
        self.pos = {p: max(o, self.first) for p, o in starts.items()}
        return dict(self.pos)

    async def read(self, timeout_ms: int, max_records: int = 500) -> list[tuple[int, Any]]:
        for p in sorted(self.pos):
            o = self.pos[p]
            if o < len(self.parts[p]):
                chunk = self.parts[p][o : o + max_records]
                self.pos[p] += len(chunk)
                return [
                    (p, types.SimpleNamespace(offset=o + i, key=k, value=(k, ts, p, o + i)))
                    for i, (k, ts) in enumerate(chunk)
                ]
        return []


async def _decode(value: Any) -> dict[str, Any] | None:
    key, ts, p, o = value
    if key == b"garbage":
        return None
    return {"ts": ts, "event_id": f"{p}:{o}", "device_id": key.decode()}


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 15), st.integers(0, 25), st.integers(0, 25))
def test_history_pages_by_position_return_every_alert_once(limit: int, n0: int, n1: int) -> None:
    parts = {0: [(b"a", 100 + t) for t in range(n0)], 1: [(b"b", 100 + t) for t in range(n1)]}
    query = HistoryQuery(None, 0, 10**12, limit)

    async def every_page() -> list[str]:
        got: list[str] = []
        after = None
        for _ in range(n0 + n1 + 2):
            body = await alert_history(_FakeLog(parts), [0, 1], query, _decode, after=after)
            got += [str(a["event_id"]) for a in body["alerts"]]  # type: ignore[attr-defined]
            if body["next_after"] is None:
                assert not body["truncated"]
                return got
            after = parse_vector(str(body["next_after"]), "after", [0, 1])
        raise AssertionError("paging did not end")

    got = asyncio.run(every_page())
    assert sorted(got) == sorted([f"0:{o}" for o in range(n0)] + [f"1:{o}" for o in range(n1)])
    assert len(got) == len(set(got))


async def test_history_stops_at_the_scan_cap_even_without_a_match() -> None:
    log = _FakeLog({0: [(b"other", 1)] * 5_000})
    body = await alert_history(
        log, [0], HistoryQuery("mine", 0, 10**12, 10), _decode, max_scanned=1_200
    )
    assert body["truncated"]
    assert body["scanned"] == 1_200
    assert body["next_after"] == "0:1199"


async def test_history_stops_when_its_time_is_up_and_says_where_to_go_on() -> None:
    log = _FakeLog({0: [(b"other", 1)] * 5_000})
    ticks = iter(range(10**6))
    body = await alert_history(
        log,
        [0],
        HistoryQuery("mine", 0, 10**12, 10),
        _decode,
        max_seconds=300,
        clock=lambda: float(next(ticks)),  # one "second" per record looked at
    )
    assert body["truncated"]
    assert 0 < body["scanned"] < 5_000  # type: ignore[operator]
    assert body["next_after"] == f"0:{body['scanned'] - 1}"  # type: ignore[operator]


async def test_one_client_cannot_run_more_than_two_history_scans_at_once() -> None:
    runtime = types.SimpleNamespace(
        settings=types.SimpleNamespace(query=QuerySettings(auth=QueryAuthSettings(enabled=False))),
        metrics=types.SimpleNamespace(registry=CollectorRegistry()),
    )
    api = QueryApi(runtime)  # type: ignore[arg-type]
    root = web.Application()
    root.add_subapp("/api", api.app())
    async with TestClient(TestServer(root)) as client:
        assert api.history_scans.take("127.0.0.1") is None  # two scans of this client
        assert api.history_scans.take("127.0.0.1") is None  # are running
        response = await client.get("/api/alerts/history?from=0")
        assert response.status == 429, await response.text()
        assert "2 history scans per client" in (await response.json())["reason"]
    assert api.history_scans.open == 2  # the refused request took nothing


def test_one_client_cannot_take_every_stream_slot() -> None:
    slots = Subscriptions(10, QueryMetrics(CollectorRegistry()), per_client=2)
    assert [slots.admit("dashboard") for _ in range(3)] == [None, None, "client_limit"]
    assert slots.admit("ops") is None
    slots.leave("client_left", "dashboard")
    assert slots.admit("dashboard") is None
    assert slots.open == 3
    full = Subscriptions(1, QueryMetrics(CollectorRegistry()), per_client=5)
    assert (full.admit("a"), full.admit("b")) == (None, "busy")


async def test_history_skips_and_counts_undecodable_records() -> None:
    log = _FakeLog({0: [(b"a", 1), (b"garbage", 2), (b"a", 3)]})
    body = await alert_history(log, [0], HistoryQuery(None, 0, 10**12, 10), _decode)
    assert [a["ts_ms"] for a in body["alerts"]] == [1, 3]  # type: ignore[attr-defined]
    assert body["undecodable"] == 1


async def test_history_names_the_records_retention_removed() -> None:
    log = _FakeLog({0: [(b"a", t) for t in range(10)]}, first=4)
    body = await alert_history(log, [0], HistoryQuery(None, 0, 10**12, 100), _decode, after={0: 1})
    assert body["gap"] == [{"partition": 0, "from": 2, "to": 4}]
    assert len(body["alerts"]) == 6  # type: ignore[arg-type]


# -- 9. small ones ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["0:--5", "0:-", "0:5-", "0:+5", "00000000001:1"])
def test_malformed_positions_are_a_400_not_a_500(raw: str) -> None:
    with pytest.raises(BadParameterError):
        parse_vector(raw, "Last-Event-ID", [0, 1])


async def test_a_log_reader_that_fails_to_start_stops_its_consumer() -> None:
    reader = LogReader(KafkaClientSettings(), "t")
    consumer = reader._consumer
    real_stop = consumer.stop
    stopped: list[bool] = []

    async def fail() -> None:
        raise OSError("no broker")

    async def stop() -> None:
        stopped.append(True)
        await real_stop()

    consumer.start = fail
    consumer.stop = stop
    with pytest.raises(OSError, match="no broker"):
        async with reader:
            pass
    assert stopped == [True]


async def test_a_failing_start_closes_the_readers_it_opened(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[int] = []

    class _Store:
        def close(self) -> None:
            closed.append(1)

    async def no_kafka(*_: object) -> dict[str, int]:
        raise OSError("no broker")

    monkeypatch.setattr(api_module, "open_store", lambda _: _Store())
    monkeypatch.setattr(api_module, "topic_partitions", no_kafka)
    runtime = types.SimpleNamespace(
        settings=types.SimpleNamespace(
            query=QuerySettings(read_connections=3),
            store="x",
            kafka=None,
            telemetry_topic="t",
            alerts_topic="a",
        ),
        metrics=types.SimpleNamespace(registry=CollectorRegistry()),
    )
    api = QueryApi(runtime)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="no broker"):
        await api.start()
    assert closed == [1, 1, 1]


class _ThreadRecordingStore(SqliteStore):
    """An SQLite reader that records on which thread each device page is read."""

    threads: list[str]

    def device_page(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.append(threading.current_thread().name)
        return super().device_page(*args, **kwargs)


def test_a_filtered_device_page_is_read_off_the_event_loop(tmp_path: Path) -> None:
    """Finding 8: has_metric scanned the devices table on the event loop (149 ms at 300k)."""
    store = _ThreadRecordingStore(tmp_path / "s.db")
    store.migrate()
    store.threads = []
    service = QueryService([store], _Positions(), None, None)  # type: ignore[arg-type]

    async def pages() -> None:
        eventual = Consistency("eventual", 1)
        await service.devices(DevicesQuery(None, 10, None, None), eventual)
        await service.devices(DevicesQuery(None, 10, None, "temp_c"), eventual)
        await service.devices(DevicesQuery(None, 10, 5, None), eventual)

    asyncio.run(pages())
    main = threading.main_thread().name
    assert store.threads[0] == main
    assert main not in store.threads[1:]
    assert len(store.threads) == 3
    store.close()
