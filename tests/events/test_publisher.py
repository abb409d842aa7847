"""The publisher against a real nats-server: acks, duplicates, outages, restarts, metrics."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from prometheus_client import CollectorRegistry

from agent_smith.crew import EventLog
from agent_smith.errors import EventRefused
from agent_smith.events import EventMetrics, Publisher, TaskDone, ensure_stream
from agent_smith.events.outbox import Outbox, decode_records
from agent_smith.events.publisher import encode, pump_backoff, relapse_delay
from agent_smith.listeners import free_port
from tests.events.helpers import SETTINGS, captured_warnings, plain_nats, stored, wait_until
from tests.fixtures.nats import NatsServer
from tests.fixtures.processes import LeakCheck

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]


def task(n: int, agent: str = "devbot") -> TaskDone:
    return TaskDone(agent=agent, summary=f"task {n}")


def metrics() -> tuple[EventMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return EventMetrics(registry), registry


def test_concurrent_callers_are_all_acknowledged_by_the_stream(nats_server: NatsServer, tmp_path: Path) -> None:
    m, registry = metrics()

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, metrics=m) as publisher:
            assert await publisher.wait_connected(10)
            events = [task(n, f"agent-{n % 4}") for n in range(500)]
            receipts = await asyncio.gather(*(publisher.publish(e) for e in events))
        assert all(r.stored for r in receipts)
        assert sorted(r.seq for r in receipts if r.seq) == list(range(1, 501))
        assert [r.event_id for r in receipts] == [e.id for e in events]
        found = await stored(nats_server.url)
        assert [e.id for e in found] == sorted(e.id for e in events)
        assert found[0].subject == f"swarm.events.task_done.{found[0].payload['agent']}"

    asyncio.run(run())
    assert (
        registry.get_sample_value("agent_smith_events_published_total", {"type": "task_done", "via": "stream"}) == 500
    )
    assert registry.get_sample_value("agent_smith_events_outbox_depth") == 0
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").iterdir())


def test_a_resent_event_is_stored_once(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        event = task(1)
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            first = await publisher.publish(event)
            again = await publisher.publish(event)
        assert first.stored
        assert not first.duplicate
        assert again.stored
        assert again.duplicate
        assert again.seq == first.seq
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info(SETTINGS.stream)
        await nc.close()
        assert info.state.messages == 1

    asyncio.run(run())


def test_nats_down_at_start_gives_one_warning_and_the_outbox_then_flushes_in_order(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nats_server.stop()
    m, registry = metrics()

    async def run() -> None:
        async with Publisher(
            SETTINGS, tmp_path / "outbox", nats_server.url, metrics=m, reconnect_wait=0.05
        ) as publisher:
            events = [task(n) for n in range(200)]
            receipts = [await publisher.publish(e) for e in events[:100]]
            receipts += await asyncio.gather(*(publisher.publish(e) for e in events[100:]))
            assert not any(r.stored for r in receipts)
            assert registry.get_sample_value("agent_smith_events_outbox_depth") == 200
            assert len(warnings) == 1
            assert "NATS unreachable" in warnings[0].getMessage()

            await asyncio.to_thread(nats_server.start)
            await wait_until(lambda: publisher.connected and publisher.outbox.depth() == 0, "the outbox to flush")
            after = await publisher.publish(task(999))
            assert after.stored
        found = await stored(nats_server.url)
        assert [e.id for e in found] == [e.id for e in events] + [after.event_id]
        # Flushed in order: stream sequence follows the order the events were published in.
        assert [e.seq for e in found] == sorted(e.seq for e in found)

    with captured_warnings() as warnings:
        asyncio.run(run())
    assert "NATS is back" in warnings[-1].getMessage()
    assert registry.get_sample_value("agent_smith_events_outbox_flushed_total") == 200
    assert (
        registry.get_sample_value("agent_smith_events_published_total", {"type": "task_done", "via": "outbox"}) == 200
    )
    assert registry.get_sample_value("agent_smith_events_outbox_depth") == 0
    assert list((tmp_path / "outbox").iterdir()) == []


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_stopping_and_restarting_nats_mid_burst_loses_nothing(
    nats_server: NatsServer, tmp_path: Path, how: str
) -> None:
    m, registry = metrics()
    total, callers = 3000, 30

    async def run() -> None:
        acked = 0
        async with Publisher(
            SETTINGS, tmp_path / "outbox", nats_server.url, metrics=m, ack_timeout=1.0, reconnect_wait=0.05
        ) as publisher:
            assert await publisher.wait_connected(10)
            events = [task(n, f"agent-{n % 5}") for n in range(total)]
            receipts = []

            async def caller(k: int) -> None:
                nonlocal acked
                for event in events[k::callers]:
                    receipts.append(await publisher.publish(event))
                    acked += 1
                    if acked == total // 3:
                        await asyncio.to_thread(nats_server.kill if how == "kill" else nats_server.stop)
                    elif acked == 2 * total // 3:
                        await asyncio.to_thread(nats_server.start)

            await asyncio.gather(*(caller(k) for k in range(callers)))
            assert len(receipts) == total
            assert any(r.stored for r in receipts)
            assert any(not r.stored for r in receipts)
            await wait_until(lambda: publisher.connected and publisher.outbox.depth() == 0, "the outbox to flush")
        found = await stored(nats_server.url)
        assert {e.id for e in found} == {e.id for e in events}
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().stream_info(SETTINGS.stream)
        await nc.close()
        assert info.state.messages == total

    asyncio.run(run())
    # The outage was counted. A server that stops (rather than dies) may first answer "no response
    # from stream" while its connection still stands: that counts as an `error`, not a disconnect.
    reasons = ("disconnected", "timeout", "error")
    counted = [registry.get_sample_value("agent_smith_events_failures_total", {"reason": r}) or 0 for r in reasons]
    assert sum(counted) >= 1


def test_without_any_nats_configured_events_wait_in_the_outbox(tmp_path: Path) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", None) as publisher:
            receipt = await publisher.publish(task(1))
        assert not receipt.stored

    asyncio.run(run())
    assert len(list((tmp_path / "outbox").glob("seg-*.log"))) == 1


def test_a_closed_publisher_refuses_politely(tmp_path: Path) -> None:
    async def run() -> None:
        publisher = Publisher(SETTINGS, tmp_path / "outbox", f"nats://127.0.0.1:{free_port()}")
        await publisher.start()
        await publisher.close()
        with pytest.raises(Exception, match="publisher is closed"):
            await publisher.publish(task(1))

    asyncio.run(run())


def test_the_stream_is_created_and_updated_idempotently(nats_server: NatsServer) -> None:
    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        settings = EventLog(max_age="7d", max_bytes="64MiB", duplicate_window="5m")
        assert await ensure_stream(js, settings) == "created"
        assert await ensure_stream(js, settings) == "unchanged"
        changed = EventLog(max_age="14d", max_bytes="64MiB", duplicate_window="5m")
        assert await ensure_stream(js, changed) == "updated"
        info = await js.stream_info("SWARM_EVENTS")
        await nc.close()
        assert info.config.subjects == ["swarm.events.>"]
        assert info.config.max_age == 14 * 86400
        assert info.config.max_bytes == 64 * 2**20
        assert info.config.duplicate_window == 300
        assert info.config.storage == "file"

    asyncio.run(run())


def test_a_killed_publisher_loses_nothing_it_acknowledged(
    nats_server: NatsServer, tmp_path: Path, leak_check: LeakCheck
) -> None:
    """SIGKILL a real publisher process mid-burst, with NATS gone for part of it; count afterwards."""
    outbox = tmp_path / "outbox"
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.events.burst_child", nats_server.url, str(outbox)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    leak_check.track(child.pid, "burst publisher")
    acknowledged: list[tuple[str, str]] = []
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        while len(acknowledged) < 400:
            acknowledged.append(tuple(child.stdout.readline().split()))  # type: ignore[arg-type]
        nats_server.kill()
        while sum(1 for how, _ in acknowledged if how == "queued") < 300:
            line = child.stdout.readline().split()
            assert line, "the publisher died on its own"
            acknowledged.append(tuple(line))  # type: ignore[arg-type]
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        # Lines already in the pipe were acknowledged before the kill: they count too.
        acknowledged += [tuple(line.split()) for line in child.stdout.read().splitlines() if line.strip()]  # type: ignore[misc]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout is not None:
            child.stdout.close()

    queued = {event_id for how, event_id in acknowledged if how == "queued"}
    assert len(queued) >= 300
    assert list(outbox.glob("seg-*.log")), "the killed publisher left its outbox segment behind"
    nats_server.start()

    async def recover() -> set[str]:
        async with Publisher(SETTINGS, outbox, nats_server.url, reconnect_wait=0.05) as publisher:
            await wait_until(lambda: publisher.connected and publisher.outbox.depth() == 0, "the orphan to flush")
        return {e.id for e in await stored(nats_server.url)}

    in_stream = asyncio.run(recover())
    missing = {event_id for _, event_id in acknowledged} - in_stream
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged events were lost"
    assert list(outbox.glob("seg-*.log")) == []


def test_a_running_publisher_adopts_segments_left_later_by_others(nats_server: NatsServer, tmp_path: Path) -> None:
    """A one-shot process (a hook, `events publish`) that found NATS down leaves a segment behind."""
    outbox = tmp_path / "outbox"
    left_behind = task(1)

    async def run() -> None:
        async with Publisher(SETTINGS, outbox, nats_server.url, sweep_every=0.05) as publisher:
            assert await publisher.wait_connected(10)
            async with Publisher(SETTINGS, outbox, None) as one_shot:
                assert not (await one_shot.publish(left_behind)).stored
            for _ in range(200):
                found = await stored(nats_server.url)
                if found:
                    break
                await asyncio.sleep(0.05)
            assert await publisher.wait_flushed(10)
        assert [e.id for e in found] == [left_behind.id]

    asyncio.run(run())
    assert list(outbox.iterdir()) == []


def test_a_deleted_stream_is_recreated_and_nothing_published_meanwhile_is_lost(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, reconnect_wait=0.05) as publisher:
            assert await publisher.wait_connected(10)
            assert (await publisher.publish(task(1))).stored
            nc = await nats.connect(nats_server.url)
            await nc.jetstream().delete_stream(SETTINGS.stream)
            await nc.close()
            meanwhile = task(2)
            assert not (await publisher.publish(meanwhile)).stored
            assert await publisher.wait_flushed(10)
            after = task(3)
            assert (await publisher.publish(after)).stored
        assert [e.id for e in await stored(nats_server.url)] == [meanwhile.id, after.id]

    asyncio.run(run())


def huge(n: int) -> TaskDone:
    """An event larger than nats-server's default max_payload (1 MiB)."""
    return TaskDone(agent="devbot", summary=f"{n} " + "x" * (1 << 20))


