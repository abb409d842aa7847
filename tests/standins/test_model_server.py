"""The scripted model server over real HTTP on loopback, with a real HTTP client."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_smith.errors import OperationError
from agent_smith.standins import ModelServer, RequestKind, parse_script, read_request_log
from tests.fixtures.model import StartModelServer

pytestmark = pytest.mark.real

TOOLS = [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}]
SECRET = "not-a-real-key-but-treated-as-one-9c41"

SCRIPT = {
    "idle_text": "Nothing scripted.",
    "agents": {
        "alice": [
            {"text": "alice one"},
            {
                "when": {"contains": "deploy"},
                "text": "deploying",
                "tool_calls": [{"name": "Bash", "input": {"command": "make"}}],
            },
        ],
        "default": [{"text": "default one"}],
    },
}


def _client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


def _turn(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-x",
        "max_tokens": 1000,
        "tools": TOOLS,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def _side(text: str) -> dict[str, Any]:
    return {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}


def _events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in response.text.split("\n\n"):
        if frame:
            event_line, data_line = frame.split("\n")
            events.append((event_line.removeprefix("event: "), json.loads(data_line.removeprefix("data: "))))
    return events


def test_hello_root_and_unknown_paths(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        assert client.get(f"{server.url}/api/hello").status_code == 200
        assert client.head(f"{server.agent_url('alice')}/api/hello").status_code == 200
        assert client.get(f"{server.url}/").status_code == 200
        missing = client.post(f"{server.url}/v1/complete", json={})
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"
        assert client.get(f"{server.url}/v1/messages").status_code == 404
        bad = client.post(f"{server.url}/v1/messages", content=b"{not json")
        assert bad.status_code == 400
        assert bad.json()["type"] == "error"


def test_plain_and_streaming_agent_turns_follow_the_script(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        plain = client.post(f"{server.agent_url('alice')}/v1/messages?beta=true", json=_turn("hi"))
        assert plain.status_code == 200
        assert plain.json()["content"] == [{"type": "text", "text": "alice one"}]
        waiting = client.post(f"{server.agent_url('alice')}/v1/messages", json=_turn("not yet"))
        assert waiting.json()["content"] == [{"type": "text", "text": "Nothing scripted."}]
        streamed = client.post(
            f"{server.agent_url('alice')}/v1/messages?beta=true", json=_turn("deploy now", stream=True)
        )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed)
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    starts = [data["content_block"] for name, data in events if name == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    partial = "".join(
        data["delta"]["partial_json"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
    )
    assert json.loads(partial) == {"command": "make"}
    assert server.consumed("alice") == 2


def test_side_requests_never_consume_the_script(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    url = f"{server.url}/v1/messages"
    title_schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
    with _client() as client:
        title = client.post(
            url,
            json={**_side("name it"), "output_config": {"format": {"type": "json_schema", "schema": title_schema}}},
        )
        safety = client.post(url, json={**_side("safe?"), "stop_sequences": ["</block>"], "tools": TOOLS})
        quota = client.post(url, json={**_side("quota"), "max_tokens": 1})
        side = client.post(url, json=_side("summarise"))
        tokens = client.post(f"{server.url}/v1/messages/count_tokens", json=_turn("count me"))
        first = client.post(url, json=_turn("go"))
    assert json.loads(title.json()["content"][0]["text"]) == {"title": "agent-smith"}
    assert safety.json()["content"][0]["text"] == "<block>no"
    assert quota.json()["stop_reason"] == "max_tokens"
    assert side.json()["content"][0]["text"] == "Nothing scripted."
    assert tokens.json()["input_tokens"] > 0
    assert first.json()["content"] == [{"type": "text", "text": "default one"}]
    kinds = [(r.kind, r.turn) for r in server.requests()]
    assert kinds == [
        ("title", None),
        ("safety_check", None),
        ("quota_probe", None),
        ("side", None),
        (None, None),
        ("agent_turn", 0),
    ]


def test_the_log_has_header_names_but_never_their_values(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        client.post(
            f"{server.agent_url('alice')}/v1/messages?beta=true",
            json=_turn("hi"),
            headers={"x-api-key": SECRET, "Authorization": f"Bearer {SECRET}"},
        )
    (entry,) = server.requests(agent="alice", kind=RequestKind.AGENT_TURN)
    assert {"x-api-key", "authorization", "content-type"} <= set(entry.headers)
    assert entry.path == "/agents/alice/v1/messages?beta=true"
    assert entry.endpoint == "messages"
    assert entry.body["messages"][0]["content"] == "hi"
    assert entry.reply["content"][0]["text"] == "alice one"
    assert entry.time.endswith("Z")
    assert SECRET not in server.server.log_path.read_text()


def test_async_api_and_a_busy_port(tmp_path: Path) -> None:
    script = parse_script(SCRIPT, "test")

    async def scenario() -> None:
        async with ModelServer(script, tmp_path / "log.jsonl") as server:
            port = int(server.url.rsplit(":", 1)[1])
            async with httpx.AsyncClient(trust_env=False) as client:
                reply = await client.post(f"{server.url}/v1/messages", json=_turn("x"))
            assert reply.json()["content"][0]["text"] == "default one"
            with pytest.raises(OperationError, match=r"cannot listen on 127\.0\.0\.1"):
                await ModelServer(script, tmp_path / "other.jsonl", port=port).start()

    asyncio.run(scenario())
    assert [e.kind for e in read_request_log(tmp_path / "log.jsonl")] == ["agent_turn"]
    with pytest.raises(OperationError, match="not started"):
        _ = ModelServer(script, tmp_path / "x.jsonl").url


def test_an_absent_log_reads_as_empty(tmp_path: Path) -> None:
    assert read_request_log(tmp_path / "never-written.jsonl") == []


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    entry = {
        "time": "t", "method": "POST", "path": "/v1/messages", "agent": "default", "endpoint": "messages",
        "kind": "side", "headers": [], "body": {}, "turn": None, "reply": None,
    }  # fmt: skip
    log.write_text(json.dumps(entry) + "\n" + json.dumps(entry)[:20])
    assert [e.kind for e in read_request_log(log)] == ["side"]


# What Claude Code checks a request id against (pinned CLI) before it treats an answer as the API's own.
CLI_REQUEST_ID = re.compile(r"^req_[A-Za-z0-9_-]{4,128}$")


def test_every_answer_carries_a_request_id_and_errors_repeat_it(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        answers = [
            client.get(f"{server.url}/api/hello"),
            client.post(f"{server.url}/v1/messages", json=_turn("hi")),
            client.post(f"{server.url}/v1/messages", json=_turn("hi", stream=True)),
            client.post(f"{server.url}/v1/messages/count_tokens", json=_turn("count")),
            client.post(f"{server.url}/v1/complete", json={}),
            client.post(f"{server.url}/v1/messages", json={"messages": []}),
        ]
    ids = [answer.headers.get("request-id", "") for answer in answers]
    assert all(CLI_REQUEST_ID.match(request_id) for request_id in ids), ids
    assert len(set(ids)) == len(ids)
    for answer in answers[-2:]:
        assert answer.json()["request_id"] == answer.headers["request-id"]


USAGE_KEYS = {
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "service_tier",
}


def test_usage_has_the_cache_counters_and_never_passes_max_tokens(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        plain = client.post(f"{server.url}/v1/messages", json=_turn("hi")).json()
        streamed = _events(client.post(f"{server.url}/v1/messages", json=_turn("hi", stream=True)))
        quota = client.post(f"{server.url}/v1/messages", json={**_side("quota"), "max_tokens": 1}).json()
    assert set(plain["usage"]) == USAGE_KEYS
    assert plain["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}
    start = streamed[0][1]["message"]
    assert set(start["usage"]) == USAGE_KEYS
    assert start["usage"]["cache_read_input_tokens"] == 0
    assert quota["stop_reason"] == "max_tokens"
    assert quota["usage"]["output_tokens"] == 1


ANSWERED = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}}]}
RESULT = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 10}, "messages: Field required"),
        ({**_side("x"), "max_tokens": "10"}, "max_tokens: Input should be a valid integer"),
        ({**_side("x"), "max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({**_side("x"), "stream": "yes"}, "stream: Input should be a valid boolean"),
        ({**_side("x"), "system": {"text": "x"}}, "system: Input should be a valid string or a list of text blocks"),
        ({**_side("x"), "messages": []}, "messages: at least one message is required"),
        ({**_side("x"), "messages": [{"role": "tool", "content": "x"}]}, "messages.0.role: Input should be"),
        ({**_side("x"), "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        (
            {**_side("x"), "messages": [{"role": "user", "content": "go"}, ANSWERED, {"role": "user", "content": "?"}]},
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1.",
        ),
        (
            {**_side("x"), "messages": [{"role": "user", "content": "go"}, RESULT]},
            "messages.1.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1.",
        ),
    ],
)
def test_a_request_the_api_refuses_gets_its_400(
    model_server: StartModelServer, body: dict[str, Any], message: str
) -> None:
    server = model_server(SCRIPT)
    with _client() as client:
        refused = client.post(f"{server.url}/v1/messages?beta=true", json={**body, "tools": TOOLS})
    assert refused.status_code == 400
    assert refused.json()["type"] == "error"
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert refused.json()["error"]["message"].startswith(message)
    assert server.consumed("default") == 0


def test_a_tool_round_trip_with_context_between_is_accepted(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    context = {"role": "system", "content": [{"type": "text", "text": "hook context"}]}
    messages = [{"role": "user", "content": "go"}, context, ANSWERED, context, RESULT]
    with _client() as client:
        answer = client.post(f"{server.url}/v1/messages", json={**_side("x"), "messages": messages, "tools": TOOLS})
        tokens = client.post(f"{server.url}/v1/messages/count_tokens", json={"model": "m", "messages": messages})
        no_model = client.post(f"{server.url}/v1/messages/count_tokens", json={"messages": messages})
    assert answer.status_code == 200, answer.text
    assert tokens.status_code == 200, tokens.text
    assert no_model.json()["error"]["message"] == "model: Field required"


def test_a_body_over_32_mb_is_request_too_large(model_server: StartModelServer) -> None:
    server = model_server(SCRIPT)
    huge = json.dumps(_turn("x" * (32 * 1024 * 1024))).encode()
    with _client() as client:
        refused = client.post(f"{server.url}/v1/messages", content=huge, headers={"content-type": "application/json"})
    assert refused.status_code == 413
    assert refused.json()["error"]["type"] == "request_too_large"
    assert CLI_REQUEST_ID.match(refused.headers["request-id"])
