"""Claude Code hook commands that close the PR review loop: stop, prompt, tool.

Each reads the hook's JSON on stdin as Claude Code sends it. The decisions
are pure (`rewake.decide`, `recognise.recognise`, `prompt.prompt_context`);
the shells around them are fast (see `entry`). Exports load on first use so
that a hook imports only what it needs.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.hooks.context import HookContext, HookSetupError, Teammate, load_context
    from agent_smith.hooks.entry import KINDS, run
    from agent_smith.hooks.prompt import read_activity
    from agent_smith.hooks.recognise import PrAction, recognise
    from agent_smith.hooks.rewake import Activity, Held, Limits, PullRequest, RewakeState, Wake, decide

_WHERE = {
    "HookContext": "context",
    "HookSetupError": "context",
    "Teammate": "context",
    "load_context": "context",
    "KINDS": "entry",
    "run": "entry",
    "read_activity": "prompt",
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
    "read_activity",
    "recognise",
    "run",
]


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module 'agent_smith.hooks' has no attribute {name!r}")
    return getattr(importlib.import_module(f"agent_smith.hooks.{_WHERE[name]}"), name)
