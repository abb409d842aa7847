"""The scripted model's decisions, over plain data: no sockets, no clock, no files.

Claude Code sends more than the agent's own turns to the model: a session
title, an auto-mode safety check, a quota probe. `classify` tells them
apart so only agent turns consume the script; `choose` picks the scripted
turn; `build_reply` makes the Anthropic Messages API answer and `sse_events`
frames it as the streaming API does. `request_problem` refuses a body the
real API would answer with a 400, so a request that passes here is one the
provider would take.
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
# The Messages and Token Counting APIs refuse bodies over 32 MB with a 413 (docs: "Errors", request size limits).
MAX_REQUEST_BYTES = 32 * 1024 * 1024


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


# `system` entries in `messages` are what Claude Code sends for hook context and
# environment notes (measured with the pinned CLI); the API takes them.
_ROLES = ("user", "assistant", "system")


def request_problem(endpoint: Endpoint, body: Mapping[str, Any]) -> str | None:
    """Why the API would refuse this body with a 400 invalid_request_error, or None.

    The message is worded as the API words it: verbatim for a missing field
    and for the two tool pairing errors, in its style for the rest.

    Checked: the required fields (``max_tokens`` only for messages, not for
    count_tokens), their types, the shape of ``system`` and of each message,
    and that every ``tool_use`` is answered by a ``tool_result`` in the next
    message and every ``tool_result`` answers one.
    """
    required = ("model", "messages") if endpoint is Endpoint.COUNT_TOKENS else ("model", "max_tokens", "messages")
    for field in required:
        if field not in body:
            return f"{field}: Field required"
    if not isinstance(body["model"], str) or not body["model"]:
        return "model: Input should be a valid string"
    if endpoint is Endpoint.MESSAGES:
        max_tokens = body["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            return "max_tokens: Input should be a valid integer"
        if max_tokens < 1:
            return "max_tokens: Input should be greater than or equal to 1"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream: Input should be a valid boolean"
    system = body.get("system")
    if system is not None and not isinstance(system, str) and not _text_blocks(system):
        return "system: Input should be a valid string or a list of text blocks"
    return _messages_problem(body["messages"])


def _text_blocks(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        for block in value
    )


def _messages_problem(messages: object) -> str | None:
    if not isinstance(messages, list):
        return "messages: Input should be a valid list"
    if not messages:
        return "messages: at least one message is required"
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages.{index}: Input should be a valid dictionary"
        if message.get("role") not in _ROLES:
            return f"messages.{index}.role: Input should be 'user' or 'assistant'"
        content = message.get("content")
        if "content" not in message:
            return f"messages.{index}.content: Field required"
        if not isinstance(content, str) and not (
            isinstance(content, list) and all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in content)
        ):
            return f"messages.{index}.content: Input should be a valid string or a list of content blocks"
    return _tool_pairing_problem(messages)


def _tool_pairing_problem(messages: Sequence[dict[str, Any]]) -> str | None:
    """The API's two pairing errors, worded as it words them.

    `system` entries are skipped when looking for "the next message": they
    carry context between turns and are not turns themselves.
    """
    pending: list[str] = []
    pending_at = 0
    for index, message in enumerate(messages):
        if message["role"] == "system":
            continue
        blocks = list(_blocks(message["content"]))
        results = [
            (n, block.get("tool_use_id")) for n, block in enumerate(blocks) if block.get("type") == "tool_result"
        ]
        if message["role"] == "user":
            for n, use_id in results:
                if use_id not in pending:
                    return (
                        f"messages.{index}.content.{n}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{use_id}. Each `tool_result` block must have a corresponding `tool_use` block in the "
                        "previous message."
                    )
        answered = {use_id for _, use_id in results} if message["role"] == "user" else set()
        unanswered = [use_id for use_id in pending if use_id not in answered]
        if unanswered:
            return (
                f"messages.{pending_at}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(unanswered)}. Each `tool_use` block must have a corresponding `tool_result` block in "
                "the next message."
            )
        pending, pending_at = [], index
        if message["role"] == "assistant":
            pending = [str(block.get("id")) for block in blocks if block.get("type") == "tool_use"]
    return None


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
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        # The model never writes past max_tokens; the quota probe's one token says so.
        output_tokens = min(output_tokens, max_tokens)
    return {
        "id": ids.message,
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model") or "claude-scripted"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(estimate_tokens(body), output_tokens),
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """Usage as the API reports it: the cache counters are always there, zero when nothing was cached."""
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
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
        "usage": {**reply["usage"], "output_tokens": 1},
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


# The HTTP status of each error type the API documents (docs: "Errors").
ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def error_body(kind: str, message: str, request_id: str) -> dict[str, Any]:
    """An error as the API returns it: a top-level ``error`` object and the request's id beside it."""
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
