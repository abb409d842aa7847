"""Run a firewall for a crew: serve its settings, publish its denials, import its Claude login."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent_smith.egress.audit import EgressDenied
from agent_smith.egress.claude import ClaudeTokens, tokens_from_credentials
from agent_smith.egress.proxy import Firewall
from agent_smith.egress.settings import FirewallSettings, claude_store_for
from agent_smith.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.crew import Crew
    from agent_smith.events import Publisher

__all__ = ["DenialPublisher", "import_claude_login", "run_firewall"]

log = logging.getLogger("agent_smith.egress")


class DenialPublisher:
    """Publishes each denial as an ``egress_denied`` event; never blocks the firewall on the event log.

    The event log's client and (when the firewall was handed its settings)
    the crew are loaded at the first denial, not at start, and in a thread:
    the firewall starts beside the agents' booting CLIs, which wait for
    answers from it (denials among them), on a machine that may have two
    cores. Loading them (~0.3 s of CPU) on the event loop held those answers
    back; in a thread it only shares the CPU. Denials are rare.
    """

    def __init__(self, crew: Callable[[], Crew]) -> None:
        self._crew = crew
        self._publisher: Publisher | None = None
        self._opened = asyncio.Lock()
        self._pending: set[asyncio.Task[object]] = set()

    def __call__(self, denial: EgressDenied) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(denial))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _open(self) -> Publisher:
        from agent_smith.crew import CrewPaths
        from agent_smith.events import Publisher, running_server_url

        crew = self._crew()
        paths = CrewPaths.of(crew)
        return Publisher(crew.events, paths.events, crew.events.nats_url or running_server_url(paths.nats))

    async def _publish(self, denial: EgressDenied) -> object:
        events = await asyncio.to_thread(importlib.import_module, "agent_smith.events")
        try:
            events.check_agent_name(denial.agent)
        except UsageError:
            # Clients of the shared transparent listener have no agent identity, and an event needs one.
            return None
        async with self._opened:
            if self._publisher is None:
                publisher = await asyncio.to_thread(self._open)
                await publisher.start()
                self._publisher = publisher
        event = events.EgressDenied(
            agent=denial.agent,
            host=denial.host,
            port=denial.port if 0 < denial.port < 65536 else 443,
            method=denial.method,
            path=denial.path,
            reason=denial.reason,
        )
        return await self._publisher.publish(event)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("publishing egress_denied failed: %s", task.exception())

    async def close(self) -> None:
        """Wait for the denials being published, then close the event log's client."""
        await asyncio.gather(*self._pending, return_exceptions=True)
        if self._publisher is not None:
            await self._publisher.close()


async def run_firewall(
    settings: FirewallSettings, ready: Callable[[Firewall], None], crew: Callable[[], Crew] | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; with `crew` (which loads it), denials go to its event log as
    ``egress_denied``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    denials = DenialPublisher(crew) if crew is not None else None
    if denials is not None:
        settings = replace(settings, on_denied=_both(settings.on_denied, denials))
    firewall = Firewall(settings)
    await firewall.start()
    try:
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
    """Move the tokens of a real ``.credentials.json`` into the firewall's secret store, and nowhere else."""
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
    claude_store_for(crew).save(tokens)
    return tokens
