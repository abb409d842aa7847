"""Text an agent wrote never reaches the operator's terminal as escape sequences.

An agent (prompt-injected, or a PR comment it quotes) controls files in its own state
directory, the events it publishes and what its panes print. `status`, `events … --json`,
`logs` and the CLI's warnings show such text: a raw ESC or C1 control there could clear,
rewrite or retitle the operator's screen (ESC [ 2 J, OSC 0 ; title BEL, U+009B as CSI).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_smith.events import Publisher, TaskDone
from agent_smith.logs import JsonFormatter, LogFormat, configure, json_printable, printable
from agent_smith.runtime.panelog import readable
from tests.events.helpers import SETTINGS
from tests.fixtures.nats import NatsServer
from tests.fixtures.scaffold import scaffolded_crew

CLI = Path(sys.executable).parent / "agent-smith"
# ESC [ 2 J clears the screen, OSC 0 retitles the window; U+009B and U+009D are their C1 forms,
# which a UTF-8 terminal (xterm, VTE) acts on too.
HOSTILE = "GitHub said \x1b[2J\x1b[Hall good \x1b]0;pwned\x07 \u009b31m red \u009d0;t\u009c\x7f"
RAW_CONTROLS = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))]


def _no_raw_controls(text: str) -> None:
    found = sorted({f"U+{ord(c):04X}" for c in text if c in RAW_CONTROLS})
    assert not found, f"raw control characters reach the terminal: {found}"


def test_printable_and_json_printable_are_pure_and_keep_meaning() -> None:
    assert printable("a\tb\nc") == "a\tb\nc"
    shown = printable(HOSTILE)
    _no_raw_controls(shown)
    assert "all good" in shown
    assert "red" in shown
    dumped = json.dumps({"summary": HOSTILE}, ensure_ascii=False)
    safe = json_printable(dumped)
    _no_raw_controls(safe)
    assert json.loads(safe) == {"summary": HOSTILE}
    # Non-ASCII text that is no control stays as it is.
    assert json_printable(json.dumps("é ü 日本", ensure_ascii=False)) == '"é ü 日本"'


def test_status_shows_an_agents_failure_text_without_its_escapes(tmp_path: Path) -> None:
    crew, hooks = scaffolded_crew(tmp_path, "esc")
    # What the agent's own process may write in its state directory, which `status` reads.
    (hooks / "activity.json").write_text(
        json.dumps(
            {
                "checked_at": "2026-11-25T12:00:00+00:00",
                "pull_requests": [
                    {"repo": "example/widgets", "number": 3, "title": HOSTILE, "url": "u3", "unaddressed": 1}
                ],
                "failing_since": "2026-11-25T12:05:00+00:00\x1b]0;pwned\x07",
                "failure": HOSTILE,
            }
        )
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COLUMNS": "200", "LANG": "C.UTF-8"}
    table = subprocess.run(
        [str(CLI), "status", "--crew", str(crew)], capture_output=True, text=True, env=env, check=False
    )
    assert table.returncode == 0, table.stderr
    assert "its review checks fail since" in table.stderr
    assert "all good" in table.stderr
    _no_raw_controls(table.stderr)
    _no_raw_controls(table.stdout)

    as_json = subprocess.run(
        [str(CLI), "status", "--crew", str(crew), "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert as_json.returncode == 0, as_json.stderr
    _no_raw_controls(as_json.stdout)
    rows = {row["agent"]: row for row in json.loads(as_json.stdout)["agents"]}
    # The JSON still says exactly what the file said: escaped, not changed.
    assert rows["devbot"]["open_prs_failure"] == HOSTILE
    assert rows["devbot"]["open_prs"][0]["title"] == HOSTILE

    json_logs = subprocess.run(
        [str(CLI), "--log-format", "json", "status", "--crew", str(crew)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    _no_raw_controls(json_logs.stderr)
    assert HOSTILE in json.loads(json_logs.stderr.splitlines()[0])["message"]


def test_pane_logs_drop_c1_controls_as_they_drop_escapes() -> None:
    raw = "before \u009b2J\u009d0;pwned\u009c after\n".encode() + b"\x1b[2Jplain\n"
    shown = readable(raw)
    _no_raw_controls(shown)
    assert "before" in shown
    assert "after" in shown
    assert "plain" in shown


def test_log_lines_show_control_characters_of_what_they_quote() -> None:
    stream = io.StringIO()
    configure(LogFormat.text, "INFO", stream)
    try:
        logging.getLogger("agent_smith.test").warning("room %s says %s replaces it", "!r:hs", HOSTILE)
    finally:
        logging.getLogger("agent_smith").handlers[:] = []
    _no_raw_controls(stream.getvalue())
    record = logging.LogRecord("agent_smith.test", logging.WARNING, "", 0, "%s", (HOSTILE,), None)
    line = JsonFormatter().format(record)
    _no_raw_controls(line)
    assert json.loads(line)["message"] == HOSTILE


@pytest.mark.real
def test_events_tail_json_escapes_c1_controls(nats_server: NatsServer, tmp_path: Path) -> None:
    async def seed() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            await publisher.publish(TaskDone(agent="devbot", summary=HOSTILE))

    asyncio.run(seed())
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(tmp_path), "NATS_URL": nats_server.url}
    for verb in (["tail", "--since", "1h", "--count", "1"], ["query"]):
        done = subprocess.run(
            [str(CLI), "events", *verb, "--json"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        _no_raw_controls(done.stdout)
        # tail: one object a line; query: one array.
        found = json.loads(done.stdout.splitlines()[0]) if verb[0] == "tail" else json.loads(done.stdout)[0]
        assert found["summary"] == HOSTILE
