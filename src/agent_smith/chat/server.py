"""The Matrix channel as an MCP server Claude Code loads as a channel.

`agent-smith up` and `run` host every agent's channel in the supervisor
(`ChannelHost`, reached over HTTP); `agent-smith mcp chat` serves one on
stdin/stdout. It declares the ``claude/channel`` capability, pushes each message that
wakes the agent as ``notifications/claude/channel`` (content: the message;
meta: room_id, room_name, sender, sender_name, event_id, thread_id), and
offers the tools `reply`, `react`, `edit` and `history`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

from agent_smith import __version__
from agent_smith.chat.channel import ChatChannel, Refused
from agent_smith.chat.config import ChatConfig
from agent_smith.chat.matrix import MatrixLink, wait_or_stop
from agent_smith.mcpstdio import McpServer, Tool, ToolError

log = logging.getLogger(__name__)

SERVER_NAME = "matrix"
CHANNEL_METHOD = "notifications/claude/channel"
CHANNEL_SETTLE = 0.3

_ROOM = {"type": "string", "description": "the room id, e.g. !abc:example.org (meta room_id of the message)"}
_EVENT = {"type": "string", "description": "an event id, e.g. $abc (meta event_id of the message)"}


def instructions(config: ChatConfig) -> str:
    me = config.roster.me
    return (
        f'Messages from Matrix rooms arrive as <channel source="{SERVER_NAME}" room_id=… sender=… event_id=…> '
        f"blocks. You are {me.name} ({me.user_id}) there. Answer with the reply tool in the room you were asked "
        "in (reply_to the event_id; pass thread_id when the message has one). They were already acknowledged "
        f"with {config.ack_reaction or 'a reaction'}. Tool errors from reply are the team's rules "
        "(loop guard, quiet hours): respect them and do not retry. "
        f"Reply style: {config.reply_style}"
    )


def _required(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments.get(key)
    if value is None:
        raise ToolError(f"missing argument {key!r}")
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"argument {key!r} must be a non-empty string")
    return value


def _optional(arguments: Mapping[str, Any], key: str) -> str | None:
    return None if arguments.get(key) in (None, "") else _required(arguments, key)


def build_server(channel: ChatChannel) -> McpServer:
    async def reply(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            return await channel.reply(
                _required(arguments, "room_id"),
                _required(arguments, "text"),
                reply_to=_optional(arguments, "reply_to"),
                thread_id=_optional(arguments, "thread_id"),
            )
        except Refused as exc:
            raise ToolError(str(exc)) from exc

    async def react(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            return await channel.react(
                _required(arguments, "room_id"), _required(arguments, "event_id"), _required(arguments, "emoji")
            )
        except Refused as exc:
            raise ToolError(str(exc)) from exc

    async def edit(arguments: dict[str, Any]) -> dict[str, Any]:
        try:
            return await channel.edit(
                _required(arguments, "room_id"), _required(arguments, "event_id"), _required(arguments, "text")
            )
        except Refused as exc:
            raise ToolError(str(exc)) from exc

    async def history(arguments: dict[str, Any]) -> str:
        room_id = _required(arguments, "room_id")
        limit = arguments.get("limit", 20)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ToolError("argument 'limit' must be a positive integer")
        try:
            return await channel.history(room_id, limit)
        except Refused as exc:
            raise ToolError(str(exc)) from exc

    tools = [
        Tool(
            "reply",
            "Send a message to a Matrix room (markdown; sent as a notice). Pass reply_to to answer a message "
            "and thread_id to stay in its thread. Returns the new event id.",
            {
                "type": "object",
                "properties": {
                    "room_id": _ROOM,
                    "text": {"type": "string", "description": "markdown"},
                    "reply_to": {**_EVENT, "description": "the event id being answered"},
                    "thread_id": {**_EVENT, "description": "the thread root (meta thread_id)"},
                },
                "required": ["room_id", "text"],
            },
            reply,
        ),
        Tool(
            "react",
            "Add an emoji reaction to a message.",
            {
                "type": "object",
                "properties": {"room_id": _ROOM, "event_id": _EVENT, "emoji": {"type": "string"}},
                "required": ["room_id", "event_id", "emoji"],
            },
            react,
        ),
        Tool(
            "edit",
            "Replace the text of one of your own earlier messages.",
            {
                "type": "object",
                "properties": {"room_id": _ROOM, "event_id": _EVENT, "text": {"type": "string"}},
                "required": ["room_id", "event_id", "text"],
            },
            edit,
        ),
        Tool(
            "history",
            "Recent messages of a room, oldest first, including those that did not wake you.",
            {
                "type": "object",
                "properties": {
                    "room_id": _ROOM,
                    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                },
                "required": ["room_id"],
            },
            history,
        ),
    ]
    return McpServer(
        SERVER_NAME,
        __version__,
        tools,
        instructions=instructions(channel.config),
        experimental={"claude/channel": {}},
        pushes=True,
        # Claude Code drops a channel notification that arrives before it registered its handler,
        # a few ms after the handshake; a message missed while the agent was down would be exactly
        # such a first notification.
        settle=CHANNEL_SETTLE,
    )


def open_channel(config: ChatConfig) -> tuple[ChatChannel, McpServer]:
    """The agent's channel and the MCP server that carries its notifications and tools."""
    link = MatrixLink(config.homeserver, config.roster.me.user_id, config.access_token, agent=config.agent)
    servers: list[McpServer] = []

    async def notify(content: str, meta: Mapping[str, str]) -> None:
        await servers[0].notify(CHANNEL_METHOD, {"content": content, "meta": dict(meta)})

    channel = ChatChannel(config, link, notify)
    servers.append(build_server(channel))
    return channel, servers[0]


# A sync loop that failed unexpectedly (a bug: the homeserver's failures are retried inside it)
# is started again after this long, so that the agent is not left deaf.
RESTART_DELAY = 5.0


async def keep_syncing(channel: ChatChannel, stop: asyncio.Event) -> None:
    """The channel's sync loop until `stop`, started again (and logged) whenever it fails."""
    while not stop.is_set():
        try:
            await channel.run(stop)
        except Exception:
            log.exception(
                "agent %s: the Matrix channel failed; starting it again in %gs", channel.config.agent, RESTART_DELAY
            )
            await wait_or_stop(RESTART_DELAY, stop)


async def serve(config: ChatConfig) -> None:
    """Serve on stdin/stdout until Claude Code closes stdin; the sync loop runs alongside."""
    channel, server = open_channel(config)
    stop = asyncio.Event()
    syncing = asyncio.create_task(keep_syncing(channel, stop))
    try:
        await server.serve_stdio()
    finally:
        stop.set()
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
        await channel.link.close()


class ChannelHost:
    """Several agents' channels in one process (the supervisor): their sync loops and MCP servers.

    Each agent's Claude Code reaches its server over HTTP and holds a stream
    open for the notifications. A channel that fails unexpectedly is logged
    and started again (`keep_syncing`); the others go on.
    """

    def __init__(self, configs: Mapping[str, ChatConfig]) -> None:
        self._channels: dict[str, ChatChannel] = {}
        self.servers: dict[str, McpServer] = {}
        for agent, config in configs.items():
            self._channels[agent], self.servers[agent] = open_channel(config)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(keep_syncing(c, self._stop)) for c in self._channels.values()]

    def renew_token(self, agent: str, access_token: str) -> None:
        """Give `agent`'s channel `access_token` (none hosted for it: nothing to do)."""
        if (channel := self._channels.get(agent)) is not None:
            channel.renew_token(access_token)

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for channel in self._channels.values():
            await channel.link.close()
