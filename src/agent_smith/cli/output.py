"""The consoles commands write to, and the one way an agent-smith error is shown (Rich, no Typer)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape

from agent_smith.errors import AgentSmithError


@dataclass
class AppContext:
    # soft_wrap: a message is one line however long, for the terminal to wrap and for a pipe or
    # a log to keep whole (Rich would cut it at 80 columns where no terminal says otherwise).
    # Tables still fit the width.
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    def print_json(self, data: Any) -> None:
        """Machine output: plain JSON on stdout, no Rich markup or wrapping."""
        self.console.file.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def error(self, exc: AgentSmithError) -> None:
        """`exc` as ``error: …`` lines on stderr (one per line of its message)."""
        for line in str(exc).splitlines() or [type(exc).__name__]:
            self.err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
