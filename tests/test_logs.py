"""What the CLI says on stderr itself takes the log format: which one a command line asks for, and progress as lines."""

from __future__ import annotations

import json
import logging

import pytest

from agent_smith.logs import JsonFormatter, LogFormat, json_line, requested_format, stderr_progress


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, LogFormat.text),
        ([], {"AGENT_SMITH_LOG_FORMAT": "json"}, LogFormat.json),
        ([], {"AGENT_SMITH_LOG_FORMAT": "yaml"}, LogFormat.text),
        (["--log-format", "json", "status"], {}, LogFormat.json),
        (["--log-format=json", "status"], {}, LogFormat.json),
        (["--log-format", "text", "status"], {"AGENT_SMITH_LOG_FORMAT": "json"}, LogFormat.text),
        (["--log-format", "json", "--log-format", "text"], {}, LogFormat.text),
        (["--log-level", "debug", "--log-format", "json", "up"], {}, LogFormat.json),
        (["--log-level=debug", "--log-format", "json"], {}, LogFormat.json),
        (["--version", "--log-format", "json"], {}, LogFormat.json),
        # After the verb it is no root option: the verb's own, or an argument.
        (["status", "--log-format", "json"], {}, LogFormat.text),
        # A value missing, or not a format.
        (["--log-format"], {"AGENT_SMITH_LOG_FORMAT": "json"}, LogFormat.text),
        (["--log-format", "xml"], {}, LogFormat.text),
        (["--log-level"], {"AGENT_SMITH_LOG_FORMAT": "json"}, LogFormat.json),
    ],
)
def test_the_format_a_command_line_asks_for(args: list[str], env: dict[str, str], expected: LogFormat) -> None:
    assert requested_format(args, env) is expected


def test_a_json_line_is_what_the_log_formatter_makes() -> None:
    line = json.loads(json_line(logging.WARNING, "50% done\nsecond line", agent="alice"))
    record = logging.LogRecord("agent_smith.cli", logging.WARNING, "", 0, "50% done\nsecond line", None, None)
    record.created, record.msecs = 0.0, 0.0
    logged = json.loads(JsonFormatter().format(record))
    assert set(line) == set(logged) | {"agent"}
    assert (line["level"], line["logger"], line["message"], line["agent"]) == (
        "warning",
        "agent_smith.cli",
        "50% done\nsecond line",
        "alice",
    )


def test_progress_in_pieces_is_one_json_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    write = stderr_progress(LogFormat.json)
    for piece in ("Cloning into 'w'...\nReceiving objects:  50%\rReceiving ", "objects: 100%\r\n", "\n  \n", "done"):
        write(piece)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["message"]) for line in lines] == [
        ("info", "Cloning into 'w'..."),
        ("info", "Receiving objects: 100%"),
    ]
    write("\n")
    assert json.loads(capsys.readouterr().err)["message"] == "done"


def test_progress_as_text_is_written_as_it_comes(capsys: pytest.CaptureFixture[str]) -> None:
    write = stderr_progress(LogFormat.text)
    write("Receiving objects:  50%\r")
    write("Receiving objects: 100%\n")
    assert capsys.readouterr().err == "Receiving objects:  50%\rReceiving objects: 100%\n"
