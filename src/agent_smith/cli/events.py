"""`agent-smith events publish|tail|query` and `agent-smith mcp events`."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agent_smith.cli.context import JsonFlag, app_context
from agent_smith.cli.mcp import mcp_app
from agent_smith.cli.output import AppContext
from agent_smith.cli.servers import resolve_target, serve_events
from agent_smith.errors import OperationError, UsageError
from agent_smith.events import (
    EventFilter,
    EventTarget,
    Publisher,
    Receipt,
    StoredEvent,
    build_event,
    caller_fields,
    check_agent_name,
    check_repo_name,
    connect,
    event_class,
    query,
    tail,
)
from agent_smith.events.subjects import time_range
from agent_smith.logs import json_printable

events_app = typer.Typer(
    name="events",
    help="The crew's event log on NATS JetStream: publish, follow, query.",
    no_args_is_help=True,
)

CrewOption = Annotated[
    Path | None,
    typer.Option(
        "--crew",
        metavar="DIR",
        envvar="AGENT_SMITH_CREW",
        help="The crew directory; without one (and no crew.yaml here) NATS_URL and the defaults are used.",
        show_default=False,
    ),
]
TypeOption = Annotated[list[str] | None, typer.Option("--type", "-t", metavar="TYPE", help="Event type (repeatable).")]
AgentFilter = Annotated[str | None, typer.Option("--agent", "-a", metavar="NAME", help="Only this agent's events.")]
RepoOption = Annotated[
    str | None, typer.Option("--repo", metavar="OWNER/NAME", help="Only events about this owner/name.")
]


def _require_url(target: EventTarget) -> str:
    if target.url is None:
        # A crew that is down, as often as a setting missing: a failure, as an unreachable server is.
        raise OperationError(
            "no NATS server: set events.nats_url in crew.yaml or NATS_URL, or start the crew (agent-smith up)"
        )
    return target.url


def parse_fields(pairs: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--field {pair!r}: expected key=value")
        if key in fields:
            raise UsageError(f"--field {key!r} is given twice")
        fields[key] = value
    return fields


def _filter(
    types: list[str] | None,
    agent: str | None,
    repo: str | None,
    pr: int | None = None,
    since: str | None = None,
    until: str | None = None,
) -> EventFilter:
    for name in types or []:
        event_class(name)
    if agent is not None:
        # Also keeps subject wildcards (`*`, `>`) out of the server-side filter.
        check_agent_name(agent)
    if repo is not None:
        # No event is about anything else: a typo would quietly find nothing.
        check_repo_name(repo)
    try:
        start, end = time_range(since, until, datetime.now(UTC), ("--since", "--until"))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EventFilter(tuple(types or ()), agent, repo, pr, start, end)


@events_app.command("publish")
def publish(
    ctx: typer.Context,
    type_name: Annotated[str, typer.Argument(metavar="TYPE", help="The event type, e.g. pr_opened.")],
    field: Annotated[
        list[str] | None, typer.Option("--field", "-f", metavar="KEY=VALUE", help="A field as key=value (repeatable).")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", metavar="NAME", envvar="AGENT_NAME", help="Who publishes.", show_default=False),
    ] = None,
    crew: CrewOption = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", metavar="SECONDS", min=0, help="Seconds to wait for NATS before keeping the event in the outbox."
        ),
    ] = 2.0,
    as_json: JsonFlag = False,
) -> None:
    """Publish one event; when NATS is unreachable it is kept in the outbox and sent later."""
    out = app_context(ctx)
    if not agent:
        raise UsageError("--agent is required (or AGENT_NAME in the environment)")
    check_agent_name(agent)
    event = build_event(type_name, agent, caller_fields(type_name, parse_fields(field or [])))
    target = resolve_target(crew, os.environ)
    target.check_publisher(agent)

    async def run() -> tuple[Receipt, str]:
        async with Publisher(target.settings, target.outbox, target.url, log_outages=False) as publisher:
            await publisher.wait_connected(wait)
            return await publisher.publish(event), publisher.problem

    receipt, problem = asyncio.run(run())
    if as_json:
        out.print_json(
            {"id": receipt.event_id, "type": event.type, "stored": receipt.stored, "seq": receipt.seq}
            | ({} if receipt.stored else {"outbox": str(target.outbox)})
        )
    elif receipt.stored:
        out.console.print(f"published {event.type} {receipt.event_id} (stream sequence {receipt.seq})")
    if not receipt.stored:
        if target.url is None:
            # Only a crew's own event log has no URL: its embedded server, which runs while the crew does.
            problem = "the crew's event log does not run (`agent-smith up` starts it)"
        out.warn(
            f"{escape(problem)}: {event.type} {receipt.event_id} is kept in the outbox "
            f"{escape(str(target.outbox))} and sent when NATS takes it"
        )


# Control characters (C0, DEL, C1) of an event's text, which agents write: on a terminal an
# escape sequence in a title could recolour, retitle or rewrite the screen. A table's cells are
# `Text` (never read as markup); a line of `tail` is markup, so its parts are escaped too.
_CONTROLS = dict.fromkeys([*range(32), *range(127, 160)], "\ufffd")


def _shown(value: object) -> str:
    """`value` as a line shows it: no markup, no control character."""
    return escape(_plain(value))


def _plain(value: object) -> str:
    return str(value).translate(_CONTROLS)


def event_where(payload: Mapping[str, Any]) -> str:
    """What an event is about, as one names it: ``owner/repo#N``, a repository, or the host and
    port a denied request went to (pure)."""
    if payload.get("type") == "egress_denied" and payload.get("host"):
        host = str(payload["host"])
        # An IPv6 address is written in brackets before a port, as in a URL.
        host = f"[{host}]" if ":" in host else host
        return f"{host}:{payload['port']}" if payload.get("port") else host
    repo = payload.get("repo") or ""
    pr = payload.get("pr")
    return f"{repo}#{pr}" if repo and pr else str(repo)


def event_what(payload: Mapping[str, Any]) -> str:
    """What happened, in a few words: a review's state before the PR's title, how many more
    denials like this one went unpublished after the reason (pure)."""
    text = next((str(payload[key]) for key in ("title", "summary", "reason") if payload.get(key)), "")
    kind = payload.get("type")
    if kind == "pr_reviewed":
        state = str(payload.get("state") or "commented").replace("_", " ")
        comments = payload.get("comments")
        if isinstance(comments, int) and comments > 0:
            state += f", {comments} inline comment{'' if comments == 1 else 's'}"
        return f"{state}: {text}"
    if kind == "egress_denied" and payload.get("repeated"):
        return f"{text} ({payload['repeated']} more like it)"
    return text


Cells = tuple[str, str, str, str, str]
_HEADERS: Cells = ("time", "type", "agent", "where", "what")
# Below this many columns left for "what", a title wraps over four lines and more: the narrow layout
# gives it the width of "where" as well.
_WHAT_MIN = 30


def event_cells(payload: Mapping[str, Any]) -> Cells:
    """An event's row (time, type, agent, where, what) as plain text (pure)."""
    return (
        _plain(str(payload.get("time", ""))[:19].replace("T", " ")),
        _plain(payload.get("type", "")),
        _plain(payload.get("agent", "")),
        _plain(event_where(payload)),
        _plain(event_what(payload)),
    )


