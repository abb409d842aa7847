"""The publisher: many concurrent callers, pipelined acks, and an outbox so nothing is lost.

A call to `publish` returns only once its event is acknowledged by the
stream, or written and fsynced to the outbox. One pump task serves all
callers: it takes whatever has queued up, sends it with `publish_async`
(every message in flight at once, each with `Nats-Msg-Id` = event id) and
waits for the acks together — that, not a faster client, is where the speed
over one-by-one awaited publishes comes from.

While NATS is unreachable — down at start, gone mid-burst, or refusing to
create the stream as crew.yaml configures it — events go to the outbox and the
callers get `stored=False`. The outbox is flushed in order when NATS is back;
until it is empty, new events queue behind it so order holds. A re-sent event
(ack lost, publisher killed after sending) is stored once thanks to the
stream's duplicate window.

An event NATS refuses as such (larger than the server takes, say) can never be
stored: its caller gets `EventRefused`, and one already in the outbox is set
aside (`Outbox.set_aside`) rather than holding back every event after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agent_smith.credentials import shown_url
from agent_smith.crew import EventLog, nats_servers
from agent_smith.errors import EventRefused, OperationError
from agent_smith.events.failures import configuration_problem, refusal
from agent_smith.events.metrics import EventMetrics, default_metrics
from agent_smith.events.model import Event
from agent_smith.events.outbox import Outbox, OutboxRecord
from agent_smith.events.stream import ensure_stream
from agent_smith.events.subjects import retarget, subject_for

log = logging.getLogger(__name__)

MSG_ID_HEADER = "Nats-Msg-Id"


def refused(error: BaseException) -> bool:
    """Whether NATS refused a message as such, not for want of a connection or a stream (pure)."""
    return isinstance(error, nats.errors.MaxPayloadError | nats.js.errors.BadRequestError)


def stream_answer(error: BaseException) -> str | None:
    """What the stream said when it answered an event with an error about itself (full, say),
    not about the event; None for any other failure (pure)."""
    if isinstance(error, nats.js.errors.APIError) and error.err_code is not None and not refused(error):
        return error.description or f"error {error.err_code}"
    return None


def stream_refused(error: BaseException) -> bool:
    """Whether a reachable server refused to create or update the stream as configured (pure)."""
    return isinstance(error, nats.js.errors.APIError) and error.code in (400, 500)


@dataclass(frozen=True)
class Receipt:
    """What became of one event: in the stream (with its sequence) or durably in the outbox."""

    event_id: str
    stored: bool
    seq: int | None = None
    duplicate: bool = False


@dataclass
class _Job:
    record: OutboxRecord
    type: str
    future: asyncio.Future[Receipt]
    # Direct jobs belong to a caller: a failure sends them to the outbox instead of raising.
    direct: bool = True


def encode(event: Event, prefix: str) -> OutboxRecord:
    body = event.model_dump_json(exclude_none=True).encode()
    # `action` first, then the envelope and fields exactly as the model serialises them.
    data = b'{"action":"' + event.type.encode() + b'",' + body[1:]
    return OutboxRecord(subject_for(prefix, event.type, event.agent), event.id, data)


class Publisher:
    """Use as ``async with Publisher(settings, outbox_dir, url) as pub: await pub.publish(event)``.

    An outage is logged once as a warning (and its end once); a one-shot caller that reports
    the outcome itself passes ``log_outages=False``.
    """

    def __init__(
        self,
        settings: EventLog,
        outbox_dir: Path,
        url: str | None,
        *,
        metrics: EventMetrics | None = None,
        ack_timeout: float = 2.0,
        window: int = 2000,
        max_in_flight: int = 8000,
        reconnect_wait: float = 0.25,
        log_outages: bool = True,
        connect_wait: float = 2.0,
        sweep_every: float = 5.0,
    ) -> None:
        self.settings = settings
        self._log_outages = log_outages
        self._connect_wait = connect_wait
        self._sweep_every = sweep_every
        self.url = url
        self.outbox = Outbox(outbox_dir)
        self.metrics = metrics or default_metrics()
        self._ack_timeout = ack_timeout
        self._window = window
        self._max_in_flight = max_in_flight
        self._reconnect_wait = reconnect_wait
        self._nc: Client | None = None
        # nats-py's close() waits forever on a client whose first connect never finished.
        self._ever_connected = False
        self._js: JetStreamContext | None = None
        self._inbox = ""
        self._tokens = itertools.count()
        self._in_flight: dict[str, _Job] = {}
        self._failed: list[_Job] = []
        self._up = False
        self._warned = False
        # Times in a row the stream failed events while connected, with none stored in between.
        self._falls = 0
        self._problem = "not connected yet"
        # The problem the last warning said.
        self._said = ""
        # The server's refusal of our credentials, reported before nats-py gives up with NoServersError.
        self._refused: Exception | None = None
        # Whether the last write to the outbox failed (a full disk, say), so that it is said once.
        self._outbox_fails = False
        self._closing = False
        self._queue: list[_Job] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._ready = asyncio.Event()
        self._first_attempt = asyncio.Event()
        self._empty = asyncio.Event()
        self._room = asyncio.Event()
        self._down = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._counters: dict[tuple[str, str], Any] = {}

    @property
    def connected(self) -> bool:
        """Whether events currently go straight to the stream."""
        return self._up

    @property
    def problem(self) -> str:
        """Why events go to the outbox (while not `connected`), for a one-line report."""
        return self._problem

    async def start(self) -> None:
        self.outbox.claim_orphans()
        self._update_depth()
        if self.url is None:
            self._mark_down("no NATS server is configured")
        else:
            self._down.set()
            self._tasks.append(asyncio.create_task(self._connector(), name="events-connector"))
            self._tasks.append(asyncio.create_task(self._sweeper(), name="events-sweeper"))
        self._tasks.append(asyncio.create_task(self._pump(), name="events-pump"))

    async def publish(self, event: Event) -> Receipt:
        """Return once the event is in the stream or fsynced in the outbox."""
        if self._closing:
            raise OperationError("the event publisher is closed")
        if not self._first_attempt.is_set():
            # Right after start: give the first connection attempt a moment rather than
            # sending the first events to the outbox only because it is still under way.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_attempt.wait(), self._connect_wait)
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._queue.append(_Job(encode(event, self.settings.subject_prefix), event.type, future))
        self._wake.set()
        return await future

    async def close(self, flush_timeout: float = 5.0) -> None:
        """Finish what callers queued, try to empty the outbox for a while, disconnect."""
        self._closing = True
        self._idle.clear()
        self._wake.set()
        self._down.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), flush_timeout)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)
        self._tasks = []
        # Whatever is still unsettled goes to the outbox rather than being dropped.
        self._fail_in_flight()
        self._settle_failed()
        self._to_outbox(self._queue)
        self._queue = []
        if self._nc is not None and self._ever_connected and not self._nc.is_closed:
            # Bounded: closing while the client reconnects must not hold up the caller's exit.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5.0)
        self.outbox.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def wait_connected(self, seconds: float) -> bool:
        """For callers that prefer to wait briefly for NATS before publishing (e.g. a one-shot CLI)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), seconds)
        return self._up

    async def wait_flushed(self, seconds: float) -> bool:
        """Wait until NATS is reachable and the outbox is empty; False if not within `seconds`."""

        async def flushed() -> None:
            while not (self._up and self.outbox.depth() == 0):
                await self._empty.wait()
                await self._ready.wait()
                if self.outbox.depth():
                    self._empty.clear()

        try:
            await asyncio.wait_for(flushed(), seconds)
        except TimeoutError:
            return False
        return True

    # -- connection ---------------------------------------------------------------------------

    def _mark_down(self, reason: str, problem: str | None = None) -> None:
        """NATS cannot take events now: `reason` is the failure, `problem` what a person is told
        (by default, that NATS is unreachable)."""
        if self._closing and self._nc is not None and self._nc.is_closed:
            return
        where = f" at {shown_url(self.url)}" if self.url else ""
        self._problem = problem or f"NATS unreachable{where} ({reason})"
        # A stream failing events again, as it said last time, is the outage already said.
        relapse = self._falls > 1 and self._problem == self._said
        if ((self._up and not relapse) or not self._warned) and self._log_outages:
            log.warning("%s: events go to the outbox in %s until it is back", self._problem, self.outbox.directory)
            self._warned = True
            self._said = self._problem
        self._up = False
        self._ready.clear()
        self._first_attempt.set()
        self.metrics.failures.labels(reason=_reason_label(reason)).inc()
        self._down.set()

    async def _on_disconnected(self) -> None:
        if self._up and not self._closing:
            self._mark_down("disconnected")
        self._fail_in_flight()
        self._wake.set()

    async def _on_reconnected(self) -> None:
        self._down.set()

    async def _on_closed(self) -> None:
        if not self._closing:
            self._mark_down("connection closed")
            self._down.set()

    async def _on_error(self, exc: Exception) -> None:
        log.debug("nats client: %s", exc)
        if refusal(exc) is not None:
            self._refused = exc
        if not self._up and not self._closing:
            # A failed (re)connect attempt: the client keeps retrying on its own.
            assert self.url is not None
            self._mark_down(_describe(exc), configuration_problem(self.url, [exc]))

    async def _connector(self) -> None:
        assert self.url is not None
        # `_closing` ends the loop too: a cancel that lands inside nats-py's connect can be
        # swallowed there (asyncio.wait_for in Python 3.11), so cancelling alone is not enough.
        while not self._closing:
            await self._down.wait()
            self._down.clear()
            if self._up or self._closing:
                continue
            if self._falls:
                # The stream failed events while the connection stayed (a full stream, say): going
                # up again at once would spin, sending and failing the same events thousands of
                # times a second.
                await asyncio.sleep(relapse_delay(self._falls, self._reconnect_wait))
            try:
                if self._nc is None or not (self._nc.is_connected or self._nc.is_reconnecting):
                    nc = Client()
                    self._nc = nc
                    self._refused = None
                    # A few attempts per client, then this loop makes a new one: nats-py's own
                    # endless retry cannot be cancelled cleanly, and this one can.
                    await nc.connect(
                        nats_servers(self.url),
                        name="agent-smith-events",
                        connect_timeout=1,
                        reconnect_time_wait=self._reconnect_wait,  # type: ignore[arg-type]
                        max_reconnect_attempts=3,
                        ping_interval=5,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                        closed_cb=self._on_closed,
                        error_cb=self._on_error,
                    )
                    self._ever_connected = True
                    self._js = nc.jetstream(timeout=self._ack_timeout)
                    self._inbox = nc.new_inbox()
                    await nc.subscribe(self._inbox + ".*", cb=self._on_ack)
                if not self._nc.is_connected or self._js is None:
                    continue
                await ensure_stream(self._js, self.settings)
            except (OSError, TimeoutError, nats.errors.Error) as exc:
                if self._closing:
                    return
                problem = configuration_problem(self.url, [exc, *([self._refused] if self._refused else [])])
                if problem is not None:
                    # Credentials or a server setting to fix: asking again soon would change nothing.
                    self._mark_down(_describe(exc), problem)
                    await asyncio.sleep(max(self._reconnect_wait, STREAM_RETRY))
                elif stream_refused(exc):
                    # Reachable but refusing what crew.yaml asks for: that is not fixed by asking
                    # again four times a second, and "unreachable" would send people the wrong way.
                    description = getattr(exc, "description", None) or _describe(exc)
                    self._mark_down(
                        "stream refused", f"NATS refused the event stream {self.settings.stream}: {description}"
                    )
                    await asyncio.sleep(max(self._reconnect_wait, STREAM_RETRY))
                else:
                    self._mark_down(_describe(exc))
                    await asyncio.sleep(self._reconnect_wait)
                continue
            self.outbox.claim_orphans()
            self._update_depth()
            if self._warned and self._log_outages and not self._falls:
                log.warning("NATS is back: flushing %d events from the outbox", self.outbox.depth())
                self._warned = False
            self._up = True
            # While up, an event goes to the outbox only to queue behind the ones still in it.
            self._problem = "events kept earlier are still being sent"
            self._ready.set()
            self._first_attempt.set()
            self._wake.set()

    async def _sweeper(self) -> None:
        """Adopt segments left by publishers that died (or one-shot ones that gave up) since we started."""
        while True:
            await asyncio.sleep(self._sweep_every)
            if self._up and self.outbox.claim_orphans():
                self._update_depth()
                self._wake.set()

    # -- acks ---------------------------------------------------------------------------------

    async def _on_ack(self, msg: Msg) -> None:
        job = self._in_flight.pop(msg.subject[len(self._inbox) + 1 :], None)
        if job is None:
            return
        if len(self._in_flight) < self._max_in_flight // 2:
            self._room.set()
        if msg.headers and msg.headers.get("Status") == "503":
            self._fail(job, nats.js.errors.NoStreamResponseError())
            return
        outcome = parse_ack(msg.data)
        if isinstance(outcome, BaseException):
            self._fail(job, outcome)
            return
        if self._falls:
            self._falls = 0
            if self._warned and self._log_outages:
                log.warning("the event stream %s takes events again", self.settings.stream)
                self._warned = False
        if job.direct:
            self._count(job.type, "stream")
        if not job.future.done():
            job.future.set_result(Receipt(job.record.msg_id, True, *outcome))

    def _count(self, type_name: str, via: str) -> None:
        child = self._counters.get((type_name, via))
        if child is None:
            child = self._counters[type_name, via] = self.metrics.published.labels(type=type_name, via=via)
        child.inc()

    def _fail(self, job: _Job, error: BaseException) -> None:
        if refused(error):
            # The server is fine; this message is not. Its caller hears it, or the outbox's flush does.
            self.metrics.failures.labels(reason="refused").inc()
            if not job.future.done():
                job.future.set_exception(
                    EventRefused(f"NATS refused event {job.record.msg_id}: {_describe(error)}") if job.direct else error
                )
            return
        if job.direct:
            self._failed.append(job)
            self._wake.set()
        elif not job.future.done():
            job.future.set_exception(error)
        if self._closing:
            return
        if self._up:
            self._falls += 1
        said = stream_answer(error)
        if said is not None:
            # The server is there and answered: "unreachable" would send people the wrong way.
            self._mark_down("stream refused", f"the event stream {self.settings.stream} refused events: {said}")
        elif isinstance(error, TimeoutError) and self._nc is not None and self._nc.is_connected:
            # Connected, yet unanswered: the stream, not the network. nats-server 2.15 does this to
            # a stream whose store once hit a full disk, until the server restarts.
            self._mark_down(
                _describe(error),
                f"the event stream {self.settings.stream} at {shown_url(self.url or '')} "
                f"acknowledged no event within {self._ack_timeout:g} s",
            )
        else:
            self._mark_down(_describe(error))

    def _expire(self, tokens: list[str]) -> None:
        for token in tokens:
            job = self._in_flight.pop(token, None)
            if job is not None:
                self._fail(job, TimeoutError("no ack from the stream"))
        self._room.set()

    def _fail_in_flight(self) -> None:
        jobs = list(self._in_flight.values())
        self._in_flight.clear()
        self._room.set()
        for job in jobs:
            self._fail(job, ConnectionError("disconnected before the ack"))

    async def _dispatch(self, jobs: list[_Job]) -> None:
        """Send every job now; acks settle them later (`_on_ack`), or the timer does (`_expire`)."""
        assert self._nc is not None
        tokens: list[str] = []
        for job in jobs:
            token = str(next(self._tokens))
            self._in_flight[token] = job
            tokens.append(token)
            try:
                await self._nc.publish(
                    job.record.subject,
                    job.record.data,
                    reply=f"{self._inbox}.{token}",
                    headers={MSG_ID_HEADER: job.record.msg_id},
                )
            except (OSError, nats.errors.Error) as exc:
                self._in_flight.pop(token, None)
                self._fail(job, exc)
        asyncio.get_running_loop().call_later(self._ack_timeout, self._expire, tokens)

    # -- the pump -----------------------------------------------------------------------------

    async def _pump(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch: list[_Job] = []
            try:
                self._settle_failed()
                if self._up and self.outbox.depth():
                    await self._flush_outbox()
                if self._queue:
                    batch, self._queue = self._queue[: self._window], self._queue[self._window :]
                    if self._up and not self.outbox.depth():
                        await self._wait_for_room()
                        await self._dispatch(batch)
                    else:
                        self._to_outbox(batch)
                failures = 0
            except Exception as exc:
                # The pump must outlive any one failure: callers would hang without it.
                log.exception("event publisher pump failed")
                # The batch in hand waits like the queue; what of it was sent is settled by its ack.
                held = {id(job) for job in [*self._in_flight.values(), *self._failed]}
                unsent = [job for job in batch if id(job) not in held]
                queued, self._queue = self._queue, []
                self._fail_jobs([*unsent, *queued], OperationError(f"event publisher failed: {exc}"))
                # A failure that repeats (the outbox it keeps trying to flush, say) must not spin.
                failures += 1
                await asyncio.sleep(pump_backoff(failures))
            if self._queue or self._failed or (self._up and self.outbox.depth()):
                self._wake.set()
            elif not self._in_flight:
                self._idle.set()

    async def _wait_for_room(self) -> None:
        while len(self._in_flight) >= self._max_in_flight:
            self._room.clear()
            await self._room.wait()

    def _settle_failed(self) -> None:
        if self._failed:
            failed, self._failed = self._failed, []
            self._to_outbox(sorted(failed, key=lambda job: job.record.msg_id))

    def _to_outbox(self, batch: list[_Job]) -> None:
        if not batch:
            return
        try:
            self.outbox.append([job.record for job in batch])
        except OperationError as exc:
            if not self._outbox_fails and self._log_outages:
                log.warning("%s: events that cannot go to the stream now are refused to their callers", exc)
            self._outbox_fails = True
            self._fail_jobs(batch, exc)
            return
        if self._outbox_fails and self._log_outages:
            log.warning("the event outbox in %s takes events again", self.outbox.directory)
        self._outbox_fails = False
        for job in batch:
            self._count(job.type, "outbox")
            if not job.future.done():
                job.future.set_result(Receipt(job.record.msg_id, False))
        self._update_depth()

    async def _flush_outbox(self) -> None:
        """Send the outbox oldest first, a chunk at a time; the cursor only moves past records
        acked, or refused and set aside.

        Each record goes under this crew's subject prefix: one kept while the prefix was
        another (that NATS refused, say, for overlapping another crew's) still belongs here."""
        loop = asyncio.get_running_loop()
        prefix = self.settings.subject_prefix
        for segment in list(self.outbox.segments()):
            while chunk := segment.records[segment.flushed : segment.flushed + self._window]:
                jobs = [_Job(retarget(record, prefix), "", loop.create_future(), direct=False) for record in chunk]
                await self._wait_for_room()
                await self._dispatch(jobs)
                await asyncio.wait([job.future for job in jobs])
                # All read, not only up to the first failure: asyncio logs each exception never
                # read, which would be a traceback per kept event at every failed flush.
                errors = [job.future.exception() for job in jobs]
                sent = set_aside = 0
                for job, error in zip(jobs, errors, strict=True):
                    if error is not None and not refused(error):
                        break
                    if error is not None:
                        where = self.outbox.set_aside(job.record, _describe(error))
                        log.error("NATS refused event %s (%s): set aside in %s", job.record.msg_id, error, where)
                        set_aside += 1
                    sent += 1
                if sent:
                    segment.mark_flushed(segment.flushed + sent)
                    self.metrics.flushed.inc(sent - set_aside)
                    self._update_depth()
                if sent < len(chunk) or not self._up:
                    return
            self.outbox.retire(segment)
        self._update_depth()

    def _fail_jobs(self, jobs: list[_Job], exc: Exception) -> None:
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)

    def _update_depth(self) -> None:
        depth = self.outbox.depth()
        self.metrics.outbox_depth.set(depth)
        if depth:
            self._empty.clear()
        else:
            self._empty.set()


