"""The crew as started: kept by the supervisor, found from the crew directory alone, forgotten by `down`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from agent_smith.crew import Crew, load_crew, scaffold_crew
from agent_smith.runtime.started import CREW_AS_STARTED, forget_started, keep_started, started_crew
from tests.deploy.crews import crews


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_crew_as_started_is_found_by_its_directory_however_it_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    crew = load_crew(directory, {}).crew
    runtime = tmp_path / "state" / "runtime"
    runtime.mkdir(parents=True)
    assert started_crew(directory) is None

    keep_started(crew, runtime)
    assert (runtime / CREW_AS_STARTED).stat().st_mode & 0o777 == 0o600
    (tmp_path / "link").symlink_to(directory)
    monkeypatch.chdir(tmp_path)
    for named in (directory, Path("crew"), tmp_path / "link"):
        found = started_crew(named)
        assert found is not None
        assert found.model_dump() == crew.model_dump()
        assert found.state_root == crew.state_root
    assert started_crew(tmp_path / "other") is None

    # Only a `down` of that crew forgets it: another runtime directory's is not this one.
    forget_started(crew, tmp_path / "elsewhere" / "runtime")
    assert started_crew(directory) is not None
    forget_started(crew, runtime)
    assert started_crew(directory) is None


def test_what_cannot_be_read_reads_as_nothing_started(tmp_path: Path) -> None:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    crew = load_crew(directory, {}).crew
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    keep_started(crew, runtime)
    kept = json.loads((runtime / CREW_AS_STARTED).read_text())
    for broken in ("{", json.dumps({**kept, "directory": "/somewhere/else"}), json.dumps({**kept, "crew": {}})):
        (runtime / CREW_AS_STARTED).write_text(broken)
        assert started_crew(directory) is None
    (runtime / CREW_AS_STARTED).unlink()
    assert started_crew(directory) is None


def test_a_crew_read_from_no_directory_is_not_kept(tmp_path: Path, home: Path) -> None:
    crew = Crew.model_validate({"version": 1, "crew": {"name": "rt"}, "agents": [{"name": "solo"}]})
    keep_started(crew, tmp_path)
    forget_started(crew, tmp_path)
    assert not (tmp_path / CREW_AS_STARTED).exists()
    assert not home.exists()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crews())
def test_every_crew_comes_back_as_it_was_kept(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        crew = Crew.model_validate(data).located_in(Path(tmp))
        keep_started(crew, Path(tmp))
        found = started_crew(Path(tmp))
        assert found is not None
        assert found.model_dump() == crew.model_dump()
        assert found.directory == crew.directory


def test_a_home_it_cannot_write_in_is_said_and_nothing_else(
    tmp_path: Path, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    crew = load_crew(directory, {}).crew
    home.write_text("not a directory\n")
    keep_started(crew, tmp_path)
    assert "cannot keep the crew as started" in caplog.text
    assert started_crew(directory) is None
