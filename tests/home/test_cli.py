"""`agent-smith assemble` on argv lists: exit codes, one-line errors, output."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_smith.cli.app import app
from agent_smith.home.assemble import _firewall_down
from agent_smith.listeners import free_port
from tests.home.crewkit import git_env, make_remote, recording_command, write_crew

TOKEN = "syt_ZGV2Ym90_clitokenabcdefghijkl_9z8y7x"


def _invoke(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env={"MATRIX_ACCESS_TOKEN": TOKEN, **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def _setup(tmp_path: Path, repos: list[str] | None = None) -> tuple[list[str], Path]:
    crew = write_crew(
        tmp_path / "crew", state_dir=tmp_path / "state", git_base_url=f"file://{tmp_path / 'remotes'}", repos=repos
    )
    command, _ = recording_command(tmp_path / "bin")
    home = tmp_path / "home"
    args = ["assemble", "devbot", "--crew", str(crew), "--home", str(home), "--workspace", str(tmp_path / "ws")]
    return [*args, "--agent-smith-command", str(command)], home


def test_assemble_then_nothing_to_change(tmp_path: Path) -> None:
    args, home = _setup(tmp_path)
    code, out, err = _invoke(args)
    assert code == 0, err
    assert out.splitlines()[0] == f"devbot: home {home}, workspace {tmp_path / 'ws'}"
    # The agent's home by its path: `~` was read as the user's own.
    assert f"created {home}/.claude/CLAUDE.md" in out
    assert f"created {home}/.claude.json" in out
    assert "~" not in out
    assert (home / ".claude" / "settings.json").is_file()
    code, out, err = _invoke(args)
    assert code == 0
    assert "devbot: already assembled, nothing changed" in out
    assert TOKEN not in out + err


def test_a_warning_is_shown_as_it_is_said(tmp_path: Path) -> None:
    # It was escaped twice for Rich: shown as `extra\[x]/`.
    args, _ = _setup(tmp_path)
    (tmp_path / "crew" / "agents" / "extra[x]").mkdir()
    code, _, err = _invoke(args)
    assert code == 0, err
    assert "/agents/extra[x]/: persona directory not named in crew.yaml; it is not used" in " ".join(err.split())


def test_dry_run_prints_a_unified_diff(tmp_path: Path) -> None:
    args, home = _setup(tmp_path)
    code, out, _ = _invoke([*args, "--dry-run"])
    assert code == 0
    assert f"+++ b{home}/.claude/CLAUDE.md" in out
    assert f"would create {home}/.claude/CLAUDE.md" in out
    assert TOKEN not in out
    assert not home.exists()


def test_unknown_agent_is_one_line_exit_2(tmp_path: Path) -> None:
    args, home = _setup(tmp_path)
    args[1] = "nobody"
    code, _out, err = _invoke(args)
    assert code == 2
    assert err.strip() == "error: unknown agent 'nobody' (the crew has: devbot, reviewbot)"
    assert not home.exists()


def test_missing_persona_file_is_one_line_exit_2(tmp_path: Path) -> None:
    args, home = _setup(tmp_path)
    (tmp_path / "crew" / "agents" / "devbot" / "CLAUDE.md").unlink()
    code, _, err = _invoke(args)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "agents/devbot/CLAUDE.md" in line
    assert "needs its CLAUDE.md" in line
    assert not home.exists()


def test_uncloneable_repo_is_one_line_exit_1(tmp_path: Path) -> None:
    args, _ = _setup(tmp_path, repos=["acme/nowhere"])
    code, _, err = _invoke(args)
    assert code == 1
    [line] = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert line.startswith("error: cannot clone acme/nowhere from file://")


def test_a_clone_through_a_firewall_that_is_not_running_says_so(tmp_path: Path) -> None:
    write_crew(tmp_path / "crew", state_dir=tmp_path / "state", git_base_url="https://github.test", repos=["acme/w"])
    listen = f"127.0.0.1:{free_port()}"
    args = ["assemble", "devbot", "--crew", str(tmp_path / "crew"), "--home", str(tmp_path / "home")]
    code, _, err = _invoke(args, {"AGENT_SMITH_EGRESS__LISTEN": listen})
    assert code == 1
    [line] = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert line.startswith("error: cannot clone acme/w from https://github.test/acme/w.git:")
    assert line.endswith(
        f"it goes through the egress firewall, and nothing listens on {listen}: `agent-smith up` starts it "
        "(and clones), `assemble --no-clone` leaves the repositories for then"
    )


@pytest.mark.parametrize(
    ("url", "no_proxy", "down"),
    [
        ("https://github.test/a/b.git", "", True),
        ("http://github.test/a/b.git", "other.test, .elsewhere", True),
        ("https://github.test/a/b.git", "localhost,.github.test", False),
        ("https://git.github.test/a/b.git", "github.test", False),
        ("https://github.test/a/b.git", "*", False),
        ("file:///srv/git/a/b.git", "", False),
        ("ssh://git@github.test/a/b.git", "", False),
    ],
)
def test_only_a_clone_that_goes_through_the_proxy_blames_it(url: str, no_proxy: str, down: bool) -> None:
    env = {"HTTPS_PROXY": f"http://devbot:pw@127.0.0.1:{free_port()}", "NO_PROXY": no_proxy}
    assert (_firewall_down(url, env) is not None) == down


def test_clone_progress_goes_to_stderr(tmp_path: Path) -> None:
    (tmp_path / "githome").mkdir()
    make_remote(tmp_path / "remotes", "acme/widgets", git_env(tmp_path / "githome"))
    args, _ = _setup(tmp_path, repos=["acme/widgets"])
    code, out, err = _invoke(args)
    assert code == 0, err
    assert "Cloning into" in err
    assert "acme/widgets: cloned" in out


def test_unwritable_home_is_one_line_exit_1(tmp_path: Path) -> None:
    args, _ = _setup(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    args[args.index("--home") + 1] = str(tmp_path / "file" / "home")
    code, _, err = _invoke(args)
    assert code == 1
    assert err.strip().splitlines() == [f"error: cannot write to {tmp_path}/file/home: Not a directory"]


def test_a_home_that_is_a_file_is_one_line_exit_1(tmp_path: Path) -> None:
    args, _ = _setup(tmp_path)
    (tmp_path / "file").write_text("not a directory")
    args[args.index("--home") + 1] = str(tmp_path / "file")
    code, _, err = _invoke(args)
    assert code == 1
    assert err.strip().splitlines() == [f"error: cannot write to {tmp_path}/file: it is not a directory"]
    assert (tmp_path / "file").read_text() == "not a directory"
