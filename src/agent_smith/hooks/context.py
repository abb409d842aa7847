"""What the hooks need to know about the crew, cached as plain JSON so a hook starts fast.

Loading crew.yaml takes a YAML parser and pydantic (~0.3 s); a hook must run
in a few tens of milliseconds. The first hook run after crew.yaml (or an
overriding environment variable) changed loads the crew the slow way and
writes this snapshot; every other run reads one small JSON file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from agent_smith.fsutil import write_atomic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SNAPSHOT_VERSION = 3
_CONTRACT = (
    "AGENT_NAME",
    "AGENT_REPOS",
    "PRIMARY_REPO",
    "MATRIX_HOMESERVER_URL",
    "MATRIX_BOT_USER_ID",
    "MATRIX_ALLOWED_USERS",
    "GITHUB_TOKEN",
    "NATS_URL",
    "AGENT_SMITH_CA_CERT",
)


class HookSetupError(Exception):
    """The hook cannot tell which agent or crew it serves; it logs this and lets the agent be."""


class Teammate:
    """A teammate as the hooks see them. (Plain classes, not dataclasses: the hooks start faster.)"""

    __slots__ = ("display_name", "login", "matrix_user_id", "name", "role")

    def __init__(self, name: str, role: str, login: str, matrix_user_id: str | None, display_name: str | None) -> None:
        self.name = name
        self.role = role
        self.login = login
        self.matrix_user_id = matrix_user_id
        self.display_name = display_name

    def as_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Teammate) and self.as_json() == other.as_json()

    def __hash__(self) -> int:
        return hash(tuple(self.as_json().items()))


class HookContext:
    """What every hook needs, in plain JSON-able fields."""

    __slots__ = (
        "agent",
        "crew_dir",
        "forge_base_url",
        "forge_graphql_url",
        "forge_kind",
        "homeserver",
        "login",
        "primary_repo",
        "quiet_hours",
        "reply_style",
        "repos",
        "review_room",
        "state_dir",
        "teammates",
    )

    def __init__(
        self,
        *,
        crew_dir: str,
        agent: str,
        login: str,
        repos: list[str],
        primary_repo: str | None,
        state_dir: str,
        reply_style: str,
        quiet_hours: dict[str, str] | None,
        review_room: str | None,
        homeserver: str | None,
        forge_kind: str,
        forge_base_url: str,
        forge_graphql_url: str,
        teammates: list[Teammate],
    ) -> None:
        self.crew_dir = crew_dir
        self.agent = agent
        self.login = login
        self.repos = repos
        self.primary_repo = primary_repo
        self.state_dir = state_dir
        self.reply_style = reply_style
        self.quiet_hours = quiet_hours
        self.review_room = review_room
        self.homeserver = homeserver
        self.forge_kind = forge_kind
        self.forge_base_url = forge_base_url
        self.forge_graphql_url = forge_graphql_url
        self.teammates = teammates

    @property
    def state(self) -> Path:
        return Path(self.state_dir)

    def as_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__slots__}
        data["teammates"] = [t.as_json() for t in self.teammates]
        return data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HookContext) and self.as_json() == other.as_json()

    __hash__ = None  # type: ignore[assignment]


def fingerprint(crew_dir: Path, env: Mapping[str, str]) -> str:
    """What the cached context was made from. The overriding variables are hashed, not kept: one
    of them is GITHUB_TOKEN, a placeholder by design, but the cache is no place to check that."""
    stat = (crew_dir / "crew.yaml").stat()
    overrides = sorted((k, v) for k, v in env.items() if k in _CONTRACT or (k.startswith("AGENT_SMITH_") and "__" in k))
    digest = hashlib.sha256(json.dumps(overrides).encode()).hexdigest()
    return json.dumps([SNAPSHOT_VERSION, str(crew_dir.resolve()), stat.st_mtime_ns, stat.st_size, digest])


def cache_dir(env: Mapping[str, str]) -> Path:
    """The hooks' caches: ``~/.cache/agent-smith`` of the agent's home."""
    return Path(env.get("HOME") or Path.home()) / ".cache" / "agent-smith"


def snapshot_path(agent: str, env: Mapping[str, str]) -> Path:
    return cache_dir(env) / f"hooks-{agent}.json"


def load_context(env: Mapping[str, str] | None = None) -> HookContext:
    """The agent's hook context: from the snapshot when current, else from the crew (and cached)."""
    env = os.environ if env is None else env
    agent = env.get("AGENT_NAME")
    crew = env.get("AGENT_SMITH_CREW")
    if not agent or not crew:
        raise HookSetupError("AGENT_NAME and AGENT_SMITH_CREW must be set in the agent's environment")
    crew_dir = Path(crew).expanduser()
    try:
        key = fingerprint(crew_dir, env)
    except OSError as exc:
        raise HookSetupError(f"cannot read {crew_dir / 'crew.yaml'}: {exc.strerror}") from exc
    cache = snapshot_path(agent, env)
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
        if data.get("fingerprint") == key:
            return _from_json(data["context"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    context = build_context(crew_dir, agent, env)
    with contextlib.suppress(OSError):  # a read-only home only costs speed
        write_atomic(cache, json.dumps({"fingerprint": key, "context": context.as_json()}), 0o600)
    return context


def build_context(crew_dir: Path, agent_name: str, env: Mapping[str, str]) -> HookContext:
    """The slow path: load and validate the crew."""
    from agent_smith.crew import CrewPaths, load_crew
    from agent_smith.errors import AgentSmithError

    try:
        loaded = load_crew(crew_dir, env=env)
        agent = loaded.crew.agent(agent_name)
    except AgentSmithError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HookSetupError(first) from exc
    crew = loaded.crew
    matrix = crew.matrix
    quiet = agent.matrix.quiet_hours if agent.matrix else None
    return HookContext(
        crew_dir=str(crew_dir),
        agent=agent.name,
        login=agent.login,
        repos=list(agent.repos),
        primary_repo=agent.primary,
        state_dir=str(CrewPaths.of(crew).agent_state(agent.name)),
        reply_style=matrix.reply_style if matrix else "",
        quiet_hours=(
            {"start": quiet.start.strftime("%H:%M"), "end": quiet.end.strftime("%H:%M"), "timezone": quiet.timezone}
            if quiet
            else None
        ),
        review_room=matrix.review_room if matrix else None,
        homeserver=matrix.homeserver if matrix else None,
        forge_kind=crew.forge.kind,
        forge_base_url=crew.forge.base_url,
        forge_graphql_url=crew.forge.graphql_url,
        teammates=[
            Teammate(
                name=t.name,
                role=t.role,
                login=t.login,
                matrix_user_id=t.matrix.user_id if t.matrix else None,
                display_name=(t.matrix.display_name if t.matrix else None) or t.name,
            )
            for t in crew.teammates(agent.name)
        ],
    )


def _from_json(data: Mapping[str, Any]) -> HookContext:
    fields = dict(data)
    fields["teammates"] = [Teammate(**t) for t in fields.get("teammates", [])]
    return HookContext(**fields)
