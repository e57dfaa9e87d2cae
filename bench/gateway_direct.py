"""Direct-mode phases of the gateway ingest benchmark (run by ``bench.gateway_ingest``).

In direct mode (``mode: direct``) the gateway is the devices' MQTT server: the load
generator connects to it, not to Mosquitto, and each PUBACK it receives means the record is
in Kafka (acks=all, idempotent). So there is no broker in the path and no backlog to steer:
the load generator's windows (at most the gateway's Receive Maximum per connection, from
CONNACK) are the back-pressure.

Every direct gateway is this run's own ``iotctl gateway run`` process with its own config
file (``write_gateway_config`` with ``edge``): a free loopback port (one port shared by all
gateways of a phase, ``reuse_port``), a unique ``edge.instance``, this run's Kafka topics,
and ``policy.enabled: false``, so it checks no logins and no per-message authorization (the
benchmark measures ingest, not the policy) and the load generator connects anonymously. It
keeps the default sessions topic (``iot.edge-sessions.v1``, the dev stack's): each CONNECT
is claimed there (acks=all) and read back before CONNACK, and the Kafka sink waits for a
fresh view of the claims before each flush.

Every phase runs on each event loop (``event_loop``, ``LOOPS``): ``direct_x1`` on asyncio,
``direct_x1_uvloop`` the same on uvloop, and so on. The loop a gateway asked for is checked
against the one it runs on (``Gateway.observed_loop``).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bench import gateway_ingest_report as report
from bench.gateway_harness import (
    LOOPS,
    ROOT,
    Context,
    Gateway,
    LoadGen,
    Samples,
    cpu_text,
    free_port,
    log,
    prune_tree,
    render_profile,
    sample,
    steady_state,
    write_gateway_config,
)
from bench.profile_breakdown import breakdown, cut, lines

DIRECT_BASE = ("direct_x1", "direct_x2", "direct_latency", "direct_connect")


def phase_name(base: str, loop: str) -> str:
    """``direct_x1`` on asyncio, ``direct_x1_uvloop`` on uvloop."""
    return base if loop == "asyncio" else f"{base}_{loop}"


DIRECT_PHASES = tuple(phase_name(base, loop) for base in DIRECT_BASE for loop in LOOPS)
"""Each direct phase, then the same on the next loop (so the two are measured side by side)."""


async def start_direct(
    ctx: Context,
    name: str,
    count: int,
    profile_to: Path | None = None,
    loop: str = "asyncio",
) -> tuple[str, int, list[Gateway]]:
    """``count`` direct-mode gateways on event loop ``loop`` listening on one port, ready;
    (prefix, port, gateways).

    Raises if a gateway is not listening on that port, or not on that loop, once ready.
    """
    a = ctx.args
    prefix = f"{ctx.run_id}-{name}"
    topic = f"{prefix}.telemetry"
    await ctx.create_topics(topic, f"{topic}.dlq")
    port = free_port()
    gateways = []
    for index in range(count):
        instance = f"{prefix}-gw{index}"
        edge: dict[str, Any] = {"port": port, "instance": instance, "reuse_port": True}
        if a.edge_receive_maximum:
            edge["receive_maximum"] = a.edge_receive_maximum
        config = write_gateway_config(
            ctx, prefix, topic, edge, loop, sessions_topic=a.edge_sessions == "on"
        )
        gateways.append(Gateway(ctx, config, instance, "direct", loop))
    for gateway in gateways:
        await gateway.start(profile_to)
    await asyncio.gather(*(g.wait_ready() for g in gateways))
    for gateway in gateways:
        ports = json.loads(await gateway.get("/readyz")).get("ports", {})
        if ports.get("mqtt") != port:
            raise RuntimeError(f"{gateway.client_id} listens on {ports}, not on port {port}")
        observed = gateway.observed_loop()
        if observed != loop:
            raise RuntimeError(f"{gateway.client_id} asked for {loop} but runs on {observed}")
    return prefix, port, gateways


def _loop_fields(gateways: list[Gateway], loop: str) -> dict[str, Any]:
    """What every direct phase records about its gateways' event loop and stalls."""
    stalls = [g.stalls() for g in gateways]
    return {
        "event_loop": loop,
        "stalls_serving_s": [s for found in stalls for s in found["serving"]],
        "stalls_startup_s": [s for found in stalls for s in found["startup"]],
    }


