"""Query and tail against a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent_smith.errors import OperationError
from agent_smith.events import (
    EventFilter,
    Incident,
    PrMerged,
    PrOpened,
    Publisher,
    TaskDone,
    connect,
    query,
    tail,
)
from agent_smith.listeners import free_port
from tests.events.helpers import SETTINGS, stored
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
