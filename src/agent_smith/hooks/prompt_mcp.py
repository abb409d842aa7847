"""UserPromptSubmit as an MCP tool: the prompt context, served beside the agent's event tools.

Claude Code runs a hook of type `mcp_tool` as a call on an MCP server it is
already connected to. The supervisor serves each agent's `agent-smith-events`
server, so the context costs a round trip on an open connection instead of
a Python process before every turn (chat turns included). The tool answers
what `agent-smith hook prompt` prints, from the same environment: the
agent's, which names the agent, its crew and its home (where the context
snapshot is cached).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agent_smith.hooks.context import HookSetupError, load_context
from agent_smith.hooks.prompt import PROMPT_TOOL, prompt_output
from agent_smith.hooks.store import log_line
from agent_smith.mcpstdio import Tool, ToolError

DESCRIPTION = (
    "agent-smith's own per-prompt context for you: who you are, the crew's reply style, quiet hours "
    "and your pull requests awaiting you. agent-smith's UserPromptSubmit hook calls it before every "
    "turn and adds the answer to your prompt. Read-only: calling it yourself changes nothing."
)
SCHEMA: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def prompt_answer(env: Mapping[str, str], now: dt.datetime) -> str:
    """The hook's JSON output for the agent `env` describes; a failure is a `ToolError` (and, once
    the agent is known, a line in its hooks' log, as the command writes)."""
    try:
        context = load_context(env)
    except HookSetupError as exc:
        raise ToolError(f"agent-smith's prompt context: {exc}") from None
    try:
        return prompt_output(context, now)
    except Exception as exc:  # as the command's last line of defence: said, and the prompt goes on
        log_line(context.state, "prompt", f"failed: {type(exc).__name__}: {exc}")
        raise ToolError(f"agent-smith's prompt context failed: {type(exc).__name__}: {exc}") from None


def prompt_tool(
    env: Mapping[str, str],
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    on_call: Callable[[], Awaitable[None]] | None = None,
) -> Tool:
    """The `prompt_context` tool for the agent whose environment is `env`; `on_call` is told of each
    call (the hook calls it as the agent's turn begins)."""
    agent_env = dict(env)

    async def prompt_context(_: dict[str, Any]) -> str:
        if on_call is not None:
            await on_call()
        # In a thread: when crew.yaml changed, the context is rebuilt from it (~0.3 s), which
        # must not hold up the other agents' calls on the supervisor's loop.
        return await asyncio.to_thread(prompt_answer, agent_env, clock())

    return Tool(PROMPT_TOOL, DESCRIPTION, SCHEMA, prompt_context)
