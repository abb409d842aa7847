"""The scripted model's decisions, over plain data: no sockets, no clock, no files.

Claude Code sends more than the agent's own turns to the model: a session
title, an auto-mode safety check, a quota probe. `classify` tells them
apart so only agent turns consume the script; `choose` picks the scripted
turn; `build_reply` makes the Anthropic Messages API answer and `sse_frames`
frames it as the streaming API does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from agent_smith.standins.model_script import AGENT_NAME, DEFAULT_AGENT, Script, Turn, When

SAFETY_STOP = "</block>"
SAFETY_ALLOW = "<block>no"
QUOTA_REPLY = "ok"
TEXT_CHUNK = 48
JSON_CHUNK = 24


class Endpoint(StrEnum):
    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    HELLO = "hello"
    ROOT = "root"
    OTHER = "other"


class RequestKind(StrEnum):
    """What a POST /v1/messages is for. Only AGENT_TURN consumes the script."""

    AGENT_TURN = "agent_turn"
    TITLE = "title"
    SAFETY_CHECK = "safety_check"
    QUOTA_PROBE = "quota_probe"
    SIDE = "side"


@dataclass(frozen=True)
class Route:
    agent: str
    endpoint: Endpoint


_ENDPOINTS = {
    "/v1/messages": Endpoint.MESSAGES,
    "/v1/messages/count_tokens": Endpoint.COUNT_TOKENS,
    "/api/hello": Endpoint.HELLO,
    "/": Endpoint.ROOT,
    "": Endpoint.ROOT,
}


def route(raw_path: str) -> Route:
    """Which agent and endpoint a request path names.

    Each agent's ANTHROPIC_BASE_URL carries a prefix ``/agents/<name>``, which
    Claude Code keeps in front of every API path, so one server tells agents
    apart without reading credentials. A path without the prefix belongs to
    the ``default`` agent. The query string (``?beta=true``) is ignored.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    agent = DEFAULT_AGENT
    parts = path.split("/")
    if len(parts) >= 3 and parts[1] == "agents" and AGENT_NAME.fullmatch(parts[2]):
        agent = parts[2]
        path = "/" + "/".join(parts[3:])
    normalized = path.rstrip("/") if path not in ("/", "") else path
    return Route(agent, _ENDPOINTS.get(normalized, Endpoint.OTHER))


def classify(body: Mapping[str, Any]) -> RequestKind:
    """Side requests first: they may carry tools too, but never answer for the agent."""
    if body.get("max_tokens") == 1:
        return RequestKind.QUOTA_PROBE
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and SAFETY_STOP in stops:
        return RequestKind.SAFETY_CHECK
    output_format = _dig(body, "output_config", "format")
    if isinstance(output_format, dict) and output_format.get("type") == "json_schema":
        return RequestKind.TITLE
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        return RequestKind.AGENT_TURN
    return RequestKind.SIDE


def _dig(data: Mapping[str, Any], *keys: str) -> object:
    current: object = data
    for key in keys:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


@dataclass(frozen=True)
class NewInput:
    """What arrived since the model last spoke: texts and tool results, in order."""

    texts: tuple[str, ...]
    tool_results: tuple[str, ...]


def new_input(body: Mapping[str, Any]) -> NewInput:
    """Blocks of every message after the last assistant message (user and system roles)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return NewInput((), ())
    start = 0
    for index, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "assistant":
            start = index + 1
    texts: list[str] = []
    results: list[str] = []
    for message in messages[start:]:
        if not isinstance(message, dict):
            continue
        for block in _blocks(message.get("content")):
            if block.get("type") == "tool_result":
                results.append(_flatten(block.get("content")))
            elif isinstance(block.get("text"), str):
                texts.append(block["text"])
    return NewInput(tuple(texts), tuple(results))


def _blocks(content: object) -> Iterator[dict[str, Any]]:
    if isinstance(content, str):
        yield {"type": "text", "text": content}
    elif isinstance(content, list):
        yield from (block for block in content if isinstance(block, dict))


def _flatten(content: object) -> str:
    return "\n".join(block["text"] for block in _blocks(content) if isinstance(block.get("text"), str))


def matches(when: When, seen: NewInput) -> bool:
    if when.tool_result is not None and when.tool_result != bool(seen.tool_results):
        return False
    if when.tool_result_contains is not None and not any(
        when.tool_result_contains in result for result in seen.tool_results
    ):
        return False
    if when.contains is not None:
        haystack = (*seen.texts, *seen.tool_results)
        if not any(when.contains in text for text in haystack):
            return False
    return True


@dataclass(frozen=True)
class Choice:
    """The turn that answers a request (None: answer idle), and its index in the agent's list."""

    turn: Turn | None
    index: int | None


