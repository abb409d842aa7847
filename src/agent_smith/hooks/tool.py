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
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from agent_smith.hooks.context import HookContext
from agent_smith.hooks.recognise import PrAction, recognise
from agent_smith.hooks.store import hooks_dir, log_line, write_json

SPOOL = "spool"
DELIVERY_LOG = "deliver.log"


# Jobs a delivery left (the forge, NATS or the homeserver was away) are tried again at the
# agent's next PR action or turn end, at most this often: each try is a process.
RETRY_EVERY = 60.0


def run_tool(context: HookContext, payload: Mapping[str, Any], *, spawn: bool = True) -> int:
    action = recognise(payload, default_repo=context.primary_repo)
    if action is not None:
        # `gh pr merge` or `review` without a PR acts on the checked-out branch's: the branch is
        # read now, while it is still checked out; the delivery asks the forge for its PR.
        if action.on_checkout:
            action = replace(action, branch=current_branch(payload.get("cwd")))
        job = enqueue(context, action)
        log_line(
            context.state, "tool", f"recognised pr {action.action} {action.repo}#{action.number}; queued {job.name}"
        )
    if spawn and (action is not None or retry_due(hooks_dir(context.state), time.time())):
        start_delivery(context)
    return 0


def retry_due(hooks: Path, now: float) -> bool:
    """Whether jobs wait in the spool and no delivery started in the last `RETRY_EVERY` seconds."""
    spool = hooks / SPOOL
    if not spool.is_dir() or not any(spool.glob("*.json")):
        return False
    try:
        return now - (hooks / DELIVERY_LOG).stat().st_mtime >= RETRY_EVERY
    except FileNotFoundError:
        return True


def enqueue(context: HookContext, action: PrAction, now: dt.datetime | None = None) -> Path:
    moment = now or dt.datetime.now(dt.UTC)
    name = f"{moment.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.json"
    path = hooks_dir(context.state) / SPOOL / name
    write_json(path, {"agent": context.agent, "at": moment.isoformat(), **asdict(action)})
    return path


def current_branch(cwd: object) -> str | None:
    """The branch checked out in `cwd` (the tool call's directory); None when there is none."""
    if not isinstance(cwd, str) or not cwd:
        return None
    try:
        found = subprocess.run(
            ["git", "-C", cwd, "symbolic-ref", "--short", "-q", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def start_delivery(context: HookContext) -> None:
    """A detached deliverer, so the hook returns at once (its output goes to the hooks' log)."""
    log = hooks_dir(context.state) / DELIVERY_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    # Touched even when the deliverer writes nothing: its start time is what `retry_due` reads.
    log.touch()
    with log.open("ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "agent_smith", "hook", "deliver"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=dict(os.environ),
        )
