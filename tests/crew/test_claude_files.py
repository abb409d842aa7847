"""Shapes of Claude Code's files as the pinned CLI accepts them: a table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from agent_smith.crew.claude_files import HOOK_EVENTS, check_credentials_stub, check_mcp, check_settings

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


# The list Claude Code 2.1.331 printed for `"BogusEvent"` in its debug log: "Unknown hook event
# "BogusEvent" was ignored. Valid events: ...".
CLI_HOOK_EVENTS = (
    "PreToolUse, PostToolUse, PostToolUseFailure, PostToolBatch, Notification, UserPromptSubmit, "
    "UserPromptExpansion, SessionStart, SessionEnd, Stop, StopFailure, SubagentStart, SubagentStop, "
    "PreCompact, PostCompact, PreModelSwitch, PostModelSwitch, PermissionRequest, PermissionDenied, Setup, "
    "TeammateIdle, TaskCreated, TaskCompleted, Elicitation, ElicitationResult, ConfigChange, WorktreeCreate, "
    "WorktreeRemove, InstructionsLoaded, CwdChanged, FileChanged, DirectoryAdded, MessageDisplay"
)


def test_hook_events_are_the_pinned_clis() -> None:
    assert set(CLI_HOOK_EVENTS.split(", ")) == HOOK_EVENTS


@pytest.mark.parametrize("event", sorted(HOOK_EVENTS))
def test_every_event_of_the_cli_is_known(event: str) -> None:
    assert check_settings({"hooks": {event: [{"hooks": [{"type": "command", "command": "x"}]}]}}) == []


def _pre_tool_use(hook: dict[str, Any]) -> dict[str, Any]:
    return {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [hook]}]}}


# Each shape Claude Code 2.1.331 refused, with the path and what validate says; its debug log's
# words on each are in the comment. Under PreToolUse each made it drop the whole settings.json.
REFUSED_HOOKS: list[tuple[dict[str, Any], str, str]] = [
    # "url: Invalid URL"
    ({"type": "http", "url": "audit.internal/hook"}, "url", "is not a URL Claude Code accepts"),
    # "url: Invalid input: expected string, received undefined"
    ({"type": "http"}, "", 'needs "url"'),
    # "server: Invalid input: expected string, received undefined"
    ({"type": "mcp_tool", "tool": "t"}, "", 'needs "server"'),
    # "server: Invalid input: expected string, received number"
    ({"type": "mcp_tool", "server": 5, "tool": "t"}, "", 'needs "server"'),
    # "tool: Invalid input: expected string, received undefined"
    ({"type": "mcp_tool", "server": "s"}, "", 'needs "tool"'),
    # "input: Invalid input: expected record, received string"
    ({"type": "mcp_tool", "server": "s", "tool": "t", "input": "x"}, "input", "must be an object"),
    # "timeout: Too small: expected number to be >0", for every type
    ({"type": "command", "command": "x", "timeout": 0}, "timeout", "above 0"),
    ({"type": "command", "command": "x", "timeout": -1}, "timeout", "above 0"),
    ({"type": "prompt", "prompt": "p", "timeout": 0}, "timeout", "above 0"),
    ({"type": "agent", "prompt": "p", "timeout": 0}, "timeout", "above 0"),
    ({"type": "mcp_tool", "server": "s", "tool": "t", "timeout": 0}, "timeout", "above 0"),
    # "timeout: Invalid input: expected number, received boolean"
    ({"type": "command", "command": "x", "timeout": True}, "timeout", "not a boolean"),
    # "command: Invalid input: expected string, received number"
    ({"type": "command", "command": 5}, "", 'needs "command"'),
    # "args: Invalid input: expected array, received string"; "args.0: ... expected string, received number"
    ({"type": "command", "command": "x", "args": "a"}, "args", "must be an array of strings"),
    ({"type": "command", "command": "x", "args": [1]}, "args.0", "must be a string"),
    # 'shell: Invalid option: expected one of "bash"|"powershell"'
    ({"type": "command", "command": "x", "shell": "zsh"}, "shell", 'one of "bash", "powershell"'),
    # "if: Invalid input: expected string, received number"
    ({"type": "command", "command": "x", "if": 5}, "if", "must be a string"),
    # 'onFailure: Invalid option: expected one of "continue"|"block"'
    ({"type": "command", "command": "x", "onFailure": "stop"}, "onFailure", 'one of "continue", "block"'),
    ({"type": "http", "url": "http://x/", "onFailure": "stop"}, "onFailure", 'one of "continue", "block"'),
    # "statusMessage: Invalid input: expected string, received number", for every type
    ({"type": "command", "command": "x", "statusMessage": 5}, "statusMessage", "must be a string"),
    ({"type": "prompt", "prompt": "p", "statusMessage": 5}, "statusMessage", "must be a string"),
    ({"type": "http", "url": "http://x/", "statusMessage": 5}, "statusMessage", "must be a string"),
    ({"type": "mcp_tool", "server": "s", "tool": "t", "statusMessage": 5}, "statusMessage", "must be a string"),
    # "once: Invalid input: expected boolean, received string", for every type
    ({"type": "command", "command": "x", "once": "yes"}, "once", "true or false"),
    ({"type": "prompt", "prompt": "p", "once": "yes"}, "once", "true or false"),
    ({"type": "agent", "prompt": "p", "once": "yes"}, "once", "true or false"),
    ({"type": "http", "url": "http://x/", "once": "yes"}, "once", "true or false"),
    # "asyncRewake: Invalid input: expected boolean, received string"; the same for holdsTools
    ({"type": "command", "command": "x", "asyncRewake": "yes"}, "asyncRewake", "true or false"),
    ({"type": "command", "command": "x", "holdsTools": "yes"}, "holdsTools", "true or false"),
    # "rewakeMessage: Too small: expected string to have >=1 characters"; the same for rewakeSummary
    ({"type": "command", "command": "x", "rewakeMessage": ""}, "rewakeMessage", "must not be empty"),
    ({"type": "command", "command": "x", "rewakeSummary": ""}, "rewakeSummary", "must not be empty"),
    ({"type": "command", "command": "x", "rewakeMessage": 5}, "rewakeMessage", "must be a string"),
    # "prompt: Invalid input: expected string, received undefined"
    ({"type": "prompt"}, "", 'needs "prompt"'),
    ({"type": "agent"}, "", 'needs "prompt"'),
    # "model: Invalid input: expected string, received number"
    ({"type": "prompt", "prompt": "p", "model": 5}, "model", "must be a string"),
    ({"type": "agent", "prompt": "p", "model": 5}, "model", "must be a string"),
    # "continueOnBlock: Invalid input: expected boolean, received string"
    ({"type": "prompt", "prompt": "p", "continueOnBlock": "x"}, "continueOnBlock", "true or false"),
    # "headers: Invalid input: expected record, received string"; "headers.A: ... expected string"
    ({"type": "http", "url": "http://x/", "headers": "x"}, "headers", "must be an object"),
    ({"type": "http", "url": "http://x/", "headers": {"A": 1}}, "headers.A", "must be a string"),
    # "allowedEnvVars: Invalid input: expected array, received string"; "allowedEnvVars.0: ..."
    ({"type": "http", "url": "http://x/", "allowedEnvVars": "X"}, "allowedEnvVars", "must be an array of strings"),
    ({"type": "http", "url": "http://x/", "allowedEnvVars": [1]}, "allowedEnvVars.0", "must be a string"),
    # 'Unknown hook type "Command"'; 'Hook entry has no "type"'
    ({"type": "Command", "command": "x"}, "type", "type must be one of command, prompt, agent, http, mcp_tool"),
    ({"command": "x"}, "", "type must be one of"),
]


@pytest.mark.parametrize(("hook", "where", "message"), REFUSED_HOOKS)
def test_a_hook_the_cli_refuses_is_an_error(hook: dict[str, Any], where: str, message: str) -> None:
    at = ("hooks", "PreToolUse", 0, "hooks", 0)
    path = (*at, *(int(p) if p.isdigit() else p for p in where.split(".") if p))
    findings = check_settings(_pre_tool_use(hook))
    assert [(f.path, f.severity) for f in findings] == [(path, "error")], findings
    assert message in findings[0].message
    assert "ignores this whole settings.json" in findings[0].message


def test_a_refused_hook_elsewhere_is_an_error_without_the_whole_file() -> None:
    """Under Stop the CLI ignores just the entry ("Invalid http hook (url: Invalid URL); entry ignored.")."""
    hooks = {"hooks": {"Stop": [{"hooks": [{"type": "http", "url": "audit.internal/hook"}]}]}}
    (finding,) = check_settings(hooks)
    assert finding.severity == "error"
    assert "is not a URL" in finding.message
    assert "whole settings.json" not in finding.message


@pytest.mark.parametrize(
    "group",
    [
        # 'Invalid hook matcher (matcher: Invalid input: expected string, received number)'
        [{"matcher": 3, "hooks": []}],
        # 'Hook matcher "hooks" must be an array of hook entries; received undefined'
        [{"matcher": "Bash"}],
        # 'Hook event "PreToolUse" must be an array of matchers; received object'
        {},
    ],
)
def test_a_refused_pre_tool_use_matcher_drops_the_whole_file(group: Any) -> None:
    findings = check_settings({"hooks": {"PermissionRequest": group}})
    assert [f.severity for f in findings] == ["error"]
    assert "ignores this whole settings.json" in findings[0].message


# Each loaded by Claude Code 2.1.331 with the rest of the file (its debug log silent about them).
ACCEPTED_HOOKS: list[dict[str, Any]] = [
    {"type": "command", "command": "x", "timeout": 1.5, "args": ["a"], "shell": "bash", "if": "Bash(git *)"},
    {"type": "command", "command": "x", "onFailure": "block", "statusMessage": "hi", "cloud": "junk", "foo": 1},
    {"type": "prompt", "prompt": "p", "async": "yes", "onFailure": "junk"},
    {"type": "mcp_tool", "server": "s", "tool": "t", "input": {"a": 1, "b": {"c": [1]}}, "onFailure": "junk"},
    {"type": "mcp_tool", "server": "s", "tool": "t", "async": "yes"},
    {"type": "http", "url": "http://127.0.0.1:9/h", "headers": {"A": "b $X"}, "allowedEnvVars": ["X"]},
    {"type": "http", "url": "http://127.0.0.1:9/h", "async": "yes", "cloud": "junk"},
]


@pytest.mark.parametrize("hook", ACCEPTED_HOOKS)
def test_a_hook_the_cli_loads_passes(hook: dict[str, Any]) -> None:
    assert check_settings(_pre_tool_use(hook)) == []


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
