"""Small helpers shared by the event-log tests (plain functions, no fixtures)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

from agent_smith.crew import EventLog
from agent_smith.events import EventFilter, StoredEvent, connect, query
from agent_smith.listeners import free_port
from agent_smith.parts import find_nats_server
from tests.fixtures.processes import LeakCheck

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


@contextlib.contextmanager
def plain_nats(leak_check: LeakCheck, *args: str) -> Iterator[int]:
    """A nats-server run with `args` only (so without JetStream unless they ask for it, say with a
    login); yields its port."""
    binary = find_nats_server()
    assert binary is not None, "nats-server is missing: run `bash scripts/install.sh`"
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-a", "127.0.0.1", "-p", str(port), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    leak_check.track(process.pid, "nats-server")
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            assert process.poll() is None, "nats-server exited at start"
            assert time.monotonic() < deadline, "nats-server did not listen within 10 s"
            time.sleep(0.01)
        yield port
    finally:
        process.kill()
        process.wait()
