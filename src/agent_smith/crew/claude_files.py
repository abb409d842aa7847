"""Check the Claude Code files of a crew in the shapes the pinned CLI accepts.

Pure functions over parsed JSON. Each returns findings as (path, message,
severity); the loader turns paths into file:line:col. Only what the CLI would
reject (or what would break the secretless promise) is an error; what it
would merely ignore is a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agent_smith.credentials import find_credentials
from agent_smith.crew.whatwg_url import parses_as_url

Path_ = tuple[str | int, ...]

# The list Claude Code 2.1.331 prints for an unknown event in its debug log ("Unknown hook
# event ... Valid events: ..."); re-read it from there when the pinned version changes.
HOOK_EVENTS = frozenset(
    {
        "PreToolUse",
        "PostToolUse",
        "PostToolUseFailure",
        "PostToolBatch",
        "Notification",
        "UserPromptSubmit",
        "UserPromptExpansion",
        "SessionStart",
        "SessionEnd",
        "Stop",
        "StopFailure",
        "SubagentStart",
        "SubagentStop",
        "PreCompact",
        "PostCompact",
        "PreModelSwitch",
        "PostModelSwitch",
        "PermissionRequest",
        "PermissionDenied",
        "Setup",
        "TeammateIdle",
        "TaskCreated",
        "TaskCompleted",
        "Elicitation",
        "ElicitationResult",
        "ConfigChange",
        "WorktreeCreate",
        "WorktreeRemove",
        "InstructionsLoaded",
        "CwdChanged",
        "FileChanged",
        "DirectoryAdded",
        "MessageDisplay",
    }
)
# One bad hook under these makes Claude Code 2.1.331 drop the whole settings.json, env and
# agent-smith's own hooks with it: such a hook may be what guards the permissions beside it.
_GUARD_EVENTS = frozenset({"PreToolUse", "PermissionRequest"})
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
        for finding in _hook_groups(groups, where):
            if event in _GUARD_EVENTS and finding.severity == "error":
                finding = Finding(finding.path, f"{finding.message}{_DROPS_FILE}")
            yield finding


def _hook_groups(groups: Any, where: Path_) -> Iterator[Finding]:
    if not isinstance(groups, list):
        yield from _expect(groups, list, "an array of matcher groups", where)
        return
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
        yield from _hook(hook, (*where, "hooks", h))


def _hook(hook: Any, at: Path_) -> Iterator[Finding]:
    if not isinstance(hook, dict):
        yield from _expect(hook, dict, "an object", at)
        return
    kind = hook.get("type")
    spec = _HOOK_TYPES.get(kind) if isinstance(kind, str) else None
    if spec is None:
        yield Finding(
            (*at, "type") if "type" in hook else at,
            f"type must be one of {', '.join(_HOOK_TYPES)}",
        )
        return
    for name in spec.required:
        if not isinstance(hook.get(name), str) or not hook[name].strip():
            yield Finding(at, f'a {kind} hook needs "{name}" as a non-empty string')
    # Fields another type knows are dropped unread (an http hook's "async"), so only this
    # type's own are checked.
    for name, check in spec.fields.items():
        if name in hook:
            yield from check(hook[name], (*at, name))


# A hook field's check: the findings for its value at a path.
_Check = Callable[[Any, Path_], Iterator[Finding]]


def _string(value: Any, at: Path_) -> Iterator[Finding]:
    yield from _expect(value, str, "a string", at)


def _text(value: Any, at: Path_) -> Iterator[Finding]:
    if value == "":
        yield Finding(at, "must not be empty")
    else:
        yield from _string(value, at)


def _flag(value: Any, at: Path_) -> Iterator[Finding]:
    yield from _expect(value, bool, "true or false", at)


def _seconds(value: Any, at: Path_) -> Iterator[Finding]:
    if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
        yield Finding(at, "must be a number of seconds above 0")
    else:
        yield from _expect(value, (int, float), "a number of seconds", at)


def _strings(value: Any, at: Path_) -> Iterator[Finding]:
    if not isinstance(value, list):
        yield from _expect(value, list, "an array of strings", at)
        return
    for i, item in enumerate(value):
        yield from _string(item, (*at, i))


def _headers(value: Any, at: Path_) -> Iterator[Finding]:
    yield from _string_map(value, at, "header names to string values")


def _tool_input(value: Any, at: Path_) -> Iterator[Finding]:
    yield from _expect(value, dict, "an object of the tool's arguments", at)


def _one_of(*choices: str) -> _Check:
    listed = ", ".join(f'"{choice}"' for choice in choices)

    def check(value: Any, at: Path_) -> Iterator[Finding]:
        if not isinstance(value, str) or value not in choices:
            yield Finding(at, f"must be one of {listed}")

    return check


def _hook_url(value: Any, at: Path_) -> Iterator[Finding]:
    # A missing or blank url is the required-field finding; the value is not quoted back, as
    # its user part may hold a password.
    if isinstance(value, str) and value.strip() and not parses_as_url(value):
        yield Finding(
            at,
            "is not a URL Claude Code accepts (it needs a scheme, a host and a valid port, e.g. http://127.0.0.1:8080/hook)",
        )


@dataclass(frozen=True)
class _HookType:
    required: tuple[str, ...]
    fields: Mapping[str, _Check]


_COMMON_FIELDS: Mapping[str, _Check] = {"if": _string, "timeout": _seconds, "statusMessage": _string, "once": _flag}
_ON_FAILURE = _one_of("continue", "block")
# Each type's fields as Claude Code 2.1.331 parses them (each refusal checked against its debug
# log). Other keys it drops; mcp_tool's onFailure takes any value (anything but "continue"
# reads as "block"), as does "cloud".
_HOOK_TYPES: Mapping[str, _HookType] = {
    "command": _HookType(
        ("command",),
        {
            **_COMMON_FIELDS,
            "args": _strings,
            "shell": _one_of("bash", "powershell"),
            "onFailure": _ON_FAILURE,
            "async": _flag,
            "asyncRewake": _flag,
            "holdsTools": _flag,
            "rewakeMessage": _text,
            "rewakeSummary": _text,
        },
    ),
    "prompt": _HookType(("prompt",), {**_COMMON_FIELDS, "model": _string, "continueOnBlock": _flag}),
    "agent": _HookType(("prompt",), {**_COMMON_FIELDS, "model": _string}),
    "http": _HookType(
        ("url",),
        {**_COMMON_FIELDS, "url": _hook_url, "onFailure": _ON_FAILURE, "headers": _headers, "allowedEnvVars": _strings},
    ),
    "mcp_tool": _HookType(("server", "tool"), {**_COMMON_FIELDS, "input": _tool_input}),
}
_DROPS_FILE = (
    "; Claude Code then ignores this whole settings.json (env and agent-smith's hooks too),"
    " as a PreToolUse/PermissionRequest hook it cannot load may be what guards its permissions"
)


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