def test_an_event_nats_refuses_is_the_caller_s_error_and_holds_nothing_back(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    m, registry = metrics()

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, metrics=m) as publisher:
            assert await publisher.wait_connected(10)
            with pytest.raises(EventRefused, match=r"^NATS refused event \S+: MaxPayloadError"):
                await publisher.publish(huge(1))
            assert publisher.connected
            assert (await publisher.publish(task(2))).stored
        assert [e.payload["summary"] for e in await stored(nats_server.url)] == ["task 2"]

    asyncio.run(run())
    assert not list((tmp_path / "outbox").glob("seg-*.log"))
    assert registry.get_sample_value("agent_smith_events_failures_total", {"reason": "refused"}) == 1


def test_a_kept_event_nats_refuses_is_set_aside_and_the_rest_flush_in_order(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    nats_server.stop()
    kept = [task(1), huge(2), task(3)]

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, reconnect_wait=0.05) as publisher:
            assert not any([(await publisher.publish(event)).stored for event in kept])
            with captured_warnings() as logged:
                await asyncio.to_thread(nats_server.start)
                assert await publisher.wait_flushed(15)
            assert (await publisher.publish(task(4))).stored
        assert [e.payload["summary"] for e in await stored(nats_server.url)] == ["task 1", "task 3", "task 4"]
        assert [r.getMessage() for r in logged if r.levelname == "ERROR"] == [
            f"NATS refused event {kept[1].id} (nats: maximum payload exceeded): set aside in "
            f"{tmp_path / 'outbox' / 'refused.log'}"
        ]

    asyncio.run(run())
    aside = (tmp_path / "outbox" / "refused.log").read_bytes().splitlines()
    assert decode_records(aside[0] + b"\n")[0].msg_id == kept[1].id
    assert aside[1].startswith(b'# {"refused": "' + kept[1].id.encode())
    assert oct((tmp_path / "outbox" / "refused.log").stat().st_mode & 0o777) == "0o600"


