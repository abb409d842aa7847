"""The root command: every verb is listed and loads, and only the verb that runs is imported."""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import typer.main
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
        (["logs"], "Missing argument 'name'.", "logs"),
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
