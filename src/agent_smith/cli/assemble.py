"""`agent-smith assemble NAME`: build one agent's home and workspace from the crew."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agent_smith.cli.context import app_context
from agent_smith.crew import load_crew
from agent_smith.home import AssembleOptions, assemble, describe
from agent_smith.logs import stderr_progress


def assemble_command(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="The agent to assemble.", envvar="AGENT_NAME", show_default=False)
    ],
    crew: Annotated[
        Path | None,
        typer.Option(
            "--crew", metavar="DIR", help="The crew directory.", envvar="AGENT_SMITH_CREW", show_default=False
        ),
    ] = None,
    home: Annotated[
        Path | None,
        typer.Option(
            "--home",
            metavar="DIR",
            help="The agent's home (default: under the crew's state directory).",
            show_default=False,
        ),
    ] = None,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            metavar="DIR",
            help="Where its repositories go (default: under the state directory).",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change, as a diff; change nothing.")
    ] = False,
    no_clone: Annotated[
        bool, typer.Option("--no-clone", help="Write the home only; leave repositories alone.")
    ] = False,
    agent_smith_command: Annotated[
        str | None,
        typer.Option(
            "--agent-smith-command",
            metavar="PATH",
            help="Absolute path of agent-smith for hooks and MCP servers (default: this installation).",
            envvar="AGENT_SMITH_COMMAND",
            show_default=False,
        ),
    ] = None,
    no_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--no-proxy",
            metavar="HOST",
            help="A host the agent reaches without the firewall (repeatable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Turn the crew into NAME's home and workspace, exactly as Claude Code reads them."""
    out = app_context(ctx)
    loaded = load_crew(crew)
    for warning in loaded.warnings:
        out.warn(warning)
    report = assemble(
        loaded,
        name,
        AssembleOptions(
            home=home,
            workspace=workspace,
            agent_smith_command=agent_smith_command,
            dry_run=dry_run,
            clone=not no_clone,
            no_proxy=tuple(no_proxy or ()),
            progress=stderr_progress(out.log_format),
        ),
    )
    out.console.print(escape(f"{name}: home {report.home}, workspace {report.workspace}"), highlight=False)
    if dry_run:
        for change in report.files:
            out.console.file.write(change.diff)
    for line in describe(report):
        out.console.print(escape(line), highlight=False, soft_wrap=True)
    for warning in report.warnings:
        out.warn(warning)
    if not report.changed:
        out.console.print(f"{name}: nothing to change" if dry_run else f"{name}: already assembled, nothing changed")


def register(app: typer.Typer) -> None:
    app.command("assemble")(assemble_command)
