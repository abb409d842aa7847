"""`agent-smith mcp …`: the stdio MCP servers agents load (each subsystem adds its own)."""

from __future__ import annotations

import typer

mcp_app = typer.Typer(
    name="mcp",
    help="Stdio MCP servers for agents (started by Claude Code from the agent's .mcp.json).",
    no_args_is_help=True,
)
