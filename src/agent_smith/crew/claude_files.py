"""Check the Claude Code files of a crew in the shapes the pinned CLI accepts.

Pure functions over parsed JSON. Each returns findings as (path, message,
severity); the loader turns paths into file:line:col. Only what the CLI would
reject (or what would break the secretless promise) is an error; what it
would merely ignore is a warning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from agent_smith.credentials import find_credentials

Path_ = tuple[str | int, ...]

HOOK_EVENTS = frozenset(
    {
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "PostToolBatch",
        "PermissionRequest",
        "PermissionDenied",
        "Notification",
        "UserPromptSubmit",
        "UserPromptExpansion",
        "Stop",
        "StopFailure",
        "SubagentStart",
        "SubagentStop",
        "PreCompact",
        "PostCompact",
        "SessionStart",
        "SessionEnd",
        "Setup",
        "TeammateIdle",
        "TaskCreated",
        "TaskCompleted",
        "Elicitation",
        "ElicitationResult",
        "ConfigChange",
    }
)
_HOOK_REQUIRED = {
    "command": "command",
    "http": "url",
    "prompt": "prompt",
    "agent": "prompt",
    "mcp_tool": "tool",
}
_PERMISSION_LISTS = ("allow", "deny", "ask", "additionalDirectories")
_MCP_TYPES = frozenset({"stdio", "sse", "http", "ws"})


@dataclass(frozen=True)
class Finding:
    path: Path_
    message: str
    severity: Literal["error", "warning"] = "error"


def _type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        type(None): "null",
    }.get(type(value), "a number")


def _expect(value: Any, kind: type | tuple[type, ...], what: str, path: Path_) -> Iterator[Finding]:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        yield Finding(path, f"must be {what}, not a boolean")
    elif not isinstance(value, kind):
        yield Finding(path, f"must be {what}, not {_type_name(value)}")


def _string_map(value: Any, path: Path_, what: str) -> Iterator[Finding]:
    if not isinstance(value, dict):
        yield from _expect(value, dict, f"an object of {what}", path)
        return
    for key, item in value.items():
        yield from _expect(item, str, "a string", (*path, key))


def _no_credentials(data: Any, file_role: str) -> Iterator[Finding]:
    for path, kind in find_credentials(data):
        yield Finding(
            path,
            f"holds what looks like {kind}; {file_role} must carry placeholders only (value not shown)",
        )


def check_settings(data: Any) -> list[Finding]:
    """settings.json as Claude Code reads it."""
    return list(_settings(data))


def _settings(data: Any) -> Iterator[Finding]:
    if not isinstance(data, dict):
        yield Finding((), f"must be a JSON object, not {_type_name(data)}")
        return
    if "enabledPlugins" in data:
        plugins = data["enabledPlugins"]
        if isinstance(plugins, dict):
            for name, enabled in plugins.items():
                if not isinstance(enabled, bool):
                    yield Finding(
                        ("enabledPlugins", name),
                        f"must be true or false, not {_type_name(enabled)} (Claude Code rejects the whole file)",
                    )
        else:
            yield from _expect(plugins, dict, "an object of plugin names to true/false", ("enabledPlugins",))
    if "permissions" in data:
        yield from _permissions(data["permissions"])
    if "env" in data:
        yield from _string_map(data["env"], ("env",), "variable names to string values")
    if "hooks" in data:
        yield from _hooks(data["hooks"])
    yield from _no_credentials(data, "settings.json")


def _permissions(perms: Any) -> Iterator[Finding]:
    if not isinstance(perms, dict):
        yield from _expect(perms, dict, "an object", ("permissions",))
        return
    for key in _PERMISSION_LISTS:
        if key in perms:
            rules = perms[key]
            if not isinstance(rules, list):
                yield from _expect(rules, list, "an array of strings", ("permissions", key))
                continue
            for i, rule in enumerate(rules):
                yield from _expect(rule, str, "a string", ("permissions", key, i))
    if "defaultMode" in perms:
        yield from _expect(perms["defaultMode"], str, "a string", ("permissions", "defaultMode"))


def _hooks(hooks: Any) -> Iterator[Finding]:
    if not isinstance(hooks, dict):
        yield from _expect(hooks, dict, "an object of hook events", ("hooks",))
        return
    for event, groups in hooks.items():
        where: Path_ = ("hooks", event)
        if event not in HOOK_EVENTS:
            yield Finding(
                where,
                f"{event!r} is not a hook event this Claude Code knows; it will never fire",
                "warning",
            )
        if not isinstance(groups, list):
            yield from _expect(groups, list, "an array of matcher groups", where)
            continue
        for g, group in enumerate(groups):
            yield from _hook_group(group, (*where, g))


def _hook_group(group: Any, where: Path_) -> Iterator[Finding]:
    if not isinstance(group, dict):
        yield from _expect(group, dict, 'an object with "hooks"', where)
        return
    if "matcher" in group:
        yield from _expect(group["matcher"], str, "a string", (*where, "matcher"))
    entries = group.get("hooks")
    if not isinstance(entries, list):
        yield Finding(
            (*where, "hooks") if "hooks" in group else where,
            'needs "hooks": an array of hook commands',
        )
        return
    for h, hook in enumerate(entries):
        at = (*where, "hooks", h)
        if not isinstance(hook, dict):
            yield from _expect(hook, dict, "an object", at)
            continue
        kind = hook.get("type")
        if kind not in _HOOK_REQUIRED:
            yield Finding(
                (*at, "type") if "type" in hook else at,
                f"type must be one of {', '.join(_HOOK_REQUIRED)}",
            )
            continue
        required = _HOOK_REQUIRED[kind]
        if not isinstance(hook.get(required), str) or not hook[required].strip():
            yield Finding(at, f'a {kind} hook needs "{required}" as a non-empty string')
        if "timeout" in hook:
            yield from _expect(hook["timeout"], (int, float), "a number of seconds", (*at, "timeout"))
        for flag in ("async", "asyncRewake"):
            if flag in hook:
                yield from _expect(hook[flag], bool, "true or false", (*at, flag))


def check_mcp(data: Any) -> list[Finding]:
    """A persona's mcp.json (the `.mcp.json` shape: {"mcpServers": {name: server}})."""
    return list(_mcp(data))


