"""`up` with the Matrix channel, real parts throughout: Synapse, tmux, the claude CLI.

The supervisor hosts the channel; a supervisor killed and started again adopts
the agent without restarting claude, which reconnects its channel stream to
the new one: a message sent while no supervisor ran is answered once.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.fsutil import write_atomic
from agent_smith.standins.synapse import SynapseServer
from tests.chat.kit import answering, room_events, send
from tests.fixtures.model import StartModelServer
from tests.runtime.conftest import CrewDir, alive, children_of
from tests.runtime.test_up import MakeCrew, agent, serving, wait_until

pytestmark = pytest.mark.real


def script(room: str) -> dict[str, Any]:
    return {
        "agents": {
            "solo": [
                *answering("ping one", room, "pong one", "Answered one."),
                *answering("ping two", room, "pong two", "Answered two."),
            ]
        }
    }


def with_matrix(crew: CrewDir, homeserver: str, operator: str) -> None:
    yaml = YAML()
    path = crew.root / "crew.yaml"
    data = yaml.load(path.read_text())
    data["matrix"] = {"homeserver": homeserver, "operators": [operator]}
    with path.open("w") as fh:
        yaml.dump(data, fh)


def seed_channel_flag(home: Path) -> None:
    """Offline the CLI reads its channel feature flag only from this cache (see the notes)."""
    path = home / ".claude.json"
    data = json.loads(path.read_text())
    data["cachedGrowthBookFeatures"] = {**data.get("cachedGrowthBookFeatures", {}), "tengu_harbor": True}
    write_atomic(path, json.dumps(data), mode=0o600)


def mcp_servers_under(pid: int) -> list[int]:
    found = []
    for child in children_of(pid):
        try:
            if b"\0mcp\0" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue  # it ended meanwhile
    return found


def test_up_hosts_the_channel_and_a_new_supervisor_keeps_it(
    model_server: StartModelServer, make_crew: MakeCrew, synapse: SynapseServer
) -> None:
    tag = secrets.token_hex(3)
    bot, alice = synapse.register(f"solo{tag}"), synapse.register(f"alice{tag}")
    room = synapse.create_room(alice, name=f"up {tag}", invite=[bot.user_id])
    server = model_server(script(room))
    crew = make_crew([agent("solo", server.url, matrix={"user_id": bot.user_id, "rooms": [room]})])
    with_matrix(crew, synapse.url, alice.user_id)
    root = str(crew.root)
    # Assembled first, to seed the flag; `up` assembles again and keeps it.
    assembled = crew.cli("assemble", "solo", "--crew", root, env={**crew.env, "MATRIX_ACCESS_TOKEN": bot.access_token})
    assert assembled.returncode == 0, assembled.stderr
    seed_channel_flag(crew.state / "rt" / "agents" / "solo" / "home")

    def solo_says(text: str) -> bool:
        return any(
            e["sender"] == bot.user_id and e.get("content", {}).get("body") == text
            for e in room_events(synapse, alice, room)
        )

    # A token the homeserver refuses: the channel says so and waits; `restart` gives it the mended one.
    token_file = crew.state / "rt" / "agents" / "solo" / "state" / "matrix_access_token"
    write_atomic(token_file, "syt_not_a_token_of_this_server\n", mode=0o600)
    up = crew.cli("up", "--crew", root, "--no-proxy", "127.0.0.1")
    assert up.returncode == 0, up.stderr
    assert serving(crew, "solo")
    state = crew.state / "rt" / "agents" / "solo" / "state" / "chat" / "state.json"
    wait_until(
        "the refused token said", lambda: "agent solo: sync: 401" in (crew.runtime / "supervisor.log").read_text()
    )
    assert not state.exists()
    write_atomic(token_file, bot.access_token + "\n", mode=0o600)
    restarted = crew.cli("restart", "solo", "--crew", root)
    assert restarted.returncode == 0, restarted.stderr
    pane = crew.pane_pid("solo")
    wait_until("the channel's first sync", state.exists, timeout=10)
    # No MCP server process under claude: the channel is the supervisor's.
    assert not mcp_servers_under(pane)
    # `status` and the metrics show whether claude holds its channel.
    wait_until("solo's channel connected", lambda: crew.status()["solo"]["chat_connected"] is True)
    table = crew.cli("status", "--crew", root).stdout
    [row] = [line for line in table.splitlines() if line.startswith("│ solo")]
    assert row.split("│")[-2].strip() == "on", table
    metrics = json.loads((crew.runtime / "status.json").read_text())["supervisor"]["metrics"]
    scraped = urllib.request.urlopen(f"{metrics}/metrics", timeout=5).read().decode()
    assert 'agent_smith_agent_channel_connected{agent="solo"} 1.0' in scraped
    send(synapse, alice, room, {"msgtype": "m.text", "body": "@solo ping one"})
    wait_until("solo's first answer", lambda: solo_says("pong one"), timeout=60)
    wait_until("the first turn to end", lambda: server.consumed("solo") == 2)

    # The supervisor dies; a message comes while none runs; a new one adopts solo.
    pid = int((crew.runtime / "supervisor.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_until("the supervisor gone", lambda: not alive([pid]))
    send(synapse, alice, room, {"msgtype": "m.text", "body": "@solo ping two"})
    again = crew.cli("up", "--crew", root, "--no-proxy", "127.0.0.1")
    assert again.returncode == 0, again.stderr
    wait_until("solo's answer through the new supervisor", lambda: solo_says("pong two"), timeout=60)
    assert crew.pane_pid("solo") == pane, "claude was restarted"
    assert crew.entry("solo")["restarts"] == 1, "the one `restart` asked for, counted on"
    answers = [e for e in room_events(synapse, alice, room) if e["sender"] == bot.user_id and "pong" in str(e)]
    assert len([e for e in answers if e.get("content", {}).get("body") == "pong two"]) == 1
    log = (crew.runtime / "supervisor.log").read_text()
    assert bot.access_token not in log
    down = crew.cli("down", "--crew", root)
    assert down.returncode == 0, down.stderr
