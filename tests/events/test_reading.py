"""Query and tail against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.errors import OperationError
from agent_smith.events import (
    EventFilter,
    Incident,
    PrMerged,
    PrOpened,
    Publisher,
    TaskDone,
    connect,
    new_id,
    query,
    tail,
)
from agent_smith.events.reading import message_key
from agent_smith.listeners import free_port
from tests.events.helpers import SETTINGS, stored, wait_until
from tests.fixtures.nats import NatsServer

pytestmark = pytest.mark.real

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)


def pr(cls: type[PrOpened] | type[PrMerged], agent: str, repo: str, number: int, minutes: int) -> PrOpened | PrMerged:
    return cls(
        agent=agent,
        repo=repo,
        pr=number,
        title=f"PR {number}",
        url=f"https://github.com/{repo}/pull/{number}",
        time=T0 + timedelta(minutes=minutes),
    )


EVENTS = [
    pr(PrOpened, "devbot", "acme/web", 1, 0),
    pr(PrOpened, "reviewbot", "acme/api", 2, 1),
    pr(PrMerged, "devbot", "acme/web", 1, 2),
    TaskDone(agent="devbot", summary="wrote docs", repo="acme/web", time=T0 + timedelta(minutes=3)),
    Incident(agent="reviewbot", summary="CI is red", severity="high", time=T0 + timedelta(minutes=4)),
    pr(PrOpened, "devbot", "acme/web", 3, 5),
]


async def publish_all(url: str, tmp_path: Path) -> None:
    async with Publisher(SETTINGS, tmp_path / "outbox", url) as publisher:
        assert await publisher.wait_connected(10)
        for event in EVENTS:
            assert (await publisher.publish(event)).stored


def ids(*indexes: int) -> list[str]:
    return [EVENTS[i].id for i in indexes]


@pytest.mark.parametrize(
    ("flt", "limit", "expected"),
    [
        (EventFilter(), None, ids(0, 1, 2, 3, 4, 5)),
        (EventFilter(agent="devbot"), None, ids(0, 2, 3, 5)),
        (EventFilter(types=("pr_opened",)), None, ids(0, 1, 5)),
        (EventFilter(types=("pr_opened", "pr_merged"), agent="devbot"), None, ids(0, 2, 5)),
        (EventFilter(repo="acme/web"), None, ids(0, 2, 3, 5)),
        (EventFilter(repo="acme/web", pr=1), None, ids(0, 2)),
        (EventFilter(until=T0 + timedelta(minutes=1)), None, ids(0, 1)),
        (EventFilter(agent="devbot"), 2, ids(3, 5)),
        (EventFilter(agent="nobody"), None, []),
        (EventFilter(types=("agent_crashed",)), None, []),
    ],
)
def test_query_filters(
    nats_server: NatsServer, tmp_path: Path, flt: EventFilter, limit: int, expected: list[str]
) -> None:
    async def run() -> list[str]:
        await publish_all(nats_server.url, tmp_path)
        nc = await connect(nats_server.url)
        try:
            return [e.id for e in await query(nc, SETTINGS, flt, limit)]
        finally:
            await nc.close()

    assert asyncio.run(run()) == expected


def test_since_uses_the_stream_start_time_and_the_event_time(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        await publish_all(nats_server.url, tmp_path)
        # Stored just now, but happened at T0: the event's own time decides.
        assert await stored(nats_server.url, EventFilter(since=T0 + timedelta(minutes=4))) == [
            e for e in await stored(nats_server.url) if e.id in ids(4, 5)
        ]
        assert await stored(nats_server.url, EventFilter(since=datetime.now(UTC) + timedelta(hours=1))) == []

    asyncio.run(run())


def test_tail_follows_new_events_with_filters(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> list[str]:
        await publish_all(nats_server.url, tmp_path)
        nc = await connect(nats_server.url)
        seen: list[str] = []

        async def follow() -> None:
            async for event in tail(nc, SETTINGS, EventFilter(agent="devbot", repo="acme/web")):
                seen.append(event.id)
                if len(seen) == 2:
                    return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        fresh = [
            TaskDone(agent="devbot", summary="one", repo="acme/web"),
            TaskDone(agent="reviewbot", summary="not mine", repo="acme/web"),
            TaskDone(agent="devbot", summary="other repo", repo="acme/api"),
            TaskDone(agent="devbot", summary="two", repo="acme/web"),
        ]
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            for event in fresh:
                await publisher.publish(event)
        await asyncio.wait_for(follower, 10)
        await nc.close()
        assert seen == [fresh[0].id, fresh[3].id]
        return seen

    asyncio.run(run())


def test_reading_an_unreachable_server_is_one_clear_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(OperationError, match=f"cannot reach NATS at {url}"):
        asyncio.run(connect(url))


def test_querying_before_anything_was_published_says_so(nats_server: NatsServer) -> None:
    async def run() -> None:
        nc = await connect(nats_server.url)
        try:
            with pytest.raises(OperationError, match="does not exist yet"):
                await query(nc, SETTINGS, EventFilter())
        finally:
            await nc.close()

    asyncio.run(run())


def test_a_query_ends_while_events_keep_arriving(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        await publish_all(nats_server.url, tmp_path)
        async with Publisher(SETTINGS, tmp_path / "outbox2", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            stop = asyncio.Event()

            async def keep_publishing() -> None:
                while not stop.is_set():
                    await asyncio.gather(*(publisher.publish(TaskDone(agent="busy", summary="x")) for _ in range(50)))

            busy = asyncio.create_task(keep_publishing())
            await asyncio.sleep(0.1)
            try:
                found = await asyncio.wait_for(stored(nats_server.url), 30)
            finally:
                stop.set()
                await busy
        assert {e.id for e in EVENTS} <= {e.id for e in found}

    asyncio.run(run())


def test_tail_says_so_when_nats_goes_away(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        await publish_all(nats_server.url, tmp_path)
        nc = await connect(nats_server.url)

        async def follow() -> None:
            async for _ in tail(nc, SETTINGS, EventFilter()):
                pass

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.2)
        await asyncio.to_thread(nats_server.kill)
        with pytest.raises(OperationError, match="lost the connection to NATS"):
            await asyncio.wait_for(follower, 15)
        await nc.close()

    asyncio.run(run())


def test_a_message_that_is_no_event_takes_no_place_in_the_newest(nats_server: NatsServer, tmp_path: Path) -> None:
    """Something else published on the stream's subjects (by hand, say), with an id that sorts
    after every event's: skipped, and `--limit 1` still gives the newest event."""

    async def run() -> None:
        await publish_all(nats_server.url, tmp_path)
        nc = await connect(nats_server.url)
        try:
            await nc.jetstream().publish(
                "swarm.events.task_done.devbot", b"not json", headers={"Nats-Msg-Id": "notanid"}
            )
            newest = await query(nc, SETTINGS, EventFilter(), limit=1)
            every = await query(nc, SETTINGS, EventFilter())
        finally:
            await nc.close()
        assert [e.id for e in newest] == [EVENTS[-1].id]
        assert [e.id for e in every] == [e.id for e in EVENTS]

    asyncio.run(run())


