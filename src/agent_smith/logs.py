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


# What a terminal would act on rather than show: the C0 controls (tab and line feed kept), DEL,
# and the C1 controls, which a UTF-8 terminal (xterm, VTE) reads as ESC [ (U+009B), OSC
# (U+009D)… Text an agent wrote, or a server answered, reaches the operator's terminal through
# the CLI's messages and the logs: an escape sequence there could clear, rewrite or retitle it.
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)], "\ufffd")
_JSON_CONTROLS = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def printable(text: str) -> str:
    """`text` with every control character but tab and line feed shown as U+FFFD (pure)."""
    return text.translate(_CONTROLS)


def json_printable(text: str) -> str:
    """JSON text (from ``json.dumps(..., ensure_ascii=False)``) with DEL and the C1 controls
    escaped as ``\\u00XX``, as json escapes the C0 ones: the same JSON, safe on a terminal (pure).
    Outside its strings JSON text holds none of them, so every one is escaped inside a string."""
    return text.translate(_JSON_CONTROLS)


class _TextFormatter(logging.Formatter):
    """The human log line, its message's control characters shown as U+FFFD (`printable`)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


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
        return json_printable(json.dumps(entry, default=str, ensure_ascii=False))


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
        handler.setFormatter(_TextFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("agent_smith")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
