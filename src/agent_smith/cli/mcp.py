"""`agent-smith mcp …`: the stdio MCP servers agents load (each subsystem adds its own).

Claude Code starts one of these per agent, so each loads only its own
subsystem: a subcommand's module is imported when that subcommand runs.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
import typer.main
from typer.core import TyperGroup

# subcommand -> the CLI module that adds it to `mcp_app`
SERVERS = {"chat": "chat", "events": "events"}


class _Servers(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        return list(SERVERS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in SERVERS and cmd_name not in self.commands:
            importlib.import_module(f"agent_smith.cli.{SERVERS[cmd_name]}")
            staging = typer.Typer()
            staging.registered_commands = [c for c in mcp_app.registered_commands if c.name == cmd_name]
            self.add_command(typer.main.get_group(staging).commands[cmd_name], cmd_name)
        return super().get_command(ctx, cmd_name)


mcp_app = typer.Typer(
    cls=_Servers,
    name="mcp",
    help="The agents' MCP servers on stdio, for your own .mcp.json (under up and run, agents reach them over HTTP).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(mcp_app)
