"""Reading the log: `query` (what is stored, filtered) and `tail` (what arrives from now on).

Both use an ordered push consumer — ephemeral, unacknowledged, flow
controlled — which replays several times faster than a pull consumer and
cannot stall on unacknowledged messages. The server narrows by subject
(type and agent are subject tokens) and by start time; the client applies
the rest of the filter (repo, pr, the exact time bounds) to each payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agent_smith.credentials import shown_url
from agent_smith.crew import EventLog
from agent_smith.errors import OperationError
from agent_smith.events.subjects import EventFilter, newest

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
_V1_TOKENS = 9


@dataclass(frozen=True)
class StoredEvent:
    """An event as the stream holds it: its payload, subject and stream sequence."""

    seq: int
    subject: str
    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.payload.get("id", ""))


async def connect(url: str, connect_timeout: int = 2) -> Client:
    """A connection for a reader; an unreachable server is an `OperationError` naming the URL."""
    nc = Client()

    async def quiet(exc: Exception) -> None:
        log.debug("nats client: %s", exc)

    try:
        # Two quick attempts, then give up: a reader reports an unreachable server, it does not wait.
        await nc.connect(
            url,
            connect_timeout=connect_timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,  # type: ignore[arg-type]
            error_cb=quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        raise OperationError(f"cannot reach NATS at {shown_url(url)}: {type(exc).__name__} {exc}".rstrip()) from exc
    return nc


def _config(flt: EventFilter, prefix: str, policy: DeliverPolicy, start: datetime | None) -> ConsumerConfig:
    subjects = flt.subjects(prefix)
    return ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME if start is not None else policy,
        opt_start_time=start,
        filter_subjects=subjects if len(subjects) > 1 else None,
        inactive_threshold=30.0,
    )


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(data)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def ack_position(reply: str) -> tuple[int, int]:
    """Stream sequence and messages still pending, from a JetStream delivery's reply subject.

    Cheaper than nats-py's full `Msg.metadata` (no timestamps, no objects), which matters
    when a query replays thousands of messages.
    """
    tokens = reply.split(".")
    if len(tokens) == _V1_TOKENS:
        return int(tokens[5]), int(tokens[8])
    return int(tokens[Msg.Ack.StreamSeq]), int(tokens[Msg.Ack.NumPending])


def _needs_payload(flt: EventFilter) -> bool:
    """Whether the filter looks inside payloads; type and agent are decided by the subject alone."""
    return flt.repo is not None or flt.pr is not None or flt.since is not None or flt.until is not None


async def _subscribe(
    js: JetStreamContext,
    settings: EventLog,
    flt: EventFilter,
    policy: DeliverPolicy,
    verb: str,
    cb: Callable[[Msg], Awaitable[None]] | None = None,
) -> JetStreamContext.PushSubscription:
    """An ordered push consumer of `flt`'s subject from `policy` on; one-line errors."""
    try:
        return await js.subscribe(
            flt.subjects(settings.subject_prefix)[0],
            stream=settings.stream,
            cb=cb,
            ordered_consumer=True,
            config=_config(flt, settings.subject_prefix, policy, flt.since),
        )
    except nats.js.errors.NotFoundError as exc:
        raise OperationError(f"the event stream {settings.stream} does not exist yet (nothing published)") from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise OperationError(f"cannot {verb} the event stream {settings.stream}: {exc}") from exc


async def query(nc: Client, settings: EventLog, flt: EventFilter, limit: int | None = None) -> list[StoredEvent]:
    """The stored events matching `flt`, oldest first (by event id), the newest `limit` of them.

    When the subject decides the whole filter, payloads are decoded only for the events
    returned; each message is keyed by its `Nats-Msg-Id` (the event id), so a resend that
    outlived the duplicate window is still shown once.
    """
    inspect = _needs_payload(flt)
    found: dict[str, tuple[int, str, bytes, dict[str, Any] | None]] = {}
    done = asyncio.get_running_loop().create_future()
    # Known once the consumer exists: everything up to then, so a busy stream cannot keep
    # the query reading forever.
    expected: int | None = None
    received = 0

    async def on_message(msg: Msg) -> None:
        nonlocal received
        received += 1
        seq, pending = ack_position(msg.reply)
        event_id = msg.headers.get(MSG_ID_HEADER) if msg.headers else None
        payload = None
        if inspect or event_id is None:
            payload = _decode(msg.data)
            if payload is not None and flt.matches(payload):
                found.setdefault(str(event_id or payload.get("id", "")), (seq, msg.subject, msg.data, payload))
        else:
            found.setdefault(event_id, (seq, msg.subject, msg.data, None))
        if (pending == 0 or (expected is not None and received >= expected)) and not done.done():
            done.set_result(None)

    sub = await _subscribe(nc.jetstream(timeout=5.0), settings, flt, DeliverPolicy.ALL, "query", on_message)
    try:
        info = await sub.consumer_info()
        expected = (info.num_pending or 0) + (info.delivered.consumer_seq if info.delivered else 0) or 0
        if expected and received >= expected and not done.done():
            done.set_result(None)
        if expected:
            await done
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def stored(item: tuple[str, tuple[int, str, bytes, dict[str, Any] | None]]) -> StoredEvent | None:
        _, (seq, subject, data, payload) = item
        decoded = payload if payload is not None else _decode(data)
        return StoredEvent(seq, subject, decoded) if decoded is not None else None

    return newest(sorted(found.items()), limit, stored)


async def tail(nc: Client, settings: EventLog, flt: EventFilter) -> AsyncIterator[StoredEvent]:
    """Events as they arrive from now on (from `flt.since` when given), matching `flt`."""
    sub = await _subscribe(nc.jetstream(timeout=5.0), settings, flt, DeliverPolicy.NEW, "follow")
    try:
        async for msg in sub.messages:
            payload = _decode(msg.data)
            if payload is not None and flt.matches(payload):
                yield StoredEvent(msg.metadata.sequence.stream, msg.subject, payload)
        # The iterator only ends when the connection is gone: say so rather than end quietly.
        raise OperationError("lost the connection to NATS while following the event stream")
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
