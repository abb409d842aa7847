"""The per-agent setup command: after the clones, in the primary repository, logged, with a timeout."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.crew import load_crew
from agent_smith.errors import OperationError
from agent_smith.home import AssembleOptions, AssemblyReport, assemble
from tests.fixtures.processes import pid_alive
from tests.home.crewkit import git_env, make_remote, push_commit, recording_command, write_crew

REPO = "acme/widgets"


def _crew(tmp_path: Path, setup: dict[str, Any]) -> tuple[Path, Path, Path]:
    (tmp_path / "githome").mkdir()
    make_remote(tmp_path / "remotes", REPO, git_env(tmp_path / "githome"))
    crew = write_crew(
        tmp_path / "crew",
        state_dir=tmp_path / "state",
        git_base_url=f"file://{tmp_path / 'remotes'}",
        repos=[REPO],
        setup=setup,
    )
    command, _ = recording_command(tmp_path / "bin")
    return crew, command, tmp_path / "state" / "t-crew" / "agents" / "devbot"


def _run(crew: Path, command: Path) -> AssemblyReport:
    return assemble(load_crew(crew, env={}), "devbot", AssembleOptions(agent_smith_command=str(command), env={}))


def test_setup_runs_after_the_clones_once_per_change(tmp_path: Path) -> None:
    script = 'echo "setup in $PWD as $AGENT_NAME"; test -f README.md && echo runs >> "$HOME/setup-count"'
    crew, command, base = _crew(tmp_path, {"command": script, "timeout": "60s"})
    report = _run(crew, command)
    assert report.setup is not None
    assert report.setup.ran
    log = (base / "state" / "setup.log").read_text()
    assert f"setup in {base / 'workspace' / REPO} as devbot" in log
    assert not _run(crew, command).changed
    assert (base / "home" / "setup-count").read_text() == "runs\n"
    push_commit(tmp_path / "remotes", REPO, git_env(tmp_path / "githome"))
    assert _run(crew, command).setup.ran  # type: ignore[union-attr]
    assert (base / "home" / "setup-count").read_text() == "runs\nruns\n"


def test_a_failing_setup_is_reported_and_the_home_is_whole(tmp_path: Path) -> None:
    crew, command, base = _crew(tmp_path, {"command": "echo about to fail; exit 3"})
    with pytest.raises(OperationError, match=r"failed with exit 3 \(output in .*setup.log\)"):
        _run(crew, command)
    assert (base / "home" / ".claude" / "settings.json").is_file()
    assert (base / "home" / ".config" / "agent-smith" / "assembly.json").is_file()
    assert "about to fail" in (base / "state" / "setup.log").read_text()
    with pytest.raises(OperationError, match="failed with exit 3"):
        _run(crew, command)


def test_a_setup_that_hangs_is_killed_at_its_timeout(tmp_path: Path) -> None:
    crew, command, base = _crew(tmp_path, {"command": 'sleep 60 & echo $! > "$HOME/sleeper"; wait', "timeout": "1s"})
    with pytest.raises(OperationError, match="did not finish within 1s"):
        _run(crew, command)
    sleeper = int((base / "home" / "sleeper").read_text())
    deadline = time.monotonic() + 5
    while pid_alive(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(sleeper)
    assert os.path.exists(base / "home" / ".claude" / "CLAUDE.md")


def test_a_withdrawn_setup_takes_its_record_and_log_and_runs_again_when_it_comes_back(tmp_path: Path) -> None:
    crew, command, base = _crew(tmp_path, {"command": 'echo ran >> "$HOME/setup-count"'})
    _run(crew, command)
    record, log = base / "home" / ".config" / "agent-smith" / "setup.json", base / "state" / "setup.log"
    assert record.exists()
    assert log.exists()

    yaml = YAML()
    data = yaml.load(crew / "crew.yaml")
    setup = data["agents"][0].pop("setup")
    yaml.dump(data, crew / "crew.yaml")
    report = _run(crew, command)
    assert {c.path for c in report.files} == {record, log}
    assert not record.exists()
    assert not log.exists()
    assert not _run(crew, command).changed

    data["agents"][0]["setup"] = setup
    yaml.dump(data, crew / "crew.yaml")
    assert _run(crew, command).setup.ran  # type: ignore[union-attr]
    assert (base / "home" / "setup-count").read_text() == "ran\nran\n"
