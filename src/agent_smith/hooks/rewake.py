"""Should the Stop hook wake the agent, and with what reason? Pure: plain data in, plain data out.

The hook surfaces review activity the agent has not addressed (what counts is
`forge.unaddressed`'s business). This module adds memory and restraint:

- an item is surfaced once; the agent is woken only when activity *grew*
  since what it last surfaced;
- a loop guard caps wakes per pull request per hour: at the cap the reason
  says so, and further items on that PR wait (unsurfaced) until the window
  has room again — so a bot-to-bot ping-pong stops, and nothing is lost;
- the reason is bounded: excerpts are cut, and the whole text is capped —
  but never a pull request's header line nor the loop guard's notice, and an
  item cut out of the reason is not surfaced: it waits for the next wake.
"""

from __future__ import annotations

import datetime as dt
import itertools
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
        return read_state(data)[0]


def read_state(data: Mapping[str, Any]) -> tuple[RewakeState, tuple[str, ...]]:
    """The state stored as `data`, and the keys of the entries dropped from it: a time that does not
    parse or names no time zone (a hand edit, say) could not be compared with now. Pure."""
    dropped: list[str] = []
    surfaced: dict[str, dt.datetime] = {}
    for key, value in _entries(data, "surfaced", dropped):
        if (when := _parse(value)) is None:
            dropped.append(f"surfaced {key}")
        else:
            surfaced[key] = when
    wakes: dict[str, tuple[dt.datetime, ...]] = {}
    for key, values in _entries(data, "wakes", dropped):
        times = [_parse(t) for t in values] if isinstance(values, list) else [None]
        if None in times:
            dropped.append(f"wakes {key}")
        else:
            wakes[key] = tuple(t for t in times if t is not None)
    return RewakeState(surfaced, wakes), tuple(dropped)


def _entries(data: Mapping[str, Any], name: str, dropped: list[str]) -> list[tuple[str, Any]]:
    section = data.get(name) or {}
    if not isinstance(section, Mapping):
        dropped.append(name)
        return []
    return [(str(k), v) for k, v in section.items()]


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
    """Nothing to wake for; `held` lists PRs whose new items wait for the loop guard, until the
    first of them has room again (`until`; None when nothing is held)."""

    _fields = ("held", "until")

    __slots__ = _fields
    held: tuple[str, ...]
    until: dt.datetime | None

    def __init__(self, held: tuple[str, ...] = (), until: dt.datetime | None = None) -> None:
        fill(self, held, until)


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
    room_at: list[dt.datetime] = []
    wakes = dict(state.wakes)
    for pr, pr_items in by_pr.items():
        recent = wakes.get(pr, ())
        if len(recent) >= limits.wakes_per_pr_per_hour:
            held.append(pr)
            # The window has room once all but cap - 1 of its wakes are older than it.
            room_at.append(sorted(recent)[len(recent) - limits.wakes_per_pr_per_hour] + WINDOW)
            continue
        woken.extend(pr_items)
        wakes[pr] = (*recent, now)
        if len(wakes[pr]) >= limits.wakes_per_pr_per_hour:
            capped.append(pr)
    if not woken:
        return RewakeState(state.surfaced, wakes), Held(tuple(sorted(held)), min(room_at, default=None))

    prs = {p.pr: p for p in pull_requests}
    reason, shown = format_reason(woken, prs, capped, now, limits)
    surfaced = dict(state.surfaced)
    # Only what the reason shows is surfaced: an item cut from it is fresh at the next check.
    surfaced.update({item.key: now for item in shown})
    return RewakeState(surfaced, wakes), Wake(reason, shown, tuple(capped))


def _pruned(state: RewakeState, now: dt.datetime) -> RewakeState:
    surfaced = {k: t for k, t in state.surfaced.items() if now - t < SURFACED_KEPT_FOR}
    wakes = {pr: kept for pr, times in state.wakes.items() if (kept := tuple(t for t in times if now - t < WINDOW))}
    return RewakeState(surfaced, wakes)


