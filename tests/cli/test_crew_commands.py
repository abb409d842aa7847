"""The crew verbs through the real entry point: exit codes and what users read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from agent_smith import parts
from agent_smith.cli.app import app
from agent_smith.cli.crew_commands import _doctor_table

runner = CliRunner()
AGENT_SMITH = Path(sys.executable).parent / "agent-smith"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script in a child process, as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "MATRIX_", "NATS_", "GITHUB_"))}
    return subprocess.run(
        [str(AGENT_SMITH), *args], capture_output=True, text=True, env={**base, **(env or {})}, check=False, timeout=60
    )


def test_init_then_validate_exits_zero(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    init = run("init", str(crew))
    assert init.returncode == 0, init.stderr
    assert "Wrote a crew of two agents" in init.stdout
    result = run("validate", str(crew))
    assert result.returncode == 0, result.stderr
    assert "ok crew 'example-crew': 2 agents (devbot, reviewbot)" in result.stdout


def test_three_mistakes_exit_two_with_three_lines_and_no_traceback(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    crew_yaml = crew / "crew.yaml"
    text = crew_yaml.read_text()
    text = text.replace("permission_mode: acceptEdits", "permission_mode: yolo", 1)
    text = text.replace("max_bytes: 1GiB", "max_bytes: lots")
    text = text.replace("listen: 127.0.0.1:3128", "listen: 127.0.0.1:3128\n  lisen: 1")
    crew_yaml.write_text(text)
    result = run("validate", str(crew))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith(f"error: {crew_yaml}:") for line in lines)
    assert "Traceback" not in result.stderr + result.stdout
    assert any("did you mean 'listen'" in line for line in lines)


def test_init_refuses_a_non_empty_directory_without_force(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    result = run("init", str(tmp_path))
    assert result.returncode == 2
    assert "not empty; pass --force" in result.stderr
    assert run("init", "--force", str(tmp_path)).returncode == 0
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_init_force_over_a_whole_crew_writes_one_file_and_says_it_in_the_singular(tmp_path: Path) -> None:
    run("init", str(tmp_path))
    result = run("init", "--force", str(tmp_path))
    assert result.returncode == 0
    assert "(1 file)." in result.stdout, "only the schema is written again"
    assert "(1 files)" not in result.stdout


def test_init_force_over_a_crew_keeps_its_edits_and_says_so(tmp_path: Path) -> None:
    run("init", str(tmp_path))
    crew_yaml, persona = tmp_path / "crew.yaml", tmp_path / "agents" / "devbot" / "CLAUDE.md"
    crew_yaml.write_text(crew_yaml.read_text() + "# mine\n")
    persona.write_text("# my devbot\n")
    (tmp_path / "agents" / "reviewbot" / "CLAUDE.md").unlink()
    result = run("init", "--force", str(tmp_path))
    assert result.returncode == 0
    assert crew_yaml.read_text().endswith("# mine\n")
    assert persona.read_text() == "# my devbot\n"
    assert (tmp_path / "agents" / "reviewbot" / "CLAUDE.md").is_file(), "what is missing is written"
    assert "(2 files)" in result.stdout, "the persona that was missing, and the schema"
    kept = result.stdout.split("Kept what was there: ", 1)[1]
    assert "crew.yaml" in kept
    assert "agents/devbot/CLAUDE.md" in kept


def test_validate_json_and_environment_overrides(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    result = run("validate", "--json", env={"AGENT_SMITH_CREW": str(crew), "NATS_URL": "nats://127.0.0.1:4222"})
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data == {
        "ok": True,
        "crew": "example-crew",
        "agents": ["devbot", "reviewbot"],
        "warnings": [],
        "overridden_by_env": ["NATS_URL"],
    }


def test_validate_warns_about_unnamed_personas(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    (crew / "agents" / "ghost").mkdir()
    result = run("validate", str(crew))
    assert result.returncode == 0
    assert "ghost/: persona directory not named in crew.yaml" in result.stderr


def test_schema_prints_the_json_schema() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Crew"
    assert "agents" in schema["properties"]


def test_doctor_json_lists_every_part() -> None:
    result = run("doctor", "--json")
    data = json.loads(result.stdout)
    parts = {row["part"]: row for row in data["parts"]}
    assert set(parts) == {"tmux", "git", "gh", "Node.js", "claude CLI", "nats-server", "Synapse"}
    # In CI every part must be there: a missing one is a failure, not a skip.
    assert data["ok"] is True, [p for p in data["parts"] if not p["found"]]
    assert result.returncode == 0
    assert parts["claude CLI"]["version"] == "2.1.331"


def test_doctor_shows_every_path_whole_in_80_columns_and_no_fix_column_when_nothing_is_missing() -> None:
    # A claude as deep as CI's checkout puts it (/check/work/main/node_modules/.bin/claude, 41
    # characters): no column may lose its end to "…", least of all a path.
    with tempfile.TemporaryDirectory(prefix="a-checkout-this-deep-", dir="/tmp") as temporary:
        deep = Path(temporary)
        (deep / "claude").symlink_to(Path(AGENT_SMITH).parents[2] / "node_modules" / ".bin" / "claude")
        assert len(str(deep / "claude")) == 41
        result = run("doctor", env={"COLUMNS": "80", "AGENT_SMITH_CLAUDE": str(deep / "claude")})
        assert result.returncode == 0, result.stdout
        assert "…" not in result.stdout
        probed = run("doctor", "--json", env={"AGENT_SMITH_CLAUDE": str(deep / "claude")})
        paths = [p["path"] for p in json.loads(probed.stdout)["parts"]]
        where = _where_column(result.stdout)
        for path in paths:
            assert path in where, (path, result.stdout)
        header = next(line for line in result.stdout.splitlines() if "where" in line)
        assert "fix" not in header


@pytest.mark.parametrize("spare", [0, -1])
def test_a_doctor_path_is_whole_on_its_line_while_it_fits_and_folded_not_cut_when_it_does_not(spare: int) -> None:
    path = "/" + "deep/" * 8 + "claude"
    rows = [
        parts.PartStatus("nats-server", True, "2.15.1", "/usr/bin/nats-server", True, "fix"),
        parts.PartStatus("claude CLI", True, "2.1.331", path, True, "fix"),
    ]
    # The borders and padding of four columns, then the widest of each.
    width = 13 + len("nats-server") + len("status") + len("2.1.331") + len(path) + spare
    console = Console(width=width, record=True)
    console.print(_doctor_table(rows, width))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    assert (f" {path} " in text) is (spare == 0)
    assert path in _where_column(text)


def _where_column(table: str) -> str:
    """The doctor table's paths, each folded piece joined back to the one before it."""
    return "".join(line.split("│")[4].strip() for line in table.splitlines() if line.count("│") == 5)