@dataclass(frozen=True)
class KillsTheServer(EventFilter):
    """A filter that kills nats-server when the query looks at its first payload: the server
    dies mid-query, with the rest of the stream still to come."""

    server: NatsServer | None = None

    def matches(self, payload: Mapping[str, Any]) -> bool:
        if self.server is not None and self.server.running:
            self.server.kill()
        return super().matches(payload)


def test_a_query_whose_server_dies_midway_is_one_clear_error(nats_server: NatsServer, tmp_path: Path) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            # More than the server sends ahead of the consumer's flow control and the socket buffers
            # hold: the kill at the first message leaves most of the stream unsent.
            summary = "x" * 4000
            await asyncio.gather(*(publisher.publish(TaskDone(agent="devbot", summary=summary)) for _ in range(5000)))
        nc = await connect(nats_server.url)
        try:
            with pytest.raises(OperationError, match=r"^lost the connection to NATS while querying the event stream$"):
                await asyncio.wait_for(query(nc, SETTINGS, KillsTheServer(since=T0, server=nats_server)), 15)
        finally:
            await nc.close()

    asyncio.run(run())


def test_tail_follows_a_recreated_stream_from_its_first_event(nats_server: NatsServer, tmp_path: Path) -> None:
    """The publisher makes a deleted stream again: the tail shows the new stream's events 1..N,
    not only those past the old stream's last sequence."""

    async def run() -> None:
        nc = await connect(nats_server.url)
        seen: list[tuple[int, str]] = []
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url, reconnect_wait=0.05) as publisher:
            assert await publisher.wait_connected(10)
            assert (await publisher.publish(TaskDone(agent="devbot", summary="first"))).stored

            async def follow() -> None:
                async for event in tail(nc, SETTINGS, EventFilter(), check_every=0.2):
                    seen.append((event.seq, event.payload["summary"]))
                    if len(seen) == 9:
                        return

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            for n in range(4):
                assert (await publisher.publish(TaskDone(agent="devbot", summary=f"old {n}"))).stored
            await wait_until(lambda: len(seen) == 4, "the old stream's events")
            admin = await nats.connect(nats_server.url)
            await admin.jetstream().delete_stream(SETTINGS.stream)
            await admin.close()
            for n in range(5):
                await publisher.publish(TaskDone(agent="devbot", summary=f"new {n}"))
            assert await publisher.wait_flushed(10)
            await asyncio.wait_for(follower, 15)
        await nc.close()
        assert seen == [(n + 2, f"old {n}") for n in range(4)] + [(n + 1, f"new {n}") for n in range(5)]

    asyncio.run(run())


