"""Where a process's events go: the stream settings, the NATS URL and the outbox directory.

With a crew: crew.yaml's `events` (``NATS_URL`` already applied by the loader), else
the crew's running embedded server (its ``server.json``), and the outbox in the
crew's state directory (`CrewPaths.events`). Without a crew (a container with only
the contract's environment): ``NATS_URL`` and an outbox under the user's state
directory. ``AGENT_SMITH_EVENTS_OUTBOX`` overrides the outbox in both cases.

Every publisher of one crew must use the same outbox directory: a segment left
by a killed publisher is flushed by the next publisher that looks there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from agent_smith.crew import Crew, CrewPaths, EventLog
from agent_smith.errors import UnknownAgentError, UsageError
from agent_smith.events.embedded import running_server_url

OUTBOX_ENV = "AGENT_SMITH_EVENTS_OUTBOX"
DEFAULT_OUTBOX = "~/.local/state/agent-smith/events"


@dataclass(frozen=True)
class EventTarget:
    settings: EventLog
    url: str | None
    outbox: Path
    # The crew's agents; None without a crew, where any well-formed name may publish.
    agents: tuple[str, ...] | None = None

    def check_publisher(self, agent: str) -> None:
        """A crew's events are its agents': one published as a name it does not have would be
        about nobody, and no filter by agent would find it where it was meant to be."""
        if self.agents is not None and agent not in self.agents:
            raise UnknownAgentError(agent, self.agents)


def crew_target(crew: Crew, env: Mapping[str, str]) -> EventTarget:
    paths = CrewPaths.of(crew)
    url = crew.events.nats_url or running_server_url(paths.nats)
    override = env.get(OUTBOX_ENV)
    outbox = Path(override).expanduser() if override else paths.events
    return EventTarget(crew.events, url, outbox, tuple(a.name for a in crew.agents))


def standalone_target(env: Mapping[str, str]) -> EventTarget:
    """The event log `NATS_URL` names, without a crew; a usage error without it: events kept for a
    server nobody named would wait in the outbox for ever."""
    if not env.get("NATS_URL"):
        raise UsageError("no event log: name a crew (--crew, AGENT_SMITH_CREW) or a NATS server (NATS_URL)")
    try:
        settings = EventLog(nats_url=env["NATS_URL"])
    except ValidationError as exc:
        [error] = exc.errors()
        raise UsageError(f"NATS_URL: {str(error['msg']).removeprefix('Value error, ')}") from None
    return EventTarget(settings, settings.nats_url, Path(env.get(OUTBOX_ENV) or DEFAULT_OUTBOX).expanduser())
