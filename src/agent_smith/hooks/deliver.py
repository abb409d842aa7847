"""Deliver the tool hook's queued PR actions: publish the event, announce a new PR to reviewers.

Runs detached (`agent-smith hook deliver`), one at a time per agent (a lock),
oldest job first. A job file is removed only once its event is acknowledged
by the stream or fsynced in the event log's outbox, and its announcement (for
a new PR) was posted; otherwise it stays for the next delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_smith.errors import EventRefused, OperationError, UsageError
from agent_smith.hooks.context import HookContext
from agent_smith.hooks.recognise import branch_ref
from agent_smith.hooks.store import exclusive, hooks_dir, log_line, read_json, write_json
from agent_smith.hooks.tool import SPOOL

ACTIONS = frozenset({"opened", "reviewed", "merged"})
# How long a new PR's delivery waits for the forge to say its branches (title and URL known).
BRANCHES_WAIT = 10.0
# A job that failed this many deliveries (minutes to days apart) is given up, with a log line.
MAX_ATTEMPTS = 20
# A review's state as the API reports it, and as the event that submits it names it.
REVIEW_STATES = {
    "APPROVED": "approved",
    "APPROVE": "approved",
    "CHANGES_REQUESTED": "changes_requested",
    "REQUEST_CHANGES": "changes_requested",
    "COMMENTED": "commented",
    "COMMENT": "commented",
}


@dataclass(frozen=True)
class PrFacts:
    """What the event needs that gh's output may not have said."""

    title: str
    url: str
    base: str | None = None
    head: str | None = None


Lookup = Callable[[str, int], Awaitable[PrFacts]]
# (repo, branch) → the number and facts of the branch's pull request, None when it has none.
Find = Callable[[str, str], Awaitable[tuple[int, PrFacts] | None]]
# (event type, fields, when it happened) → where it went, for the log.
Publish = Callable[[str, Mapping[str, Any], "dt.datetime | None"], Awaitable[str]]
Announce = Callable[[str, str], Awaitable[None]]


def event_fields(job: Mapping[str, Any], facts: PrFacts) -> tuple[str, dict[str, Any]]:
    """(event type, fields) for a queued action. Pure."""
    fields: dict[str, Any] = {
        "repo": job["repo"],
        "pr": int(job["number"]),
        # A lone surrogate (JSON allows "\\ud800") is no text the event log can carry.
        "title": str(job.get("title") or facts.title).encode("utf-8", "replace").decode(),
        "url": job.get("url") or facts.url,
    }
    action = job["action"]
    if action == "reviewed":
        fields["state"] = REVIEW_STATES.get(str(job.get("review_state") or "").upper(), "commented")
        # The inline comments the hook counted in the command; absent where it could not (unknown).
        if isinstance(job.get("comments"), int):
            fields["comments"] = job["comments"]
    if action == "opened":
        for side, known in (("base", facts.base), ("head", facts.head)):
            if branch := job.get(side) or known:
                fields[side] = branch
    return f"pr_{action}", fields


def pr_facts(pull: Mapping[str, Any]) -> PrFacts:
    """The facts of a pull request as the forge's API describes it. Pure."""
    return PrFacts(str(pull["title"]), str(pull["html_url"]), branch_ref(pull, "base"), branch_ref(pull, "head"))


def announcement(author: str, title: str, url: str, reviewers: list[tuple[str, str | None]]) -> str:
    """The review-room message for a new PR, naming every teammate (name, Matrix id). Pure."""
    names = ", ".join(user_id or name for name, user_id in reviewers) or "team"
    return f"{names}: {author} opened a pull request for review — {title} {url}"


