"""Claude Code hook commands that close the PR review loop: stop, prompt, tool.

Each reads the hook's JSON on stdin as Claude Code sends it. The decisions
are pure (`rewake.decide`, `recognise.recognise`, `prompt.prompt_context`);
the shells around them are fast (see `entry`).
"""

from agent_smith.hooks.context import HookContext, HookSetupError, Teammate, load_context
from agent_smith.hooks.entry import KINDS, run
from agent_smith.hooks.recognise import PrAction, recognise
from agent_smith.hooks.rewake import Activity, Held, Limits, PullRequest, RewakeState, Wake, decide

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
    "recognise",
    "run",
]
