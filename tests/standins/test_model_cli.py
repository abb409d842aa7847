"""`agent-smith standin model`: the model server as a child process, and its errors."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from agent_smith.cli.app import app
from tests.fixtures.model import ModelServerProcess, agent_smith_cli

pytestmark = pytest.mark.real


def test_serves_the_script_until_sigterm(
    tmp_path: Path, model_server_process: Callable[[Path], ModelServerProcess]
) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("agents:\n  bob:\n    - text: from the subprocess\n")
    server = model_server_process(script)
    body = {
        "model": "claude-x",
        "max_tokens": 100,
        "tools": [{"name": "Bash"}],
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.Client(trust_env=False, timeout=10) as client:
        reply = client.post(f"{server.agent_url('bob')}/v1/messages?beta=true", json=body)
    assert reply.json()["content"] == [{"type": "text", "text": "from the subprocess"}]
    assert [(r.agent, r.kind, r.turn) for r in server.requests()] == [("bob", "agent_turn", 0)]
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(10) == 0


def test_a_bad_script_is_one_line_and_exit_2(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text("agents: {alice: [{}]}\n")
    result = CliRunner().invoke(app, ["standin", "model", "--script", str(script)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {script}: agents.alice.0: Value error, a turn needs text, tool_calls, or both"
    ]
    assert "Traceback" not in result.output


def test_json_output_names_the_url_and_the_log(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    script.write_text("agents: {}\n")
    log = tmp_path / "requests.jsonl"
    process = subprocess.Popen(
        [str(agent_smith_cli()), "standin", "model", "--script", str(script), "--log", str(log), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)},
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(4)]
        printed = json.loads("".join(lines))
        assert printed == {"url": printed["url"], "log": str(log)}
        with httpx.Client(trust_env=False, timeout=10) as client:
            assert client.get(f"{printed['url']}/api/hello").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
        if process.stdout is not None:
            process.stdout.close()