def fits_wide(rows: list[Cells], width: int) -> bool:
    """Whether a table of one column per cell leaves "what" its due at `width` (pure): the other
    columns are never wrapped, and a boxed column costs its padding and one rule (3)."""
    fixed = sum(max(cell_len(cells[i]) for cells in [_HEADERS, *rows]) + 3 for i in range(4))
    return width - fixed - 3 - 1 >= _WHAT_MIN


def _render(out: AppContext, events: list[StoredEvent], as_json: bool) -> None:
    if as_json:
        out.print_json([e.payload for e in events])
        return
    rows = [event_cells(e.payload) for e in events]
    table = Table(title=f"{len(events)} event{'' if len(events) == 1 else 's'}", title_justify="left")
    # Overflow folds, never cuts: a host, a repository or a number stays whole, if on two lines.
    if fits_wide(rows, out.console.width):
        for header in _HEADERS[:4]:
            table.add_column(header, no_wrap=True, overflow="fold")
        table.add_column("what", overflow="fold")
        for cells in rows:
            table.add_row(*(Text(cell) for cell in cells))
    else:
        # Narrow: each event on two lines, the agent under its type and what happened under where.
        table.add_column("time", no_wrap=True, overflow="fold")
        table.add_column("type / agent", overflow="fold")
        table.add_column("where / what", overflow="fold")
        for time, kind, agent, where, what in rows:
            table.add_row(Text(time), Text(f"{kind}\n{agent}"), Text("\n".join(filter(None, (where, what)))))
    out.console.print(table)


