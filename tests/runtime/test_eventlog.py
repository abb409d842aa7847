"""The embedded event log as the supervisor keeps it: a server that runs on but stores nothing is
restarted, on the same URL, and takes what was kept meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from agent_smith.crew import EventLog
from agent_smith.events import Publisher, TaskDone
from agent_smith.events.embedded import EmbeddedNats, running_server
from agent_smith.runtime.eventlog import EventLogService
from tests.events.helpers import captured_warnings, stored
from tests.fixtures.disk import fill
from tests.fixtures.processes import LeakCheck

pytestmark = pytest.mark.real

# Within what the 2 MiB disk lets JetStream reserve (75% of it).
SMALL = EventLog(max_bytes=256 * 1024)


@pytest.mark.parametrize("adopted", [False, True], ids=["started", "adopted"])
def test_an_event_log_that_stops_storing_after_a_full_disk_is_restarted_and_takes_events_again(
    small_disk: Path, tmp_path: Path, leak_check: LeakCheck, adopted: bool
) -> None:
    # nats-server stops writing a stream whose store met a full disk, until it restarts; freeing
    # the disk is not enough. Its health check says so, and the service restarts it: the one it
    # started, or the one an earlier supervisor left running.
    if adopted:
        EmbeddedNats(small_disk / "nats").start()
    service = EventLogService(small_disk / "nats", health_every=0.2, unhealthy_for=1.0)
    url = service.start()
    first = running_server(small_disk / "nats")
    assert first is not None
    leak_check.track(first.pid, "embedded nats-server")
    events = [TaskDone(agent="devbot", summary=f"task {n} " + "x" * 400) for n in range(300)]

    async def run() -> list[str]:
        async with Publisher(SMALL, tmp_path / "outbox", url, ack_timeout=0.5, reconnect_wait=0.05) as publisher:
            assert await publisher.wait_connected(10)
            filler = fill(small_disk)
            receipts = [await publisher.publish(event) for event in events]
            assert not all(r.stored for r in receipts), "nats-server took every event on a full disk"
            filler.unlink()
            deadline = time.monotonic() + 30
            while not await publisher.wait_flushed(0.1):
                assert time.monotonic() < deadline, "the event log never took the kept events"
                service.check(time.time())
        return [event.id for event in await stored(url, settings=SMALL)]

    try:
        with captured_warnings("agent_smith.runtime.eventlog") as logged:
            in_stream = asyncio.run(run())
        second = running_server(small_disk / "nats")
        assert second is not None
        leak_check.track(second.pid, "embedded nats-server, restarted")
    finally:
        service.stop()
    assert second.pid != first.pid
    assert second.url == url
    assert in_stream == [event.id for event in events]
    said = [(record.levelno, record.getMessage()) for record in logged]
    assert said[0][1].startswith("the event log (nats-server) says it is unhealthy: JetStream stream")
    assert "no space left on device" in said[0][1]
    restarting = [message for level, message in said if level == logging.ERROR]
    assert len(restarting) == 1
    assert restarting[0].startswith("the event log (nats-server) has been unhealthy for ")
    assert restarting[0].endswith("; restarting it")
    assert said[-1] == (logging.WARNING, f"the event log runs at {url}")
