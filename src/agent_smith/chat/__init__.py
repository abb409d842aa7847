"""The Matrix channel: an MCP server speaking Claude Code's channel protocol, with the team's rules in code."""

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