@events_app.command("query")
def query_command(
    ctx: typer.Context,
    types: TypeOption = None,
    agent: AgentFilter = None,
    repo: RepoOption = None,
    pr: Annotated[
        int | None, typer.Option("--pr", metavar="NUMBER", min=1, help="Only events about this PR number.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="TIME", help="ISO time, or a duration ago (2h, 7d).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME", help="ISO time, or a duration ago.")] = None,
    limit: Annotated[int, typer.Option("--limit", metavar="N", min=0, help="The newest N events; 0 for all.")] = 50,
    crew: CrewOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Stored events matching the filters, oldest first (the newest --limit of them)."""
    out = app_context(ctx)
    flt = _filter(types, agent, repo, pr, since, until)
    target = resolve_target(crew, os.environ)
    url = _require_url(target)

    async def run() -> list[StoredEvent]:
        nc = await connect(url)
        try:
            return await query(nc, target.settings, flt, limit or None)
        finally:
            await nc.close()

    _render(out, asyncio.run(run()), as_json)


@events_app.command("tail")
def tail_command(
    ctx: typer.Context,
    types: TypeOption = None,
    agent: AgentFilter = None,
    repo: RepoOption = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Start this far back (ISO time or 10m) instead of now."),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", "-n", metavar="N", min=0, help="Exit after N events; 0 follows forever.")
    ] = 0,
    crew: CrewOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Follow events as they arrive (Ctrl-C to stop)."""
    out = app_context(ctx)
    flt = _filter(types, agent, repo, since=since)
    target = resolve_target(crew, os.environ)
    url = _require_url(target)

    async def run() -> None:
        nc = await connect(url)
        seen = 0
        try:
            async for event in tail(nc, target.settings, flt):
                if as_json:
                    out.console.file.write(json_printable(json.dumps(event.payload, ensure_ascii=False)) + "\n")
                    out.console.file.flush()
                else:
                    p = event.payload
                    out.console.print(
                        f"{_shown(str(p.get('time', ''))[:19])} [bold]{_shown(p.get('type'))}[/] "
                        f"{_shown(p.get('agent'))} {_shown(event_where(p))} {_shown(event_what(p))}".rstrip(),
                        highlight=False,
                    )
                seen += 1
                if count and seen >= count:
                    return
        finally:
            await nc.close()

    asyncio.run(run())


@mcp_app.command("events")
def mcp_events(
    crew: CrewOption = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", metavar="NAME", envvar="AGENT_NAME", help="The agent this server publishes as."),
    ] = None,
) -> None:
    """Stdio MCP server with publish_event and query_events for one agent (AGENT_NAME)."""
    serve_events(crew, agent, os.environ)


def register(app: typer.Typer) -> None:
    app.add_typer(events_app)
