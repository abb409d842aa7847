"""The channel's settings from crew.yaml, its state file, and its public surface."""

from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import agent_smith.chat
from agent_smith.chat import chat_config
from agent_smith.chat.state import ChatState, StateFile
from agent_smith.crew import load_crew
from agent_smith.errors import CrewError, UsageError


def crew_file(root: Path, *, matrix: bool = True, agent_matrix: bool = True) -> Path:
    for name in ("devbot", "reviewbot", "_shared"):
        (root / "agents" / name).mkdir(parents=True, exist_ok=True)
        (root / "agents" / name / "CLAUDE.md").write_text(f"# {name}\n")
    devbot: dict[str, object] = {"name": "devbot"}
    if agent_matrix:
        devbot["matrix"] = {
            "user_id": "@devbot:hs.example",
            "display_name": "Dev Bot",
            # A room version 12 id has no server part.
            "rooms": ["!Qw3kZ5ecvamhkE_bSoZ35sd5jRMFQWzFAkmC5mrD4", "#crew:hs.example"],
            "allowed_senders": ["@alice:hs.example"],
            "quiet_hours": {"start": "22:00", "end": "06:30", "timezone": "Europe/Berlin", "incident_words": ["fire"]},
        }
    crew: dict[str, object] = {
        "version": 1,
        "crew": {"name": "cc"},
        "agents": [
            devbot,
            {"name": "reviewbot", **({"matrix": {"user_id": "@reviewbot:hs.example"}} if matrix else {})},
        ],
        "runtime": {"state_dir": str(root / "state")},
    }
    if matrix:
        crew["matrix"] = {"homeserver": "https://hs.example", "operators": ["@op:hs.example"], "ack_reaction": "👍"}
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)
    return root


def test_the_channel_settings_come_from_the_crew(tmp_path: Path) -> None:
    crew = load_crew(crew_file(tmp_path), {}).crew
    config = chat_config(crew, "devbot", "tok")
    assert config.roster.me.user_id == "@devbot:hs.example"
    assert config.roster.me.display_name == "Dev Bot"
    assert [t.user_id for t in config.roster.teammates] == ["@reviewbot:hs.example"]
    assert config.roster.operators == {"@op:hs.example"}
    assert config.roster.allowed == {"@alice:hs.example"}
    assert config.rooms == ("!Qw3kZ5ecvamhkE_bSoZ35sd5jRMFQWzFAkmC5mrD4", "#crew:hs.example")
    assert config.ack_reaction == "👍"
    assert config.quiet_hours is not None
    assert (config.quiet_hours.start, config.quiet_hours.end) == (time(22), time(6, 30))
    assert config.quiet_hours.incident_words == ("fire",)
    assert config.state_dir == tmp_path / "state" / "cc" / "agents" / "devbot" / "state" / "chat"
    assert "tok" not in repr(config)


@pytest.mark.parametrize("url", ["http://[::1", "https://hs.example:99999", "http://", "http://exa mple.org"])
def test_a_homeserver_no_client_can_use_is_one_line(tmp_path: Path, url: str) -> None:
    env = {"MATRIX_HOMESERVER_URL": url, "AGENT_NAME": "devbot"}
    with pytest.raises(CrewError) as caught:
        load_crew(crew_file(tmp_path), env)
    [problem] = caught.value.problems
    assert str(problem).startswith("$MATRIX_HOMESERVER_URL:1:1: matrix.homeserver: "), problem
    assert "is not a usable URL (" in str(problem)
    assert "\n" not in str(problem)


def test_the_container_contract_overrides_the_crew(tmp_path: Path) -> None:
    env = {
        "AGENT_NAME": "devbot",
        "MATRIX_HOMESERVER_URL": "http://10.0.0.5:8008",
        "MATRIX_ALLOWED_USERS": "@bob:hs.example",
    }
    config = chat_config(load_crew(crew_file(tmp_path), env).crew, "devbot", "tok")
    assert config.homeserver == "http://10.0.0.5:8008"
    assert config.roster.allowed == {"@bob:hs.example"}


@pytest.mark.parametrize(
    ("matrix", "agent_matrix", "message"), [(False, False, "no matrix section"), (True, False, "no chat identity")]
)
def test_chat_needs_its_configuration(tmp_path: Path, matrix: bool, agent_matrix: bool, message: str) -> None:
    crew = load_crew(crew_file(tmp_path, matrix=matrix, agent_matrix=agent_matrix), {}).crew
    with pytest.raises(UsageError, match=message):
        chat_config(crew, "devbot", "tok")


def test_the_state_file_round_trips_and_a_broken_one_is_one_clear_error(tmp_path: Path) -> None:
    store = StateFile(tmp_path)
    assert store.load() == ChatState()
    state = ChatState(next_batch="s1")
    state.remember_own("$a")
    store.save(state)
    assert store.load() == state
    assert store.path.stat().st_mode & 0o777 == 0o600
    store.path.write_text("{not json")
    with pytest.raises(UsageError, match=r"state.json: not a valid chat state \(") as caught:
        store.load()
    assert "\n" not in str(caught.value)


def test_the_public_surface() -> None:
    assert sorted(agent_smith.chat.__all__) == sorted(
        [
            "CHANNEL_METHOD", "SERVER_NAME", "ChatChannel", "ChatConfig", "Decision", "LoopGuard", "MatrixLink",
            "Member", "Message", "QuietHours", "Reason", "Refused", "Roster", "SyncBatch", "Verdict",
            "build_server", "chat_config", "decide", "load_chat_config", "post_notice", "read_token", "serve",
        ]
    )  # fmt: skip
    for name in agent_smith.chat.__all__:
        assert getattr(agent_smith.chat, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = agent_smith.chat.nothing


def test_reading_the_settings_loads_no_matrix_client_nor_mcp_server() -> None:
    """`up` reads every channel's settings before it starts an agent: that must stay cheap."""
    probe = "import sys, agent_smith.chat.config; print(sorted(m for m in sys.modules if m.startswith(('nio', 'agent_smith.chat.'))))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['agent_smith.chat.config', 'agent_smith.chat.rules']"
