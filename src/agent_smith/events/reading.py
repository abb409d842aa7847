"""Reading the log: `query` (what is stored, filtered) and `tail` (what arrives from now on).

Both use an ordered push consumer — ephemeral, unacknowledged, flow
controlled — which replays several times faster than a pull consumer and
cannot stall on unacknowledged messages. The server narrows by subject
(type and agent are subject tokens) and by start time; the client applies
the rest of the filter (repo, pr, the exact time bounds) to each payload.

A reader does not reconnect: a connection lost mid-read is an `OperationError`,
never a wait that does not end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from agent_smith.credentials import shown_url
from agent_smith.crew import EventLog, nats_servers
from agent_smith.errors import OperationError
from agent_smith.events.failures import configuration_problem
from agent_smith.events.subjects import EventFilter, newest

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"
_V1_TOKENS = 9
# How often a tail looks whether its stream was replaced.
STREAM_CHECK = 1.0


@dataclass(frozen=True)
class StoredEvent:
    """An event as the stream holds it: its payload, subject and stream sequence."""

    seq: int
    subject: str
    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.payload.get("id", ""))


class ReaderConnection(Client):
    """A reader's connection (`connect`): it does not reconnect, and `gone` is set once it is
    closed, by the server going or by `close`: nats-py offers a callback for that, no awaitable."""

    def __init__(self) -> None:
        super().__init__()
        self.gone = asyncio.Event()


async def connect(url: str, connect_timeout: int = 2) -> ReaderConnection:
    """A connection for a reader; an unreachable server is an `OperationError` naming the URL."""
    nc = ReaderConnection()
    reported: list[Exception] = []

    async def quiet(exc: Exception) -> None:
        log.debug("nats client: %s", exc)
        reported.append(exc)

    async def closed() -> None:
        nc.gone.set()

    try:
        # Two quick attempts, then give up: a reader reports an unreachable server, it does not wait.
        await nc.connect(
            nats_servers(url),
            connect_timeout=connect_timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,  # type: ignore[arg-type]
            error_cb=quiet,
            closed_cb=closed,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        problem = configuration_problem(url, [exc, *reported])
        raise OperationError(
            problem or f"cannot reach NATS at {shown_url(url)}: {type(exc).__name__} {exc}".rstrip()
        ) from exc
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


def _failure(exc: BaseException, nc: Client, settings: EventLog, verb: str) -> OperationError:
    """The one line for a reader's JetStream request that failed, by what it raised and the connection's state."""
    if nc.is_closed:
        return OperationError(f"lost the connection to NATS while {verb}ing the event stream")
    if isinstance(exc, nats.js.errors.NotFoundError):
        return OperationError(f"the event stream {settings.stream} does not exist yet (nothing published)")
    server = nc.connected_url.geturl() if nc.connected_url else ""
    problem = configuration_problem(server, [exc])
    return OperationError(problem or f"cannot {verb} the event stream {settings.stream}: {exc}")


async def _subscribe(
    nc: Client,
    settings: EventLog,
    flt: EventFilter,
    policy: DeliverPolicy,
    verb: str,
    cb: Callable[[Msg], Awaitable[None]] | None = None,
) -> JetStreamContext.PushSubscription:
    """An ordered push consumer of `flt`'s subject from `policy` on; one-line errors."""
    try:
        return await nc.jetstream(timeout=5.0).subscribe(
            flt.subjects(settings.subject_prefix)[0],
            stream=settings.stream,
            cb=cb,
            ordered_consumer=True,
            config=_config(flt, settings.subject_prefix, policy, flt.since),
        )
    except (TimeoutError, nats.errors.Error) as exc:
        raise _failure(exc, nc, settings, verb) from exc


def message_key(event_id: str | None, payload: Mapping[str, Any] | None, seq: int) -> str:
    """What a query keeps a message under: its event id, so that a resend which outlived the
    duplicate window is shown once; for a message with none (the original's events have no id),
    its stream sequence, so that each is shown. Zero-padded, those sort before every event id,
    in stream order (pure)."""
    return event_id or (str(payload.get("id") or "") if payload is not None else "") or f"{seq:026d}"