def test_a_stream_nats_refuses_is_named_and_its_kept_events_follow_the_crew_s_prefix(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A second crew on a shared NATS whose subjects overlap the first's: NATS refuses its
    stream, which is said as such; once its prefix is changed, what it kept goes to its own stream."""
    first = EventLog()
    second = EventLog(stream="CREW2")
    moved = EventLog(stream="CREW2", subject_prefix="crew2.events")
    outbox = tmp_path / "outbox"

    async def run() -> None:
        async with Publisher(first, tmp_path / "first", nats_server.url) as publisher:
            assert (await publisher.publish(task(1))).stored
        with captured_warnings() as logged:
            async with Publisher(second, outbox, nats_server.url, reconnect_wait=0.05) as publisher:
                assert not await publisher.wait_connected(1.0)
                assert re.fullmatch(r"NATS refused the event stream CREW2: subjects overlap.*", publisher.problem)
                kept = await publisher.publish(task(2))
                assert not kept.stored
        assert logged[0].getMessage().startswith("NATS refused the event stream CREW2: subjects overlap")
        async with Publisher(moved, outbox, nats_server.url) as publisher:
            assert await publisher.wait_flushed(10)
        assert [e.payload["summary"] for e in await stored(nats_server.url, settings=first)] == ["task 1"]
        mine = await stored(nats_server.url, settings=moved)
        assert [(e.id, e.subject) for e in mine] == [(kept.event_id, "crew2.events.task_done.devbot")]

    asyncio.run(run())


def test_a_cursor_past_its_segment_s_end_holds_nothing_up(nats_server: NatsServer, tmp_path: Path) -> None:
    """A segment whose `.done` counts more records than it holds (it lost some after they were
    sent): nothing of it is sent again, and new events are stored as usual."""
    outbox = tmp_path / "outbox"
    kept = Outbox(outbox)
    kept.append([encode(task(1), SETTINGS.subject_prefix)])
    (segment,) = kept.segments()
    kept.close()
    segment.path.with_suffix(".done").write_text("7")

    async def run() -> None:
        async with Publisher(SETTINGS, outbox, nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            fresh = task(2)
            assert (await asyncio.wait_for(publisher.publish(fresh), 10)).stored
        assert [e.id for e in await stored(nats_server.url)] == [fresh.id]

    with captured_warnings("agent_smith.events") as logged:
        asyncio.run(run())
    assert [r.getMessage().split(":")[1] for r in logged] == [
        " its cursor says 7 records were sent, but it holds 1 intact"
    ]
    assert list(outbox.iterdir()) == []


# Without a pause the pump never yields to the event loop: the test would hang, not fail.
@pytest.mark.timeout(30)
def test_a_pump_that_keeps_failing_backs_off(
    nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    kept = Outbox(outbox)
    kept.append([encode(task(1), SETTINGS.subject_prefix)])
    kept.close()
    attempts = 0

    async def failing(self: Publisher) -> None:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("the outbox cannot be read")

    monkeypatch.setattr(Publisher, "_flush_outbox", failing)

    async def run() -> int:
        publisher = Publisher(SETTINGS, outbox, nats_server.url)
        await publisher.start()
        try:
            assert await publisher.wait_connected(10)
            await asyncio.sleep(1.0)
            return attempts
        finally:
            await publisher.close(flush_timeout=0.1)

    logging.getLogger("agent_smith.events.publisher").disabled = True
    try:
        within_a_second = asyncio.run(run())
    finally:
        logging.getLogger("agent_smith.events.publisher").disabled = False
    # Pauses of 0.1 + 0.2 + 0.4 s fit in the second, the next (0.8 s) does not.
    assert 1 <= within_a_second <= 4
    assert [pump_backoff(n) for n in (1, 2, 3, 8, 9, 100)] == [0.1, 0.2, 0.4, 10.0, 10.0, 10.0]


def test_callers_whose_events_the_pump_held_when_it_failed_are_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pump fails on the batch it took from the queue: those callers hear it, as the ones
    still queued do, rather than waiting forever."""

    def failing(self: Outbox, records: object) -> None:
        raise RuntimeError("the outbox broke")

    monkeypatch.setattr(Outbox, "append", failing)

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", None) as publisher:
            results = await asyncio.wait_for(
                asyncio.gather(*(publisher.publish(task(n)) for n in range(3)), return_exceptions=True), 5
            )
        assert [str(r) for r in results] == ["event publisher failed: the outbox broke"] * 3

    logging.getLogger("agent_smith.events.publisher").disabled = True
    try:
        asyncio.run(run())
    finally:
        logging.getLogger("agent_smith.events.publisher").disabled = False


def test_a_server_without_jetstream_is_said_as_such(tmp_path: Path, leak_check: LeakCheck) -> None:
    with plain_nats(leak_check) as port:
        url = f"nats://127.0.0.1:{port}"

        async def run() -> str:
            async with Publisher(SETTINGS, tmp_path / "outbox", url, log_outages=False) as publisher:
                assert not await publisher.wait_connected(1.0)
                assert not (await publisher.publish(task(1))).stored
                return publisher.problem

        assert asyncio.run(run()) == f"JetStream is not enabled on {url}"


def test_a_refused_login_is_said_as_such_without_the_password(tmp_path: Path, leak_check: LeakCheck) -> None:
    with plain_nats(leak_check, "--user", "alice", "--pass", "s3cret-Pw") as port:
        url = f"nats://alice:wrong-Pw@127.0.0.1:{port}"

        async def run() -> str:
            async with Publisher(SETTINGS, tmp_path / "outbox", url, reconnect_wait=0.05) as publisher:
                assert not await publisher.wait_connected(1.0)
                await wait_until(lambda: "refused" in publisher.problem, "the refusal", 5)
                assert not (await publisher.publish(task(1))).stored
                return publisher.problem

        with captured_warnings() as logged:
            problem = asyncio.run(run())
        said = f"NATS at nats://alice:***@127.0.0.1:{port} refused the credentials (authorization violation)"
        assert problem == said
        assert logged[0].getMessage().startswith(said + ": events go to the outbox")
        assert all("wrong-Pw" not in r.getMessage() for r in logged)


def test_a_full_stream_is_said_as_such_asked_again_calmly_and_flushed_once_it_has_room(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """A stream made elsewhere with a message limit and `discard: new` answers each event with
    an error once full: the publisher says so once (not "unreachable"), keeps the events, does
    not resend them in a tight loop, and sends them when the stream has room again."""
    m, registry = metrics()

    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name=SETTINGS.stream,
                subjects=[f"{SETTINGS.subject_prefix}.>"],
                max_msgs=1,
                discard=DiscardPolicy.NEW,
                max_age=SETTINGS.max_age,
                max_bytes=SETTINGS.max_bytes,
                duplicate_window=SETTINGS.duplicate_window,
            )
        )
        await js.publish(f"{SETTINGS.subject_prefix}.task_done.devbot", b"{}")
        with captured_warnings() as logged:
            async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, metrics=m, reconnect_wait=0.05) as pub:
                kept = await pub.publish(task(1))
                assert not kept.stored
                await asyncio.sleep(1.5)
                assert pub.problem == f"the event stream {SETTINGS.stream} refused events: maximum messages exceeded"
                # Delays of 0.05, 0.1, 0.2, 0.4 and 0.8 s: a handful of tries, not thousands.
                assert (
                    registry.get_sample_value("agent_smith_events_failures_total", {"reason": "stream_refused"}) or 0
                ) <= 8
                await js.purge_stream(SETTINGS.stream)
                assert await pub.wait_flushed(10)
        await nc.close()
        assert [e.id for e in await stored(nats_server.url)] == [kept.event_id]
        said = [r.getMessage() for r in logged]
        assert said[0].startswith(f"the event stream {SETTINGS.stream} refused events: maximum messages exceeded")
        assert said[1:] == [f"the event stream {SETTINGS.stream} takes events again"]

    asyncio.run(run())
    assert [relapse_delay(n, 0.25) for n in (1, 2, 3, 5, 6, 100)] == [0.25, 0.5, 1.0, 4.0, 5.0, 5.0]


