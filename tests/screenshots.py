"""PNG screenshots of the operator's pages from the running dev stack (``make screenshots``).

Run against a stack with simulated devices (``make run``, or ``IOT_SIMULATE=true make up``):
issues a token for the policy's ``operator`` with ``iotctl tokens add``, opens the fleet
overview, the page of a simulated device and the alerts in headless Chromium
(:mod:`tests.browser`), waits until each shows live data, saves the pictures and revokes
the token again. The README shows the pictures it makes, ``docs/images/*.png``.

    python -m tests.screenshots [--out docs/images] [--device ID]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from devstack import DevStackSettings
from tests.browser import Page, chromium

OUT = Path(__file__).resolve().parents[1] / "docs" / "images"
HISTORY_POINTS = 6
"""Ingest samples (10 s apart) the overview's chart shows at least before its picture."""


def _iotctl(*args: str) -> dict[str, object]:
    command = [sys.executable, "-m", "iotctl.main", *args, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def _get(base: str, path: str, token: str) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - the local worker
        f"{base}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        answer: dict[str, object] = json.loads(response.read())
    return answer


def _a_device(base: str, token: str) -> str:
    """A device with an active alert (its page then has an alert history), else any."""
    for path, field in (("/api/alerts?limit=1", "alerts"), ("/api/devices?limit=1", "devices")):
        found = _get(base, path, token)[field]
        assert isinstance(found, list)
        if found:
            return str(found[0]["device_id"])
    raise SystemExit("no device has published yet: start the stack with simulated devices")


async def _shoot(page: Page, url: str, ready: str) -> bytes:
    await page.goto(url)
    await page.wait_for(ready, within=180)
    await asyncio.sleep(1)  # let the last answer's drawing settle before the picture
    return await page.screenshot()


async def take(base: str, token: str, device: str) -> dict[str, bytes]:
    """The pictures, by file name."""
    live = "document.getElementById('status').textContent"
    history = (
        "document.querySelector('#ingest-chart desc')?.textContent.match(/(\\d+) points/)?.[1]"
    )
    async with chromium() as page:
        overview = await _shoot(
            page,
            f"{base}/ui#token={token}",
            f"{live}.startsWith('live') && ({history} ?? 0) >= {HISTORY_POINTS}",
        )
        device_page = await _shoot(
            page,
            f"{base}/ui/devices/{device}?metric=temp_c#token={token}",
            f"{live} === 'live' && document.querySelectorAll('#chart .dots circle').length >= 3",
        )
        alerts = await _shoot(page, f"{base}/ui/alerts#token={token}", f"{live} === 'live'")
    return {"overview.png": overview, "device.png": device_page, "alerts.png": alerts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs")
    parser.add_argument("--device", help="the device to show (default: one with an alert)")
    args = parser.parse_args()
    settings = DevStackSettings.from_env()
    base = f"http://{settings.host}:{settings.worker_http_port}"
    issued = _iotctl("tokens", "add", "operator")
    token = str(issued["token"])
    try:
        device = args.device or _a_device(base, token)
        pictures = asyncio.run(take(base, token, device))
        args.out.mkdir(parents=True, exist_ok=True)
        for name, png in pictures.items():
            (args.out / name).write_bytes(png)
            print(f"wrote {args.out / name}")
    finally:
        subprocess.run(
            [sys.executable, "-m", "iotctl.main", "tokens", "revoke", str(issued["token_id"])],
            capture_output=True,
            check=False,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
