"""The public surface of `agent_smith.home`: what other subsystems may use, and nothing else."""

from __future__ import annotations

import agent_smith.home as home


def test_exported_members() -> None:
    assert set(home.__all__) == {
        "AssembleOptions",
        "AssemblyReport",
        "FileAction",
        "FileChange",
        "HomeLayout",
        "MCP_TOKEN_VAR",
        "MCP_URL_VAR",
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
    }
    for name in home.__all__:
        assert getattr(home, name) is not None
