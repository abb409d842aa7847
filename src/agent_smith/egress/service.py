"""Run a firewall for a crew: serve its settings, publish its denials, import its Claude login."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent_smith.egress.audit import EgressDenied
from agent_smith.egress.claude import ClaudeTokens, tokens_from_credentials
from agent_smith.egress.proxy import Firewall
from agent_smith.egress.settings import FirewallSettings, claude_store_for
from agent_smith.errors import EventRefused, UsageError
from agent_smith.events import pending

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.crew import Crew
    from agent_smith.events import Publisher

__all__ = ["DenialPublisher", "RepeatWindow", "import_claude_login", "run_firewall"]

log = logging.getLogger("agent_smith.egress")

# Long enough for a crew's CLIs to boot (about half a second each here, side by side).
_SETTLE = 2.0
_PENDING_KEYS = frozenset({"id", *(f.name for f in fields(EgressDenied))})
# One event a minute for the same denial: a CLI retrying a host it may not reach (its telemetry,
# every few seconds) would otherwise fill the event log. The audit log keeps every one.
REPEAT_WINDOW = 60.0
# Denials remembered at most, for their repeats; past it, windows that ended are forgotten.
_REMEMBERED = 1024

DenialKey = tuple[str, str, int, str]


@dataclass
class RepeatWindow:
    """Which denials become events: the first of its kind (agent, host, port and reason), then the
    first after `window` seconds, which says how many like it were not published meanwhile (pure:
    the caller tells the time)."""

    window: float = REPEAT_WINDOW
    _opened: dict[DenialKey, tuple[float, int]] = field(default_factory=dict)

    def admit(self, key: DenialKey, now: float) -> int | None:
        """None when a denial like this one was published less than `window` ago (it is counted);
        else how many were counted since the last one published (0 for the first)."""
        opened = self._opened.get(key)
        if opened is not None and now - opened[0] < self.window:
            self._opened[key] = (opened[0], opened[1] + 1)
            return None
        if opened is None and len(self._opened) >= _REMEMBERED:
            self._opened = {k: v for k, v in self._opened.items() if now - v[0] < self.window}
        self._opened[key] = (now, 0)
        return 0 if opened is None else opened[1]


class DenialPublisher:
    """Publishes each denial as an ``egress_denied`` event: kept at once, published once the agents boot.

    The firewall starts beside the agents' booting CLIs, on a machine that may
    have two cores, and their first requests are often denied. Publishing
    loads the event log's client, the event model and (when the firewall was
    handed its settings) the crew: ~0.3 s of CPU, which their boot paid for.
    So a denial is only appended to a pending file, fsynced, with the event id
    it will have (no heavy import); `settle` seconds later, or at once when
    the firewall stops, they are loaded (in a thread) and everything pending
    is published, and afterwards each new denial as it comes. A firewall killed
    before that leaves the file: the next one publishes it, and an event it had
    sent already is stored once (the id is the `Nats-Msg-Id`).
    """

    def __init__(
        self,
        crew: Callable[[], Crew],
        path: Path,
        *,
        settle: float = _SETTLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._crew = crew
        self._made: Crew | None = None
        self._path = path
        self._settle = settle
        self._clock = clock
        self._repeats = RepeatWindow()
        self._pending = pending.kept(path, _PENDING_KEYS)
        if self._pending or path.exists():
            # Without a torn line a killed firewall may have left, so that what is appended
            # after it is read back too.
            pending.rewrite(path, self._pending)
        self._publisher: Publisher | None = None
        self._flushing: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Publish, in due course, what a firewall killed before it could left pending."""
        if self._pending:
            self._schedule()

    def __call__(self, denial: EgressDenied) -> None:
        from agent_smith.events.ids import new_id

        repeated = self._repeats.admit((denial.agent, denial.host, denial.port, denial.reason), self._clock())
        if repeated is None:
            return
        item: dict[str, object] = {"id": new_id(), **asdict(denial), "repeated": repeated}
        try:
            pending.keep(self._path, item)
        except OSError as exc:
            # Still published (it is kept in memory), only not across a crash; the audit log has it.
            log.warning("cannot keep a denial in %s: %s", self._path, exc.strerror)
        self._pending.append(item)
        self._schedule()

    def _schedule(self) -> None:
        if self._flushing is None or self._flushing.done():
            delay = self._settle if self._publisher is None else 0.0
            self._flushing = asyncio.get_running_loop().create_task(self._flush(delay))
            self._flushing.add_done_callback(self._done)

    def _open(self) -> Publisher | None:
        """The crew's event log's client; None while the crew's own (embedded) event log does not
        run yet: `up` starts it once the agents have booted, after their first denials."""
        from agent_smith.crew import CrewPaths
        from agent_smith.events import Publisher, running_server_url

        # Made once: it is looked for again every `settle` seconds until the event log runs.
        if self._made is None:
            self._made = self._crew()
        crew = self._made
        paths = CrewPaths.of(crew)
        url = crew.events.nats_url or running_server_url(paths.nats)
        return None if url is None else Publisher(crew.events, paths.events, url)

    async def _flush(self, delay: float, *, until_served: bool = True) -> None:
        """Publish what is pending after `delay`, once there is an event log to publish to: waited
        for (looked for every `settle` seconds), or, not `until_served`, left pending on disk."""
        await asyncio.sleep(delay)
        events = await asyncio.to_thread(importlib.import_module, "agent_smith.events")
        while self._publisher is None:
            publisher = await asyncio.to_thread(self._open)
            if publisher is not None:
                await publisher.start()
                self._publisher = publisher
            elif not until_served:
                return
            else:
                # A client made now would never learn the server's address, and what it took
                # would wait in the outbox until this firewall ends.
                await asyncio.sleep(self._settle)
        while self._pending:
            batch = list(self._pending)
            await asyncio.gather(*(_publish(self._publisher, events, item) for item in batch))
            # Those that came meanwhile stay, and are the next batch.
            self._pending = self._pending[len(batch) :]
            pending.rewrite(self._path, self._pending)

    def _done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Still pending (in memory and on disk): the next denial, or the next firewall, retries.
            log.warning("publishing egress_denied failed: %s", task.exception())

    async def close(self) -> None:
        """Publish what is pending now, then close the event log's client."""
        if self._flushing is not None and not self._flushing.done():
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
        try:
            if self._pending:
                await self._flush(0.0, until_served=False)
        except Exception as exc:
            # Kept on disk for the next firewall: one line says why.
            log.warning("publishing egress_denied failed: %s", exc)
        finally:
            if self._publisher is not None:
                await self._publisher.close()


