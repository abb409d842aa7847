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

from agent_smith.hooks.checkout import (
    branch_config,
    forge_host,
    gh_base_repo,
    git_output,
    git_remotes,
    merged_branch,
    pr_head,
)
from agent_smith.hooks.context import HookContext
from agent_smith.hooks.recognise import PrAction, recognise, repo_name
from agent_smith.hooks.store import hooks_dir, log_line, write_json

SPOOL = "spool"
DELIVERY_LOG = "deliver.log"


# Jobs a delivery left (the forge, NATS or the homeserver was away) are tried again at the
# agent's next PR action or turn end, at most this often: each try is a process.
RETRY_EVERY = 60.0


def run_tool(
    context: HookContext, payload: Mapping[str, Any], *, spawn: bool = True, env: Mapping[str, str] | None = None
) -> int:
    action = recognise(payload)
    if action is not None:
        action = located(action, context, payload.get("cwd"), os.environ if env is None else env)
        job = enqueue(context, action)
        pr = f"#{action.number}" if action.number else f" branch {action.branch}"
        log_line(context.state, "tool", f"recognised pr {action.action} {action.repo}{pr}; queued {job.name}")
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


def located(action: PrAction, context: HookContext, cwd: object, env: Mapping[str, str]) -> PrAction:
    """`action` with what gh took from the checkout it ran in: the repository, and the branch
    whose PR it acted on. Read now: the checkout may change before the delivery runs."""
    directory = cwd if action.ran_in_cwd and isinstance(cwd, str) and cwd else None
    host = forge_host(context.forge_base_url)
    remotes = git_remotes(directory) if directory else []
    if action.repo_of_checkout:
        # As gh resolves it: `GH_REPO` (the agent's environment is gh's), then the checkout's
        # remotes. Where gh ran is unknown, or no checkout of the forge: the agent's primary repo.
        repo = repo_name(env.get("GH_REPO")) or gh_base_repo(remotes, host) or context.primary_repo
        action = replace(action, repo=repo)
    if action.on_checkout:
        branch = git_output(directory, "symbolic-ref", "--short", "-q", "HEAD") if directory else None
        if directory and branch and action.deleted_branch:
            branch = merged_branch(directory, branch)
        if directory and branch:
            # The PR is found by the branch's upstream, as gh finds it: a fork's is `owner:branch`,
            # and a same-named branch of the base repository's owner has another PR.
            head = pr_head(branch, branch_config(directory, branch), remotes, action.repo or "", host)
            return replace(action, number=head, branch=None) if isinstance(head, int) else replace(action, branch=head)
        action = replace(action, branch=branch)
    return action


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
