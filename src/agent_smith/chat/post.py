"""Posting outside the channel's session: a hook announcing a PR to the review room, as the agent."""

from __future__ import annotations

from collections.abc import Mapping

from agent_smith.chat import render
from agent_smith.chat.config import load_chat_config
from agent_smith.chat.matrix import MatrixLink
from agent_smith.chat.rules import Message


async def post_notice(room: str, text: str, *, env: Mapping[str, str] | None = None) -> str:
    """Send `text` (markdown) as an ``m.notice`` from the agent ``AGENT_NAME`` names; the first event id.

    `room` is a room id or an alias (joined first, which is a no-op when the
    agent is in it). Crew agents the text names are listed in ``m.mentions``,
    so a teammate named in an announcement is woken by its own channel.
    """
    config = load_chat_config(env)
    roster = config.roster
    link = MatrixLink(config.homeserver, roster.me.user_id, config.access_token, agent=config.agent, request_timeout=30)
    try:
        room_id = room if room.startswith("!") else await link.join(room)
        probe = Message(room_id, "", roster.me.user_id, render.NOTICE, text)
        mention_ids = [m.user_id for m in roster.named(probe) if m.user_id != roster.me.user_id]
        event_ids: list[str] = []
        for content in render.message_contents(text, mention_ids=mention_ids):
            if event_ids:
                content = render.later_part(content, event_ids[0], event_ids[-1])
            event_ids.append(await link.send(room_id, "m.room.message", content))
    finally:
        await link.close()
    return event_ids[0]
