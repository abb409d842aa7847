"""Shapes of Claude Code's files as the pinned CLI accepts them: a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from agent_smith.crew.claude_files import check_credentials_stub, check_mcp, check_settings

SETTINGS_CASES: list[tuple[Any, list[tuple[tuple[str | int, ...], str, str]]]] = [
    ({}, []),
    ([], [((), "must be a JSON object, not an array", "error")]),
    ({"enabledPlugins": {"a@b": True, "c@d": False}}, []),
    ({"enabledPlugins": {"a@b": "yes"}}, [(("enabledPlugins", "a@b"), "must be true or false", "error")]),
    ({"enabledPlugins": ["a@b"]}, [(("enabledPlugins",), "must be an object", "error")]),
    (
        {"permissions": {"allow": ["Bash(git:*)"], "deny": "Read"}},
        [(("permissions", "deny"), "must be an array", "error")],
    ),
    ({"permissions": {"allow": [1]}}, [(("permissions", "allow", 0), "must be a string", "error")]),
    ({"env": {"A": 1}}, [(("env", "A"), "must be a string", "error")]),
    ({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "x", "asyncRewake": True, "timeout": 30}]}]}}, []),
    ({"hooks": {"Stop": {}}}, [(("hooks", "Stop"), "must be an array", "error")]),
    (
        {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "x", "timeout": "30"}]}]}},
        [(("hooks", "Stop", 0, "hooks", 0, "timeout"), "must be a number", "error")],
    ),
    (
        {"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "x", "async": "yes"}]}]}},
        [(("hooks", "Stop", 0, "hooks", 0, "async"), "must be true or false", "error")],
    ),
    ({"hooks": {"Stop": [{}]}}, [(("hooks", "Stop", 0), 'needs "hooks"', "error")]),
    ({"hooks": {"Stopp": []}}, [(("hooks", "Stopp"), "not a hook event", "warning")]),
    (
        {"hooks": {"PreToolUse": [{"matcher": 3, "hooks": []}]}},
        [(("hooks", "PreToolUse", 0, "matcher"), "must be a string", "error")],
    ),
    ({"hooks": {"Stop": [{"hooks": [{"type": "http", "url": "http://x"}, {"type": "prompt", "prompt": "p"}]}]}}, []),
]


@pytest.mark.parametrize(("data", "expected"), SETTINGS_CASES)
def test_settings(data: Any, expected: list[tuple[tuple[str | int, ...], str, str]]) -> None:
    findings = check_settings(data)
    assert len(findings) == len(expected), findings
    for finding, (path, message, severity) in zip(findings, expected, strict=True):
        assert finding.path == path
        assert message in finding.message
        assert finding.severity == severity


@pytest.mark.parametrize(
    ("data", "count"),
    [
        ({"mcpServers": {}}, 0),
        ({"mcpServers": {"a": {"command": "x", "args": ["-v"], "env": {"K": "v"}}}}, 0),
        ({"mcpServers": {"a": {"type": "http", "url": "https://x", "headers": {"X": "y"}}}}, 0),
        ({"mcpServers": {"a": {"command": "x", "args": "-v"}}}, 1),
        ({"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}, 1),
        ({"mcpServers": []}, 1),
        ("x", 1),
    ],
)
def test_mcp(data: Any, count: int) -> None:
    assert len(check_mcp(data)) == count


@pytest.mark.parametrize(
    ("data", "count"),
    [
        ({"claudeAiOauth": {"accessToken": "stub-a", "refreshToken": "stub-r", "expiresAt": 1, "scopes": []}}, 0),
        ({"claudeAiOauth": {"accessToken": "stub-a"}}, 1),
        ({"claudeAiOauth": {"accessToken": "stub-a", "refreshToken": "r", "expiresAt": "soon"}}, 1),
        ({"claudeAiOauth": {"accessToken": "stub-a", "refreshToken": "r", "expiresAt": True}}, 1),
        ({}, 1),
        ([], 1),
    ],
)
def test_credentials_stub(data: Any, count: int) -> None:
    assert len(check_credentials_stub(data)) == count
