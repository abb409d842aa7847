"""`status` from what the supervisor left on disk: damaged status files, a supervisor gone, a narrow terminal."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.cli.runtime import _whole, column_widths, stopped_line
from agent_smith.runtime import CrewStopped
from agent_smith.runtime.rundir import RunDir, status_number
from agent_smith.runtime.tmux import Tmux
from tests.runtime.conftest import cli_env, write_crew

CLI = str(Path(sys.executable).parent / "agent-smith")
LONG = "a-very-long-but-valid-agent-name1"[:32]
HEADERS = ("state", "uptime", "restarts", "last activity", "last exit", "open PRs", "chat")


class Crew:
    def __init__(self, tmp_path: Path, names: list[str]) -> None:
        self.root, self.socket = tmp_path / "crew", f"agent-smith-st-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        write_crew(self.root, [{"name": n} for n in names], tmp_path / "state", self.socket)
        self.run_dir = RunDir(tmp_path / "state" / "rt" / "runtime")
        self.run_dir.ensure()
        self.env = cli_env(tmp_path)

    def status(self, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CLI, "status", "--crew", str(self.root), *args],
            env={**self.env, "COLUMNS": str(columns)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def rows(self) -> tuple[dict[str, Any], str]:
        done = self.status("--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout), done.stderr


@pytest.fixture
def crew(tmp_path: Path) -> Iterator[Crew]:
    made = Crew(tmp_path, ["alice", "bob"])
    try:
        yield made
    finally:
        Tmux(made.socket).kill_server()


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\xff\xfe{not utf-8", "not UTF-8"),
        (b'{"agents": {"alice": {"sta', "not JSON"),
        (b"", "not JSON"),
        (b"[]", "a JSON list, not an object"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_a_damaged_status_of_a_running_supervisor_shows_unknown_states_and_one_warning(
    crew: Crew, content: bytes, why: str
) -> None:
    crew.run_dir.status_file.write_bytes(content)
    lock = crew.run_dir.acquire()  # a supervisor runs, as far as `status` can tell
    try:
        document, said = crew.rows()
        assert document["supervisor_running"] is True
        assert [row["state"] for row in document["agents"]] == ["unknown", "unknown"]
        [line] = said.splitlines()
        assert line.startswith(f"warning: {crew.run_dir.status_file} is damaged: {why}"), line
        table = crew.status()
        assert table.returncode == 0, table.stderr
        assert table.stdout.count("unknown") == 2
        assert len(table.stderr.splitlines()) == 1
    finally:
        crew.run_dir.release(lock)


def test_fields_of_the_wrong_type_or_not_finite_are_absent(crew: Crew) -> None:
    damaged = {
        "alice": {
            "state": "backing off",
            "retry_at": 1e400,
            "started_at": "yesterday",
            "last_activity": float("nan"),
            "restarts": "many",
            "last_exit": 1.5,
            "channel_connected": "yes",
        },
        "bob": {"state": ["ready"], "started_at": 10**400, "restarts": True, "last_exit": 137},
    }
    crew.run_dir.status_file.write_text(json.dumps({"agents": damaged}))
    lock = crew.run_dir.acquire()
    try:
        document, said = crew.rows()
        table = crew.status()
    finally:
        crew.run_dir.release(lock)
    assert said == ""
    alice, bob = document["agents"]
    assert alice | {"open_prs": None} == {
        "agent": "alice",
        "state": "backing off",
        "uptime_seconds": None,
        "restarts": 0,
        "last_activity_seconds_ago": None,
        "last_exit": None,
        "retry_in_seconds": None,
        "open_prs": None,
        "open_prs_checked_at": None,
        "open_prs_failing_since": None,
        "open_prs_failure": None,
        "chat_connected": None,
    }
    assert (bob["state"], bob["uptime_seconds"], bob["restarts"], bob["last_exit"]) == ("stopped", None, 0, 137)
    assert table.returncode == 0, table.stderr
    assert "Traceback" not in table.stderr


def test_agents_a_killed_supervisor_left_running_keep_what_it_last_said(crew: Crew) -> None:
    started = 1_700_000_000.0
    said = {
        "alice": {"state": "backing off", "restarts": 3, "started_at": started, "last_exit": 137, "retry_at": 2e9},
        "bob": {"state": "ready", "restarts": 2, "started_at": started, "last_exit": 1, "channel_connected": True},
    }
    crew.run_dir.status_file.write_text(json.dumps({"supervisor": {"pid": 1}, "agents": said}))
    # The supervisor is gone (no one holds its lock); alice's session lives on, bob's does not.
    Tmux(crew.socket).command("new-session", "-d", "-s", "alice", "sleep 600")
    document, _ = crew.rows()
    alice, bob = document["agents"]
    assert document["supervisor_running"] is False
    assert (alice["state"], alice["restarts"], alice["last_exit"]) == ("unsupervised", 3, 137)
    assert alice["uptime_seconds"] > 0
    # Nothing retries it now, and its channel went with the supervisor.
    assert (alice["retry_in_seconds"], alice["chat_connected"]) == (None, None)
    assert (bob["state"], bob["restarts"], bob["last_exit"], bob["uptime_seconds"]) == ("stopped", 0, None, None)
    table = crew.status().stdout
    assert re.search(r"alice\s+│ unsupervised\s+│ \S+\s+│ 3\s+│ —\s+│ 137 ", table), table


@pytest.mark.parametrize("columns", [200, 100, 80, 60, 50, 40, 30])
def test_every_column_is_legible_at_any_width(tmp_path: Path, columns: int) -> None:
    crew = Crew(tmp_path, [LONG, "bob"])
    crew.run_dir.status_file.write_text(
        json.dumps({"agents": {LONG: {"state": "crash-looping", "retry_at": 4e9, "restarts": 12, "last_exit": 137}}})
    )
    lock = crew.run_dir.acquire()
    try:
        done = crew.status(columns=columns)
    finally:
        crew.run_dir.release(lock)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns, done.stdout
    text = done.stdout
    for word in ("crash-looping", "(retry", "12", "137", "bob", "stopped", *" ".join(HEADERS).split()):
        assert re.search(rf"(^|[\s│┃:]){re.escape(word)}($|[\s│┃:])", text, re.MULTILINE), (word, text)
    # A long name is shown whole, or cut with an ellipsis, never to less than a few characters.
    assert LONG in text or re.search(rf"{re.escape(LONG[:7])}\S*…", text), text


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 60)), min_size=1, max_size=9), st.integers(0, 300))
def test_column_widths(columns: list[tuple[int, int]], room: int) -> None:
    minimums, maximums = [low for low, _ in columns], [high for _, high in columns]
    widths = column_widths(minimums, maximums, room)
    if sum(minimums) > room:
        assert widths is None
        return
    assert widths is not None
    wanted = [max(low, high) for low, high in columns]
    assert all(low <= width <= want for low, width, want in zip(minimums, widths, wanted, strict=True))
    assert sum(widths) == min(room, sum(wanted))


@pytest.mark.parametrize(
    ("value", "finite", "whole"),
    [
        (None, None, None),
        (True, None, None),
        ("3", None, None),
        ([3], None, None),
        (3, 3.0, 3),
        (-2, -2.0, -2),
        (2.5, 2.5, None),
        (math.inf, None, None),
        (-math.inf, None, None),
        (math.nan, None, None),
        (10**400, None, 10**400),
        (1.7e308, 1.7e308, None),
    ],
)
def test_a_status_field_is_a_number_only_when_it_is_one(value: object, finite: float | None, whole: int | None) -> None:
    assert status_number({"k": value}, "k") == finite
    assert _whole({"k": value}, "k") == whole
    assert (status_number({}, "k"), _whole({}, "k")) == (None, None)


@pytest.mark.parametrize(
    ("agents", "services", "line"),
    [
        (
            ("devbot",),
            ("supervisor", "firewall", "event log"),
            "stopped: devbot; and the crew's supervisor, firewall and event log",
        ),
        (("a", "b"), ("supervisor", "event log"), "stopped: a, b; and the crew's supervisor and event log"),
        ((), ("firewall",), "stopped: the crew's firewall"),
        (("devbot",), (), "stopped: devbot"),
        ((), (), "nothing was running"),
    ],
)
def test_down_names_the_crew_s_own_processes_it_stopped_too(
    agents: tuple[str, ...], services: tuple[str, ...], line: str
) -> None:
    # "stopped: devbot" alone left one thinking the firewall and the event log still ran.
    assert stopped_line(CrewStopped(agents, services)) == line
