"""The event log as MCP tools for one agent: served by the supervisor, or `agent-smith mcp events`.

`publish_event` always publishes as the agent the server was started for
(`AGENT_NAME` in its environment): the model chooses the type and fields,
never the author. `query_events` reads the log with the same filters as
`agent-smith events query`. The agent's server may carry other per-agent
tools beside them (`extra`): agent-smith's prompt context, which its
UserPromptSubmit hook calls on this server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agent_smith.crew import EventLog
from agent_smith.errors import AgentSmithError
from agent_smith.events.model import AGENT_NAME, REPO, Event, build_event, caller_fields, event_types
from agent_smith.events.publisher import Publisher
from agent_smith.events.reading import connect, query
from agent_smith.events.subjects import EventFilter, time_range
from agent_smith.mcpstdio import McpServer, Tool, ToolError

MAX_QUERY_LIMIT = 500


def _field_summary(cls: type[Event]) -> str:
    own = [name for name in cls.model_fields if name not in Event.model_fields]
    required = [n for n in own if cls.model_fields[n].is_required()]
    optional = [n for n in own if n not in required]
    parts = []
    if required:
        parts.append("requires " + ", ".join(required))
    if optional:
        parts.append("optional " + ", ".join(optional))
    return "; ".join(parts) or "no fields"


def publish_description() -> str:
    lines = [
        "Publish a team event to the crew's event log, as you (your agent name is filled in).",
        "Types and their fields:",
    ]
    lines += [f"- {name}: {_field_summary(Event.registry[name])}" for name in event_types()]
    return "\n".join(lines)


PUBLISH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"type": "string", "enum": [], "description": "the event type"},
        "fields": {
            "type": "object",
            "description": "the type's fields, e.g. {repo, pr, title, url} for PR events",
            "additionalProperties": True,
        },
    },
    "required": ["type"],
    "additionalProperties": False,
}

QUERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "one event type or a list of them",
        },
        "agent": {"type": "string"},
        "repo": {"type": "string", "description": "owner/name"},
        "pr": {"type": "integer", "minimum": 1},
        "since": {"type": "string", "description": "ISO 8601 time, or a duration ago like 2h or 7d"},
        "until": {"type": "string", "description": "ISO 8601 time, or a duration ago"},
        "limit": {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_LIMIT, "default": 20},
    },
    "additionalProperties": False,
}


def check_arguments(arguments: Mapping[str, Any], schema: Mapping[str, Any]) -> None:
    """Refuse an argument `schema` does not name, as its ``additionalProperties: false`` says (pure):
    a misspelt or misplaced one (`agent` beside `fields`) would be silently ignored."""
    if extra := sorted(set(arguments) - set(schema["properties"])):
        raise ToolError(f"unknown argument {extra[0]!r} (arguments: {', '.join(schema['properties'])})")


def query_filter(arguments: dict[str, Any], now: datetime) -> tuple[EventFilter, int]:
    """The filter and limit a `query_events` call asks for; bad arguments raise `ToolError` (pure)."""
    check_arguments(arguments, QUERY_SCHEMA)
    raw_types = arguments.get("type")
    types = (raw_types,) if isinstance(raw_types, str) else tuple(raw_types) if isinstance(raw_types, list) else ()
    if raw_types is not None and (not types or not all(isinstance(t, str) for t in types)):
        raise ToolError("type: one event type, or a list of them")
    unknown = [t for t in types if t not in Event.registry]
    if unknown:
        raise ToolError(f"unknown event type {unknown[0]!r} (known: {', '.join(event_types())})")
    agent = arguments.get("agent")
    if agent is not None and not (isinstance(agent, str) and AGENT_NAME.fullmatch(agent)):
        raise ToolError(f"agent: {agent!r} is not an agent name")
    pr = arguments.get("pr")
    if pr is not None and (not isinstance(pr, int) or isinstance(pr, bool) or pr < 1):
        raise ToolError("pr: must be a pull request number")
    limit = arguments.get("limit", 20)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_QUERY_LIMIT:
        raise ToolError(f"limit: must be between 1 and {MAX_QUERY_LIMIT}")
    since, until = arguments.get("since"), arguments.get("until")
    for key, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, str):
            raise ToolError(f"{key}: an ISO 8601 time, or a duration ago like 2h, as a string")
    try:
        start, end = time_range(since, until, now)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    repo = arguments.get("repo")
    if repo is not None and not (isinstance(repo, str) and REPO.fullmatch(repo)):
        raise ToolError(f"repo: {repo!r} is not a repository as owner/name")
    flt = EventFilter(
        types=types,
        agent=agent,
        repo=str(repo) if repo is not None else None,
        pr=pr,
        since=start,
        until=end,
    )
    return flt, limit


def event_tools(
    agent: str,
    publisher: Publisher,
    settings: EventLog,
    url: str | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Tool]:
    """The two tools, bound to one agent, one publisher and one NATS server to read from."""

    async def publish_event(arguments: dict[str, Any]) -> dict[str, Any]:
        check_arguments(arguments, PUBLISH_SCHEMA)
        type_name = arguments.get("type")
        fields = arguments.get("fields")
        fields = {} if fields is None else fields
        if not isinstance(type_name, str):
            raise ToolError("type: required, one of " + ", ".join(event_types()))
        if not isinstance(fields, dict):
            raise ToolError("fields: must be an object")
        if "agent" in fields and fields["agent"] != agent:
            raise ToolError(f"you publish as {agent}; you cannot publish as {fields['agent']!r}")
        fields = {k: v for k, v in fields.items() if k != "agent"}
        try:
            event = build_event(type_name, agent, caller_fields(type_name, fields))
            receipt = await publisher.publish(event)
        except AgentSmithError as exc:
            raise ToolError(str(exc)) from None
        result: dict[str, Any] = {"id": receipt.event_id, "type": event.type, "agent": agent}
        if receipt.stored:
            result["stored"] = {"seq": receipt.seq}
        else:
            result["queued"] = "NATS is unreachable: the event is kept in the outbox and sent when it is back"
        return result

    async def query_events(arguments: dict[str, Any]) -> dict[str, Any]:
        flt, limit = query_filter(arguments, clock())
        if url is None:
            raise ToolError("no NATS server is configured for this agent (NATS_URL)")
        try:
            nc = await connect(url)
            try:
                found = await query(nc, settings, flt, limit)
            finally:
                await nc.close()
        except AgentSmithError as exc:
            raise ToolError(str(exc)) from None
        return {"count": len(found), "events": [e.payload for e in found]}

    publish_schema = {
        **PUBLISH_SCHEMA,
        "properties": {
            **PUBLISH_SCHEMA["properties"],
            "type": {**PUBLISH_SCHEMA["properties"]["type"], "enum": event_types()},
        },
    }
    return [
        Tool("publish_event", publish_description(), publish_schema, publish_event),
        Tool(
            "query_events",
            "Read the crew's event log, newest last: filter by type, agent, repo, pr, since/until.",
            QUERY_SCHEMA,
            query_events,
        ),
    ]


def event_servers(
    tokens: Mapping[str, str],
    publisher: Publisher,
    settings: EventLog,
    url: str | None,
    extra: Mapping[str, Sequence[Tool]] | None = None,
) -> dict[str, McpServer]:
    """One server per agent, keyed by the agent's token (`tokens` maps agent → token), sharing a publisher;
    `extra` maps an agent to the tools its server offers beside the event tools."""
    extra = extra or {}
    return {
        token: events_server(agent, publisher, settings, url, extra.get(agent, ())) for agent, token in tokens.items()
    }


def events_server(
    agent: str, publisher: Publisher, settings: EventLog, url: str | None, extra: Sequence[Tool] = ()
) -> McpServer:
    return McpServer(
        "agent-smith-events",
        "1.0",
        [*event_tools(agent, publisher, settings, url), *extra],
        instructions=(
            f"The crew's event log. You are {agent}; publish_event records team events "
            "(PR opened/reviewed/merged, incidents, finished tasks) under your name."
        ),
    )
