"""Event-log figures, each against a baseline run side by side on the same nats-server.

    .venv/bin/python bench/events/bench_events.py [--events 10000] [--query-events 100000]

1. Publish: a burst of N events from concurrent callers through `Publisher`
   (each call returns only once the stream acked it or the outbox fsynced it)
   vs raw nats-py `js.publish` awaited one by one. Target: >= 3x.
2. Query: one agent's events among 100,000 (20 agents) via the subject filter
   vs reading the whole stream and filtering in the client. Target: < 200 ms.
3. Outbox: N events written while NATS is down, then flushed when it is back;
   the flush rate vs the raw awaited publish rate.

Rounds alternate baseline and candidate to spread the machine's noise over both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from prometheus_client import CollectorRegistry

from agent_smith.crew import EventLog
from agent_smith.events import (
    AgentStarted,
    EmbeddedNats,
    Event,
    EventFilter,
    Incident,
    PrOpened,
    Publisher,
    TaskDone,
    connect,
    ensure_stream,
    query,
)
from agent_smith.events.metrics import EventMetrics
from agent_smith.events.publisher import MSG_ID_HEADER, encode

SETTINGS = EventLog()


def events(n: int, agents: int = 10) -> list[TaskDone]:
    return [TaskDone(agent=f"agent-{i % agents:02d}", summary=f"event {i}", repo="acme/web") for i in range(n)]


async def raw_rate(url: str, n: int) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    batch = events(n)
    start = time.perf_counter()
    for event in batch:
        record = encode(event, SETTINGS.subject_prefix)
        await js.publish(record.subject, record.data, headers={MSG_ID_HEADER: record.msg_id})
    elapsed = time.perf_counter() - start
    await nc.close()
    return n / elapsed


async def publisher_rate(url: str, outbox: Path, n: int, callers: int) -> float:
    batch = events(n)
    async with Publisher(SETTINGS, outbox, url, metrics=EventMetrics(CollectorRegistry())) as publisher:
        if not await publisher.wait_connected(10):
            raise SystemExit("the publisher could not connect")
        start = time.perf_counter()

        async def caller(k: int) -> int:
            stored = 0
            for event in batch[k::callers]:
                stored += (await publisher.publish(event)).stored
            return stored

        stored = sum(await asyncio.gather(*(caller(k) for k in range(callers))))
        elapsed = time.perf_counter() - start
    if stored != n:
        raise SystemExit(f"only {stored} of {n} events were acked by the stream")
    return n / elapsed


async def bench_publish(server: EmbeddedNats, tmp: Path, n: int, rounds: int) -> float:
    print(f"1. publish {n:,} events, {rounds} rounds (baseline: raw js.publish awaited one by one)")
    raws: list[float] = []
    for callers in (100, 1000):
        ratios: list[float] = []
        ours: list[float] = []
        for r in range(rounds):
            # Back to back in each round, so both see the same machine load.
            raw = await raw_rate(server.url, n)
            mine = await publisher_rate(server.url, tmp / f"outbox-{callers}-{r}", n, callers)
            raws.append(raw)
            ours.append(mine)
            ratios.append(mine / raw)
        print(
            f"   {callers:>5} concurrent callers: agent-smith {statistics.median(ours):>8,.0f} ev/s   "
            f"raw {statistics.median(raws[-rounds:]):>7,.0f} ev/s   ratio median {statistics.median(ratios):.2f}x "
            f"(rounds {', '.join(f'{x:.2f}' for x in ratios)}; target >= 3x)"
        )
    return statistics.median(raws)


def mixed(n: int, agents: int) -> list[Event]:
    """Several types, so one agent's events are spread over several subjects as in a real crew."""
    kinds: list[Event] = []
    for i in range(n):
        agent = f"agent-{i % agents:02d}"
        match i % 4:
            case 0:
                kinds.append(TaskDone(agent=agent, summary=f"event {i}"))
            case 1:
                kinds.append(AgentStarted(agent=agent))
            case 2:
                kinds.append(Incident(agent=agent, summary=f"incident {i}"))
            case _:
                kinds.append(PrOpened(agent=agent, repo="acme/web", pr=i + 1, title="t", url="https://example.test/pr"))
    return kinds


async def fill(url: str, outbox: Path, n: int, agents: int) -> None:
    async with Publisher(SETTINGS, outbox, url, metrics=EventMetrics(CollectorRegistry())) as publisher:
        await publisher.wait_connected(10)
        batch = mixed(n, agents)
        for i in range(0, n, 5000):
            await asyncio.gather(*(publisher.publish(e) for e in batch[i : i + 5000]))


