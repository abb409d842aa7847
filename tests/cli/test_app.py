"""The root command: every verb is listed and loads, and only the verb that runs is imported."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer._click import Context
from typer.testing import CliRunner

import agent_smith.cli
from agent_smith.cli.app import VERBS, app

CLI = str(Path(sys.executable).parent / "agent-smith")


def test_every_registered_verb_is_in_the_table_and_loads() -> None:
    registered: set[str] = set()
    for info in pkgutil.iter_modules(agent_smith.cli.__path__):
        module = importlib.import_module(f"agent_smith.cli.{info.name}")
        if hasattr(module, "register"):
            staging = typer.Typer()
            module.register(staging)
            registered |= set(typer.main.get_group(staging).commands)
    assert registered == set(VERBS)
    root = typer.main.get_command(app)
    for verb in VERBS:
        assert root.get_command(None, verb) is not None  # type: ignore[attr-defined]


def test_importing_the_cli_loads_no_subsystem() -> None:
    code = (
        "import sys, agent_smith.cli.app; "
        "print(sorted(m for m in sys.modules if m.startswith('agent_smith.') and not m.startswith('agent_smith.cli')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['agent_smith.credentials', 'agent_smith.errors', 'agent_smith.logs']"


def test_root_help_lists_every_verb() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for verb in VERBS:
        assert f" {verb} " in result.stdout


def test_a_verb_runs_with_the_cyclic_collector_on() -> None:
    """The entry point turns the collector off while the CLI imports, and on before any verb runs."""
    code = """
import functools, gc, sys
import agent_smith.cli.crew_commands as commands
shown = commands.schema
@functools.wraps(shown)
def schema(*args, **kwargs):
    print("collector:", gc.isenabled())
commands.schema = schema
sys.argv = ["agent-smith", "schema"]
from agent_smith.__main__ import main
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "collector: True\n"


def test_ctrl_c_while_a_verb_s_modules_import_is_exit_130_without_a_traceback() -> None:
    # A Ctrl-C in `up`'s first ~0.1 s printed KeyboardInterrupt's traceback and died by SIGINT.
    code = """
import sys
import agent_smith.deferred as deferred
def interrupted(*args):
    raise KeyboardInterrupt
deferred.defer = interrupted
sys.argv = ["agent-smith", "up"]
from agent_smith.__main__ import main
main()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


def test_an_unknown_log_level_is_one_line_and_exit_2() -> None:
    for argv, env in ((["--log-level", "loud", "schema"], {}), (["firewall"], {"AGENT_SMITH_LOG_LEVEL": "loud"})):
        done = subprocess.run(
            [sys.executable, "-m", "agent_smith", *argv], env={**os.environ, **env}, capture_output=True, text=True
        )
        assert done.returncode == 2, done.stderr
        assert (
            done.stderr
            == "error: log level 'loud': use one of debug, info, warning, error (--log-level, AGENT_SMITH_LOG_LEVEL)\n"
        )


@pytest.mark.parametrize(
    ("argv", "line", "command"),
    [
        (["up", "--timeout", "0"], "Invalid value for '--timeout': must be more than 0 seconds", "up"),
        (["k8s", "secrets"], "Missing option '--output' / '-o'.", "k8s secrets"),
        (["nosuchverb"], "No such command 'nosuchverb'.", ""),
        (["up", "--bogus"], "No such option: --bogus", "up"),
        (["logs"], "Missing argument 'NAME'.", "logs"),
        (["events", "query", "--pr", "0"], "Invalid value for '--pr': Input should be greater than", "events query"),
        (["events", "query", "--since"], "Option '--since' requires an argument.", "events query"),
        (["--log-level"], "Option '--log-level' requires an argument.", ""),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], line: str, command: str) -> None:
    done = subprocess.run([CLI, *argv], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    [said] = done.stderr.splitlines()
    assert said.startswith(f"error: {line}"), said
    assert said.endswith(f" (see `{' '.join(['agent-smith', *command.split()])} --help`)"), said


def test_no_arguments_show_the_help_and_exit_2() -> None:
    done = subprocess.run([CLI], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Usage: agent-smith" in done.stdout + done.stderr
    assert "error:" not in done.stderr


def _commands() -> list[tuple[list[str], Any]]:
    """Every command's path (after `agent-smith`) and its click command: the root, each verb and each sub-verb."""
    root = typer.main.get_command(app)
    found: list[tuple[list[str], Any]] = [([], root)]
    for verb in VERBS:
        command = root.get_command(None, verb)  # type: ignore[attr-defined]
        found.append(([verb], command))
        for sub, subcommand in getattr(command, "commands", {}).items():
            found.append(([verb, sub], subcommand))
    return found


