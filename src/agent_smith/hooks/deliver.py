"""Deliver the tool hook's queued PR actions: publish the event, announce a new PR to reviewers.

Runs detached (`agent-smith hook deliver`), one at a time per agent (a lock),
oldest job first. A job file is removed only once its event is acknowledged
by the stream or fsynced in the event log's outbox, and its announcement (for
a new PR) was posted; otherwise it stays for the next delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_smith.errors import EventRefused
from agent_smith.hooks.context import HookContext
from agent_smith.hooks.store import hooks_dir, log_line, read_json
from agent_smith.hooks.tool import SPOOL

REVIEW_STATES = {"APPROVED": "approved", "CHANGES_REQUESTED": "changes_requested", "COMMENTED": "commented"}


@dataclass(frozen=True)
class PrFacts:
    """What the event needs that gh's output may not have said."""

    title: str
    url: str


Lookup = Callable[[str, int], Awaitable[PrFacts]]
Publish = Callable[[str, Mapping[str, Any]], Awaitable[None]]
Announce = Callable[[str, str], Awaitable[None]]


def event_fields(job: Mapping[str, Any], facts: PrFacts) -> tuple[str, dict[str, Any]]:
    """(event type, fields) for a queued action. Pure."""
    fields: dict[str, Any] = {
        "repo": job["repo"],
        "pr": int(job["number"]),
        "title": job.get("title") or facts.title,
        "url": job.get("url") or facts.url,
    }
    action = job["action"]
    if action == "reviewed":
        fields["state"] = REVIEW_STATES.get(str(job.get("review_state") or "").upper(), "commented")
    return f"pr_{action}", fields


def announcement(author: str, title: str, url: str, reviewers: list[tuple[str, str | None]]) -> str:
    """The review-room message for a new PR, naming every teammate (name, Matrix id). Pure."""
    names = ", ".join(user_id or name for name, user_id in reviewers) or "team"
    return f"{names}: {author} opened a pull request for review — {title} {url}"


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def deliver(context: HookContext, lookup: Lookup, publish: Publish, announce: Announce | None) -> tuple[int, int]:
    """(delivered, left) after one pass over the spool."""
    spool = hooks_dir(context.state) / SPOOL
    delivered = left = 0
    with _exclusive(hooks_dir(context.state) / "deliver.lock") as mine:
        if not mine:
            return 0, 0  # another deliverer is at it and will take the new job too
        for path in sorted(spool.glob("*.json")) if spool.is_dir() else []:
            job = read_json(path)
            try:
                await _deliver_one(context, job, lookup, publish, announce)
            except EventRefused as exc:  # NATS will never take it: kept, it would be refused at every pass
                log_line(context.state, "deliver", f"{path.name} dropped: {exc}")
                path.unlink(missing_ok=True)
                continue
            except Exception as exc:  # keep the job for the next pass; say why once
                left += 1
                log_line(context.state, "deliver", f"{path.name} not delivered yet: {type(exc).__name__}: {exc}")
                continue
            path.unlink(missing_ok=True)
            delivered += 1
    return delivered, left


async def _deliver_one(
    context: HookContext, job: Mapping[str, Any], lookup: Lookup, publish: Publish, announce: Announce | None
) -> None:
    if not job.get("repo") or not job.get("number"):
        log_line(context.state, "deliver", f"dropping a {job.get('action')} job without a PR: {dict(job)}")
        return
    facts = PrFacts(str(job.get("title") or ""), str(job.get("url") or ""))
    if not facts.title or not facts.url:
        facts = await lookup(str(job["repo"]), int(job["number"]))
    kind, fields = event_fields(job, facts)
    if kind == "pr_opened" and announce is not None and context.review_room:
        reviewers = [(t.name, t.matrix_user_id) for t in context.teammates]
        await announce(context.review_room, announcement(context.agent, fields["title"], fields["url"], reviewers))
    await publish(kind, fields)
    log_line(context.state, "deliver", f"published {kind} for {fields['repo']}#{fields['pr']}")


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
    async with (
        ForgeClient.from_env(api_url=context.forge_base_url, graphql_url=context.forge_graphql_url, env=env) as forge,
        Publisher(target.settings, target.outbox, target.url) as publisher,
    ):

        async def lookup(repo: str, number: int) -> PrFacts:
            data = await forge.pull_request(repo, number)
            return PrFacts(str(data["title"]), str(data["html_url"]))

        async def publish(kind: str, fields: Mapping[str, Any]) -> None:
            await publisher.publish(build_event(kind, context.agent, fields))

        # A one-shot process: give NATS a moment, so the event goes to the stream rather
        # than only to the outbox (where it would wait for the next publisher to flush it).
        await publisher.wait_connected(5.0)

        announce = await _announcer(env) if context.review_room else None
        _, left = await deliver(context, lookup, publish, announce)
    return 0 if left == 0 else 1


async def _announcer(env: Mapping[str, str]) -> Announce | None:
    from agent_smith.chat import post_notice

    async def announce(room: str, text: str) -> None:
        await post_notice(room, text, env=env)

    return announce