async def stop_direct(gateways: list[Gateway]) -> list[int | None]:
    """SIGTERM: each gateway closes its listener and drains what Kafka has not acknowledged."""
    return list(await asyncio.gather(*(g.stop() for g in gateways)))


# ---------------------------------------------------------------------------- throughput


async def phase_saturated(
    ctx: Context,
    name: str,
    count: int,
    profile_to: Path | None = None,
    loop: str = "asyncio",
) -> dict[str, Any]:
    """``count`` direct gateways on one port, the load generator publishing unthrottled.

    Throughput is what the gateways' producers had acknowledged by Kafka per second after
    the warm-up (``produced_total``); the load generator's PUBACK rate must match it.
    """
    a = ctx.args
    duration = a.warmup + a.measure
    prefix, port, gateways = await start_direct(ctx, name, count, profile_to, loop)
    samples: Samples = []
    try:
        loadgen = await LoadGen.start(
            ctx, prefix, duration + 0.5, port=port, connections=a.direct_connections
        )
        started = time.monotonic()
        pids = {f"gateway{i}": g.pid for i, g in enumerate(gateways)}
        cpu = ctx.window(loadgen=loadgen.child.pid, **pids)
        t0, measuring = started + a.warmup, False
        while time.monotonic() - started < duration:
            await asyncio.sleep(0.25)
            samples.append(await sample(gateways))
            if not measuring and samples[-1][0] >= t0:
                measuring, t0 = True, samples[-1][0]
                cpu.start()
                wall0 = time.time()
        t1 = samples[-1][0]
        usage = cpu.stop()
        wall1 = time.time()
        summary = await loadgen.wait(30)
    finally:
        final = await asyncio.gather(*(g.counters() for g in gateways), return_exceptions=True)
        codes = await stop_direct(gateways)
    counters = [c for c in final if isinstance(c, dict)]
    at_t0 = next((cs for t, cs in samples if t >= t0), samples[-1][1])
    result = (
        steady_state(samples, (started, t0, t1), usage, count)
        | {
            "connections_per_gateway": [c["connections"] for c in at_t0],
            "loadgen_puback_rate": loadgen.rate_between(t0, t1),
            "loadgen_connections": summary["connections"],
            "loadgen_window": summary["window"],
            "puback_ms_whole_phase": summary["puback_ms"],
            "dlq": sum(c["dlq"] for c in counters),
            "protocol_errors": sum(c["protocol_errors"] for c in counters),
            "disconnects_by_server": sum(c["disconnects_by_server"] for c in counters),
            "exit_codes": codes,
            "log_problems": [g.problems() for g in gateways],
            "cpu_pct": usage,
            "warmup_s": a.warmup,
            "window_wall": [round(wall0, 3), round(wall1, 3)],
        }
        | _loop_fields(gateways, loop)
    )
    per_gateway = ", ".join(
        f"{r:,.0f} ({n:.0f} conn)"
        for r, n in zip(result["per_gateway"], result["connections_per_gateway"], strict=True)
    )
    log(
        f"direct x{count} ({loop}): {result['rate']:,.0f} msg/s acked by Kafka (per gateway "
        f"{per_gateway}; loadgen PUBACKs {result['loadgen_puback_rate']:,.0f}/s; "
        f"{result['gateway_cpu_us_per_msg']} us CPU/msg; CPU % of a core: {cpu_text(usage)})"
    )
    _warn_problems(result["log_problems"], f"direct x{count} ({loop})")
    return result


def _warn_problems(problems: list[dict[str, Any]], phase: str) -> None:
    for index, found in enumerate(problems):
        if found["count"]:
            log(f"{phase}: gateway {index} logged {found['count']} warning(s)/error(s):")
            for line in found["first"][:3]:
                log(f"    {line}")


