"""Subjects and filters: pure decisions about where an event goes and how a query finds it.

An event of type T by agent A is stored on ``<prefix>.T.A``. Every subject
still matches ``<prefix>.>`` (what the original's consumers subscribe to) and
starts with ``<prefix>.T``; the agent token lets the server pick one agent's
events out of the stream by subject (``<prefix>.*.A``) instead of the client
reading and discarding everyone else's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from agent_smith.crew import parse_duration

if TYPE_CHECKING:
    from agent_smith.events.outbox import OutboxRecord

T = TypeVar("T")
U = TypeVar("U")


def subject_for(prefix: str, type_name: str, agent: str) -> str:
    return f"{prefix}.{type_name}.{agent}"


def retarget(record: OutboxRecord, prefix: str) -> OutboxRecord:
    """`record` under `prefix`: same type and agent, the last two tokens of its subject (pure)."""
    type_name, agent = record.subject.rsplit(".", 2)[-2:]
    subject = subject_for(prefix, type_name, agent)
    return record if subject == record.subject else replace(record, subject=subject)


def stream_subjects(prefix: str) -> list[str]:
    return [f"{prefix}.>"]


@dataclass(frozen=True)
class EventFilter:
    """What a query or a tail asks for; empty fields match everything."""

    types: tuple[str, ...] = ()
    agent: str | None = None
    repo: str | None = None
    pr: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def subjects(self, prefix: str) -> list[str]:
        """The server-side filter: the narrowest subjects that cover the types and the agent."""
        agent = self.agent or "*"
        if not self.types:
            return [f"{prefix}.*.{agent}"] if self.agent else [f"{prefix}.>"]
        return [f"{prefix}.{t}.{agent}" for t in sorted(set(self.types))]

    def matches(self, payload: Mapping[str, Any]) -> bool:
        """The client-side rest of the filter, on the wire payload."""
        if self.types and payload.get("type") not in self.types:
            return False
        if self.agent is not None and payload.get("agent") != self.agent:
            return False
        if self.repo is not None and payload.get("repo") != self.repo:
            return False
        if self.pr is not None and payload.get("pr") != self.pr:
            return False
        if self.until is not None or self.since is not None:
            when = _time_of(payload)
            if when is None:
                return False
            if self.since is not None and when < self.since:
                return False
            if self.until is not None and when > self.until:
                return False
        return True


def _time_of(payload: Mapping[str, Any]) -> datetime | None:
    raw = payload.get("time")
    if not isinstance(raw, str):
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def newest(items: Sequence[T], limit: int | None, keep: Callable[[T], U | None]) -> list[U]:
    """The newest `limit` of `items` that `keep` makes something of (all of them when `limit` is
    None), oldest first. An item it makes nothing of (None: a message that is no event) takes no
    place, and only as many items as needed are looked at."""
    kept: list[U] = []
    for item in reversed(items):
        if limit is not None and len(kept) >= limit:
            break
        made = keep(item)
        if made is not None:
            kept.append(made)
    kept.reverse()
    return kept


def parse_time(text: str, now: datetime) -> datetime:
    """A point in time from ISO 8601 (naive means UTC) or a duration ago like ``90m``, ``2h``, ``7d``."""
    value = text.strip()
    try:
        seconds = parse_duration(value)
    except ValueError:
        pass
    else:
        try:
            return now - timedelta(seconds=seconds)
        except OverflowError:
            raise ValueError(f"{text!r} reaches back before the year 1") from None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a time (2026-01-31T09:00Z) nor a duration ago (90m, 2h, 7d)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def time_range(
    since: str | None, until: str | None, now: datetime, names: tuple[str, str] = ("since", "until")
) -> tuple[datetime | None, datetime | None]:
    """The bounds `since` and `until` give (`parse_time`); a `ValueError` naming the bound as
    `names` spell it (an option, an argument) for one that is no time, or for a range that ends
    before it begins: a swapped pair, which would quietly find nothing (pure)."""
    bounds: list[datetime | None] = []
    for name, value in zip(names, (since, until), strict=True):
        try:
            bounds.append(parse_time(value, now) if value is not None else None)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    start, end = bounds
    if start is not None and end is not None and end < start:
        raise ValueError(f"{names[1]} {until} is before {names[0]} {since}: nothing can be found between them")
    return start, end