def excerpt(text: str, limit: int) -> str:
    """One line, at most `limit` characters, cut with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)].rstrip() + "…"


INTRO = "New review activity on your pull requests. Answer every comment (fix it or say why not), then push."
# Under the length cap an excerpt is cut to what room is left, but not below this (unless the
# comment is shorter): the item waits for the next wake instead.
MIN_EXCERPT = 40


def format_reason(
    items: Sequence[Activity],
    prs: Mapping[str, PullRequest],
    capped: Sequence[str],
    now: dt.datetime,
    limits: Limits,
) -> tuple[str, tuple[Activity, ...]]:
    """The text the model reads as Stop-hook feedback, and the items it shows (in `items`' order).

    Each PR's header line (key, title, url) and the loop guard's notice are always there: the
    agent learns of every PR with activity, and that it will not be woken again for some. Within
    `limits.reason_chars` go the items, taken a PR at a time in turn so that none is crowded out,
    their excerpts cut to fit; those left out are said to wait for the next wake.
    """
    grouped: dict[str, list[Activity]] = {}
    for item in items:
        grouped.setdefault(item.pr, []).append(item)
    notice = _loop_guard_notice(capped, now, limits)
    full = {pr: [_item_line(i, limits.excerpt_chars) for i in pr_items] for pr, pr_items in grouped.items()}
    text = _assemble(grouped, prs, full, 0, notice)
    if len(text) <= limits.reason_chars:
        return text, tuple(items)

    budget = limits.reason_chars - len(_assemble(grouped, prs, {}, len(items), notice))
    lines: dict[str, list[str]] = {}
    shown: set[str] = set()
    for item in _in_turn(grouped):
        prefix = _item_prefix(item)
        room = budget - 1 - len(prefix)  # 1: the line's newline
        whole = excerpt(item.body, limits.excerpt_chars)
        if len(whole) <= room:
            cut = whole
        elif room >= MIN_EXCERPT:
            cut = excerpt(item.body, room)
        else:
            continue  # no room to show it usefully: it waits for the next wake
        lines.setdefault(item.pr, []).append(prefix + cut)
        budget -= len(prefix) + len(cut) + 1
        shown.add(item.key)
    rendered = tuple(i for i in items if i.key in shown)
    return _assemble(grouped, prs, lines, len(items) - len(rendered), notice), rendered


def _in_turn(grouped: Mapping[str, Sequence[Activity]]) -> list[Activity]:
    """Each PR's first item, then each one's second, and so on (each PR's in its order)."""
    return [i for row in itertools.zip_longest(*grouped.values()) for i in row if i is not None]


def _item_prefix(item: Activity) -> str:
    return f"  - {_describe(item)}: "


def _item_line(item: Activity, excerpt_chars: int) -> str:
    return _item_prefix(item) + excerpt(item.body, excerpt_chars)


def _loop_guard_notice(capped: Sequence[str], now: dt.datetime, limits: Limits) -> str | None:
    if not capped:
        return None
    until = (now + WINDOW).strftime("%H:%M UTC")
    return (
        f"Loop guard: this is the last wake this hour for {', '.join(capped)} "
        f"({limits.wakes_per_pr_per_hour} per PR per hour); newer activity there waits until {until}."
    )


def _assemble(
    grouped: Mapping[str, Sequence[Activity]],
    prs: Mapping[str, PullRequest],
    lines: Mapping[str, Sequence[str]],
    left_out: int,
    notice: str | None,
) -> str:
    out = [INTRO]
    for pr_key in grouped:
        pr = prs.get(pr_key)
        title = f' "{excerpt(pr.title, 120)}"' if pr else ""
        url = f" — {pr.url}" if pr else ""
        out += ["", f"{pr_key}{title}{url}", *lines.get(pr_key, ())]
    if left_out:
        out += ["", f"… {left_out} more item(s) not shown here: they come at your next wake (or read the PRs)."]
    if notice:
        out += ["", notice]
    return "\n".join(out)


def _describe(item: Activity) -> str:
    if item.kind == "thread":
        where = f"{item.path}:{item.line}" if item.path and item.line else (item.path or "a diff line")
        return f"{item.author} on {where} ({item.url})"
    if item.kind == "review":
        return f"{item.author} reviewed ({item.state or 'COMMENTED'}, {item.url})"
    return f"{item.author} commented ({item.url})"


def _parse(value: Any) -> dt.datetime | None:
    """An aware time from its ISO text; None for anything else."""
    try:
        when = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return when if when is not None and when.utcoffset() is not None else None
