"""The pinned `claude` CLI in print mode against the stand-in: everything it sends is accepted.

The stand-in refuses what the real API refuses (missing fields, unpaired
`tool_use`/`tool_result`); this proves it refuses nothing the real CLI sends
over a tool round trip, `system` entries among the messages included.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.claude import PLACEHOLDER_API_KEY
from tests.fixtures.model import StartModelServer

pytestmark = pytest.mark.real


def test_a_tool_round_trip_of_the_real_cli_is_accepted(
    model_server: StartModelServer, claude_binary: Path, tmp_path: Path
) -> None:
    server = model_server(
        {
            "agents": {
                "solo": [
                    {"tool_calls": [{"name": "Bash", "input": {"command": "echo tool-ran", "description": "Echo"}}]},
                    {"when": {"tool_result_contains": "tool-ran"}, "text": "The tool ran."},
                ]
            }
        }
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "CLAUDE_CONFIG_DIR": str(tmp_path / ".claude"),
        "ANTHROPIC_BASE_URL": server.agent_url("solo"),
        "ANTHROPIC_API_KEY": PLACEHOLDER_API_KEY,
        "DISABLE_AUTOUPDATER": "1",
        "IS_SANDBOX": "1",
    }
    result = subprocess.run(
        [str(claude_binary), "-p", "run it", "--dangerously-skip-permissions", "--output-format", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert json.loads(result.stdout)["result"] == "The tool ran."
    turns = [entry for entry in server.requests(agent="solo") if entry.endpoint == "messages"]
    assert [entry.turn for entry in turns] == [0, 1]
    assert all(entry.reply["type"] == "message" for entry in turns)
    assert any(message["role"] == "system" for message in turns[-1].body["messages"])
