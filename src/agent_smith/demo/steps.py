"""Which of the demo's six steps are done: a pure decision over what the real sources show.

The shell gathers an `Observation` (the room timeline, the stream's events,
the stand-in's pull requests, the firewall's audit log, the hooks' log) and
calls `advance`; nothing here reads a clock, a file or a socket. A step is
done when every one of its checks holds; it stays done, with the moment it
was first seen, even if a later observation no longer shows it (a source
that is briefly unreachable must not undo what was already proven).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Step(StrEnum):
    ASKED = "asked"
    PR_OPENED = "pr_opened"
    REVIEWED = "reviewed"
    ADDRESSED = "addressed"
    MERGED = "merged"
    REFUSED = "refused"


STEP_TITLES: Mapping[Step, str] = {
    Step.ASKED: "the operator asks the developer; 👀 and a reply",
    Step.PR_OPENED: "branch, commit, push, PR through the firewall; pr_opened; reviewer mentioned",
    Step.REVIEWED: "the reviewer reviews with an inline comment",
    Step.ADDRESSED: "the Stop hook re-wakes the developer; it pushes a fix and tells the reviewer",
    Step.MERGED: "the reviewer approves; the PR merges; pr_merged",
    Step.REFUSED: "a request to a non-allowlisted host is refused and audited",
}


@dataclass(frozen=True)
class Cast:
    """Who plays which part: Matrix ids, GitHub logins, and the host the firewall must refuse."""

    operator: str
    developer: str
    developer_user: str
    developer_login: str
    reviewer: str
    reviewer_user: str
    reviewer_login: str
    refused_host: str


@dataclass(frozen=True)
class ChatEvent:
    """A room event: a message (``kind`` ``message``) or a reaction (``kind`` ``reaction``)."""

    event_id: str
    sender: str
    kind: str
    body: str = ""
    mentions: tuple[str, ...] = ()
    relates_to: str | None = None
    key: str | None = None

    def names(self, user_id: str, name: str) -> bool:
        """True when the message addresses `user_id`: listed in m.mentions or named in its text."""
        return user_id in self.mentions or user_id in self.body or f"@{name}" in self.body


@dataclass(frozen=True)
class StreamEvent:
    type: str
    agent: str
    pr: int | None = None


@dataclass(frozen=True)
class ReviewSeen:
    author: str
    state: str
    commit_id: str
    inline_comments: int = 0


@dataclass(frozen=True)
class PullSeen:
    number: int
    author: str
    state: str
    head_sha: str
    reviews: tuple[ReviewSeen, ...] = ()


@dataclass(frozen=True)
class AuditSeen:
    agent: str
    host: str
    decision: str


@dataclass(frozen=True)
class Observation:
    chat: tuple[ChatEvent, ...] = ()
    events: tuple[StreamEvent, ...] = ()
    pulls: tuple[PullSeen, ...] = ()
    audit: tuple[AuditSeen, ...] = ()
    rewakes: int = 0


@dataclass(frozen=True)
class Progress:
    """When each step and each check was first seen done (seconds since the demo began)."""

    checks: Mapping[str, float] = field(default_factory=dict)
    steps: Mapping[Step, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return all(step in self.steps for step in Step)

    def as_json(self) -> dict[str, Any]:
        return {
            "steps": {step.value: self.steps.get(step) for step in Step},
            "checks": dict(sorted(self.checks.items())),
        }


def _developer_pull(obs: Observation, cast: Cast) -> PullSeen | None:
    mine = [p for p in obs.pulls if p.author == cast.developer_login]
    return min(mine, key=lambda p: p.number) if mine else None


def _reviews(pull: PullSeen | None, author: str) -> list[ReviewSeen]:
    return [r for r in pull.reviews if r.author == author] if pull is not None else []


def _has_event(obs: Observation, kind: str, agent: str, pr: int | None) -> bool:
    return any(e.type == kind and e.agent == agent and (pr is None or e.pr == pr) for e in obs.events)


def _asked(obs: Observation, cast: Cast) -> dict[str, bool]:
    asks = [
        e
        for e in obs.chat
        if e.kind == "message" and e.sender == cast.operator and e.names(cast.developer_user, cast.developer)
    ]
    ask_ids = {e.event_id for e in asks}
    first = obs.chat.index(asks[0]) if asks else len(obs.chat)
    return {
        "operator asked the developer": bool(asks),
        "👀 from the developer": any(
            e.kind == "reaction" and e.sender == cast.developer_user and e.relates_to in ask_ids and e.key == "👀"
            for e in obs.chat
        ),
        "the developer replied": any(
            e.kind == "message" and e.sender == cast.developer_user for e in obs.chat[first + 1 :]
        ),
    }


def _reviewer_mentions(obs: Observation, cast: Cast) -> int:
    return sum(
        1
        for e in obs.chat
        if e.kind == "message" and e.sender == cast.developer_user and e.names(cast.reviewer_user, cast.reviewer)
    )


def _pr_opened(obs: Observation, cast: Cast, pull: PullSeen | None) -> dict[str, bool]:
    return {
        "PR opened by the developer": pull is not None,
        "pr_opened on the stream": pull is not None and _has_event(obs, "pr_opened", cast.developer, pull.number),
        "reviewer mentioned in the room": _reviewer_mentions(obs, cast) >= 1,
    }


def _reviewed(obs: Observation, cast: Cast, pull: PullSeen | None) -> dict[str, bool]:
    inline = [r for r in _reviews(pull, cast.reviewer_login) if r.inline_comments > 0]
    return {
        "inline comment by the reviewer": bool(inline),
        "pr_reviewed on the stream": pull is not None and _has_event(obs, "pr_reviewed", cast.reviewer, pull.number),
    }


def _addressed(obs: Observation, cast: Cast, pull: PullSeen | None) -> dict[str, bool]:
    inline = [r for r in _reviews(pull, cast.reviewer_login) if r.inline_comments > 0]
    return {
        "Stop hook re-woke the developer": obs.rewakes >= 1,
        "fix pushed after the review": pull is not None
        and bool(inline)
        and any(r.commit_id != pull.head_sha for r in inline),
        # The first mention is the PR announcement; the second is the developer's own word.
        "reviewer told in the room": _reviewer_mentions(obs, cast) >= 2,
    }


def _merged(obs: Observation, cast: Cast, pull: PullSeen | None) -> dict[str, bool]:
    return {
        "approved by the reviewer": any(r.state == "APPROVED" for r in _reviews(pull, cast.reviewer_login)),
        "PR merged": pull is not None and pull.state == "MERGED",
        "pr_merged on the stream": pull is not None
        and any(e.type == "pr_merged" and e.pr == pull.number for e in obs.events),
    }


def _refused(obs: Observation, cast: Cast) -> dict[str, bool]:
    return {
        "refused and audited by the firewall": any(
            a.decision == "denied" and a.host == cast.refused_host for a in obs.audit
        ),
    }


def checks(obs: Observation, cast: Cast) -> dict[Step, dict[str, bool]]:
    """Every step's checks, each true or false, for one observation."""
    pull = _developer_pull(obs, cast)
    return {
        Step.ASKED: _asked(obs, cast),
        Step.PR_OPENED: _pr_opened(obs, cast, pull),
        Step.REVIEWED: _reviewed(obs, cast, pull),
        Step.ADDRESSED: _addressed(obs, cast, pull),
        Step.MERGED: _merged(obs, cast, pull),
        Step.REFUSED: _refused(obs, cast),
    }


def check_key(step: Step, name: str) -> str:
    return f"{step.value}: {name}"


def advance(progress: Progress, obs: Observation, cast: Cast, now: float) -> Progress:
    """`progress` with what `obs` newly proves, stamped `now`; what was proven stays proven."""
    found = checks(obs, cast)
    seen = dict(progress.checks)
    for step, named in found.items():
        for name, ok in named.items():
            if ok:
                seen.setdefault(check_key(step, name), now)
    steps = dict(progress.steps)
    for step, named in found.items():
        if step not in steps and all(check_key(step, name) in seen for name in named):
            steps[step] = now
    if seen == progress.checks and steps == progress.steps:
        return progress
    return replace(progress, checks=seen, steps=steps)


def step_durations(progress: Progress) -> dict[Step, float]:
    """Each done step's own time: from the step done just before it (or the start) to it; in the
    order they were done."""
    out: dict[Step, float] = {}
    previous = 0.0
    for step, at in sorted(progress.steps.items(), key=lambda item: (item[1], list(Step).index(item[0]))):
        out[step] = at - previous
        previous = at
    return out
