"""The hook commands' fast path: plain argv, stdin JSON, no CLI framework.

`agent-smith hook <kind>` is dispatched here before Typer and Rich are
imported (see `agent_smith.__main__`), so a hook costs little more than the
interpreter's start-up. Every failure is one line on stderr and exit 0 — a
hook never wedges the agent — except the Stop hook's deliberate exit 2.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence

from agent_smith.hooks.context import HookSetupError, load_context

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

KINDS = ("stop", "prompt", "tool", "deliver")
POLL_ENV = "AGENT_SMITH_STOP_POLL"
WATCH_ENV = "AGENT_SMITH_STOP_WATCH"
DEFAULT_POLL = 60.0
DEFAULT_WATCH = 3000.0
# Claude Code runs an asyncRewake hook in the background only in an interactive session: `claude -p`
# waits for it (measured with 2.1.331). It sets this variable to "0" for the hooks of a session no
# one attends (`claude -p`, the SDK), "1" for an interactive one.
ATTENDED_ENV = "CLAUDE_CODE_SESSION_ATTENDED"


def read_payload(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
        return {}
    return data if isinstance(data, dict) else {}


def may_be_pr_action(payload: Mapping[str, Any]) -> bool:
    """A cheap first look (no imports) before `recognise` gets the call for real."""
    tool = str(payload.get("tool_name") or "")
    if tool == "Bash":
        tool_input = payload.get("tool_input")
        command = tool_input.get("command") if isinstance(tool_input, dict) else None
        return isinstance(command, str) and "gh " in command
    return tool.startswith("mcp__") and "pull" in tool.lower()


def env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A number of seconds from the environment; the default when it is none (nan, inf, text)."""
    try:
        seconds = float(env.get(name, default))
    except ValueError:
        return default
    return max(seconds, 0.0) if math.isfinite(seconds) else default


def unattended(env: Mapping[str, str]) -> bool:
    """Whether the Stop hook serves a session no one attends (pure): then it leaves at once. A watch
    would hold `claude -p` for all its length, and a wake would go to that run — one the agent
    started from its Bash tool, say — instead of the agent's own session, which watches."""
    return env.get(ATTENDED_ENV) == "0"


def run(kind: str, argv: Sequence[str] = (), env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if kind not in KINDS:
        _say(f"agent-smith hook: unknown hook {kind!r} (one of {', '.join(KINDS)})")
        return 0
    payload = read_payload(read_stdin()) if kind != "deliver" else {}
    if kind == "tool" and not may_be_pr_action(payload):
        return 0  # the common case: nothing to load, nothing to do
    try:
        context = load_context(env)
    except HookSetupError as exc:
        _say(f"agent-smith hook {kind}: {exc}")
        return 0
    try:
        return _dispatch(kind, context, payload, env)
    except Exception as exc:  # the last line of defence: the agent goes on
        from agent_smith.hooks.store import log_line

        log_line(context.state, kind, f"failed: {type(exc).__name__}: {exc}")
        _say(f"agent-smith hook {kind}: {type(exc).__name__}: {exc}")
        return 0


def read_stdin() -> str:
    """The hook's payload as text: bytes that are not UTF-8 become U+FFFD rather than an error
    (whatever the locale's or PYTHONIOENCODING's codec would make of them). A hook started with
    stdin closed (`<&-`: Python then has no `sys.stdin`) or unreadable has no payload."""
    if sys.stdin is None:
        return ""
    try:
        return sys.stdin.buffer.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _say(line: str) -> None:
    """One line on stderr, if anyone still reads it (Claude Code may be gone: the pipe closed; a
    hook started with stderr closed has no `sys.stderr`)."""
    if sys.stderr is None:
        return
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        return


def _dispatch(kind: str, context: Any, payload: Mapping[str, Any], env: Mapping[str, str]) -> int:
    if kind == "prompt":
        import datetime as dt

        from agent_smith.hooks.prompt import prompt_output

        sys.stdout.write(prompt_output(context, dt.datetime.now(dt.UTC)) + "\n")
        return 0
    if kind == "tool":
        from agent_smith.hooks.tool import run_tool

        return run_tool(context, payload)
    if kind == "stop":
        if unattended(env):
            return 0
        from agent_smith.hooks.tool import retry_due, start_delivery

        # Each turn's end is a chance to deliver what an earlier delivery left (the forge, NATS or
        # the homeserver away then), at most once a minute: a PR action may be long in coming.
        if retry_due(context.state / "hooks", time.time()):
            start_delivery(context)
        # The first check's request goes out before the watcher's code loads, which
        # then happens while the forge answers.
        from agent_smith.forge.oneshot import PendingCheck
        from agent_smith.hooks.context import cache_dir

        first = PendingCheck(
            context.forge_graphql_url, context.login, context.repos or None, env, ca_cache=cache_dir(env) / "ca"
        )
        from agent_smith.hooks.stop import checks, run_stop

        return run_stop(
            context,
            checks(context, env, first),
            poll=env_seconds(env, POLL_ENV, DEFAULT_POLL) or DEFAULT_POLL,
            watch_for=env_seconds(env, WATCH_ENV, DEFAULT_WATCH),
        )
    from agent_smith.hooks.deliver import run_deliver

    return run_deliver(context, env)
