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
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))

    def print_json(self, data: Any) -> None:
        """Machine output: plain JSON on stdout, no Rich markup or wrapping."""
        self.console.file.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")

    def warn(self, message: str) -> None:
        self.err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def error(self, exc: AgentSmithError) -> None:
        """`exc` as ``error: …`` lines on stderr (one per line of its message)."""
        for line in str(exc).splitlines() or [type(exc).__name__]:
            self.err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
