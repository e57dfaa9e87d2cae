"""The readiness of the platform's other processes, as the fleet overview shows it.

The worker cannot know the gateways by itself: they are named in its settings
(``query.processes``, name -> their ``/readyz`` URL; the dev stack names its gateway), and each
is asked at most once per overview, all at once, with a short timeout. A process that does
not answer in time is shown not ready, with why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

PROBE_TIMEOUT_S = 1.0


async def probe(session: aiohttp.ClientSession, name: str, url: str) -> dict[str, object]:
    """One process's readiness: its ``/readyz`` answered 200, else the problem it gave."""
    try:
        async with session.get(url) as response:
            ready = response.status == 200
            body = await response.json(content_type=None) if not ready else {}
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return {"name": name, "ready": False, "problem": f"no answer: {type(exc).__name__}"}
    problem = body.get("problem") if isinstance(body, dict) else None
    return {
        "name": name,
        "ready": ready,
        "problem": None if ready else str(problem or f"HTTP {response.status}"),
    }


async def readiness(processes: Mapping[str, str]) -> list[dict[str, object]]:
    """Each named process's readiness, in name order."""
    if not processes:
        return []
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(
            await asyncio.gather(
                *(probe(session, name, url) for name, url in sorted(processes.items()))
            )
        )
