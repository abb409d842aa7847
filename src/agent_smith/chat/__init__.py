"""The Matrix channel: an MCP server speaking Claude Code's channel protocol, with the team's rules in code.

Exports load on first use: `up` reads the channels' settings before it starts
the agents, and needs the Matrix client and the MCP server (~0.4 s of
imports) only after.
"""

from __future__ import annotations

from agent_smith.deferred import names_from_parts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.chat.channel import ChatChannel, Refused
    from agent_smith.chat.config import ChatConfig, chat_config, load_chat_config, read_token
    from agent_smith.chat.matrix import MatrixLink, SyncBatch
    from agent_smith.chat.post import post_notice
    from agent_smith.chat.rules import (
        Decision,
        LoopGuard,
        Member,
        Message,
        QuietHours,
        Reason,
        Roster,
        Verdict,
        decide,
    )
    from agent_smith.chat.server import CHANNEL_METHOD, SERVER_NAME, build_server, serve

_WHERE = {
    "ChatChannel": "channel",
    "Refused": "channel",
    "ChatConfig": "config",
    "chat_config": "config",
    "load_chat_config": "config",
    "read_token": "config",
    "MatrixLink": "matrix",
    "SyncBatch": "matrix",
    "post_notice": "post",
    "Decision": "rules",
    "LoopGuard": "rules",
    "Member": "rules",
    "Message": "rules",
    "QuietHours": "rules",
    "Reason": "rules",
    "Roster": "rules",
    "Verdict": "rules",
    "decide": "rules",
    "CHANNEL_METHOD": "server",
    "SERVER_NAME": "server",
    "build_server": "server",
    "serve": "server",
}

__all__ = [
    "CHANNEL_METHOD",
    "SERVER_NAME",
    "ChatChannel",
    "ChatConfig",
    "Decision",
    "LoopGuard",
    "MatrixLink",
    "Member",
    "Message",
    "QuietHours",
    "Reason",
    "Refused",
    "Roster",
    "SyncBatch",
    "Verdict",
    "build_server",
    "chat_config",
    "decide",
    "load_chat_config",
    "post_notice",
    "read_token",
    "serve",
]


__getattr__ = names_from_parts(__name__, _WHERE)