def test_tail_before_anything_was_published_waits_for_the_stream(nats_server: NatsServer, tmp_path: Path) -> None:
    """No stream yet (a fresh NATS, nothing published): the tail waits for the first publisher
    to make it and shows its events from the first, rather than ending with an error."""

    async def run() -> None:
        nc = await connect(nats_server.url)
        seen: list[tuple[int, str]] = []

        async def follow() -> None:
            async for event in tail(nc, SETTINGS, EventFilter(), check_every=0.1):
                seen.append((event.seq, event.payload["summary"]))
                if len(seen) == 2:
                    return

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0.5)
        assert not follower.done()
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            for n in range(2):
                assert (await publisher.publish(TaskDone(agent="devbot", summary=f"task {n}"))).stored
        await asyncio.wait_for(follower, 10)
        await nc.close()
        assert seen == [(1, "task 0"), (2, "task 1")]

    asyncio.run(run())


def test_a_comma_separated_url_reaches_a_server_of_the_list(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()} , {nats_server.url}"

    async def run() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", url) as publisher:
            assert await publisher.wait_connected(10)
            event = TaskDone(agent="devbot", summary="through the list")
            assert (await publisher.publish(event)).stored
        assert [e.id for e in await stored(url)] == [event.id]

    asyncio.run(run())


def test_every_event_without_an_id_is_shown(nats_server: NatsServer, tmp_path: Path) -> None:
    """The original's events carry no id and no Nats-Msg-Id: each is one event, as tail shows."""
    originals = [{"agent": "devbot", "action": "pr_opened", "repo": "acme/web", "pr": n, "title": "t"} for n in (1, 2)]

    async def run() -> None:
        await publish_all(nats_server.url, tmp_path)
        nc = await connect(nats_server.url)
        try:
            for payload in originals:
                await nc.jetstream().publish("swarm.events.pr_opened.devbot", json.dumps(payload).encode())
            assert [e.payload for e in await query(nc, SETTINGS, EventFilter())] == originals + [
                e.payload() for e in EVENTS
            ]
            assert [e.payload for e in await query(nc, SETTINGS, EventFilter(repo="acme/web"))][:2] == originals
        finally:
            await nc.close()

    asyncio.run(run())


@given(st.integers(min_value=1, max_value=2**63), st.integers(min_value=1, max_value=2**63))
def test_messages_without_an_id_keep_apart_in_stream_order_before_every_event(first: int, second: int) -> None:
    keys = [message_key(None, {}, first), message_key(None, {"id": ""}, second)]
    assert (keys[0] == keys[1]) == (first == second)
    assert (keys[0] < keys[1]) == (first < second)
    assert max(keys) < new_id()
    assert message_key("01J0000000000000000000000A", None, first) == "01J0000000000000000000000A"
    assert message_key(None, {"id": "01J0000000000000000000000B"}, first) == "01J0000000000000000000000B"
