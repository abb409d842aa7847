"""`agent-smith mcp chat`: the Matrix channel server Claude Code starts from the agent's MCP config."""

from __future__ import annotations

import asyncio

from agent_smith.chat import load_chat_config, serve
from agent_smith.cli.mcp import mcp_app


@mcp_app.command("chat")
def chat() -> None:
    """Serve the Matrix channel on stdin/stdout (env: AGENT_SMITH_CREW, AGENT_NAME, MATRIX_ACCESS_TOKEN[_FILE])."""
    config = load_chat_config()
    asyncio.run(serve(config))