async def deliver(
    context: HookContext, lookup: Lookup, publish: Publish, announce: Announce | None, find: Find | None = None
) -> tuple[int, int]:
    """(delivered, left): every job in the spool tried once, the jobs queued meanwhile included.

    One deliverer at a time (a lock). One that finds it taken leaves its job to the holder, which
    looks at the spool again once it let go of the lock: a job queued meanwhile is never stranded.
    """
    spool = hooks_dir(context.state) / SPOOL
    delivered = left = 0
    tried: set[str] = set()
    while True:
        with exclusive(hooks_dir(context.state) / "deliver.lock") as mine:
            if not mine:
                return delivered, left  # the holder takes the new job too
            for path in _untried(spool, tried):
                tried.add(path.name)
                if await _deliver_path(context, path, lookup, publish, announce, find):
                    delivered += 1
                elif path.exists():
                    left += 1
        if not _untried(spool, tried):
            return delivered, left


def _untried(spool: Path, tried: set[str]) -> list[Path]:
    return [p for p in sorted(spool.glob("*.json")) if p.name not in tried and p.is_file()] if spool.is_dir() else []


async def _deliver_path(
    context: HookContext, path: Path, lookup: Lookup, publish: Publish, announce: Announce | None, find: Find | None
) -> bool:
    """Whether the job at `path` is done (then removed); a job that never can be is dropped with a
    log line, one that failed now is kept for the next delivery, `MAX_ATTEMPTS` times."""
    job = read_json(path)
    if job.get("action") not in ACTIONS:
        log_line(context.state, "deliver", f"{path.name} dropped: not a job the tool hook wrote")
        _forget(path)
        return False
    try:
        await _deliver_one(context, path, await _numbered(job, find), lookup, publish, announce)
    except (EventRefused, UsageError, NoPullRequest) as exc:  # never deliverable: NATS or the model refuse it
        log_line(context.state, "deliver", f"{path.name} dropped: {exc}")
        _forget(path)
        return False
    except Exception as exc:
        before = job.get("attempts")
        attempts = (before if isinstance(before, int) and not isinstance(before, bool) else 0) + 1
        if attempts >= MAX_ATTEMPTS:
            log_line(
                context.state, "deliver", f"{path.name} dropped after {attempts} attempts: {type(exc).__name__}: {exc}"
            )
            _forget(path)
            return False
        write_json(path, {**read_json(path), "attempts": attempts})
        log_line(context.state, "deliver", f"{path.name} not delivered yet: {type(exc).__name__}: {exc}")
        return False
    _forget(path)
    return True


def _forget(path: Path) -> None:
    path.unlink(missing_ok=True)


async def _deliver_one(
    context: HookContext,
    path: Path,
    job: Mapping[str, Any],
    lookup: Lookup,
    publish: Publish,
    announce: Announce | None,
) -> None:
    facts = PrFacts(str(job.get("title") or ""), str(job.get("url") or ""))
    if not facts.title or not facts.url:
        facts = await lookup(str(job["repo"]), int(job["number"]))
    elif job["action"] == "opened" and not (job.get("base") and job.get("head")):
        # The branches are the event's extras: a forge that is away, slow or answers oddly does not
        # hold the event back (nor retry it for minutes).
        with contextlib.suppress(OperationError, TimeoutError, KeyError, ValueError):
            async with asyncio.timeout(BRANCHES_WAIT):
                facts = await lookup(str(job["repo"]), int(job["number"]))
    kind, fields = event_fields(job, facts)
    if not job.get("published"):
        # The event first, and marked as published: the team's record does not wait on the chat,
        # and an announcement that fails does not publish the event again when it is retried.
        where = await publish(kind, fields, _time_of(job))
        write_json(path, {**job, "published": True})
        log_line(context.state, "deliver", f"{kind} for {fields['repo']}#{fields['pr']}: {where}")
    if kind == "pr_opened" and announce is not None and context.review_room:
        reviewers = [(t.name, t.matrix_user_id) for t in context.teammates]
        await announce(context.review_room, announcement(context.agent, fields["title"], fields["url"], reviewers))