# ---------------------------------------------------------------------------- latency


async def phase_latency(ctx: Context, repeat: int, loop: str = "asyncio") -> dict[str, Any]:
    """One direct gateway at a fixed offered load: publish -> PUBACK latency of every message
    sent in the measured window, as the load generator sees it (the PUBACK comes after the
    Kafka ack, so this is publish -> durably in Kafka). Samples never acknowledged count as
    infinitely late."""
    a = ctx.args
    prefix, port, gateways = await start_direct(ctx, f"dlat{repeat}{loop[:2]}", 1, loop=loop)
    gateway, acks_file = gateways[0], ctx.tmp / f"{prefix}-acks.json"
    try:
        loadgen = await LoadGen.start(
            ctx, prefix, a.warmup + a.measure, rate=a.latency_rate, port=port,
            connections=a.direct_connections,
            extra=("--sample-every", "1", "--record-acks", str(acks_file)),
        )  # fmt: skip
        await asyncio.sleep(a.warmup)
        cpu = ctx.window(loadgen=loadgen.child.pid, gateway0=gateway.pid)
        hist0, (tc0, c0) = await gateway.histogram(), await sample([gateway])
        t0 = time.monotonic()
        cpu.start()
        await asyncio.sleep(a.measure)
        t1 = time.monotonic()
        hist1, (tc1, c1) = await gateway.histogram(), await sample([gateway])
        usage = cpu.stop()
        summary = await loadgen.wait(30)
    finally:
        codes = await stop_direct(gateways)
    samples = json.loads(acks_file.read_text())
    latencies = [seconds for sent, seconds in samples["acked"] if t0 <= sent <= t1]
    missing = sum(1 for sent in samples["unacked"] if t0 <= sent <= t1)
    histogram = [(le, n1 - n0) for (le, n1), (_, n0) in zip(hist1, hist0, strict=True)]
    achieved = (c1[0]["produced"] - c0[0]["produced"]) / (tc1 - tc0)
    gateway_cpu = usage["cpu_seconds"].get("gateway0")
    cpu_us = gateway_cpu / (achieved * (t1 - t0)) * 1e6 if gateway_cpu and achieved else None
    puback = report.latency_summary(latencies, missing) | {"missing": missing}
    gw = {
        "p50_ms": report.bucket_quantile(histogram, 0.5),
        "p99_ms": report.bucket_quantile(histogram, 0.99),
        "count": histogram[-1][1] if histogram else 0,
    }
    problems = [gateway.problems()]
    log(
        f"direct latency ({loop}) at {a.latency_rate:,.0f} msg/s offered ({achieved:,.0f} "
        "produced/s): "
        f"publish -> PUBACK p50 {puback['p50_ms']} ms p99 {puback['p99_ms']} ms max "
        f"{puback['max_ms']} ms ({puback['samples']:,} samples, {missing} never acknowledged); "
        f"gateway histogram (receipt -> Kafka ack) p50 {gw['p50_ms']} ms p99 {gw['p99_ms']} ms; "
        f"{cpu_us and round(cpu_us, 1)} us gateway CPU/msg"
    )
    _warn_problems(problems, f"direct latency ({loop})")
    return {
        "offered_rate": a.latency_rate,
        "achieved_rate": achieved,
        "puback": puback,
        "puback_cdf": report.cdf(latencies),
        "gateway_histogram": gw,
        "gateway_histogram_buckets": histogram,
        "gateway_cpu_us_per_msg": round(cpu_us, 1) if cpu_us else None,
        "loadgen_window": summary["window"],
        "exit_codes": codes,
        "log_problems": problems,
        "cpu_pct": usage,
    } | _loop_fields(gateways, loop)


# ---------------------------------------------------------------------------- connections


