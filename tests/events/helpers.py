"""Small helpers shared by the event-log tests (plain functions, no fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from agent_smith.crew import EventLog
from agent_smith.events import EventFilter, StoredEvent, connect, query

SETTINGS = EventLog()


async def stored(url: str, flt: EventFilter | None = None, settings: EventLog = SETTINGS) -> list[StoredEvent]:
    nc = await connect(url)
    try:
        return await query(nc, settings, flt or EventFilter())
    finally:
        await nc.close()


async def wait_until(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.contextmanager
def captured_warnings(logger: str = "agent_smith.events") -> Iterator[list[logging.LogRecord]]:
    """Warnings of one logger, whatever `agent_smith.logs.configure` did to propagation."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.WARNING)
    target = logging.getLogger(logger)
    target.addHandler(handler)
    try:
        yield records
    finally:
        target.removeHandler(handler)