# How long to wait before asking again for a stream the server refused (a configuration problem).
STREAM_RETRY = 5.0
# The pump's pause after a failure: doubling from the first, up to the last.
PUMP_BACKOFF = (0.1, 10.0)


def relapse_delay(falls: int, first: float) -> float:
    """Seconds to wait before sending again to a stream that failed events `falls` times in a row
    while connected: doubling from `first` up to `STREAM_RETRY` (pure)."""
    return min(STREAM_RETRY, first * 2.0 ** min(falls - 1, 32))


def pump_backoff(failures: int) -> float:
    """Seconds the pump waits after its `failures`-th failure in a row (pure)."""
    first, most = PUMP_BACKOFF
    return min(most, first * 2.0 ** min(failures - 1, 32))


_PLAIN_ACK = re.compile(rb'^\{"stream":"[^"]*",(?:"domain":"[^"]*",)?"seq":(\d+)(,"duplicate":true)?\}$')


def parse_ack(data: bytes) -> tuple[int, bool] | BaseException:
    """(stream sequence, duplicate) from a JetStream publish ack, or the error it carries.

    The common ack is matched without a JSON parse: at thousands of acks a second it shows.
    """
    plain = _PLAIN_ACK.match(data)
    if plain is not None:
        return int(plain.group(1)), plain.group(2) is not None
    try:
        ack = json.loads(data)
    except ValueError as exc:
        return exc
    if not isinstance(ack, dict):
        return ValueError(f"not a publish ack: {data[:80]!r}")
    if "error" in ack:
        try:
            # nats-py raises the matching APIError subclass rather than returning it.
            nats.js.errors.APIError.from_error(ack["error"])
        except nats.js.errors.APIError as exc:
            return exc
        return ValueError(f"publish refused: {ack['error']!r}")
    if not isinstance(ack.get("seq"), int):
        return ValueError(f"not a publish ack: {data[:80]!r}")
    return ack["seq"], bool(ack.get("duplicate"))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0].rstrip(": ")


def _reason_label(reason: str) -> str:
    """A small, fixed set of label values: metrics must not grow a series per message text."""
    lowered = reason.lower()
    if "no nats server" in lowered:
        return "unconfigured"
    if "stream refused" in lowered:
        return "stream_refused"
    if "timeout" in lowered or "no ack" in lowered:
        return "timeout"
    if "disconnect" in lowered or "connection" in lowered or "oserror" in lowered or "refused" in lowered:
        return "disconnected"
    return "error"
