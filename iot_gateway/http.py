"""The gateway's HTTP endpoints: Prometheus metrics, liveness, readiness, JSON stats."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iot_gateway.bridge import Gateway
from iot_gateway.edge.server import EdgeServer

_TOP_DEVICES = 20


def build_app(gateway: Gateway | EdgeServer) -> web.Application:
    """``/metrics``, ``/healthz`` (the process runs), ``/readyz`` (connected to both sides),
    ``/stats`` (JSON: what the gateway counted, the most rate-limited devices)."""

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(gateway.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready = gateway.ready
        answer: dict[str, object] = {"ready": ready, "mode": gateway.config.mode}
        if isinstance(gateway, EdgeServer):
            answer["instance"] = gateway.settings.instance
            answer["ports"] = gateway.ports
        else:
            answer["client_id"] = gateway.config.mqtt.client_id
        if not gateway.config.policy.enabled:
            answer["warnings"] = ["per-message authorization is disabled (policy.enabled=false)"]
        return web.json_response(answer, status=200 if ready else 503)

    async def stats(_: web.Request) -> web.Response:
        limited = sorted(gateway.rate_limiter.rejected.items(), key=lambda kv: -kv[1])
        samples = {
            sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items())): (
                sample.value
            )
            for family in gateway.metrics.registry.collect()
            for sample in family.samples
            if sample.name.endswith("_total") or family.type == "gauge"
        }
        return web.json_response(
            {
                "ready": gateway.ready,
                "metrics": samples,
                "rate_limited_devices": dict(limited[:_TOP_DEVICES]),
            }
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/stats", stats)
    return app
