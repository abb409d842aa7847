"""The real `claude` CLI, interactive in tmux, against the scripted model server."""

from __future__ import annotations

import json

import pytest

from agent_smith.standins import RequestKind
from tests.fixtures.claude import PLACEHOLDER_API_KEY, StartClaude
from tests.fixtures.model import StartModelServer

pytestmark = pytest.mark.real


def test_reply_shows_in_the_pane_and_the_request_is_logged(
    model_server: StartModelServer, claude_session: StartClaude
) -> None:
    server = model_server({"agents": {"alice": [{"text": "Hello from the scripted model, I am alice."}]}})
    alice = claude_session("alice", base_url=server.agent_url("alice"))

    alice.type("hello there, who are you?")
    alice.wait_for(r"● Hello from the scripted model, I am alice\.")

    turns = server.requests(agent="alice", kind=RequestKind.AGENT_TURN)
    assert len(turns) == 1
    assert turns[0].turn == 0
    assert turns[0].path.startswith("/agents/alice/v1/messages")
    assert turns[0].body["stream"] is True
    assert "hello there, who are you?" in json.dumps(turns[0].body["messages"])
    assert turns[0].reply["content"] == [{"type": "text", "text": "Hello from the scripted model, I am alice."}]
    assert "x-api-key" in turns[0].headers
    assert server.consumed("alice") == 1
    # Side requests (the session title) were answered without consuming the script.
    assert all(r.turn is None for r in server.requests(agent="alice") if r.kind != RequestKind.AGENT_TURN)
    assert PLACEHOLDER_API_KEY not in server.server.log_path.read_text()
    assert PLACEHOLDER_API_KEY not in alice.screen()


def test_a_tool_call_runs_and_its_result_comes_back(
    model_server: StartModelServer, claude_session: StartClaude
) -> None:
    script = {
        "agents": {
            "alice": [
                {
                    "when": {"contains": "check the greeting"},
                    "tool_calls": [
                        {"name": "Bash", "input": {"command": "echo hi-from-bash", "description": "Print hi"}}
                    ],
                },
                {"when": {"tool_result_contains": "hi-from-bash"}, "text": "The shell said hi."},
            ]
        }
    }
    server = model_server(script)
    alice = claude_session("alice", base_url=server.agent_url("alice"))

    alice.type("please check the greeting")
    alice.wait_for(r"The shell said hi\.")

    turns = server.requests(agent="alice", kind=RequestKind.AGENT_TURN)
    assert [t.turn for t in turns] == [0, 1]
    tool_use = turns[0].reply["content"][0]
    assert tool_use["type"] == "tool_use"
    results = [
        block
        for message in turns[1].body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert results[0]["tool_use_id"] == tool_use["id"]
    assert "hi-from-bash" in json.dumps(results[0]["content"])
    assert results[0].get("is_error") is not True
    assert "hi-from-bash" in alice.screen()


def test_two_agents_share_one_server_and_keep_their_own_scripts(
    model_server: StartModelServer, claude_session: StartClaude
) -> None:
    server = model_server({"agents": {"alice": [{"text": "Alice speaking."}], "bob": [{"text": "Bob speaking."}]}})
    bob = claude_session("bob", base_url=server.agent_url("bob"))
    alice = claude_session("alice", base_url=server.agent_url("alice"))

    bob.type("hi")
    bob.wait_for(r"● Bob speaking\.")
    alice.type("hi")
    alice.wait_for(r"● Alice speaking\.")
    alice.type("anything else?")
    alice.wait_for(r"● Standing by\.")

    assert "Alice" not in bob.screen()
    assert server.consumed("alice") == 1
    assert server.consumed("bob") == 1
    assert {r.agent for r in server.requests()} == {"alice", "bob"}
