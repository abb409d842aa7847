"""The consoles commands write to, and the one way an agent-smith error is shown (Rich, no Typer)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape

from agent_smith.errors import AgentSmithError
from agent_smith.logs import LogFormat, json_line, json_printable, printable


@dataclass
class AppContext:
    # soft_wrap: a message is one line however long, for the terminal to wrap and for a pipe or
    # a log to keep whole (Rich would cut it at 80 columns where no terminal says otherwise).
    # Tables still fit the width.
    console: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    # --log-format: with json, what a command says on stderr is one JSON object a line, as its logs.
    log_format: LogFormat = LogFormat.text

    def print_json(self, data: Any) -> None:
        """Machine output: plain JSON on stdout, no Rich markup or wrapping (no raw control character either)."""
        self.console.file.write(json_printable(json.dumps(data, indent=2, default=str, ensure_ascii=False)) + "\n")

    def log(self, level: int, message: str, **fields: Any) -> None:
        """`message` on stderr as one JSON log line (`--log-format json`)."""
        self.err.file.write(json_line(level, message, **fields) + "\n")
        self.err.file.flush()

    def warn(self, message: str) -> None:
        """`message` as a ``warning: …`` line on stderr; its control characters shown, not sent
        (it may quote what an agent wrote: `logs.printable`)."""
        if self.log_format is LogFormat.json:
            self.log(logging.WARNING, message)
            return
        self.err.print(f"[yellow]warning:[/] {escape(printable(message))}", highlight=False, soft_wrap=True)

    def error(self, exc: AgentSmithError) -> None:
        """`exc` as ``error: …`` lines on stderr (one per line of its message); with json logs one
        object, its message whole."""
        lines = str(exc).splitlines() or [type(exc).__name__]
        if self.log_format is LogFormat.json:
            self.log(logging.ERROR, "\n".join(lines))
            return
        for line in lines:
            self.err.print(f"[red]error:[/] {escape(printable(line))}", highlight=False, soft_wrap=True)
