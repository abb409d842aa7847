"""Where a crew's state lives on disk: one layout every subsystem agrees on.

<runtime.state_dir>/<crew name>/
├── agents/<name>/home/        the agent's HOME (~/.claude, ~/.claude.json, ~/.gitconfig)
├── agents/<name>/workspace/   its repositories, one directory per owner/name
├── agents/<name>/state/       hook, chat and supervisor state of that agent
├── firewall/                  the firewall's CA, identity key, secret store, audit log
├── events/                    the event log's outbox
├── nats/                      the embedded nats-server's JetStream store
└── logs/                      pane captures and process logs
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent_smith.crew.models import Crew


@dataclass(frozen=True)
class CrewPaths:
    root: Path

    @classmethod
    def of(cls, crew: Crew) -> CrewPaths:
        return cls(crew.state_root / crew.crew.name)

    def agent_home(self, agent: str) -> Path:
        return self.root / "agents" / agent / "home"

    def agent_workspace(self, agent: str) -> Path:
        return self.root / "agents" / agent / "workspace"

    def agent_state(self, agent: str) -> Path:
        return self.root / "agents" / agent / "state"

    @property
    def firewall(self) -> Path:
        return self.root / "firewall"

    @property
    def events(self) -> Path:
        return self.root / "events"

    @property
    def nats(self) -> Path:
        return self.root / "nats"

    @property
    def logs(self) -> Path:
        return self.root / "logs"