async def phase_connect(
    ctx: Context, repeat: int, loop: str = "asyncio", profile_to: Path | None = None
) -> dict[str, Any]:
    """Connection setup against one direct gateway: ``--connect-count`` MQTT 5 connections,
    ``--connect-concurrency`` at a time (TCP connect, CONNECT, CONNACK), held open until a
    second after the last CONNACK; connections per second as the load generator measures
    them, from its first connect to its last CONNACK.

    The gateway's CPU is taken from the load generator's start to its last CONNACK (it is
    idle while the load generator starts), and divided by the connections accepted. The
    records the sessions topic grew by (every process's: claims, state updates, deletions)
    are counted from before the load generator starts to the end of the phase.
    """
    a = ctx.args
    name = f"dconn{repeat}{loop[:2]}"
    prefix, port, gateways = await start_direct(ctx, name, 1, profile_to, loop)
    gateway = gateways[0]
    try:
        sessions_before = sum((await ctx.sessions_topic_ends()).values())
        before = await gateway.counters()
        loadgen = await LoadGen.start(
            ctx, prefix, 60, port=port,
            extra=("--connects", str(a.connect_count), "--concurrency",
                   str(a.connect_concurrency), "--hold", "1"),
        )  # fmt: skip
        cpu = ctx.window(loadgen=loadgen.child.pid, gateway0=gateway.pid)
        cpu.start()
        wall0 = time.time()
        deadline = time.monotonic() + 90
        while not any("connected" in p for p in loadgen.progress):
            if time.monotonic() > deadline or loadgen.child.process.returncode is not None:
                break
            await asyncio.sleep(0.02)
        usage = cpu.stop()
        wall1 = time.time()
        held = await gateway.counters()
        summary = await loadgen.wait(60, check=False)
        await asyncio.sleep(1)  # the gateway sees the disconnects
        after = await gateway.counters()
    finally:
        codes = await stop_direct(gateways)
    sessions_records = sum((await ctx.sessions_topic_ends()).values()) - sessions_before
    accepted = held["connects"] - before["connects"]
    gateway_cpu = usage["cpu_seconds"].get("gateway0")
    cpu_us = gateway_cpu / accepted * 1e6 if gateway_cpu and accepted else None
    problems = [gateway.problems()]
    result = {
        "rate": summary["rate"],
        "connections": summary["connections"],
        "connected": summary["connected"],
        "failed": summary["failed"],
        "concurrency": summary["concurrency"],
        "seconds": summary["seconds"],
        "connack_ms": summary["connack_ms"],
        "gateway_connects_counted": accepted,
        "gateway_open_connections_at_peak": held["connections"],
        "gateway_open_connections_after": after["connections"],
        "gateway_cpu_us_per_connection": round(cpu_us, 1) if cpu_us else None,
        "sessions_topic_records": sessions_records,
        "window_wall": [round(wall0, 3), round(wall1, 3)],
        "exit_codes": codes,
        "log_problems": problems,
        "cpu_pct": usage,
    } | _loop_fields(gateways, loop)
    log(
        f"direct connect ({loop}): {summary['rate']:,.0f} connections/s "
        f"({summary['connected']:,} of {summary['connections']:,}, {summary['failed']} failed, "
        f"{summary['concurrency']} at a time; CONNACK p50 {summary['connack_ms']['p50']} ms p99 "
        f"{summary['connack_ms']['p99']} ms); gateway held {held['connections']:.0f}, "
        f"{result['gateway_cpu_us_per_connection']} us CPU per connection; sessions topic "
        f"+{sessions_records:,} records"
    )
    _warn_problems(problems, f"direct connect ({loop})")
    return result


# ---------------------------------------------------------------------------- profile


