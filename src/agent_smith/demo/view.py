"""What the demo shows: the live view of a running demo, and the summary at its end. Pure rendering."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agent_smith.demo.run import Snapshot
from agent_smith.demo.steps import STEP_TITLES, Progress, Step, step_durations

_STATE_STYLE = {"working": "bold green", "idle": "cyan", "ready": "cyan", "starting": "yellow"}
_LINES = 8


def _short(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def steps_table(steps: Mapping[Step, float], *, title: str = "the story") -> Table:
    table = Table(title=title, title_justify="left", expand=True, show_edge=False)
    table.add_column("", width=2)
    table.add_column("step")
    table.add_column("at", justify="right", width=8)
    table.add_column("took", justify="right", width=8)
    durations = step_durations_of(steps)
    numbers = {step: number for number, step in enumerate(Step, start=1)}
    # Done ones in the order they were done (the durations' own), as "took" counts from the row
    # above; the rest after them. The refused request waits on no other step: it is done when it is.
    for step in [*durations, *(s for s in Step if s not in steps)]:
        number, done = numbers[step], step in steps
        table.add_row(
            Text("✓", style="bold green") if done else Text("·", style="dim"),
            Text(f"{number}. {STEP_TITLES[step]}", style="" if done else "dim"),
            f"{steps[step]:.1f}s" if done else "",
            f"{durations[step]:.1f}s" if done else "",
        )
    return table


def step_durations_of(steps: Mapping[Step, float]) -> dict[Step, float]:
    return step_durations(Progress(steps=dict(steps)))


def live_view(snapshot: Snapshot) -> RenderableType:
    """One frame: the steps, the agents' states, the chat, the events and the pull request."""
    header = Text.assemble(("agent-smith demo", "bold"), "  ", (snapshot.phase, "italic"), f"  {snapshot.elapsed:.0f}s")
    agents = Table(title="agents", title_justify="left", show_edge=False, expand=True)
    agents.add_column("agent")
    agents.add_column("state")
    for name, state in snapshot.agents.items():
        agents.add_row(name, Text(state, style=_STATE_STYLE.get(state, "red")))
    pull = Table(title="pull request", title_justify="left", show_edge=False, expand=True, show_header=False)
    pull.add_column("")
    pull.add_column("")
    if snapshot.pull is None:
        pull.add_row("", Text("none yet", style="dim"))
    else:
        pr = snapshot.pull
        pull.add_row("number", f"#{pr['number']} by {pr['author']}")
        pull.add_row("state", str(pr["state"]))
        pull.add_row("head", str(pr["head"]))
        for review in pr["reviews"]:
            pull.add_row("review", escape(str(review)))
    side = Table.grid(expand=True)
    side.add_column(ratio=1)
    side.add_column(ratio=1)
    side.add_row(agents, pull)
    chat = "\n".join(f"[bold]{escape(who)}[/]: {escape(_short(text))}" for who, text in snapshot.chat[-_LINES:])
    events = "\n".join(escape(_event_line(e)) for e in snapshot.events[-_LINES:])
    # One line per agent, each whole: the commands are copied from here. The CLI's console soft-wraps,
    # which in a live view means cut at the width: these fold instead.
    attach = [Text(f"attach: {command}", style="dim", no_wrap=False, overflow="fold") for command in snapshot.attach]
    return Group(
        header,
        *attach,
        steps_table(snapshot.progress.steps),
        side,
        Panel(chat or "[dim]quiet[/]", title="#crew", title_align="left"),
        Panel(events or "[dim]none yet[/]", title="events", title_align="left"),
    )


def _event_line(event: Mapping[str, Any]) -> str:
    parts = [str(event.get("type", "?")), str(event.get("agent", "?"))]
    if event.get("pr") is not None:
        parts.append(f"#{event['pr']}")
    if event.get("state"):
        # A review's verdict: without it, the request for changes and the approval read the same.
        parts.append(str(event["state"]).replace("_", " "))
    if event.get("host"):
        parts.append(str(event["host"]))
    return " ".join(parts)


def summary(record: Mapping[str, Any]) -> RenderableType:
    """The end: outcome, each step's time, wall time, where every log is, how to attach when kept."""
    steps = {Step(k): v["done_at"] for k, v in record["steps"].items() if v.get("done_at") is not None}
    outcome = str(record["outcome"])
    style = "bold green" if record.get("complete") else "bold red"
    parts: list[RenderableType] = [
        Text.assemble(("demo ", "bold"), (outcome, style), f" in {record['wall_time']:.1f}s"),
        steps_table(steps, title="steps (times from the operator's message)"),
    ]
    setup = record.get("setup") or {}
    if setup:
        timing = Table(title="bring-up", title_justify="left", show_edge=False)
        timing.add_column("part")
        timing.add_column("took", justify="right")
        for name, seconds in setup.items():
            timing.add_row(escape(name), f"{seconds:.1f}s")
        parts.append(timing)
    parts.append(log_lines(record.get("logs") or {}))
    return Group(*parts)


def log_lines(logs: Mapping[str, Any]) -> RenderableType:
    """Where each log is, one line each. Paths are copied from here: a table would fold or cut a
    long one across lines; a line of its own stays whole for a console that soft-wraps, as the
    CLI's do, so the terminal wraps it and a selection copies it as one."""
    width = max((len(name) for name in logs), default=0)
    lines = [Text("logs", style="italic")]
    lines += [Text.assemble((f"{name:<{width}}", "bold"), "  ", str(path)) for name, path in logs.items()]
    return Group(*lines)