async def _publish(publisher: Publisher, events: Any, item: Mapping[str, Any]) -> object:
    try:
        events.check_agent_name(item["agent"])
    except UsageError:
        # Clients of the shared transparent listener have no agent identity, and an event needs one.
        return None
    port = item["port"]
    try:
        event = events.EgressDenied(
            id=item["id"],
            time=item["time"],
            agent=item["agent"],
            host=item["host"],
            port=port if isinstance(port, int) and 0 < port < 65536 else 443,
            method=item["method"],
            path=item["path"],
            reason=item["reason"],
            # A firewall before this one kept no count.
            repeated=item.get("repeated", 0),
        )
    except ValueError as exc:
        # Not what this firewall writes (edited by hand, say): dropped, or it would hold back the rest.
        log.warning("a pending denial is not one and is dropped: %s", str(exc).splitlines()[0])
        return None
    try:
        return await publisher.publish(event)
    except EventRefused as exc:
        # NATS will never take it; kept, it would hold back every denial after it.
        log.warning("a pending denial is dropped: %s", exc)
        return None


async def run_firewall(
    settings: FirewallSettings, ready: Callable[[Firewall], None], crew: Callable[[], Crew] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; with `crew` (which loads it), denials go to its event log as
    ``egress_denied``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    denials = DenialPublisher(crew, settings.ca_store.pending_denials_path) if crew is not None else None
    if denials is not None:
        settings = replace(settings, on_denied=_both(settings.on_denied, denials))
    firewall = Firewall(settings)
    await firewall.start()
    try:
        if denials is not None:
            denials.start()
        ready(firewall)
        await stop.wait()
    finally:
        await firewall.stop()
        if denials is not None:
            await denials.close()


def _both(
    first: Callable[[EgressDenied], None] | None, second: Callable[[EgressDenied], None]
) -> Callable[[EgressDenied], None]:
    if first is None:
        return second

    def call(denial: EgressDenied) -> None:
        first(denial)
        second(denial)

    return call


def import_claude_login(crew: Crew, credentials_file: Path) -> ClaudeTokens:
    """Copy the tokens of a real ``.credentials.json`` into the firewall's secret store, and nowhere else."""
    try:
        raw = credentials_file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{credentials_file}: cannot read: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{credentials_file}: not JSON (line {getattr(exc, 'lineno', '?')})") from None
    tokens = tokens_from_credentials(data, str(credentials_file))
    login = crew.egress.claude_login
    if tokens.access_token == login.stub_access_token or tokens.refresh_token == login.stub_refresh_token:
        raise UsageError(f"{credentials_file}: holds the stub tokens, not a real login")
    store = claude_store_for(crew)
    # Not while a firewall renews the login it holds: its renewal, saved after, would undo this import.
    with store.replacing():
        store.save(tokens)
    return tokens
