"""A GitHub (Enterprise) stand-in that real clients — `gh`, `git`, the forge client — cannot
tell from the real thing: REST under ``/api/v3``, GraphQL at ``/api/graphql`` executed
against GitHub's published schema, and git smart HTTP through ``git http-backend``."""

from agent_smith.standins.github.server import (
    Exchange,
    Fault,
    FaultKind,
    Faults,
    GitHubStandin,
    find_schema,
)
from agent_smith.standins.github.state import (
    GitHubRefusal,
    InlineComment,
    PullRequest,
    Repository,
    User,
    World,
)

__all__ = [
    "Exchange",
    "Fault",
    "FaultKind",
    "Faults",
    "GitHubRefusal",
    "GitHubStandin",
    "InlineComment",
    "PullRequest",
    "Repository",
    "User",
    "World",
    "find_schema",
]