class NoPullRequest(Exception):
    """The job names no PR and nothing to find one by: no delivery ever can."""


async def _numbered(job: Mapping[str, Any], find: Find | None) -> Mapping[str, Any]:
    """`job` with its PR's number, title and URL found from its branch when gh was not told one."""
    if job.get("number") and job.get("repo"):
        return job
    if not job.get("repo") or not job.get("branch"):
        raise NoPullRequest(f"a {job.get('action')} job names no PR, nor a branch to find it by")
    repo, branch = str(job["repo"]), str(job["branch"])
    if find is None:
        raise OperationError(f"no forge to find the pull request of {repo} branch {branch}")
    found = await find(repo, branch)
    if found is None:
        # Kept, not dropped: the forge may not list it yet, and a given-up job says so in the log.
        raise OperationError(f"{repo} has no pull request from branch {branch}")
    number, facts = found
    return {**job, "number": number, "title": job.get("title") or facts.title, "url": job.get("url") or facts.url}


def _time_of(job: Mapping[str, Any]) -> dt.datetime | None:
    """When the action happened (the hook saw it), not when a late delivery got to it."""
    try:
        at = dt.datetime.fromisoformat(str(job.get("at")))
    except ValueError:
        return None
    return at.astimezone(dt.UTC) if at.tzinfo is not None else None


def run_deliver(context: HookContext, env: Mapping[str, str]) -> int:
    """The shell: real forge, event log and Matrix clients around `deliver`."""
    return asyncio.run(_run(context, env))


async def _run(context: HookContext, env: Mapping[str, str]) -> int:
    from agent_smith.crew import load_crew
    from agent_smith.events import Publisher, build_event, crew_target
    from agent_smith.forge import ForgeClient

    # The deliverer runs detached, so it can afford the crew: the event log's target (its URL,
    # or the crew's embedded server, and the outbox every publisher of the crew shares).
    target = crew_target(load_crew(context.crew_dir, env=env).crew, env)
    no_forge = ""
    async with contextlib.AsyncExitStack() as stack:
        try:
            forge = await stack.enter_async_context(
                ForgeClient.from_env(api_url=context.forge_base_url, graphql_url=context.forge_graphql_url, env=env)
            )
        except UsageError as exc:
            # No forge to ask (no GitHub token): an event whose job says enough is still published,
            # without what only the forge knows; one that needs the forge waits, as when it is away.
            no_forge = str(exc)
            log_line(context.state, "deliver", f"no forge: {no_forge}")
            forge = None
        publisher = await stack.enter_async_context(Publisher(target.settings, target.outbox, target.url))

        async def lookup(repo: str, number: int) -> PrFacts:
            if forge is None:
                raise OperationError(no_forge)
            return pr_facts(await forge.pull_request(repo, number))

        async def find(repo: str, branch: str) -> tuple[int, PrFacts] | None:
            if forge is None:
                raise OperationError(no_forge)
            data = await forge.pull_request_of_branch(repo, branch)
            return None if data is None else (int(data["number"]), pr_facts(data))

        async def publish(kind: str, fields: Mapping[str, Any], at: dt.datetime | None) -> str:
            event = build_event(kind, context.agent, fields)
            receipt = await publisher.publish(event if at is None else event.model_copy(update={"time": at}))
            return f"in the stream (sequence {receipt.seq})" if receipt.stored else "in the outbox"

        # A one-shot process: give NATS a moment, so the event goes to the stream rather
        # than only to the outbox (where it would wait for the next publisher to flush it).
        await publisher.wait_connected(5.0)

        announce = await _announcer(env) if context.review_room else None
        _, left = await deliver(context, lookup, publish, announce, find)
    return 0 if left == 0 else 1


async def _announcer(env: Mapping[str, str]) -> Announce | None:
    from agent_smith.chat import post_notice

    async def announce(room: str, text: str) -> None:
        await post_notice(room, text, env=env)

    return announce
