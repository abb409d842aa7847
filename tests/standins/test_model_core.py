"""The scripted model's pure core: routing, classification, matching, turn choice, framing."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.standins import parse_script
from agent_smith.standins.model_core import (
    Choice,
    Endpoint,
    Ids,
    NewInput,
    RequestKind,
    Route,
    build_reply,
    choose,
    classify,
    count_tokens_reply,
    encode_sse,
    example_for_schema,
    matches,
    new_input,
    route,
    sse_events,
)
from agent_smith.standins.model_script import Turn, When

TOOLS = [{"name": "Bash", "input_schema": {"type": "object"}}]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/messages?beta=true", Route("default", Endpoint.MESSAGES)),
        ("/v1/messages", Route("default", Endpoint.MESSAGES)),
        ("/v1/messages/count_tokens?beta=true", Route("default", Endpoint.COUNT_TOKENS)),
        ("/api/hello", Route("default", Endpoint.HELLO)),
        ("/", Route("default", Endpoint.ROOT)),
        ("/agents/alice/v1/messages?beta=true", Route("alice", Endpoint.MESSAGES)),
        ("/agents/alice/api/hello", Route("alice", Endpoint.HELLO)),
        ("/agents/alice", Route("alice", Endpoint.ROOT)),
        ("/agents/alice/", Route("alice", Endpoint.ROOT)),
        ("/agents/bob-2/v1/messages/count_tokens", Route("bob-2", Endpoint.COUNT_TOKENS)),
        ("/agents/../v1/messages", Route("default", Endpoint.OTHER)),
        ("/v1/complete", Route("default", Endpoint.OTHER)),
        ("/v2/messages", Route("default", Endpoint.OTHER)),
    ],
)
def test_route(path: str, expected: Route) -> None:
    assert route(path) == expected


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"tools": TOOLS, "messages": []}, RequestKind.AGENT_TURN),
        ({"tools": [], "messages": []}, RequestKind.SIDE),
        ({"messages": []}, RequestKind.SIDE),
        ({"max_tokens": 1, "messages": [{"role": "user", "content": "quota"}]}, RequestKind.QUOTA_PROBE),
        ({"max_tokens": 1, "tools": TOOLS}, RequestKind.QUOTA_PROBE),
        ({"stop_sequences": ["</block>"], "messages": []}, RequestKind.SAFETY_CHECK),
        ({"stop_sequences": ["</block>"], "tools": TOOLS}, RequestKind.SAFETY_CHECK),
        ({"stop_sequences": ["</other>"], "tools": TOOLS}, RequestKind.AGENT_TURN),
        (
            {"output_config": {"format": {"type": "json_schema", "schema": {}}}, "messages": []},
            RequestKind.TITLE,
        ),
        ({"output_config": {"effort": "medium"}, "tools": TOOLS}, RequestKind.AGENT_TURN),
        ({"output_config": "odd", "tools": TOOLS}, RequestKind.AGENT_TURN),
        ({"max_tokens": 32000, "tools": "not a list"}, RequestKind.SIDE),
    ],
)
def test_classify(body: dict[str, Any], kind: RequestKind) -> None:
    assert classify(body) is kind


def _body(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"tools": TOOLS, "messages": list(messages)}


def test_new_input_starts_after_the_last_assistant_message() -> None:
    body = _body(
        {"role": "user", "content": "old prompt"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "out"}]},
                {"type": "text", "text": '<channel source="matrix">hi</channel>'},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "hook context"}]},
    )
    assert new_input(body) == NewInput(('<channel source="matrix">hi</channel>', "hook context"), ("out",))


def test_new_input_of_odd_bodies_is_empty() -> None:
    assert new_input({}) == NewInput((), ())
    assert new_input({"messages": "x"}) == NewInput((), ())
    assert new_input({"messages": [1, {"role": "user", "content": 5}]}) == NewInput((), ())


SEEN = NewInput(("please run the check", "<system-reminder>x</system-reminder>"), ("hi-from-tool",))


@pytest.mark.parametrize(
    ("when", "seen", "expected"),
    [
        (When(), NewInput((), ()), True),
        (When(contains="run the check"), SEEN, True),
        (When(contains="hi-from-tool"), SEEN, True),
        (When(contains="absent"), SEEN, False),
        (When(tool_result=True), SEEN, True),
        (When(tool_result=False), SEEN, False),
        (When(tool_result=False), NewInput(("x",), ()), True),
        (When(tool_result_contains="hi-from"), SEEN, True),
        (When(tool_result_contains="run the check"), SEEN, False),
        (When(contains="run", tool_result_contains="hi"), SEEN, True),
        (When(contains="run", tool_result=False), SEEN, False),
    ],
)
def test_matches(when: When, seen: NewInput, expected: bool) -> None:
    assert matches(when, seen) is expected


@settings(deadline=None)  # the build machine is shared; no timing in unit tests
@given(st.text(max_size=20), st.lists(st.text(max_size=20), max_size=3), st.lists(st.text(max_size=20), max_size=3))
def test_contains_matches_exactly_when_some_input_holds_the_substring(
    needle: str, texts: list[str], results: list[str]
) -> None:
    seen = NewInput(tuple(texts), tuple(results))
    assert matches(When(contains=needle), seen) is any(needle in t for t in (*texts, *results))


SCRIPT = parse_script(
    {
        "agents": {
            "alice": [
                {"text": "first"},
                {"when": {"contains": "go"}, "tool_calls": [{"name": "Bash", "input": {"command": "ls"}}]},
                {"when": {"tool_result": True}, "text": "done"},
            ],
            "bob": [{"text": "bob only"}],
        }
    },
    "test",
)


def test_choose_walks_the_script_in_order_and_waits_for_conditions() -> None:
    cursors: dict[str, int] = {}
    choice, cursors = choose(SCRIPT, cursors, "alice", _body({"role": "user", "content": "hello"}))
    assert (choice.index, cursors) == (0, {"alice": 1})
    choice, cursors = choose(SCRIPT, cursors, "alice", _body({"role": "user", "content": "wait"}))
    assert (choice, cursors) == (Choice(None, None), {"alice": 1})
    choice, cursors = choose(SCRIPT, cursors, "alice", _body({"role": "user", "content": "now go"}))
    assert (choice.index, cursors) == (1, {"alice": 2})
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}
    choice, cursors = choose(SCRIPT, cursors, "alice", _body(result))
    assert (choice.index, cursors) == (2, {"alice": 3})
    choice, cursors = choose(SCRIPT, cursors, "alice", _body({"role": "user", "content": "more"}))
    assert (choice, cursors) == (Choice(None, None), {"alice": 3})


def test_choose_keeps_agents_apart_and_unknown_agents_idle() -> None:
    choice, cursors = choose(SCRIPT, {"alice": 1}, "bob", _body())
    assert choice.turn == Turn(text="bob only")
    assert cursors == {"alice": 1, "bob": 1}
    choice, after = choose(SCRIPT, cursors, "carol", _body())
    assert (choice, after) == (Choice(None, None), cursors)


@settings(deadline=None)  # the build machine is shared; no timing in unit tests
@given(st.lists(st.sampled_from(["hello", "go", "tool"]), max_size=12))
def test_choose_never_skips_or_overruns(inputs: list[str]) -> None:
    cursors: dict[str, int] = {}
    for text in inputs:
        content: Any = [{"type": "tool_result", "tool_use_id": "t", "content": "x"}] if text == "tool" else text
        before = cursors.get("alice", 0)
        choice, cursors = choose(SCRIPT, cursors, "alice", _body({"role": "user", "content": content}))
        after = cursors.get("alice", 0)
        assert after - before in (0, 1)
        assert after <= len(SCRIPT.agents["alice"])
        assert (choice.index == before) if after > before else choice == Choice(None, None)


SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
    {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 20, "maxLength": 40},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "count": {"type": "integer", "minimum": 3},
            "ok": {"type": "boolean"},
            "kind": {"enum": ["a", "b"]},
            "fixed": {"const": 7},
            "maybe": {"type": ["null", "string"]},
            "either": {"anyOf": [{"type": "number"}, {"type": "string"}]},
            "short": {"type": "string", "maxLength": 3},
        },
        "required": ["title", "tags", "count", "ok", "kind", "fixed", "maybe", "either", "short"],
        "additionalProperties": False,
    },
    {"type": "string"},
    {"type": "null"},
]


@pytest.mark.parametrize("schema", SCHEMAS)
def test_example_for_schema_is_valid(schema: dict[str, Any]) -> None:
    jsonschema.validate(example_for_schema(schema), schema)


def _reply(turn: Turn | None, kind: RequestKind = RequestKind.AGENT_TURN, body: Any = None) -> dict[str, Any]:
    ids = Ids("msg_1", tuple(f"toolu_{n}" for n in range(len(turn.tool_calls) if turn else 0)))
    return build_reply(kind, Choice(turn, 0 if turn else None), body or {"model": "m"}, ids, "idle")


def test_build_reply_for_each_kind() -> None:
    title_body = {
        "output_config": {
            "format": {"type": "json_schema", "schema": SCHEMAS[0]},
        }
    }
    title = _reply(None, RequestKind.TITLE, title_body)
    assert json.loads(title["content"][0]["text"]) == {"title": "agent-smith"}
    assert title["stop_reason"] == "end_turn"
    safety = _reply(None, RequestKind.SAFETY_CHECK)
    assert safety["content"] == [{"type": "text", "text": "<block>no"}]
    assert (safety["stop_reason"], safety["stop_sequence"]) == ("stop_sequence", "</block>")
    assert _reply(None, RequestKind.QUOTA_PROBE)["stop_reason"] == "max_tokens"
    idle = _reply(None)
    assert (idle["content"], idle["stop_reason"]) == ([{"type": "text", "text": "idle"}], "end_turn")
    assert idle["model"] == "m"
    assert _reply(None, RequestKind.SIDE)["content"] == [{"type": "text", "text": "idle"}]


def test_build_reply_with_text_and_tool_calls() -> None:
    turn = Turn.model_validate(
        {"text": "on it", "tool_calls": [{"name": "Bash", "input": {"command": "ls"}}, {"name": "Read"}]}
    )
    reply = _reply(turn)
    assert reply["content"] == [
        {"type": "text", "text": "on it"},
        {"type": "tool_use", "id": "toolu_0", "name": "Bash", "input": {"command": "ls"}},
        {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}},
    ]
    assert reply["stop_reason"] == "tool_use"
    assert reply["usage"]["input_tokens"] >= 1


def test_build_reply_refuses_missing_tool_ids() -> None:
    turn = Turn.model_validate({"tool_calls": [{"name": "Bash"}]})
    with pytest.raises(ValueError, match="1 tool calls need as many ids"):
        build_reply(RequestKind.AGENT_TURN, Choice(turn, 0), {}, Ids("msg_1"), "idle")


def _parse_sse(stream: bytes) -> list[tuple[str, dict[str, Any]]]:
    """An SSE parser written from the spec (frames split by a blank line; event + data fields)."""
    events = []
    for frame in stream.decode().split("\n\n"):
        if not frame:
            continue
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def _reassemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """What an SDK does with the stream: rebuild the final message from the deltas."""
    assert events[0][0] == "message_start"
    assert events[-1][0] == "message_stop"
    message = dict(events[0][1]["message"])
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for name, data in events[1:-1]:
        assert data["type"] == name
        if name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    message["content"] = blocks
    return message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None)  # the build machine is shared; no timing in unit tests
@given(
    st.one_of(st.none(), st.text(min_size=1, max_size=200)),
    st.lists(
        st.tuples(st.text(min_size=1, max_size=10), st.dictionaries(st.text(max_size=8), json_values, max_size=4)),
        max_size=3,
    ),
)
def test_streaming_frames_reassemble_into_the_plain_reply(
    text: str | None, calls: list[tuple[str, dict[str, Any]]]
) -> None:
    if not text and not calls:
        text = "x"
    turn = Turn.model_validate({"text": text, "tool_calls": [{"name": n, "input": i} for n, i in calls]})
    reply = _reply(turn)
    stream = b"".join(encode_sse(name, data) for name, data in sse_events(reply))
    assert _reassemble(_parse_sse(stream)) == reply


def test_sse_frame_format() -> None:
    assert encode_sse("ping", {"type": "ping"}) == b'event: ping\ndata: {"type": "ping"}\n\n'


def test_count_tokens_reply() -> None:
    assert count_tokens_reply({"messages": [{"role": "user", "content": "x" * 400}]})["input_tokens"] > 90
