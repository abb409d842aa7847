"""No process outlives its fixture, even when the test fails.

A separate pytest run uses every process-starting fixture (the model server
in-process and as a subprocess, a tmux server, the real `claude` with a
background job started by its Bash tool, Synapse), records their pids, and
fails on purpose. Once it has exited, none of those processes may be alive.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.processes import pid_alive

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = """
import json
import os
from pathlib import Path

from tests.fixtures.processes import children_of


def test_uses_every_part_then_fails(model_server, model_server_process, tmux_server, claude_session, synapse, tmp_path):
    server = model_server({"agents": {"a": [
        {"tool_calls": [{"name": "Bash", "input": {
            "command": "sleep 300", "run_in_background": True, "description": "Wait in the background"}}]},
        {"when": {"tool_result": True}, "text": "background job started"},
    ]}})
    script = tmp_path / "script.yaml"
    script.write_text("agents: {}\\n")
    process = model_server_process(script)
    session = claude_session("a", base_url=server.agent_url("a"))
    session.type("start the job")
    session.wait_for("background job started")
    background = [pid for pid in children_of(session.pane_pid)
                  if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")]
    assert background, "the Bash tool's background job is running"
    Path(os.environ["LEAK_REPORT"]).write_text(json.dumps({
        "pids": {
            "model server process": process.process.pid,
            "tmux server": tmux_server.server_pid(),
            "claude": session.pane_pid,
            "synapse": synapse.pid,
            **{f"claude child {pid}": pid for pid in children_of(session.pane_pid)},
        },
        "background": background,
        "port": int(server.url.rsplit(":", 1)[1]),
    }))
    raise AssertionError("deliberate failure: the fixtures must still clean up")
"""


def test_fixtures_leave_no_process_behind_when_the_test_fails(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER_TEST)
    report = tmp_path / "report.json"
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPO),
        "LEAK_REPORT": str(report),
    }
    plugins = [arg for name in ("processes", "model", "claude", "synapse") for arg in ("-p", f"tests.fixtures.{name}")]
    inner = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null", "--rootdir", str(tmp_path),
         *plugins, str(tmp_path / "test_inner.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    summary = inner.stdout.strip().splitlines()[-1] if inner.stdout.strip() else inner.stderr
    assert inner.returncode == 1, inner.stdout + inner.stderr
    assert "1 failed" in summary
    assert "error" not in summary, f"a fixture's teardown failed:\n{inner.stdout}"
    assert "deliberate failure" in inner.stdout

    seen = json.loads(report.read_text())
    assert set(seen["pids"]) >= {"model server process", "tmux server", "claude", "synapse"}
    assert set(seen["background"]) <= set(seen["pids"].values())
    alive = {label: pid for label, pid in seen["pids"].items() if pid_alive(pid)}
    assert alive == {}
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", seen["port"]))
