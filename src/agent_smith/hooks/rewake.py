"""Should the Stop hook wake the agent, and with what reason? Pure: plain data in, plain data out.

The hook surfaces review activity the agent has not addressed (what counts is
`forge.unaddressed`'s business). This module adds memory and restraint:

- an item is surfaced once; the agent is woken only when activity *grew*
  since what it last surfaced;
- a loop guard caps wakes per pull request per hour: at the cap the reason
  says so, and further items on that PR wait (unsurfaced) until the window
  has room again — so a bot-to-bot ping-pong stops, and nothing is lost;
- the reason is bounded: excerpts are cut, and the whole text is capped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from agent_smith.record import Record, fill

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

WINDOW = dt.timedelta(hours=1)
SURFACED_KEPT_FOR = dt.timedelta(days=30)


class Activity(Record):
    """One unaddressed item, flattened from the forge's snapshot."""

    _fields = ("key", "repo", "number", "author", "kind", "body", "url", "path", "line", "state")

    __slots__ = _fields
    key: str
    repo: str
    number: int
    author: str
    kind: str  # thread | review | comment
    body: str
    url: str
    path: str | None
    line: int | None
    state: str | None

    def __init__(
        self,
        key: str,
        repo: str,
        number: int,
        author: str,
        kind: str,
        body: str,
        url: str,
        path: str | None = None,
        line: int | None = None,
        state: str | None = None,
    ) -> None:
        fill(self, key, repo, number, author, kind, body, url, path, line, state)

    @property
    def pr(self) -> str:
        return f"{self.repo}#{self.number}"


class PullRequest(Record):
    _fields = ("repo", "number", "title", "url")
    __slots__ = _fields
    repo: str
    number: int
    title: str
    url: str

    def __init__(self, repo: str, number: int, title: str, url: str) -> None:
        fill(self, repo, number, title, url)

    @property
    def pr(self) -> str:
        return f"{self.repo}#{self.number}"


class Limits(Record):
    _fields = ("wakes_per_pr_per_hour", "excerpt_chars", "reason_chars")
    __slots__ = _fields
    wakes_per_pr_per_hour: int
    excerpt_chars: int
    reason_chars: int

    def __init__(self, wakes_per_pr_per_hour: int = 3, excerpt_chars: int = 280, reason_chars: int = 4000) -> None:
        fill(self, wakes_per_pr_per_hour, excerpt_chars, reason_chars)