def choose(
    script: Script, cursors: Mapping[str, int], agent: str, body: Mapping[str, Any]
) -> tuple[Choice, dict[str, int]]:
    """The reply for an agent turn and the cursors after it; a waiting turn is not consumed."""
    position = cursors.get(agent, 0)
    turns = script.agents.get(agent, ())
    if position >= len(turns) or not matches(turns[position].when, new_input(body)):
        return Choice(None, None), dict(cursors)
    return Choice(turns[position], position), {**cursors, agent: position + 1}


def example_for_schema(schema: object) -> object:
    """A small value valid against a JSON Schema, for the structured side requests."""
    if not isinstance(schema, dict):
        return "agent-smith"
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combinator)
        if isinstance(options, list) and options:
            return example_for_schema(options[0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        return {name: example_for_schema(sub) for name, sub in properties.items()}
    if kind == "array":
        minimum = schema.get("minItems", 0)
        count = minimum if isinstance(minimum, int) and minimum > 0 else 0
        return [example_for_schema(schema.get("items")) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", 0)
        return low if isinstance(low, int | float) and not isinstance(low, bool) else 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return _example_string(schema)


def _example_string(schema: Mapping[str, Any]) -> str:
    text = "agent-smith"
    min_length = schema.get("minLength")
    max_length = schema.get("maxLength")
    if isinstance(min_length, int) and len(text) < min_length:
        text = text + "x" * (min_length - len(text))
    if isinstance(max_length, int) and len(text) > max_length:
        text = text[:max_length]
    return text


@dataclass(frozen=True)
class Ids:
    """Identifiers for one reply, handed in so the core stays deterministic."""

    message: str
    tool_uses: tuple[str, ...] = ()


def estimate_tokens(body: Mapping[str, Any]) -> int:
    return max(1, len(json.dumps(body, ensure_ascii=False)) // 4)


def build_reply(kind: RequestKind, choice: Choice, body: Mapping[str, Any], ids: Ids, idle_text: str) -> dict[str, Any]:
    """The complete Messages API response object for a classified request."""
    stop_reason = "end_turn"
    stop_sequence: str | None = None
    content: list[dict[str, Any]]
    if kind is RequestKind.QUOTA_PROBE:
        content, stop_reason = [_text(QUOTA_REPLY)], "max_tokens"
    elif kind is RequestKind.SAFETY_CHECK:
        content, stop_reason, stop_sequence = [_text(SAFETY_ALLOW)], "stop_sequence", SAFETY_STOP
    elif kind is RequestKind.TITLE:
        schema = _dig(body, "output_config", "format", "schema")
        content = [_text(json.dumps(example_for_schema(schema)))]
    elif choice.turn is None:
        content = [_text(idle_text)]
    else:
        content = _turn_content(choice.turn, ids.tool_uses)
        if choice.turn.tool_calls:
            stop_reason = "tool_use"
    output_tokens = max(1, sum(len(json.dumps(block)) for block in content) // 4)
    return {
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or "claude-scripted"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {"input_tokens": estimate_tokens(body), "output_tokens": output_tokens},
    }


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _turn_content(turn: Turn, tool_ids: Sequence[str]) -> list[dict[str, Any]]:
    if len(tool_ids) < len(turn.tool_calls):
        raise ValueError(f"{len(turn.tool_calls)} tool calls need as many ids, got {len(tool_ids)}")
    content = [_text(turn.text)] if turn.text else []
    for call, tool_id in zip(turn.tool_calls, tool_ids, strict=False):
        content.append({"type": "tool_use", "id": tool_id, "name": call.name, "input": call.input})
    return content


def sse_events(reply: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The streaming form of a reply: the event sequence the Messages API sends."""
    start_message = {
        **reply,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": reply["usage"]["input_tokens"], "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start_message}),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(reply["content"]):
        events.extend(_block_events(index, block))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": reply["stop_reason"],
                    "stop_sequence": reply["stop_sequence"],
                },
                "usage": {"output_tokens": reply["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _block_events(index: int, block: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    if block["type"] == "text":
        opening: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": part} for part in _chunks(block["text"], TEXT_CHUNK)]
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = json.dumps(block["input"], ensure_ascii=False)
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in _chunks(raw, JSON_CHUNK)]
    return [
        (
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": opening},
        ),
        *(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas),
        ("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def encode_sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def count_tokens_reply(body: Mapping[str, Any]) -> dict[str, Any]:
    return {"input_tokens": estimate_tokens(body)}
