"""`agent-smith mcp chat`: the Matrix channel server Claude Code starts from the agent's MCP config."""

from __future__ import annotations

from agent_smith.cli.mcp import mcp_app
from agent_smith.cli.servers import serve_chat


@mcp_app.command("chat")
def chat() -> None:
    """Serve the Matrix channel on stdin/stdout (env: AGENT_SMITH_CREW, AGENT_NAME, MATRIX_ACCESS_TOKEN[_FILE])."""
    serve_chat()
