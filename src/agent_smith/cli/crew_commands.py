"""Verbs about the crew itself: init, validate, schema, doctor."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agent_smith import parts
from agent_smith.cli.context import JsonFlag, app_context
from agent_smith.crew import crew_json_schema, load_crew, scaffold_crew
from agent_smith.errors import CrewError, Problem, UsageError

CrewDir = Annotated[
    Path | None,
    typer.Argument(
        help="The crew directory (default: $AGENT_SMITH_CREW or the current directory).",
        show_default=False,
    ),
]
# `validate DIR` reads as a sentence; `--crew DIR` is how every other verb takes it. Without an
# envvar here: load_crew falls back to $AGENT_SMITH_CREW itself, and an inherited variable
# must not conflict with the directory typed.
CrewDirOption = Annotated[
    Path | None,
    typer.Option(
        "--crew",
        metavar="DIR",
        help="The crew directory, as the other verbs take it (default: $AGENT_SMITH_CREW or the current directory).",
        show_default=False,
    ),
]


def init(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Where to write the example crew.")],
    force: Annotated[
        bool, typer.Option("--force", help="Write into a non-empty directory, keeping the files already there.")
    ] = False,
) -> None:
    """Scaffold a working crew: a developer, a reviewer, shared rules and the schema."""
    out = app_context(ctx)
    done = scaffold_crew(directory, force=force)
    written = len(done.written)
    out.console.print(
        f"Wrote a crew of two agents to [bold]{directory}[/] ({written} file{'' if written == 1 else 's'})."
    )
    if done.kept:
        out.console.print(f"Kept what was there: {', '.join(str(p.relative_to(directory)) for p in done.kept)}.")
    out.console.print(f"Next: [bold]agent-smith validate {directory}[/], then edit crew.yaml.")


def validate(
    ctx: typer.Context, directory: CrewDir = None, crew: CrewDirOption = None, as_json: JsonFlag = False
) -> None:
    """Check crew.yaml and the agents/ directory; list every problem as file:line:col.

    Variables override crew.yaml, and validate lists those that did: AGENT_SMITH_<SECTION>__<KEY> for a key outside agents
    (AGENT_SMITH_EVENTS__MAX_AGE=7d), the container contract's (AGENT_NAME, NATS_URL, GITHUB_TOKEN, …) over those.
    One that sets nothing (AGENT_SMITH_EVENTS_MAX_AGE, a single underscore) or that a contract variable overrides is warned of.
    """
    out = app_context(ctx)
    given = directory or crew
    try:
        if directory is not None and crew is not None and directory != crew:
            raise UsageError(f"two crew directories given ({directory} and --crew {crew}): give one")
        loaded = load_crew(given)
    except UsageError as exc:
        if not as_json:
            raise
        # Machine-readable either way: the problems as data on stdout, exit 2 as for the text.
        found = exc.problems if isinstance(exc, CrewError) else [Problem(str(given or "."), 1, 1, "", str(exc))]
        out.print_json({"ok": False, "errors": [dataclasses.asdict(problem) for problem in found]})
        raise typer.Exit(exc.exit_code) from None
    # What validates but can never take effect: said by `validate`, the linter, only (working it
    # out on every load would put the egress policy on `up`'s path).
    from agent_smith.egress.config import policy_warnings

    warnings = [*loaded.warnings, *policy_warnings(loaded.crew)]
    if as_json:
        out.print_json(
            {
                "ok": True,
                "crew": loaded.crew.crew.name,
                "agents": [a.name for a in loaded.crew.agents],
                "warnings": warnings,
                "overridden_by_env": list(loaded.overrides),
            }
        )
        return
    for warning in warnings:
        out.warn(warning)
    names = ", ".join(a.name for a in loaded.crew.agents)
    count = len(loaded.crew.agents)
    out.console.print(f"[green]ok[/] crew {loaded.crew.crew.name!r}: {count} agent{'s' * (count != 1)} ({names})")
    if loaded.overrides:
        out.console.print(f"overridden from the environment: {', '.join(loaded.overrides)}")


def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of crew.yaml."""
    app_context(ctx).console.file.write(json.dumps(crew_json_schema(), indent=2) + "\n")


def doctor(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the real parts agent-smith needs; exit 1 when a required one is missing."""
    out = app_context(ctx)
    rows = parts.probe_all()
    missing = parts.missing_required(rows)
    if as_json:
        out.print_json({"ok": not missing, "parts": [r.as_dict() for r in rows]})
    else:
        out.console.print(_doctor_table(rows, out.console.width))
        for row in rows:
            if row.note:
                out.console.print(f"{row.part}: {row.note}")
    if missing:
        raise typer.Exit(1)


def _doctor_table(rows: list[parts.PartStatus], width: int) -> Table:
    """The parts, one a line; a path is copied from here, so it is kept whole on one line when it fits."""
    fixes = any(not row.found for row in rows)
    cells = [
        [
            row.part,
            "found" if row.found else "missing" if row.required else "missing (optional)",
            (row.version or "?") if row.found else "",
            row.path or "",
            *([("" if row.found else row.fix)] if fixes else []),
        ]
        for row in rows
    ]
    headers = ["part", "status", "version", "where", *(["fix"] if fixes else [])]
    widest = [max(len(text) for text in column) for column in zip(headers, *cells, strict=True)]
    # Every column but the fixes is kept on one line; the fixes wrap at their words.
    fix_room = max((len(word) for row in cells for fix in row[4:] for word in fix.split()), default=0)
    whole_paths = sum(widest[:4]) + fix_room + 3 * len(headers) + 1 <= width
    table = Table(title="agent-smith doctor")
    for header in ("part", "status", "version"):
        table.add_column(header, no_wrap=True)
    # A path that cannot fit whole folds onto the next line rather than losing its end to "…".
    table.add_column("where", no_wrap=whole_paths, overflow="fold")
    if fixes:
        table.add_column("fix")
    colour = {"found": "green", "missing": "red", "missing (optional)": "yellow"}
    for row in cells:
        table.add_row(row[0], f"[{colour[row[1]]}]{row[1]}[/]", *row[2:])
    return table


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(validate)
    app.command()(schema)
    app.command()(doctor)