class RewakeState(Record):
    """What the hook remembers between runs (stored as JSON, written atomically)."""

    _fields = ("surfaced", "wakes")

    __slots__ = _fields
    surfaced: Mapping[str, dt.datetime]
    wakes: Mapping[str, tuple[dt.datetime, ...]]

    def __init__(
        self,
        surfaced: Mapping[str, dt.datetime] | None = None,
        wakes: Mapping[str, tuple[dt.datetime, ...]] | None = None,
    ) -> None:
        fill(self, {} if surfaced is None else surfaced, {} if wakes is None else wakes)

    def to_json(self) -> dict[str, Any]:
        return {
            "surfaced": {k: v.isoformat() for k, v in sorted(self.surfaced.items())},
            "wakes": {k: [t.isoformat() for t in v] for k, v in sorted(self.wakes.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RewakeState:
        surfaced = {str(k): _parse(v) for k, v in dict(data.get("surfaced") or {}).items()}
        wakes = {str(k): tuple(_parse(t) for t in v) for k, v in dict(data.get("wakes") or {}).items()}
        return cls(surfaced, wakes)


class Wake(Record):
    """Wake the agent with `reason` (exit 2, reason on stderr)."""

    _fields = ("reason", "items", "capped")

    __slots__ = _fields
    reason: str
    items: tuple[Activity, ...]
    capped: tuple[str, ...]

    def __init__(self, reason: str, items: tuple[Activity, ...], capped: tuple[str, ...] = ()) -> None:
        fill(self, reason, items, capped)


class Held(Record):
    """Nothing to wake for; `held` lists PRs whose new items wait for the loop guard."""

    _fields = ("held",)

    __slots__ = _fields
    held: tuple[str, ...]

    def __init__(self, held: tuple[str, ...] = ()) -> None:
        fill(self, held)


DEFAULT_LIMITS = Limits()
Decision = Wake | Held


def decide(
    state: RewakeState,
    items: Sequence[Activity],
    pull_requests: Iterable[PullRequest],
    now: dt.datetime,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[RewakeState, Decision]:
    """The next state and whether to wake, given the unaddressed items seen now."""
    state = _pruned(state, now)
    fresh = list({i.key: i for i in items if i.key not in state.surfaced}.values())
    by_pr: dict[str, list[Activity]] = {}
    for item in fresh:
        by_pr.setdefault(item.pr, []).append(item)

    woken: list[Activity] = []
    capped: list[str] = []
    held: list[str] = []
    wakes = dict(state.wakes)
    for pr, pr_items in by_pr.items():
        recent = wakes.get(pr, ())
        if len(recent) >= limits.wakes_per_pr_per_hour:
            held.append(pr)
            continue
        woken.extend(pr_items)
        wakes[pr] = (*recent, now)
        if len(wakes[pr]) >= limits.wakes_per_pr_per_hour:
            capped.append(pr)
    if not woken:
        return RewakeState(state.surfaced, wakes), Held(tuple(sorted(held)))

    surfaced = dict(state.surfaced)
    surfaced.update({item.key: now for item in woken})
    prs = {p.pr: p for p in pull_requests}
    reason = format_reason(woken, prs, capped, now, limits)
    return RewakeState(surfaced, wakes), Wake(reason, tuple(woken), tuple(capped))


def _pruned(state: RewakeState, now: dt.datetime) -> RewakeState:
    surfaced = {k: t for k, t in state.surfaced.items() if now - t < SURFACED_KEPT_FOR}
    wakes = {pr: kept for pr, times in state.wakes.items() if (kept := tuple(t for t in times if now - t < WINDOW))}
    return RewakeState(surfaced, wakes)


def excerpt(text: str, limit: int) -> str:
    """One line, at most `limit` characters, cut with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"


def format_reason(
    items: Sequence[Activity],
    prs: Mapping[str, PullRequest],
    capped: Sequence[str],
    now: dt.datetime,
    limits: Limits,
) -> str:
    """The text the model reads as Stop-hook feedback: each PR, each comment, bounded."""
    lines = ["New review activity on your pull requests. Answer every comment (fix it or say why not), then push."]
    grouped: dict[str, list[Activity]] = {}
    for item in items:
        grouped.setdefault(item.pr, []).append(item)
    for pr_key, pr_items in grouped.items():
        pr = prs.get(pr_key)
        title = f' "{excerpt(pr.title, 120)}"' if pr else ""
        url = f" — {pr.url}" if pr else ""
        lines.append("")
        lines.append(f"{pr_key}{title}{url}")
        for item in pr_items:
            lines.append(f"  - {_describe(item)}: {excerpt(item.body, limits.excerpt_chars)!s}")
    if capped:
        until = (now + WINDOW).strftime("%H:%M UTC")
        lines.append("")
        lines.append(
            f"Loop guard: this is the last wake this hour for {', '.join(capped)} "
            f"({limits.wakes_per_pr_per_hour} per PR per hour); newer activity there waits until {until}."
        )
    return _capped("\n".join(lines), limits.reason_chars)


def _describe(item: Activity) -> str:
    if item.kind == "thread":
        where = f"{item.path}:{item.line}" if item.path and item.line else (item.path or "a diff line")
        return f"{item.author} on {where} ({item.url})"
    if item.kind == "review":
        return f"{item.author} reviewed ({item.state or 'COMMENTED'}, {item.url})"
    return f"{item.author} commented ({item.url})"


def _capped(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = "\n… (more activity not shown; read the pull requests)"
    cut = text[: max(limit - len(marker), 0)]
    return cut[: cut.rfind("\n")] + marker if "\n" in cut else cut + marker


def _parse(value: Any) -> dt.datetime:
    return dt.datetime.fromisoformat(str(value))
