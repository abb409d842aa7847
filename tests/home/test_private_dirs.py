"""An agent's home, workspace and state are its own: 0700, whatever the umask.

On one machine the crew's state lives under the user's home (`~/.local/state/agent-smith`);
with the usual umask 022 every directory assembly made was 0755, so any other user of the
machine could read each agent's conversations (~/.claude/projects), the code of private
repositories in its workspace, and what its hooks found (PR titles and comments).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_smith.crew import load_crew
from agent_smith.home import AssembleOptions, assemble
from tests.home.crewkit import recording_command, write_crew


@pytest.fixture
def umask_022() -> Iterator[None]:
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def _modes(base: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((base / name).stat().st_mode) for name in ("home", "workspace", "state")}


@pytest.mark.usefixtures("umask_022")
def test_assembly_makes_the_agent_s_directories_private_and_narrows_older_ones(tmp_path: Path) -> None:
    state = tmp_path / "state"
    crew = write_crew(tmp_path / "crew", state_dir=state)
    command, _ = recording_command(tmp_path / "bin")
    base = state / "t-crew" / "agents" / "devbot"

    def run() -> None:
        options = AssembleOptions(agent_smith_command=str(command), env={}, clone=False)
        assemble(load_crew(crew, env={}), "devbot", options)

    run()
    assert _modes(base) == {"home": 0o700, "workspace": 0o700, "state": 0o700}

    # A crew assembled before this change: its directories 0755, as the umask left them.
    for name in ("home", "workspace", "state"):
        (base / name).chmod(0o755)
    run()
    assert _modes(base) == {"home": 0o700, "workspace": 0o700, "state": 0o700}


@pytest.mark.usefixtures("umask_022")
def test_a_directory_of_another_owner_is_left_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A volume's root (owned by root, writable through the pod's fsGroup) cannot be chmodded by
    the agent: assembly goes on."""
    state = tmp_path / "state"
    crew = write_crew(tmp_path / "crew", state_dir=state)
    command, _ = recording_command(tmp_path / "bin")
    home = tmp_path / "volume-home"
    home.mkdir(mode=0o775)
    home.chmod(0o775)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
    options = AssembleOptions(agent_smith_command=str(command), env={}, clone=False, home=home)
    assemble(load_crew(crew, env={}), "devbot", options)
    assert stat.S_IMODE(home.stat().st_mode) == 0o775
