"""The channel's settings, drawn from the crew (with the container's env overrides) and the token."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent_smith.chat.rules import Member, QuietHours, Roster, roster_of
from agent_smith.crew import Crew, CrewPaths, load_crew
from agent_smith.errors import UsageError

TOKEN_FILE = "matrix_access_token"


@dataclass(frozen=True)
class ChatConfig:
    agent: str
    homeserver: str
    roster: Roster
    rooms: tuple[str, ...]
    state_dir: Path
    access_token: str = field(repr=False)
    ack_reaction: str = "👀"
    max_agent_messages_in_a_row: int = 3
    reply_style: str = ""
    quiet_hours: QuietHours | None = None


def chat_config(crew: Crew, agent_name: str, access_token: str) -> ChatConfig:
    """The channel settings for one agent of `crew`; a usage error if chat is not configured."""
    agent = crew.agent(agent_name)
    if crew.matrix is None:
        raise UsageError("crew.yaml has no matrix section: the Matrix channel is not configured")
    if agent.matrix is None:
        raise UsageError(f"agent {agent_name!r} has no matrix section in crew.yaml: it has no chat identity")
    me = Member(agent.matrix.user_id, agent.name, agent.matrix.display_name)
    teammates = [
        Member(t.matrix.user_id, t.name, t.matrix.display_name) for t in crew.teammates(agent_name) if t.matrix
    ]
    quiet = agent.matrix.quiet_hours
    return ChatConfig(
        agent=agent.name,
        homeserver=crew.matrix.homeserver,
        roster=roster_of(me, teammates, crew.matrix.operators, agent.matrix.allowed_senders),
        rooms=tuple(agent.matrix.rooms),
        state_dir=CrewPaths.of(crew).agent_state(agent.name) / "chat",
        access_token=access_token,
        ack_reaction=crew.matrix.ack_reaction,
        max_agent_messages_in_a_row=crew.matrix.max_agent_messages_in_a_row,
        reply_style=crew.matrix.reply_style,
        quiet_hours=(
            QuietHours(quiet.start, quiet.end, quiet.timezone, tuple(quiet.incident_words)) if quiet else None
        ),
    )


def read_token(env: Mapping[str, str], default_file: Path) -> str:
    """The access token: ``MATRIX_ACCESS_TOKEN``, else the file ``MATRIX_ACCESS_TOKEN_FILE`` names
    (or `default_file`, where ``assemble`` writes it). A file must be private (mode 600)."""
    token = env.get("MATRIX_ACCESS_TOKEN", "").strip()
    if token:
        return _header_safe(token, "MATRIX_ACCESS_TOKEN")
    named = env.get("MATRIX_ACCESS_TOKEN_FILE", "").strip()
    path = Path(named).expanduser() if named else default_file
    try:
        info = path.stat()
    except FileNotFoundError:
        where = "MATRIX_ACCESS_TOKEN_FILE names" if named else "the default token file"
        raise UsageError(
            f"no Matrix access token: MATRIX_ACCESS_TOKEN is not set and {path} ({where}) does not exist"
        ) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the Matrix access token: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: the Matrix access token file is not a file")
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise UsageError(
            f"{path}: the Matrix access token file is readable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`"
        )
    try:
        # utf-8-sig: an editor's byte order mark is no part of the token.
        token = path.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the Matrix access token: {exc}") from exc
    if not token:
        raise UsageError(f"{path}: the Matrix access token file is empty")
    return _header_safe(token, str(path))


def _header_safe(token: str, where: str) -> str:
    """`token` when it can travel in an Authorization header (printable ASCII, no spaces); a usage
    error naming `where` otherwise, without the token."""
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise UsageError(
            f"{where}: the Matrix access token holds a character no token has "
            "(a space, a line break, a control or non-ASCII character)"
        )
    return token


def load_chat_config(env: Mapping[str, str] | None = None) -> ChatConfig:
    """From the environment the agent's MCP config gives: ``AGENT_SMITH_CREW``, ``AGENT_NAME``, the token."""
    env = os.environ if env is None else env
    name = env.get("AGENT_NAME", "").strip()
    if not name:
        raise UsageError("AGENT_NAME is not set: the chat server needs to know which agent it serves")
    loaded = load_crew(None, env)
    crew = loaded.crew
    crew.agent(name)
    token = read_token(env, CrewPaths.of(crew).agent_state(name) / TOKEN_FILE)
    return chat_config(crew, name, token)
