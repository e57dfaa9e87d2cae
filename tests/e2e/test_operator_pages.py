"""The operator's pages in headless Chromium against a gateway and a worker of the test's own.

Each page is opened with a bearer token (given in the address's fragment, as a link would),
shows what was just published, and follows what is published next without a reload. The
worker runs with auth on: an operator's token reads and commands every device, a viewer's
token reads one device and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings
from contracts.times import rfc3339
from contracts.topics import COMMANDS
from devstack import DevStackSettings
from security import TokenStore
from streams.query.positions import topic_partitions
from tests.browser import Page, chromium
from tests.clients import mosquitto_pub
from tests.e2e.query_harness import QueryStack, gateway_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

POLICY = """\
version: 1
principals:
  - {id: operator, kind: api_client}
  - {id: viewer, kind: api_client}
rules:
  - id: operator-reads-and-commands-every-device
    effect: allow
    principals: [operator]
    http: {devices: ["*"], topics: ["devices/+/telemetry", "devices/+/commands"]}
  - id: viewer-reads-one-device
    effect: allow
    principals: [viewer]
    http: {devices: ["%s"], topics: ["devices/+/telemetry"]}
"""


REFUSED = (
    "document.getElementById('status').textContent.includes('403') &&"
    "document.getElementById('status').textContent"
)
"""The page's status line once the API refused the token (403), else false."""


class Pages:
    """The stack, its worker's address and the two tokens."""

    def __init__(self, stack: QueryStack, port: int, operator: str, viewer: str) -> None:
        self.stack = stack
        self.base = f"http://127.0.0.1:{port}"
        self.operator = operator
        self.viewer = viewer
        self.viewed = stack.device("viewed")

    def url(self, path: str, token: str) -> str:
        return f"{self.base}{path}#token={token}"


@pytest.fixture(scope="module")
def pages(
    settings: DevStackSettings,
    kafka_admin: KafkaClientSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Pages]:
    root = tmp_path_factory.mktemp("pages")
    with gateway_stack(settings, kafka_admin, root) as stack:
        (root / "policy.yaml").write_text(POLICY % stack.device("viewed"))
        tokens = TokenStore(root / "tokens.json")
        operator, viewer = tokens.add("operator").token, tokens.add("viewer").token
        port = stack.start_worker(
            IOT_STREAMS_QUERY__AUTH__ENABLED="true",
            IOT_STREAMS_QUERY__AUTH__POLICY_FILE=str(root / "policy.yaml"),
            IOT_STREAMS_QUERY__AUTH__TOKENS_FILE=str(tokens.path),
        )
        yield Pages(stack, port, operator, viewer)


def _reading(seq: int, **metrics: float) -> dict[str, object]:
    return {"seq": seq, "ts": int(time.time() * 1000), "metrics": metrics}


async def _publish(pages: Pages, device: str, reading: dict[str, object]) -> None:
    await asyncio.to_thread(pages.stack.publish_logged, device, reading)


def _rows(table: str) -> str:
    """The text of a table body's rows, one line each (an expression for the page)."""
    return f"[...document.querySelectorAll('#{table} tr')].map(r => r.textContent).join('\\n')"


async def _shown(page: Page, table: str, *texts: str) -> str:
    """Waits until one row of ``table`` holds every one of ``texts``; returns that row."""
    wanted = json.dumps(list(texts))
    row: str = await page.wait_for(
        f"[...document.querySelectorAll('#{table} tr')].map(r => r.textContent)"
        f".find(t => {wanted}.every(w => t.includes(w)))"
    )
    return row


async def test_the_overview_shows_the_fleet_and_follows_it_live(pages: Pages) -> None:
    first = pages.stack.device("fleet-1")
    await _publish(pages, first, _reading(1, temp_c=20.0))
    async with chromium() as page:
        await page.goto(pages.url("/ui", pages.operator))
        await _shown(page, "devices", first)
        assert "token=" not in await page.evaluate("location.href")  # kept, not shown
        total = int(await page.text("#devices-total"))
        assert total >= 1
        assert int(await page.text("#devices-seen")) >= 1
        assert await page.evaluate("document.querySelectorAll('#partitions tr').length") == 3
        await _shown(page, "workers", "worker (", "ready")
        await _shown(page, "workers", "gateway", "ready")  # named in query.processes
        assert await page.text("#ingest-chart .x-label") == "time (UTC)"
        assert await page.text("#ingest-chart .y-label") == "records / s"

        second = pages.stack.device("fleet-2")
        await _publish(pages, second, _reading(1, temp_c=21.0))
        await _shown(page, "devices", second)  # polled: no reload
        await page.wait_for(
            f"document.getElementById('devices-total').textContent == '{total + 1}'"
        )

        bad = f"{pages.stack.name}/devices/{second}/telemetry"
        settings = pages.stack.settings  # the gateway reads Mosquitto (bridge mode)
        payload = b'{"metrics": "none"}'  # not a map: the gateway rejects it to the DLQ
        await asyncio.to_thread(mosquitto_pub, settings, bad, payload, port=settings.broker_port)
        reason = await page.wait_for("document.querySelector('#dlq th[scope=row]')?.textContent")
        row = await _shown(page, "dlq", reason)
        assert row.removeprefix(reason).startswith("1")  # one rejection in the last hour


