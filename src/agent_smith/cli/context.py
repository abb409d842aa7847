"""What every command receives from the entry point: the consoles and output choices."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape


@dataclass
class AppContext:
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    def print_json(self, data: Any) -> None:
        """Machine output: plain JSON on stdout, no Rich markup or wrapping."""
        self.console.file.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


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
        envvar="AGENT_SMITH_CREW",
        help="The crew directory (default: $AGENT_SMITH_CREW or the current directory).",
        show_default=False,
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