def test_a_stream_made_elsewhere_that_would_not_keep_events_is_made_to_or_refused_aloud(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """The stream exists already, made by hand or by another tool with crew.yaml's limits but
    interest retention (each event dropped once stored, as no consumer holds it) or in memory
    (all gone when NATS restarts): the first is made a limits stream, so events are kept; the
    second NATS cannot change, which is said, and the events wait in the outbox."""
    limits = {
        "subjects": [f"{SETTINGS.subject_prefix}.>"],
        "max_age": SETTINGS.max_age,
        "max_bytes": SETTINGS.max_bytes,
        "duplicate_window": SETTINGS.duplicate_window,
    }
    in_memory = EventLog(stream="MEMORY", subject_prefix="memory.events")

    async def run() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=SETTINGS.stream, retention=RetentionPolicy.INTEREST, **limits))
        await js.add_stream(
            StreamConfig(name="MEMORY", storage=StorageType.MEMORY, **limits | {"subjects": ["memory.events.>"]})
        )
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert (await publisher.publish(task(1))).stored
        assert [e.payload["summary"] for e in await stored(nats_server.url)] == ["task 1"]
        assert (await js.stream_info(SETTINGS.stream)).config.retention == RetentionPolicy.LIMITS
        async with Publisher(in_memory, tmp_path / "memory", nats_server.url, log_outages=False) as publisher:
            assert not (await publisher.publish(task(2))).stored
            assert publisher.problem == (
                "NATS refused the event stream MEMORY: stream configuration update can not change storage type"
            )
        await nc.close()

    asyncio.run(run())
