"""UserPromptSubmit: add the crew's reply style and the agent's current state to every prompt.

Claude Code asks for it as an `mcp_tool` hook on the agent's `agent-smith-events` server
(`prompt_tool`, served by the supervisor); `agent-smith hook prompt` gives the same answer as
a command.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from agent_smith.hooks.context import HookContext
from agent_smith.quiet_hours import parse_hhmm, quiet_until

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

ACTIVITY_FILE = "activity.json"
# The MCP tool the assembled UserPromptSubmit hook calls (see `prompt_tool`).
PROMPT_TOOL = "prompt_context"


def prompt_context(context: HookContext, now: dt.datetime, activity: Mapping[str, Any] | None) -> str:
    """The additional context text. Pure: the snapshot, the time and the last review check."""
    lines = [f"[agent-smith] You are {context.agent}, GitHub login {context.login}."]
    if context.reply_style:
        lines.append(f"Reply style: {context.reply_style}")
    if context.quiet_hours:
        window = context.quiet_hours
        until = quiet_until(parse_hhmm(window["start"]), parse_hhmm(window["end"]), window["timezone"], now)
        span = f"{window['start']}–{window['end']} {window['timezone']}"
        if until is not None:
            lines.append(
                f"Quiet hours now ({span}, until {until.strftime('%H:%M')}): "
                "do not post or react in chat except for incidents."
            )
        else:
            lines.append(f"Quiet hours: {span} (not now).")
    lines.extend(_awaiting(activity))
    return "\n".join(lines)


def _awaiting(activity: Mapping[str, Any] | None) -> Sequence[str]:
    if not activity:
        return ["Open PRs awaiting you: not checked yet."]
    # The Stop hook keeps what the last check that worked found, and says since when checks fail.
    since, failure = activity.get("failing_since"), activity.get("failure")
    failing = f"review checks fail since {_minute(since)} UTC ({str(failure)[:200]})" if isinstance(since, str) else ""
    checked_at = activity.get("checked_at")
    if not isinstance(checked_at, str):
        return [f"Open PRs awaiting you: unknown, {failing}." if failing else "Open PRs awaiting you: not checked yet."]
    checked = f"checked {_minute(checked_at)} UTC" + (f"; stale: {failing}" if failing else "")
    prs = [p for p in activity.get("pull_requests", []) if p.get("unaddressed")]
    if not prs:
        return [f"Open PRs awaiting you ({checked}): none."]
    out = [f"Open PRs awaiting you ({checked}):"]
    for pr in prs:
        count = int(pr["unaddressed"])
        out.append(f'- {pr["repo"]}#{pr["number"]} "{pr["title"]}" — {count} unaddressed item{"s" * (count != 1)}')
    return out


def _minute(iso: str) -> str:
    return iso[:16].replace("T", " ")


def read_activity(state: Path) -> dict[str, Any] | None:
    """What the Stop watcher last found (`activity.json`); None when absent, or not in the shape
    it writes (a damaged or hand-edited file is as good as no check yet)."""
    try:
        data = json.loads((state / "hooks" / ACTIVITY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and _well_formed(data.get("pull_requests", [])) else None


def _well_formed(prs: object) -> bool:
    fields = {"repo": str, "number": int, "title": str, "unaddressed": int}
    return isinstance(prs, list) and all(
        isinstance(pr, dict) and all(isinstance(pr.get(k), t) for k, t in fields.items()) for pr in prs
    )


def hook_output(text: str) -> str:
    """UserPromptSubmit's stdout: the JSON Claude Code reads as additional context."""
    return json.dumps({"hookSpecificOutput": {"hookEventName": "UserPromptSubmit", "additionalContext": text}})


def prompt_output(context: HookContext, now: dt.datetime) -> str:
    """The hook's whole answer, as the command prints it and the MCP tool returns it."""
    return hook_output(prompt_context(context, now, read_activity(context.state)))