async def scan_all(url: str, agent: str) -> int:
    """The baseline: what a consumer of `swarm.events.>` does — read everything, keep one agent's."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    kept = 0
    done = asyncio.get_running_loop().create_future()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        nonlocal kept
        if json.loads(msg.data).get("agent") == agent:
            kept += 1
        if msg.metadata.num_pending == 0 and not done.done():
            done.set_result(None)

    sub = await js.subscribe(
        f"{SETTINGS.subject_prefix}.>",
        stream=SETTINGS.stream,
        cb=on_message,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    await done
    await sub.unsubscribe()
    await nc.close()
    return kept


async def receive_only(url: str, agent: str) -> int:
    """Not a baseline but the floor: nats-py receiving the same filtered messages, doing nothing."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    received = 0
    done = asyncio.get_running_loop().create_future()

    async def on_message(msg: nats.aio.msg.Msg) -> None:
        nonlocal received
        received += 1
        if msg.reply.endswith(".0") and not done.done():
            done.set_result(None)

    sub = await js.subscribe(
        f"{SETTINGS.subject_prefix}.*.{agent}", stream=SETTINGS.stream, cb=on_message, ordered_consumer=True
    )
    await done
    await sub.unsubscribe()
    await nc.close()
    return received


async def our_query(url: str, agent: str) -> int:
    reader = await connect(url)
    try:
        return len(await query(reader, SETTINGS, EventFilter(agent=agent)))
    finally:
        await reader.close()


async def timed(run: Callable[[], Awaitable[int]]) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    count = await run()
    return time.perf_counter() - wall, time.process_time() - cpu, count


async def bench_query(server: EmbeddedNats, tmp: Path, n: int, rounds: int) -> None:
    agents = 20
    nc = await nats.connect(server.url)
    await nc.jetstream().purge_stream(SETTINGS.stream)
    await nc.close()
    start = time.perf_counter()
    await fill(server.url, tmp / "outbox-fill", n, agents)
    print(f"2. query one agent's events among {n:,} ({agents} agents; filled in {time.perf_counter() - start:.1f}s)")
    runs: dict[str, list[tuple[float, float, int]]] = {"ours": [], "scan": [], "floor": []}
    for _ in range(rounds):
        runs["scan"].append(await timed(lambda: scan_all(server.url, "agent-07")))
        runs["ours"].append(await timed(lambda: our_query(server.url, "agent-07")))
        runs["floor"].append(await timed(lambda: receive_only(server.url, "agent-07")))
    counts = {name: {r[2] for r in results} for name, results in runs.items()}
    if counts["ours"] != counts["scan"] or counts["ours"] != {n // agents}:
        raise SystemExit(f"query found {counts['ours']}, the scan {counts['scan']}, expected {n // agents}")
    wall = {name: statistics.median(r[0] for r in results) for name, results in runs.items()}
    cpu = {name: statistics.median(r[1] for r in results) for name, results in runs.items()}
    print(
        f"   agent-smith query {wall['ours'] * 1000:>6.0f} ms wall, {cpu['ours'] * 1000:.0f} ms CPU "
        f"({n // agents:,} events decoded, connect included; target < 200 ms)"
    )
    print(
        f"   full scan of the stream {wall['scan'] * 1000:>6.0f} ms wall, {cpu['scan'] * 1000:.0f} ms CPU: "
        f"the query is {wall['scan'] / wall['ours']:.1f}x faster"
    )
    print(
        f"   floor, nats-py receiving the same {n // agents:,} messages and nothing else: "
        f"{wall['floor'] * 1000:.0f} ms wall, {cpu['floor'] * 1000:.0f} ms CPU"
    )


async def bench_outbox(server: EmbeddedNats, tmp: Path, n: int, raw: float) -> None:
    print(f"3. outbox: {n:,} events while NATS is down, flushed when it is back")
    url = server.url
    server.stop()
    outbox = tmp / "outbox-outage"
    metrics = EventMetrics(CollectorRegistry())
    async with Publisher(SETTINGS, outbox, url, metrics=metrics, reconnect_wait=0.05, log_outages=False) as publisher:
        batch = events(n)
        start = time.perf_counter()
        receipts = await asyncio.gather(*(publisher.publish(e) for e in batch))
        written = time.perf_counter() - start
        if any(r.stored for r in receipts) or publisher.outbox.depth() != n:
            raise SystemExit("the events did not all go to the outbox")
        await asyncio.to_thread(server.start)
        start = time.perf_counter()
        if not await publisher.wait_flushed(120):
            raise SystemExit("the outbox was not flushed within 120 s")
        flushed = time.perf_counter() - start
    print(
        f"   into the outbox (fsynced) {n / written:>8,.0f} ev/s   flush after the outage {n / flushed:>8,.0f} ev/s "
        f"(reconnect included)   vs raw awaited publish {raw:>7,.0f} ev/s: {n / flushed / raw:.2f}x"
    )


async def main(n: int, query_n: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp_dir:
        tmp = Path(tmp_dir)
        server = EmbeddedNats(tmp / "nats")
        server.start()
        try:
            nc = await nats.connect(server.url)
            await ensure_stream(nc.jetstream(), SETTINGS)
            await nc.close()
            raw = await bench_publish(server, tmp, n, rounds)
            await bench_query(server, tmp, query_n, rounds)
            await bench_outbox(server, tmp, n, raw)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--query-events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"python {sys.version.split()[0]}, embedded nats-server on loopback, {os.cpu_count()} cores, load {load}")
    asyncio.run(main(args.events, args.query_events, args.rounds))
