"""What every command receives from the entry point: the consoles and output choices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agent_smith.cli.output import AppContext


def app_context(ctx: typer.Context) -> AppContext:
    obj = ctx.find_root().obj
    if not isinstance(obj, AppContext):
        obj = AppContext()
        ctx.find_root().obj = obj
    return obj


CrewOption = Annotated[
    Path | None,
    typer.Option(
        "--crew",
        metavar="DIR",
        envvar="AGENT_SMITH_CREW",
        help="The crew directory (default: $AGENT_SMITH_CREW or the current directory).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