def test_doctor_fails_with_the_fix_when_a_part_is_missing(tmp_path: Path) -> None:
    # An empty PATH hides tmux, git, gh and node; the table names each fix.
    result = run("doctor", env={"PATH": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 1
    assert "apt-get install -y tmux" in result.stdout
    assert "missing" in result.stdout


def test_doctor_checks_the_claude_up_would_start(tmp_path: Path) -> None:
    result = run("doctor", "--json", env={"AGENT_SMITH_CLAUDE": str(tmp_path / "no-claude")})
    assert result.returncode == 1
    claude = next(p for p in json.loads(result.stdout)["parts"] if p["part"] == "claude CLI")
    assert claude["found"] is False
    assert claude["fix"] == "set AGENT_SMITH_CLAUDE to an executable claude CLI, or unset it"


@pytest.mark.parametrize("verb", ["init", "validate", "schema", "doctor", "mcp"])
def test_every_verb_has_help(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_version_and_bad_usage() -> None:
    assert run("--version").stdout.strip() == "agent-smith 0.1.0"
    bad = run("no-such-verb")
    assert bad.returncode == 2
    assert "No such command" in bad.stderr


def test_json_log_format_emits_one_object_per_line(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    (crew / "agents" / "ghost").mkdir()
    result = run("--log-format", "json", "--log-level", "debug", "validate", str(crew))
    assert result.returncode == 0
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    loaded = [e for e in entries if e["logger"] == "agent_smith.crew.loader"]
    assert len(loaded) == 1
    assert loaded[0]["level"] == "debug"
    assert loaded[0]["agents"] == ["devbot", "reviewbot"]
    assert set(loaded[0]) >= {"time", "level", "logger", "message", "crew"}


def test_validate_takes_the_crew_as_the_other_verbs_do(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    by_option = run("validate", "--crew", str(crew), env={"AGENT_SMITH_CREW": str(tmp_path / "elsewhere")})
    assert by_option.returncode == 0, by_option.stderr
    assert "ok crew 'example-crew'" in by_option.stdout
    assert run("validate", str(crew), "--crew", str(crew)).returncode == 0
    both = run("validate", str(crew), "--crew", str(tmp_path))
    assert both.returncode == 2
    assert both.stderr.strip() == f"error: two crew directories given ({crew} and --crew {tmp_path}): give one"


def test_validate_warns_of_egress_settings_that_never_take_effect(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    crew_yaml = crew / "crew.yaml"
    crew_yaml.write_text(
        crew_yaml.read_text().replace(
            "hosts: [api.github.com, github.com]", "hosts: [api.github.com, github.com, uploads.github.com]"
        )
    )
    result = run("validate", str(crew))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "warning: egress.secrets[0] (github): no allow rule covers uploads.github.com: it is never sent there\n"
    )
    listed = run("validate", str(crew), "--json")
    assert json.loads(listed.stdout)["warnings"] == [result.stderr.removeprefix("warning: ").strip()]


def test_init_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    result = run("init", str(tmp_path / "afile" / "sub"))
    assert result.returncode == 1
    assert result.stderr == f"error: cannot write the example crew into {tmp_path / 'afile' / 'sub'}: Not a directory\n"
    assert (tmp_path / "afile").read_text() == "mine"


def test_validate_json_lists_the_problems_as_data(tmp_path: Path) -> None:
    crew = tmp_path / "c"
    run("init", str(crew))
    crew_yaml = crew / "crew.yaml"
    crew_yaml.write_text(
        crew_yaml.read_text().replace("permission_mode: acceptEdits", "permision_mode: acceptEdits", 1)
    )
    result = run("validate", str(crew), "--json")
    assert result.returncode == 2
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["ok"] is False
    [error] = report["errors"]
    assert error["file"] == str(crew_yaml)
    assert error["path"].endswith("permision_mode")
    assert error["message"].startswith("unknown key; did you mean 'permission_mode'")
    line = next(n for n, text in enumerate(crew_yaml.read_text().splitlines(), 1) if "permision_mode" in text)
    assert error["line"] == line


def test_validate_json_is_json_when_what_it_was_given_is_no_crew_directory(tmp_path: Path) -> None:
    (tmp_path / "a-file").touch()
    cases = [
        (["validate", str(tmp_path / "a-file")], str(tmp_path / "a-file"), "a file, not a crew directory"),
        (["validate", str(tmp_path), "--crew", "other"], str(tmp_path), "two crew directories given"),
    ]
    for args, file, message in cases:
        result = run(*args, "--json")
        assert (result.returncode, result.stderr) == (2, "")
        report = json.loads(result.stdout)
        assert report["ok"] is False
        [error] = report["errors"]
        assert error["file"] == file
        assert message in error["message"]


def test_a_long_message_is_one_line_in_a_pipe(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    assert run("init", str(crew)).returncode == 0
    names = ["AGENT_SMITH_EVENTS__MAX_AGE", "AGENT_SMITH_EVENTS__MAX_BYTES", "AGENT_SMITH_RUNTIME__TMUX_SOCKET"]
    env = dict(zip(names, ["7d", "2GiB", "a-long-socket-name-to-pass-eighty-columns"], strict=True))
    result = run("validate", str(crew), env={**env, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert f"overridden from the environment: {', '.join(names)}" in result.stdout.splitlines()


def test_the_status_table_fits_80_columns(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    assert run("init", str(crew)).returncode == 0
    shown = run("status", "--crew", str(crew), env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in shown.splitlines()) == 80
    assert shown.splitlines()[-1].endswith("┘"), "no column is cut off"


def test_validate_s_help_says_which_variables_override_crew_yaml() -> None:
    result = runner.invoke(app, ["validate", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "AGENT_SMITH_<SECTION>__<KEY>" in text
    assert "NATS_URL" in text
    assert "warned of" in text


def test_validate_warns_of_a_variable_that_sets_nothing_and_still_passes(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "c")).returncode == 0
    result = run("validate", str(tmp_path / "c"), env={"AGENT_SMITH_EVENTS_MAX_AGE": "1d"})
    assert result.returncode == 0, result.stderr
    assert "AGENT_SMITH_EVENTS_MAX_AGE sets nothing" in result.stderr
    assert "(AGENT_SMITH_EVENTS__MAX_AGE)" in result.stderr


def test_a_key_given_twice_is_one_error_line_with_exit_two(tmp_path: Path) -> None:
    assert run("init", str(tmp_path / "c")).returncode == 0
    crew_yaml = tmp_path / "c" / "crew.yaml"
    crew_yaml.write_text(crew_yaml.read_text() + "events:\n  max_age: |\n    one\n    two\n")
    result = run("validate", str(tmp_path / "c"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "the key 'events' is given twice in one mapping" in result.stderr
