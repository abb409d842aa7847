"""The one error root of agent-smith.

    AgentSmithError
    ├── UsageError          bad usage or configuration: the CLI exits 2
    │   ├── CrewError       the crew directory has problems (each with file:line:col)
    │   └── UnknownAgentError
    ├── MissingPartError    a real part (tmux, claude, nats-server, …) is not installed: exit 2
    └── OperationError      something failed while doing the work: the CLI exits 1

Library errors are translated into these at the adapter that meets them
(``raise … from exc``), so the CLI prints one line and never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent_smith.credentials import without_credentials


class AgentSmithError(Exception):
    """Root of every error agent-smith raises on purpose."""

    exit_code = 1

    def __str__(self) -> str:
        # A message quotes what it was given: a real credential typed where a name belongs (an
        # environment variable's, say) is not printed, logged or sent on from here.
        return without_credentials(super().__str__())


class UsageError(AgentSmithError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class OperationError(AgentSmithError):
    """Work failed: a server was down, a process died, a remote said no."""

    exit_code = 1


class RateLimited(OperationError):
    """A remote refused for now and said for how long: nothing is to be asked of it before then."""

    def __init__(self, message: str, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


class EventRefused(OperationError):
    """NATS refused an event itself (too large, say): sending it again would be refused again."""


class MissingPartError(UsageError):
    """A real part agent-smith needs is not installed."""


class UnknownAgentError(UsageError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        listed = ", ".join(known) if known else "none"
        super().__init__(f"unknown agent {name!r} (the crew has: {listed})")
        self.name = name
        self.known = tuple(known)


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a crew file, located as precisely as the file allows."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", without_credentials(self.message))

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class CrewError(UsageError):
    """The crew directory has one or more problems; all of them are listed."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def first_of_all(self) -> str:
        """The first problem, and how many more there are, on one line (a container's last words)."""
        more = len(self.problems) - 1
        first = str(self.problems[0]) if self.problems else "the crew has problems"
        return first + (f" (and {more} more: `agent-smith validate` lists them all)" if more > 0 else "")
