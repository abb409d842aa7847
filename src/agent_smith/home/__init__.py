"""An agent's home and workspace: what Claude Code finds when it starts."""

from agent_smith.home.assemble import (
    AssembleOptions,
    AssemblyReport,
    FileAction,
    FileChange,
    SetupOutcome,
    agent_environment,
    assemble,
    default_agent_smith_command,
    describe,
)
from agent_smith.home.claude_json import api_key_suffix, seed_claude_json
from agent_smith.home.plan import MCP_TOKEN_VAR, MCP_URL_VAR, HomeLayout, agent_hooks, clone_url
from agent_smith.home.repos import RepoAction, RepoOutcome

__all__ = [
    "MCP_TOKEN_VAR",
    "MCP_URL_VAR",
    "AssembleOptions",
    "AssemblyReport",
    "FileAction",
    "FileChange",
    "HomeLayout",
    "RepoAction",
    "RepoOutcome",
    "SetupOutcome",
    "agent_environment",
    "agent_hooks",
    "api_key_suffix",
    "assemble",
    "clone_url",
    "default_agent_smith_command",
    "describe",
    "seed_claude_json",
]
