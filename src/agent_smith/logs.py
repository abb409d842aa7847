"""Logging set-up: human lines by default, one JSON object per line on demand."""

from __future__ import annotations

import json
import logging
import sys
import time
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
