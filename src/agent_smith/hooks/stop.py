"""Stop (asyncRewake): watch the agent's pull requests and wake it when others' activity grows.

Claude Code runs this hook when a turn ends and, with ``asyncRewake``, does
not wait for it: when it later exits 2, the model is woken with its stderr.
So the hook checks once — one `review_activity` round trip — and, while
nothing new is there, keeps checking every ``poll`` seconds until its
deadline; while the loop guard holds new activity, until the guard has room
for it (at most one guard window longer). A newer Stop hook of the same agent
supersedes an older watcher.

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
from agent_smith.hooks.rewake import WINDOW, Activity, Held, Limits, PullRequest, Wake, decide, read_state
from agent_smith.hooks.store import exclusive, hooks_dir, log_line, read_json, write_json
from agent_smith.record import Record, fill

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.forge.oneshot import PendingCheck

WATCHER_FILE = "stop-watcher.pid"
STATE_FILE = "rewake.json"
STATE_LOCK = "rewake.lock"
# One check's whole time (connect, TLS, request and every read of the answer): a server that
# answers a byte at a time cannot hold the watcher past it.
CHECK_TIMEOUT = 20.0


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


# A check, given the seconds it may take at most.
Check = Callable[[float], Snapshot]


def fetch_snapshot(
    context: HookContext, env: Mapping[str, str], sent: PendingCheck | None = None, timeout: float = CHECK_TIMEOUT
) -> Snapshot:
    """One GraphQL round trip (`sent`, or a new one taking at most `timeout` seconds): the agent's
    open PRs and what on them waits for it, from those the crew trusts (`forge.unaddressed`)."""
    from agent_smith.forge.activity import unaddressed
    from agent_smith.forge.oneshot import PendingCheck

    if sent is None:
        repos = context.repos or None
        sent = PendingCheck(
            context.forge_graphql_url, context.login, repos, env, timeout=timeout, ca_cache=cache_dir(env) / "ca"
        )
    activity = sent.result()
    items = tuple(
        Activity(i.key, i.repo, i.number, i.author, str(i.kind), i.body, i.url, i.path, i.line, i.state)
        # The crew's other agents review this one's PRs: their words count even where GitHub does not
        # make them collaborators.
        for i in unaddressed(activity, teammates=[t.login for t in context.teammates])
    )
    prs = tuple(PullRequest(p.repo, p.number, p.title, p.url) for p in activity.pull_requests)
    counts: dict[str, int] = {}
    for item in items:
        counts[item.pr] = counts.get(item.pr, 0) + 1
    return Snapshot(items, prs, counts)


def checks(context: HookContext, env: Mapping[str, str], first: PendingCheck | None = None) -> Check:
    """The watcher's check: the answer to `first` (sent before this module loaded, with its own
    `CHECK_TIMEOUT`), then new requests."""
    waiting = [first] if first is not None else []

    def check(timeout: float) -> Snapshot:
        return fetch_snapshot(context, env, waiting.pop() if waiting else None, timeout)

    return check


def longest_watch(watch_for: float, poll: float, check_timeout: float = CHECK_TIMEOUT) -> float:
    """How long a watcher may run at most (pure): its watch (at least one check's time), and while
    the loop guard holds activity, one guard window and a poll more."""
    return max(watch_for, check_timeout) + WINDOW.total_seconds() + poll


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
    check_timeout: float = CHECK_TIMEOUT,
) -> int:
    """Check, and keep checking until `watch_for` seconds passed; 2 with the reason on stderr to wake.

    `stop_hook_active` needs no special case: an item is never surfaced twice,
    so a turn the hook itself started cannot be woken again for the same words.
    """
    state_dir = context.state
    me = str(pid if pid is not None else os.getpid())
    watcher = hooks_dir(state_dir) / WATCHER_FILE
    if watch_for > 0:
        # A single check watches nothing, so it supersedes no watcher: a `claude -p` the agent runs
        # must not end the watch of the agent's own session.
        write_json(watcher, {"pid": me}, durable=False)
    started = clock()
    # No check runs past the deadline; a watch of 0 is one check, which has its whole time.
    deadline = started + max(watch_for, check_timeout)
    # Activity the loop guard holds is delivered when the guard has room, up to one window after
    # the watch would have ended (the assembled Stop hook's timeout outlasts that: home/plan.py).
    latest = started + longest_watch(watch_for, poll, check_timeout) if watch_for > 0 else deadline
    last_error = ""
    last_held: tuple[str, ...] = ()
    while True:
        pause = poll
        try:
            snapshot: Snapshot | None = check(max(min(check_timeout, deadline - clock()), 0.0))
        except Exception as exc:  # any failure of the check: log it, never wedge the agent
            snapshot = None
            if isinstance(exc, RateLimited):
                # Asked again sooner, GitHub would only limit the token longer.
                pause = max(poll, exc.seconds)
            if (error := _one_line(exc)) != last_error:
                log_line(state_dir, "stop", f"review check failed, not waking: {error}")
                _record_failure(state_dir, error, now())
                last_error = error
        if snapshot is not None:
            last_error = ""
            outcome = _surface(state_dir, snapshot, now())
            if isinstance(outcome, int):
                return outcome
            if outcome.held and outcome.held != last_held:  # said once per watcher, not every poll
                log_line(state_dir, "stop", f"loop guard holds new activity on {', '.join(outcome.held)}")
            last_held = outcome.held
            if outcome.until is not None:
                # A check `pause` after the guard has room finds it there.
                room_in = (outcome.until - now()).total_seconds()
                deadline = min(max(deadline, clock() + room_in + pause), latest)
        if watch_for <= 0 or clock() + pause > deadline:
            return 0
        sleep(pause)
        if read_json(watcher).get("pid") != me:
            return 0  # a newer Stop hook watches now


def _surface(state_dir: Path, snapshot: Snapshot, moment: dt.datetime) -> int | Held:
    """2 once the wake reason is on stderr, 0 when it could not be delivered; else the decision
    not to wake (with what the loop guard holds)."""
    _record_activity(state_dir, snapshot, moment)
    hooks = hooks_dir(state_dir)
    # From reading the state to writing it, one Stop hook at a time: two that both read it before
    # either wrote it would both wake the agent for the same comment.
    with exclusive(hooks / STATE_LOCK, wait=True):
        stored = read_json(hooks / STATE_FILE)
        state, dropped = read_state(stored)
        if dropped:  # the state is rewritten without them below, so this is said once
            log_line(state_dir, "stop", f"{STATE_FILE}: dropped entries it cannot read: {', '.join(dropped)}")
        state, decision = decide(state, snapshot.items, snapshot.pull_requests, moment, Limits())
        # Delivered first, then remembered as surfaced: a reason no one read is given again.
        if isinstance(decision, Wake) and not _deliver(state_dir, decision.reason):
            return 0
        if (now_stored := state.to_json()) != stored:
            write_json(hooks / STATE_FILE, now_stored)
    if isinstance(decision, Wake):
        authors = ", ".join(sorted({i.author for i in decision.items}))
        prs = ", ".join(sorted({i.pr for i in decision.items}))
        log_line(state_dir, "stop", f"woke the agent for {len(decision.items)} item(s) by {authors} on {prs}")
        return 2
    return decision


def _deliver(state_dir: Path, reason: str) -> bool:
    """Whether the wake reason reached stderr (written and flushed)."""
    try:
        sys.stderr.write(reason + "\n")
        sys.stderr.flush()
    except (OSError, ValueError) as exc:  # Claude Code is gone (the pipe is closed): no one reads it
        log_line(state_dir, "stop", f"could not deliver the wake reason, nothing surfaced: {type(exc).__name__}")
        return False
    return True


def _record_failure(state_dir: Path, error: str, moment: dt.datetime) -> None:
    """Say in the activity file that checks fail now, keeping what the last one that did not found:
    `status` then shows those PRs as stale rather than as current."""
    activity = read_json(hooks_dir(state_dir) / ACTIVITY_FILE)
    # A check that did not fail rewrites the file without it: one there began this run of failures.
    since = activity.get("failing_since")
    since = since if isinstance(since, str) else moment.isoformat(timespec="seconds")
    write_json(
        hooks_dir(state_dir) / ACTIVITY_FILE, {**activity, "failing_since": since, "failure": error}, durable=False
    )


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
