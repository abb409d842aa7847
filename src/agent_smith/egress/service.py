"""Assemble a running firewall from a crew: its state directory, secrets, policy and listeners."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from agent_smith.crew import Crew, CrewPaths
from agent_smith.egress.audit import EgressDenied
from agent_smith.egress.claude import ClaudeTokens, TokenStore, tokens_from_credentials
from agent_smith.egress.config import (
    parse_address,
    policy_from_crew,
    secrets_from_crew,
    transparent_agents_from_crew,
)
from agent_smith.egress.proxy import Firewall, FirewallSettings
from agent_smith.egress.state import FirewallState
from agent_smith.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.events import Event, Publisher

__all__ = ["DenialPublisher", "claude_store_for", "import_claude_login", "run_firewall", "settings_for"]

log = logging.getLogger("agent_smith.egress")


def claude_store_for(crew: Crew) -> TokenStore:
    return TokenStore(FirewallState(CrewPaths.of(crew).firewall).secrets_dir / "claude-login.json")


def settings_for(
    crew: Crew,
    crew_dir: Path,
    environ: Mapping[str, str],
    on_denied: Callable[[EgressDenied], None] | None = None,
) -> FirewallSettings:
    """Everything the firewall needs, read and checked before a socket opens."""
    state = FirewallState(CrewPaths.of(crew).firewall)
    egress = crew.egress
    upstream_ca = Path(egress.upstream_ca).expanduser() if egress.upstream_ca else None
    if upstream_ca is not None and not upstream_ca.is_absolute():
        upstream_ca = crew_dir / upstream_ca
    if upstream_ca is not None and not upstream_ca.is_file():
        raise UsageError(f"egress.upstream_ca: {upstream_ca} is not a file")
    return FirewallSettings(
        policy=policy_from_crew(crew),
        secrets=secrets_from_crew(crew, environ, crew_dir),
        agents=frozenset(a.name for a in crew.agents),
        identity_key=state.identity_key(),
        ca=state.ca(),
        listen=parse_address(egress.listen, "egress.listen"),
        transparent_listen=(
            parse_address(egress.transparent_listen, "egress.transparent_listen") if egress.transparent_listen else None
        ),
        transparent_agents=transparent_agents_from_crew(crew),
        upstream_ca=upstream_ca,
        audit_path=state.audit_log_path,
        claude_store=claude_store_for(crew) if egress.claude_login.enabled else None,
        claude_refresh_before=egress.claude_login.refresh_before,
        metrics_listen=parse_address(egress.metrics_listen, "egress.metrics_listen") if egress.metrics_listen else None,
        on_denied=on_denied,
    )


class DenialPublisher:
    """Publishes each denial as an ``egress_denied`` event; never blocks the firewall on the event log.

    The event log's client is made at the first denial, not at start: the
    firewall starts beside the agents' booting CLIs, on a machine that may
    have two cores, and its event client (~55 ms of CPU to import) is then
    work taken from them. Denials are rare.
    """

    def __init__(self, crew: Crew) -> None:
        self._crew = crew
        self._publisher: Publisher | None = None
        self._opened = asyncio.Lock()
        self._pending: set[asyncio.Task[object]] = set()

    def __call__(self, denial: EgressDenied) -> None:
        from agent_smith import events

        try:
            events.check_agent_name(denial.agent)
        except UsageError:
            # Clients of the shared transparent listener have no agent identity, and an event needs one.
            return
        event = events.EgressDenied(
            agent=denial.agent,
            host=denial.host,
            port=denial.port if 0 < denial.port < 65536 else 443,
            method=denial.method,
            path=denial.path,
            reason=denial.reason,
        )
        task = asyncio.get_running_loop().create_task(self._publish(event))
        self._pending.add(task)
        task.add_done_callback(self._done)

    async def _publish(self, event: Event) -> object:
        async with self._opened:
            if self._publisher is None:
                from agent_smith.events import Publisher, running_server_url

                paths = CrewPaths.of(self._crew)
                url = self._crew.events.nats_url or running_server_url(paths.nats)
                publisher = Publisher(self._crew.events, paths.events, url)
                await publisher.start()
                self._publisher = publisher
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


async def run_firewall(settings: FirewallSettings, ready: Callable[[Firewall], None], crew: Crew | None = None) -> None:
    """Serve until SIGINT or SIGTERM; with `crew`, denials go to its event log as ``egress_denied``."""
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