def _mcp(data: Any) -> Iterator[Finding]:
    if not isinstance(data, dict):
        yield Finding((), f"must be a JSON object, not {_type_name(data)}")
        return
    for key in data:
        if key != "mcpServers":
            yield Finding((key,), 'unknown key; an MCP config holds only "mcpServers"')
    servers = data.get("mcpServers", {})
    if not isinstance(servers, dict):
        yield from _expect(servers, dict, "an object of server names to servers", ("mcpServers",))
        return
    for name, server in servers.items():
        at: Path_ = ("mcpServers", name)
        if not isinstance(server, dict):
            yield from _expect(server, dict, "an object", at)
            continue
        kind = server.get("type", "stdio")
        if kind not in _MCP_TYPES:
            yield Finding((*at, "type"), f"type must be one of {', '.join(sorted(_MCP_TYPES))}")
        elif kind == "stdio":
            if not isinstance(server.get("command"), str) or not server["command"]:
                yield Finding(at, 'a stdio server needs "command"')
            if "args" in server and (
                not isinstance(server["args"], list) or not all(isinstance(a, str) for a in server["args"])
            ):
                yield Finding((*at, "args"), "must be an array of strings")
        elif not isinstance(server.get("url"), str):
            yield Finding(at, f'a {kind} server needs "url"')
        if "env" in server:
            yield from _string_map(server["env"], (*at, "env"), "variable names to string values")
        if "headers" in server:
            yield from _string_map(server["headers"], (*at, "headers"), "header names to string values")
    yield from _no_credentials(data, "mcp.json")


def check_credentials_stub(data: Any) -> list[Finding]:
    """The shared `.credentials.json` stub: the OAuth shape, placeholders only."""
    return list(_credentials_stub(data))


def _credentials_stub(data: Any) -> Iterator[Finding]:
    if not isinstance(data, dict):
        yield Finding((), f"must be a JSON object, not {_type_name(data)}")
        return
    oauth = data.get("claudeAiOauth")
    if not isinstance(oauth, dict):
        yield Finding(
            ("claudeAiOauth",) if "claudeAiOauth" in data else (),
            'needs "claudeAiOauth": an object',
        )
    else:
        for key in ("accessToken", "refreshToken"):
            if not isinstance(oauth.get(key), str) or not oauth[key]:
                yield Finding(
                    ("claudeAiOauth", key) if key in oauth else ("claudeAiOauth",),
                    f'needs "{key}" as a string',
                )
        if "expiresAt" in oauth:
            yield from _expect(
                oauth["expiresAt"],
                int,
                "milliseconds since the epoch",
                ("claudeAiOauth", "expiresAt"),
            )
        if "scopes" in oauth and not isinstance(oauth["scopes"], list):
            yield Finding(("claudeAiOauth", "scopes"), "must be an array of strings")
    yield from _no_credentials(data, ".credentials.json")
