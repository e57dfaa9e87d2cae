"""Headless Chromium driven over the DevTools protocol: the pages' tests and screenshots.

No browser-automation package: Debian's ``chromium`` is started with a debugging port, and
its page target is driven over a WebSocket with three protocol calls (navigate, evaluate,
capture a screenshot). ``evaluate`` runs an expression in the page and returns its value
(promises awaited); ``wait_for`` polls an expression until it is truthy, within a deadline
that only bounds a failing test.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

__all__ = ["Page", "PageError", "chromium"]


class PageError(Exception):
    """An expression failed in the page, or the page did not get where it was waited for."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Page:
    """One page target of the browser."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol call; events arriving meanwhile are passed over."""
        call = next(self._ids)
        await self._ws.send_json({"id": call, "method": method, "params": params})
        while True:
            message = await self._ws.receive_json()
            if message.get("id") == call:
                if "error" in message:
                    raise PageError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    async def goto(self, url: str) -> None:
        """Opens ``url`` and waits until its document (and its module scripts) ran."""
        await self.call("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise PageError(f"{expression}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def text(self, selector: str) -> str:
        """The text of the first element ``selector`` matches ("" when none does)."""
        found = await self.evaluate(
            f"document.querySelector({json.dumps(selector)})?.textContent ?? ''"
        )
        return str(found)

    async def wait_for(self, expression: str, within: float = 30.0) -> Any:
        """The expression's first truthy value; PageError (with the page's status line)
        when ``within`` seconds pass without one."""
        try:
            async with asyncio.timeout(within):
                while not (value := await self.evaluate(expression)):  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
        except TimeoutError:
            status = await self.text("#status")
            raise PageError(
                f"not true within {within}s: {expression} (status: {status!r})"
            ) from None
        return value

    async def screenshot(self, width: int = 1440, longest: int = 1800) -> bytes:
        """A PNG of the page at ``width`` CSS pixels, as tall as its content (at most
        ``longest`` pixels)."""
        await self.call("Emulation.clearDeviceMetricsOverride")
        content = await self.evaluate("document.body.scrollHeight")
        height = min(int(content), longest)
        await self.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = await self.call(
            "Page.captureScreenshot",
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        )
        return base64.b64decode(shot["data"])


@asynccontextmanager
async def chromium(width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page, stopped (and its profile deleted) on exit."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    port = _free_port()
    profile = tempfile.mkdtemp(prefix="chromium-")
    process = await asyncio.create_subprocess_exec(
        executable,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--remote-debugging-port={port}",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                            pages = [p for p in await response.json() if p["type"] == "page"]
                        if pages:
                            break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.2)
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
        shutil.rmtree(profile, ignore_errors=True)
