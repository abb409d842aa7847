"""Finding the pinned `claude` CLI and building its launch: argv and a complete, explicit environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent_smith.errors import MissingPartError
from agent_smith.runtime import PINNED_VERSION, PermissionMode, claude_launch, claude_version, find_claude

BINARY = Path("/opt/claude")


def _launch(**overrides: object) -> tuple[tuple[str, ...], dict[str, str]]:
    params: dict[str, object] = {
        "cwd": Path("/work/alice"),
        "home": Path("/homes/alice"),
        "config_dir": Path("/homes/alice/.claude"),
        "base_url": "http://127.0.0.1:9/agents/alice",
        "running_as_root": False,
    }
    params.update(overrides)
    launch = claude_launch(BINARY, **params)  # type: ignore[arg-type]
    return launch.argv, dict(launch.env)


def test_the_environment_is_explicit_and_complete() -> None:
    argv, env = _launch(api_key="placeholder-key")
    assert argv == ("/opt/claude",)
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/homes/alice",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "CLAUDE_CONFIG_DIR": "/homes/alice/.claude",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/agents/alice",
        "ANTHROPIC_API_KEY": "placeholder-key",
        "DISABLE_AUTOUPDATER": "1",
    }
    assert "placeholder-key" not in repr(
        claude_launch(
            BINARY,
            cwd=Path("/"),
            home=Path("/"),
            config_dir=Path("/"),
            base_url="u",
            running_as_root=False,
            api_key="placeholder-key",
        )
    )


@pytest.mark.parametrize(
    ("mode", "root", "sandbox"),
    [
        (PermissionMode.BYPASS_PERMISSIONS, True, True),
        (PermissionMode.BYPASS_PERMISSIONS, False, False),
        (PermissionMode.ACCEPT_EDITS, True, False),
        (PermissionMode.DEFAULT, True, False),
    ],
)
def test_is_sandbox_only_for_bypass_as_root(mode: PermissionMode, root: bool, sandbox: bool) -> None:
    argv, env = _launch(permission_mode=mode, running_as_root=root, extra_env={"IS_SANDBOX": "1"})
    assert ("IS_SANDBOX" in env) is sandbox
    if mode is PermissionMode.DEFAULT:
        assert "--permission-mode" not in argv
    else:
        assert argv[1:3] == ("--permission-mode", mode.value)


def test_options_and_extra_env_cannot_override_the_essentials() -> None:
    argv, env = _launch(
        mcp_config=Path("/homes/alice/mcp.json"),
        tool_search=False,
        extra_args=["--debug-file", "/tmp/d.log"],
        extra_env={"CLAUDE_CONFIG_DIR": "/elsewhere", "ANTHROPIC_API_KEY": "leaked", "GIT_AUTHOR_NAME": "Alice"},
        path="/custom/bin",
    )
    assert argv == ("/opt/claude", "--mcp-config", "/homes/alice/mcp.json", "--debug-file", "/tmp/d.log")
    assert env["CLAUDE_CONFIG_DIR"] == "/homes/alice/.claude"
    assert "ANTHROPIC_API_KEY" not in env, "without an api_key the stub OAuth credentials are used"
    assert env["GIT_AUTHOR_NAME"] == "Alice"
    assert env["ENABLE_TOOL_SEARCH"] == "false"
    assert env["PATH"] == "/custom/bin"


def test_find_claude_prefers_the_project_copy(tmp_path: Path) -> None:
    project = tmp_path / "project"
    local = project / "node_modules" / ".bin" / "claude"
    local.parent.mkdir(parents=True)
    local.write_text("")
    on_path = tmp_path / "bin" / "claude"
    on_path.parent.mkdir()
    on_path.write_text("")
    on_path.chmod(on_path.stat().st_mode | stat.S_IXUSR)
    assert find_claude([project], path=str(on_path.parent)) == on_path, "a non-executable copy is skipped"
    local.chmod(local.stat().st_mode | stat.S_IXUSR)
    assert find_claude([tmp_path / "elsewhere", project], path=str(on_path.parent)) == local


def test_missing_claude_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(MissingPartError, match=r"run `npm ci`.*@anthropic-ai/claude-code@2\.1\.331"):
        find_claude([tmp_path], path=str(tmp_path))


@pytest.mark.real
def test_the_project_pins_the_version_the_harness_was_measured_with() -> None:
    binary = find_claude()
    assert binary.parts[-3:] == ("node_modules", ".bin", "claude")
    assert claude_version(binary) == PINNED_VERSION
    assert os.access(binary, os.X_OK)


def test_a_binary_that_is_not_claude_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingPartError, match="cannot run"):
        claude_version(tmp_path / "absent")