@pytest.mark.parametrize(("path", "command"), _commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_help_shows_a_value_for_options_that_take_one_and_none_for_flags(path: list[str], command: Any) -> None:
    # Typer showed every flag with a type (`--json <bool>`) that the flag then refused.
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    # An option's row begins with its names (after `*` when it is required).
    rows = [row for line in result.stdout.splitlines() if (row := line.strip("│ *")).startswith("-")]
    params = command.get_params(Context(command, info_name="agent-smith"))
    options = [p for p in params if p.param_type_name == "option" and not p.hidden]
    assert len(rows) == len(options), result.stdout
    for option in options:
        names = set(option.opts) | set(option.secondary_opts)
        [row] = [r for r in rows if r.split()[0] in names]
        cells = re.split(r"\s{2,}", row)
        while cells and cells[0].startswith("-"):  # its names, long and short
            cells.pop(0)
        shown = cells[0]
        if option.is_flag:
            # Its help text comes right after its names.
            assert shown.startswith(" ".join(option.help.split()[:3])), (path, option.opts, row)
        else:
            # What one value is (DIR, SECONDS), or the choices (`<text|json>`): never a Python type
            # (`<float>`, `<list[str]>`).
            value = shown.split()[0]
            assert value == option.metavar or re.fullmatch(r"<\w+(\|\w+)+>", value), (path, option.opts, row)


JSON_KEYS = {"time", "level", "logger", "message"}


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert lines, "something is said"
    assert all(set(line) >= JSON_KEYS for line in lines), lines
    return lines


@pytest.mark.parametrize(
    ("argv", "env", "level", "message"),
    [
        # The full CLI: an agent-smith error, bad usage before and after the verb, a bad option value.
        (["--log-format", "json", "status", "--crew", "/nonexistent"], {}, "error", "no crew.yaml in /nonexistent"),
        (
            ["status", "--crew", "/nonexistent"],
            {"AGENT_SMITH_LOG_FORMAT": "json"},
            "error",
            "no crew.yaml in /nonexistent",
        ),
        (["--log-format=json", "nosuchverb"], {}, "error", "No such command 'nosuchverb'."),
        (["--log-format", "json", "up", "--bogus"], {}, "error", "No such option: --bogus"),
        (["--log-format", "json", "--log-level"], {}, "error", "Option '--log-level' requires an argument."),
        (["--log-format", "json", "--log-level", "loud", "schema"], {}, "error", "log level 'loud'"),
        # The fast paths: a plain `up`, and the servers.
        (["up", "--crew", "/nonexistent"], {"AGENT_SMITH_LOG_FORMAT": "json"}, "error", "no crew.yaml in /nonexistent"),
        (
            ["firewall", "--crew", "/nonexistent"],
            {"AGENT_SMITH_LOG_FORMAT": "json"},
            "error",
            "no crew.yaml in /nonexistent",
        ),
    ],
)
def test_with_json_logs_what_the_cli_says_on_stderr_is_json(
    argv: list[str], env: dict[str, str], level: str, message: str
) -> None:
    done = subprocess.run([CLI, *argv], env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    [said] = _json_lines(done.stderr)
    assert (said["level"], said["logger"]) == (level, "agent_smith.cli")
    assert message in said["message"], said


def test_with_json_logs_a_warning_is_json(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    assert subprocess.run([CLI, "init", str(crew)], capture_output=True, check=False).returncode == 0
    # A persona directory crew.yaml does not name is a warning, not an error.
    (crew / "agents" / "stray").mkdir()
    env = {**os.environ, "AGENT_SMITH_LOG_FORMAT": "json", "HOME": str(tmp_path)}
    for argv in (["validate", str(crew)], ["k8s", "render", "--crew", str(crew)]):
        done = subprocess.run([CLI, *argv], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert {line["level"] for line in _json_lines(done.stderr)} == {"warning"}, done.stderr


def test_a_verb_run_outside_a_crew_says_how_to_name_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGENT_SMITH_CREW"}
    done = subprocess.run([CLI, "status"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert f"no crew.yaml in {tmp_path} (name the crew's directory with `--crew DIR` or AGENT_SMITH_CREW" in said
