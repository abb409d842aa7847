"""Claude Code hooks that close the PR review loop: stop, prompt, tool.

The commands read the hook's JSON on stdin as Claude Code sends it; the
prompt hook is also an MCP tool (`prompt_tool`), which the assembled settings
use. The decisions are pure (`rewake.decide`, `recognise.recognise`,
`prompt.prompt_context`); the shells around them are fast (see `entry`).
Exports load on first use so that a hook imports only what it needs.
"""

from __future__ import annotations

from agent_smith.deferred import names_from_parts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.hooks.context import HookContext, HookSetupError, Teammate, load_context
    from agent_smith.hooks.entry import KINDS, run
    from agent_smith.hooks.prompt import PROMPT_TOOL, read_activity
    from agent_smith.hooks.prompt_mcp import prompt_tool
    from agent_smith.hooks.recognise import PrAction, recognise
    from agent_smith.hooks.rewake import Activity, Held, Limits, PullRequest, RewakeState, Wake, decide

_WHERE = {
    "HookContext": "context",
    "HookSetupError": "context",
    "Teammate": "context",
    "load_context": "context",
    "KINDS": "entry",
    "run": "entry",
    "PROMPT_TOOL": "prompt",
    "read_activity": "prompt",
    "prompt_tool": "prompt_mcp",
    "PrAction": "recognise",
    "recognise": "recognise",
    "Activity": "rewake",
    "Held": "rewake",
    "Limits": "rewake",
    "PullRequest": "rewake",
    "RewakeState": "rewake",
    "Wake": "rewake",
    "decide": "rewake",
}

__all__ = [
    "KINDS",
    "PROMPT_TOOL",
    "Activity",
    "Held",
    "HookContext",
    "HookSetupError",
    "Limits",
    "PrAction",
    "PullRequest",
    "RewakeState",
    "Teammate",
    "Wake",
    "decide",
    "load_context",
    "prompt_tool",
    "read_activity",
    "recognise",
    "run",
]


__getattr__ = names_from_parts(__name__, _WHERE)
