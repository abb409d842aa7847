"""Logging set-up: human lines by default, one JSON object per line on demand."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, TextIO

from agent_smith.errors import UsageError

_STANDARD_ATTRS = frozenset(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
}


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
        return json.dumps(entry, default=str, ensure_ascii=False)


def json_line(level: int, message: str, **fields: Any) -> str:
    """What the CLI says on stderr itself (an error, a warning, progress) as the one JSON line its
    logs would make of it, for `--log-format json`: a reader of stderr then reads one format."""
    record = logging.LogRecord("agent_smith.cli", level, "", 0, message, None, None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)


def stderr_progress(fmt: LogFormat) -> Callable[[str], None]:
    """A writer of progress that comes in pieces (git's, as an agent is assembled) to stderr: as it
    comes, or with json logs one object per line (a line git redraws after \\r as it last showed)."""
    if fmt is LogFormat.text:

        def write(text: str) -> None:
            sys.stderr.write(text)
            sys.stderr.flush()

        return write
    pending = [""]

    def write_lines(text: str) -> None:
        *lines, pending[0] = (pending[0] + text).split("\n")
        for line in lines:
            if shown := line.rstrip("\r").rsplit("\r", 1)[-1].strip():
                sys.stderr.write(json_line(logging.INFO, shown) + "\n")
        sys.stderr.flush()

    return write_lines


def requested_format(args: Sequence[str], env: Mapping[str, str]) -> LogFormat:
    """The log format a command line asks for (`--log-format`, a root option, so before the verb),
    else AGENT_SMITH_LOG_FORMAT; text when neither names one. For what is said before the CLI has
    read its options, or when it could not (pure)."""
    asked = env.get("AGENT_SMITH_LOG_FORMAT")
    rest = list(args)
    while rest and rest[0].startswith("-"):
        key, sep, value = rest.pop(0).partition("=")
        if key in ("--log-format", "--log-level") and not sep:
            value = rest.pop(0) if rest else ""
        if key == "--log-format":
            asked = value
    return LogFormat.json if asked == LogFormat.json.value else LogFormat.text


LEVELS = ("debug", "info", "warning", "error")


def configure(fmt: LogFormat = LogFormat.text, level: str = "WARNING", stream: TextIO | None = None) -> None:
    """Route agent-smith's logs to stderr (or `stream`) in the chosen format; an unknown level is a UsageError."""
    if level.lower() not in LEVELS:
        raise UsageError(f"log level {level!r}: use one of {', '.join(LEVELS)} (--log-level, AGENT_SMITH_LOG_LEVEL)")
    handler = logging.StreamHandler(stream or sys.stderr)
    if fmt is LogFormat.json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("agent_smith")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