async def query(
    nc: ReaderConnection, settings: EventLog, flt: EventFilter, limit: int | None = None
) -> list[StoredEvent]:
    """The stored events matching `flt`, oldest first (by event id), the newest `limit` of them.

    When the subject decides the whole filter, payloads are decoded only for the events
    returned; each message is keyed by `message_key`.
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
                found.setdefault(message_key(event_id, payload, seq), (seq, msg.subject, msg.data, payload))
        else:
            found.setdefault(event_id, (seq, msg.subject, msg.data, None))
        if (pending == 0 or (expected is not None and received >= expected)) and not done.done():
            done.set_result(None)

    async def read_all() -> None:
        nonlocal expected
        info = await sub.consumer_info()
        expected = (info.num_pending or 0) + (info.delivered.consumer_seq if info.delivered else 0) or 0
        if expected and received >= expected and not done.done():
            done.set_result(None)
        if expected:
            await done

    sub = await _subscribe(nc, settings, flt, DeliverPolicy.ALL, "query", on_message)
    reading = asyncio.create_task(read_all())
    lost = asyncio.create_task(nc.gone.wait())
    try:
        # Neither the messages nor a request's answer come once the connection is gone.
        await asyncio.wait([reading, lost], return_when=asyncio.FIRST_COMPLETED)
        if not reading.done():
            raise OperationError("lost the connection to NATS while querying the event stream")
        reading.result()
    except (TimeoutError, nats.errors.Error) as exc:
        raise _failure(exc, nc, settings, "query") from exc
    finally:
        reading.cancel()
        lost.cancel()
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    def stored(item: tuple[str, tuple[int, str, bytes, dict[str, Any] | None]]) -> StoredEvent | None:
        _, (seq, subject, data, payload) = item
        decoded = payload if payload is not None else _decode(data)
        return StoredEvent(seq, subject, decoded) if decoded is not None else None

    return newest(sorted(found.items()), limit, stored)


async def _created(nc: Client, settings: EventLog) -> datetime | None:
    """When the stream was made; None while there is none."""
    try:
        info = await nc.jetstream(timeout=5.0).stream_info(settings.stream)
    except nats.js.errors.NotFoundError:
        return None
    except (TimeoutError, nats.errors.Error) as exc:
        raise _failure(exc, nc, settings, "follow") from exc
    return info.created


async def _next_stream(
    nc: Client, settings: EventLog, created: datetime | None, sub: JetStreamContext.PushSubscription, every: float
) -> datetime:
    """Once the stream is no longer the one made at `created` (deleted, or deleted and made
    again between two looks), unsubscribe `sub`; return when the new one was made.

    Nothing announces a stream's end or return to every client (advisories need permissions a
    crew's user may lack), so this looks every `every` seconds. A look that fails is no answer,
    unless the connection is gone."""
    subscribed = True
    while True:
        await asyncio.sleep(every)
        try:
            now = await _created(nc, settings)
        except OperationError:
            if nc.is_closed:
                raise
            continue
        if now != created and subscribed:
            await sub.unsubscribe()
            subscribed = False
        if now is not None and now != created:
            return now


async def tail(
    nc: Client, settings: EventLog, flt: EventFilter, check_every: float = STREAM_CHECK
) -> AsyncIterator[StoredEvent]:
    """Events as they arrive from now on (from `flt.since` when given), matching `flt`.

    A stream deleted and made again (a publisher recreates it) is followed from its first
    event: nats-py's ordered consumer would resume at the old stream's next sequence and skip
    as many of the new one's events. So is a stream that does not exist yet (nothing was
    published), once the first publisher makes it. The stream is looked at every `check_every`
    seconds.
    """
    policy = DeliverPolicy.NEW
    created = await _created(nc, settings)
    while created is None:
        await asyncio.sleep(check_every)
        created = await _created(nc, settings)
        policy = DeliverPolicy.ALL
    while True:
        sub = await _subscribe(nc, settings, flt, policy, "follow")
        watch = asyncio.create_task(_next_stream(nc, settings, created, sub, check_every))
        try:
            async for msg in sub.messages:
                payload = _decode(msg.data)
                if payload is not None and flt.matches(payload):
                    yield StoredEvent(msg.metadata.sequence.stream, msg.subject, payload)
            # The iteration ends when the watch unsubscribed, or when the connection is gone.
            if nc.is_closed:
                raise OperationError("lost the connection to NATS while following the event stream")
            created = await watch
        finally:
            watch.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        policy = DeliverPolicy.ALL