async def phase_profile(ctx: Context, seconds: float) -> dict[str, Any]:
    """One saturated direct gateway under pyinstrument (statistical, wall clock, all frames):
    ``gateway_direct_profile.txt`` with the self time by stage, file and function (see
    ``bench.profile_breakdown``), then the call tree; both of the measured window only (not
    the start-up, whose read of the shared sessions topic grows with the topic's history)."""
    session = ctx.tmp / "gateway-direct.pyisession"
    saved = (ctx.args.warmup, ctx.args.measure)
    ctx.args.warmup, ctx.args.measure = 3, seconds
    try:
        result = await phase_saturated(ctx, "dprof", 1, profile_to=session)
    finally:
        ctx.args.warmup, ctx.args.measure = saved
    window = ctx.tmp / "gateway-direct-window.pyisession"
    start, end = result["window_wall"]
    samples = cut(session, start, end, window)
    found = breakdown(window, (Path(ctx.args.gateway_src), ROOT))
    tree = await render_profile(window, "--show-all")
    path = ctx.args.out / "gateway_direct_profile.txt"
    usage = result["cpu_pct"]
    header = [
        "pyinstrument (wall clock, statistical, 1 ms) of one direct-mode gateway saturated by",
        f"the load generator for {seconds:g} s after a 3 s warm-up: {result['rate']:,.0f} msg/s "
        "while profiled",
        "(profiling slows it down; unprofiled see direct_x1). Only the samples of the measured",
        f"window ({usage['seconds']} s, {samples:,} samples); the gateway used "
        f"{usage['gateway0']}% of a core then.",
        "",
    ]
    text = [*header, *lines(found), "", "Call tree, frames >= 1% only:"]
    path.write_text("\n".join(f"# {line}".rstrip() for line in text) + "\n")
    with path.open("a") as out:
        out.write(prune_tree(tree, min_share=0.01) + "\n")
    log(f"direct profile written to {path}; by stage: {found.by_stage}")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {
        "rate_while_profiled": result["rate"],
        "gateway_cpu_pct_while_profiled": usage["gateway0"],
        "self_time_by_stage_pct": found.by_stage,
        "self_time_by_area_pct": found.by_area[:15],
        "self_time_by_function_pct": found.by_function[:20],
        "file": str(shown),
    }


async def phase_profile_connect(ctx: Context, loop: str = "asyncio") -> dict[str, Any]:
    """``direct_connect`` once with its gateway under pyinstrument: where a CONNECT's time
    goes (``gateway_connect_profile.txt``). Only the samples of the connection storm are
    broken down (from the load generator's start to its last CONNACK, the window of
    ``direct_connect``'s CPU figures): not the gateway's start-up (reading the sessions
    topic), nor the disconnections and the shutdown after."""
    session = ctx.tmp / "gateway-connect.pyisession"
    result = await phase_connect(ctx, 0, loop, profile_to=session)
    storm = ctx.tmp / "gateway-connect-storm.pyisession"
    start, end = result["window_wall"]
    samples = cut(session, start, end, storm)
    found = breakdown(storm, (Path(ctx.args.gateway_src), ROOT))
    tree = await render_profile(storm, "--show-all")
    path = ctx.args.out / "gateway_connect_profile.txt"
    usage = result["cpu_pct"]
    header = [
        f"pyinstrument (wall clock, statistical, 1 ms) of one direct-mode gateway ({loop}) while "
        "the load",
        f"generator set up {result['connected']:,} MQTT 5 connections, {result['concurrency']} at "
        f"a time: {result['rate']:,.0f} connections/s, CONNACK p50 "
        f"{result['connack_ms']['p50']} ms while profiled",
        "(profiling slows it down; unprofiled see direct_connect). Only the samples from the load",
        f"generator's start to its last CONNACK ({usage['seconds']} s, {samples:,} samples); "
        f"the gateway used {usage['gateway0']}% of a core",
        f"then, Kafka {usage['kafka']}%, the load generator {usage['loadgen']}%, everything else "
        f"{usage['other']}%.",
        "",
    ]
    text = [*header, *lines(found), "", "Call tree, frames >= 1% only:"]
    path.write_text("\n".join(f"# {line}".rstrip() for line in text) + "\n")
    with path.open("a") as out:
        out.write(prune_tree(tree, min_share=0.01) + "\n")
    log(f"connect profile written to {path}; by stage: {found.by_stage}")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return {
        "event_loop": loop,
        "rate_while_profiled": result["rate"],
        "connack_ms_while_profiled": result["connack_ms"],
        "cpu_pct_while_profiled": usage,
        "self_time_by_stage_pct": found.by_stage,
        "self_time_by_function_pct": found.by_function[:20],
        "log_problems": result["log_problems"],
        "file": str(shown),
    }
