"""PostToolUse: notice a pull request opened, reviewed or merged, and hand it on durably.

The hook itself only recognises (pure, fast) and writes a job file
(fsynced); a detached `agent-smith hook deliver` publishes the event and,
for a new PR, mentions every teammate in the crew's review room. A job stays
on disk until it is delivered, so nothing is lost if delivery fails now.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from agent_smith.hooks.context import HookContext
from agent_smith.hooks.recognise import PrAction, recognise
from agent_smith.hooks.store import hooks_dir, log_line, write_json

SPOOL = "spool"


def run_tool(context: HookContext, payload: Mapping[str, Any], *, spawn: bool = True) -> int:
    action = recognise(payload, default_repo=context.primary_repo)
    if action is None:
        return 0
    job = enqueue(context, action)
    log_line(context.state, "tool", f"recognised pr {action.action} {action.repo}#{action.number}; queued {job.name}")
    if spawn:
        start_delivery(context)
    return 0


def enqueue(context: HookContext, action: PrAction, now: dt.datetime | None = None) -> Path:
    moment = now or dt.datetime.now(dt.UTC)
    name = f"{moment.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json"
    path = hooks_dir(context.state) / SPOOL / name
    write_json(path, {"agent": context.agent, "at": moment.isoformat(), **asdict(action)})
    return path


def start_delivery(context: HookContext) -> None:
    """A detached deliverer, so the hook returns at once (its output goes to the hooks' log)."""
    log = hooks_dir(context.state) / "deliver.log"
    with log.open("ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "agent_smith", "hook", "deliver"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=dict(os.environ),
        )