async def test_the_device_page_shows_values_chart_loss_and_alerts_and_follows_them_live(
    pages: Pages,
) -> None:
    device = pages.stack.device("page")
    await _publish(pages, device, _reading(1, temp_c=21.5, humidity_pct=40.0))
    await _publish(pages, device, _reading(3, temp_c=22.5))  # seq 2 never comes
    async with chromium() as page:
        await page.goto(pages.url(f"/ui/devices/{device}?metric=temp_c", pages.operator))
        await page.wait_for("document.getElementById('status').textContent == 'live'")
        assert await page.text("h1") == device
        await _shown(page, "latest", "temp_c", "22.5")
        await _shown(page, "latest", "humidity_pct", "40")
        assert await page.text("#live-value") == "22.5"
        assert await page.wait_for("document.querySelector('#chart polygon.band') !== null")
        assert await page.text("#chart .x-label") == "time (UTC)"
        assert await page.text("#chart .y-label") == "temp_c"
        await _shown(page, "loss", "missing", "1 in 1 gaps: 2")
        await _shown(page, "loss", "duplicates absorbed", "0")

        ts = int(time.time() * 1000)
        await _publish(pages, device, {"seq": 4, "ts": ts, "metrics": {"temp_c": 77.25}})
        await page.wait_for("document.getElementById('live-value').textContent == '77.25'")
        assert await page.text("#live-ts") == f"temp_c at {rfc3339(ts)}"
        await _shown(page, "latest", "temp_c", "77.25", rfc3339(ts))
        assert await page.evaluate("document.querySelectorAll('#chart .dots circle').length") == 1
        await _shown(page, "alert-history", "temperature-high", "RAISED")  # 77.25 > 35
        await _shown(page, "alert-states", "temperature-high", "RAISED")


async def test_an_operator_sends_a_command_from_the_device_page(pages: Pages) -> None:
    device = pages.stack.device("command")
    await _publish(pages, device, _reading(1, temp_c=20.0))
    consumer = AIOKafkaConsumer(
        group_id=None, enable_auto_commit=False, **pages.stack.kafka.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        count = (await topic_partitions(pages.stack.kafka, [COMMANDS.name]))[COMMANDS.name]
        tps = [TopicPartition(COMMANDS.name, p) for p in range(count)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        async with chromium() as page:
            await page.goto(pages.url(f"/ui/devices/{device}", pages.operator))
            await page.wait_for("document.getElementById('status').textContent == 'live'")
            await page.evaluate(
                "document.getElementById('command-name').value = 'set_interval';"
                "document.getElementById('command-params').value = 'seconds=30';"
                "document.getElementById('command-form').requestSubmit()"
            )
            sent = await page.wait_for(
                "document.getElementById('command-status').textContent.startsWith('sent') &&"
                "document.getElementById('command-status').textContent"
            )
            assert sent.startswith("sent set_interval (")
        key = device.encode()
        async with asyncio.timeout(60):
            while True:  # until the relay published it
                batches = await consumer.getmany(timeout_ms=500)
                mine = [r for records in batches.values() for r in records if r.key == key]
                if mine:
                    break
        assert dict(mine[0].headers)["kind"] == b"command"
    finally:
        await consumer.stop()


async def test_the_alerts_page_shows_active_alerts_and_transitions_live_by_device_and_rule(
    pages: Pages,
) -> None:
    device = pages.stack.device("alerts")
    await _publish(pages, device, _reading(1, temp_c=20.0, humidity_pct=90.0))
    async with chromium() as page:
        await page.goto(pages.url(f"/ui/alerts?device_id={device}", pages.operator))
        await _shown(page, "active", device, "humidity-high")
        await page.wait_for("document.getElementById('status').textContent == 'live'")
        await _publish(pages, device, _reading(2, temp_c=40.0))
        await _shown(page, "transitions", device, "temperature-high", "RAISED")
        await _shown(page, "active", device, "temperature-high")
        await _publish(pages, device, _reading(3, temp_c=20.0))
        await _shown(page, "transitions", device, "temperature-high", "CLEARED")

        await page.goto(
            pages.url(f"/ui/alerts?device_id={device}&rule=humidity-high", pages.operator)
        )
        await _shown(page, "transitions", device, "humidity-high", "RAISED")
        shown = await page.evaluate(_rows("transitions")) + await page.evaluate(_rows("active"))
        assert "temperature-high" not in shown
        assert (
            await page.evaluate("document.getElementById('filter-rule').value") == "humidity-high"
        )


async def test_a_device_scoped_token_sees_only_its_device(pages: Pages) -> None:
    mine, other = pages.viewed, pages.stack.device("not-viewed")
    await _publish(pages, mine, _reading(1, temp_c=5.5))
    await _publish(pages, other, _reading(1, temp_c=6.5))
    async with chromium() as page:
        await page.goto(pages.url(f"/ui/devices/{mine}", pages.viewer))
        await _shown(page, "latest", "temp_c", "5.5")
        await page.wait_for("document.getElementById('status').textContent == 'live'")
        await _publish(pages, mine, _reading(2, temp_c=7.75))
        await page.wait_for("document.getElementById('live-value').textContent == '7.75'")
        await page.evaluate(
            "document.getElementById('command-name').value = 'reboot';"
            "document.getElementById('command-form').requestSubmit()"
        )
        refused = await page.wait_for("document.getElementById('command-status').textContent")
        assert refused.startswith("Not allowed for this token (403")

        await page.goto(pages.url(f"/ui/devices/{other}", pages.viewer))
        status = await page.wait_for(REFUSED)
        assert status.startswith("Not allowed for this token")
        assert "6.5" not in await page.text("#latest")

        await page.goto(pages.url("/ui", pages.viewer))
        status = await page.wait_for(REFUSED)
        assert status.startswith("Not allowed for this token")
        assert await page.text("#devices") == ""

        await page.goto(pages.url("/ui/alerts", pages.viewer))
        await page.wait_for(REFUSED)
        await page.goto(pages.url(f"/ui/alerts?device_id={mine}", pages.viewer))
        await page.wait_for("document.getElementById('status').textContent == 'live'")
        assert other not in await page.text("main")
