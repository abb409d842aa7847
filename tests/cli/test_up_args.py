"""`up`'s plain-argv fast path reads a command line exactly as the full CLI does, or leaves it to it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from typer.testing import CliRunner

import agent_smith.cli.runtime as runtime_cli
from agent_smith.cli.app import app
from agent_smith.cli.output import AppContext
from agent_smith.cli.up import UpRequest, parse_up, progress
from agent_smith.errors import OperationError
from agent_smith.logs import LogFormat

names = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
hosts = st.from_regex(r"[a-z0-9.]{1,12}", fullmatch=True)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    """`up`'s arguments in any order and spelling the full CLI accepts."""
    parts: list[list[str]] = [[name] for name in draw(st.lists(names, max_size=3))]
    if draw(st.booleans()):
        crew = draw(st.from_regex(r"/[a-z/]{1,12}", fullmatch=True))
        parts.append(draw(st.sampled_from([["--crew", crew], [f"--crew={crew}"]])))
    for host in draw(st.lists(hosts, max_size=2)):
        parts.append(draw(st.sampled_from([["--no-proxy", host], [f"--no-proxy={host}"]])))
    if draw(st.booleans()):
        parts.append(["--timeout", str(draw(st.floats(0.5, 600, allow_nan=False)))])
    parts += [
        [flag] for flag in draw(st.lists(st.sampled_from(["--foreground", "--firewall", "--no-firewall"]), max_size=2))
    ]
    order = draw(st.permutations(range(len(parts))))
    return [arg for i in order for arg in parts[i]]


def typer_reading(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> UpRequest:
    seen: list[UpRequest] = []
    monkeypatch.setattr(runtime_cli, "bring_up", lambda request, console: seen.append(request))
    result = CliRunner().invoke(app, ["up", *argv])
    assert result.exit_code == 0, result.output
    [request] = seen
    return request


@settings(max_examples=60, deadline=None)
@given(command_lines())
def test_the_fast_path_reads_what_the_full_cli_reads(argv: list[str]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert parse_up(argv) == typer_reading(argv, monkeypatch)


def test_a_plain_command_line() -> None:
    assert parse_up(["--crew", "/c", "alice", "bob", "--no-proxy", "127.0.0.1", "--timeout=30"]) == UpRequest(
        crew=Path("/c"), agents=("alice", "bob"), no_proxy=("127.0.0.1",), timeout=30.0
    )
    assert parse_up([]) == UpRequest()


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-h"],
        ["--crew"],
        ["--timeout", "soon"],
        ["--timeout", "-5"],
        ["--timeout=0"],
        ["--timeout", "nan"],
        ["--json"],
        ["--", "alice"],
        ["--log-format", "json"],
    ],
)
def test_anything_unusual_is_left_to_the_full_cli(argv: list[str]) -> None:
    assert parse_up(argv) is None


@pytest.mark.parametrize("verb", [["up"], ["restart", "alice"]])
@pytest.mark.parametrize("seconds", ["-5", "0", "nan"])
def test_a_timeout_that_is_no_time_to_wait_is_bad_usage(verb: list[str], seconds: str) -> None:
    result = CliRunner().invoke(app, [*verb, "--timeout", seconds])
    assert result.exit_code == 2
    assert "must be more than 0 seconds" in result.output


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_progress_and_warnings_take_the_log_format(log_format: LogFormat) -> None:
    err = io.StringIO()
    out = AppContext(err=Console(file=err, soft_wrap=True), log_format=log_format)
    progress(out)("alice", "ready")
    out.warn("a [bracketed] warning")
    out.error(OperationError("first\nsecond"))
    lines = err.getvalue().splitlines()
    if log_format is LogFormat.text:
        assert lines == ["alice: ready", "warning: a [bracketed] warning", "error: first", "error: second"]
        return
    said = [json.loads(line) for line in lines]
    assert [(s["level"], s["logger"], s["message"]) for s in said] == [
        ("info", "agent_smith.cli", "alice: ready"),
        ("warning", "agent_smith.cli", "a [bracketed] warning"),
        ("error", "agent_smith.cli", "first\nsecond"),
    ]
    assert (said[0]["agent"], said[0]["state"]) == ("alice", "ready")
