"""Stop (asyncRewake): watch the agent's pull requests and wake it when others' activity grows.

Claude Code runs this hook when a turn ends and, with ``asyncRewake``, does
not wait for it: when it later exits 2, the model is woken with its stderr.
So the hook checks once — one `review_activity` round trip — and, while
nothing new is there, keeps checking every ``poll`` seconds until its
deadline. A newer Stop hook of the same agent supersedes an older watcher.

Anything going wrong (GitHub down, rate-limited, a bad token) is one log line
and exit 0: a hook must never wedge the agent.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from agent_smith.errors import RateLimited
from agent_smith.hooks.context import HookContext, cache_dir
from agent_smith.hooks.prompt import ACTIVITY_FILE
from agent_smith.hooks.rewake import Activity, Limits, PullRequest, RewakeState, Wake, decide
from agent_smith.hooks.store import hooks_dir, log_line, read_json, write_json
from agent_smith.record import Record, fill

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.forge.oneshot import PendingCheck

WATCHER_FILE = "stop-watcher.pid"
STATE_FILE = "rewake.json"


class Snapshot(Record):
    _fields = ("items", "pull_requests", "counts")
    __slots__ = _fields
    items: tuple[Activity, ...]
    pull_requests: tuple[PullRequest, ...]
    counts: Mapping[str, int]

    def __init__(
        self, items: tuple[Activity, ...], pull_requests: tuple[PullRequest, ...], counts: Mapping[str, int]
    ) -> None:
        fill(self, items, pull_requests, counts)


Check = Callable[[], Snapshot]


def fetch_snapshot(context: HookContext, env: Mapping[str, str], sent: PendingCheck | None = None) -> Snapshot:
    """One GraphQL round trip (`sent`, or a new one): the agent's open PRs and what on them waits for it."""
    from agent_smith.forge.activity import unaddressed
    from agent_smith.forge.oneshot import PendingCheck

    if sent is None:
        repos = context.repos or None
        sent = PendingCheck(context.forge_graphql_url, context.login, repos, env, ca_cache=cache_dir(env) / "ca")
    activity = sent.result()
    items = tuple(
        Activity(i.key, i.repo, i.number, i.author, str(i.kind), i.body, i.url, i.path, i.line, i.state)
        for i in unaddressed(activity)
    )
    prs = tuple(PullRequest(p.repo, p.number, p.title, p.url) for p in activity.pull_requests)
    counts: dict[str, int] = {}
    for item in items:
        counts[item.pr] = counts.get(item.pr, 0) + 1
    return Snapshot(items, prs, counts)


def checks(context: HookContext, env: Mapping[str, str], first: PendingCheck | None = None) -> Check:
    """The watcher's check: the answer to `first` (sent before this module loaded), then new requests."""
    waiting = [first] if first is not None else []

    def check() -> Snapshot:
        return fetch_snapshot(context, env, waiting.pop() if waiting else None)

    return check


def run_stop(
    context: HookContext,
    check: Check,
    *,
    poll: float,
    watch_for: float,
    now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    pid: int | None = None,
) -> int:
    """Check, and keep checking until `watch_for` seconds passed; 2 with the reason on stderr to wake.

    `stop_hook_active` needs no special case: an item is never surfaced twice,
    so a turn the hook itself started cannot be woken again for the same words.
    """
    state_dir = context.state
    me = str(pid if pid is not None else os.getpid())
    watcher = hooks_dir(state_dir) / WATCHER_FILE
    write_json(watcher, {"pid": me}, durable=False)
    deadline = clock() + watch_for
    last_error = ""
    while True:
        pause = poll
        try:
            snapshot: Snapshot | None = check()
        except Exception as exc:  # any failure of the check: log it, never wedge the agent
            snapshot = None
            if isinstance(exc, RateLimited):
                # Asked again sooner, GitHub would only limit the token longer.
                pause = max(poll, exc.seconds)
            if (error := _one_line(exc)) != last_error:
                log_line(state_dir, "stop", f"review check failed, not waking: {error}")
                last_error = error
        if snapshot is not None:
            last_error = ""
            if (code := _surface(state_dir, snapshot, now())) is not None:
                return code
        if clock() + pause > deadline:
            return 0
        sleep(pause)
        if read_json(watcher).get("pid") != me:
            return 0  # a newer Stop hook watches now


def _surface(state_dir: Path, snapshot: Snapshot, moment: dt.datetime) -> int | None:
    """2 after writing the wake reason to stderr; None when there is nothing new to say."""
    stored = read_json(hooks_dir(state_dir) / STATE_FILE)
    state, decision = decide(RewakeState.from_json(stored), snapshot.items, snapshot.pull_requests, moment, Limits())
    if (now_stored := state.to_json()) != stored:
        write_json(hooks_dir(state_dir) / STATE_FILE, now_stored)
    _record_activity(state_dir, snapshot, moment)
    if isinstance(decision, Wake):
        sys.stderr.write(decision.reason + "\n")
        authors = ", ".join(sorted({i.author for i in decision.items}))
        prs = ", ".join(sorted({i.pr for i in decision.items}))
        log_line(state_dir, "stop", f"woke the agent for {len(decision.items)} item(s) by {authors} on {prs}")
        return 2
    if decision.held:
        log_line(state_dir, "stop", f"loop guard holds new activity on {', '.join(decision.held)}")
    return None


def _record_activity(state_dir: Path, snapshot: Snapshot, moment: dt.datetime) -> None:
    write_json(
        hooks_dir(state_dir) / ACTIVITY_FILE,
        {
            "checked_at": moment.isoformat(timespec="seconds"),
            "pull_requests": [
                {
                    "repo": p.repo,
                    "number": p.number,
                    "title": p.title,
                    "url": p.url,
                    "unaddressed": snapshot.counts.get(p.pr, 0),
                }
                for p in snapshot.pull_requests
            ],
        },
        durable=False,  # what the prompt hook shows; the next check rewrites it
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
