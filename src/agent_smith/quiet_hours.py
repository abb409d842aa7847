"""Daily quiet windows in a time zone. Pure; light enough for the hooks' fast path."""

from __future__ import annotations

import datetime as dt


def parse_hhmm(text: str) -> dt.time:
    hours, _, minutes = text.partition(":")
    return dt.time(int(hours), int(minutes or 0))


def is_quiet(start: dt.time, end: dt.time, timezone: str, now: dt.datetime) -> bool:
    """Whether `now` (aware) falls in the daily window [start, end) of `timezone`.

    A window whose end is not after its start crosses midnight (22:00–07:00);
    start == end means no quiet time at all.
    """
    from zoneinfo import ZoneInfo  # here, not at the top: most agents have no quiet hours

    local = now.astimezone(ZoneInfo(timezone)).time().replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def quiet_until(start: dt.time, end: dt.time, timezone: str, now: dt.datetime) -> dt.datetime | None:
    """When the current quiet window ends (aware, in `timezone`), or None when not quiet now."""
    if not is_quiet(start, end, timezone, now):
        return None
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    candidate = dt.datetime.combine(local.date(), end, tzinfo=zone)
    return candidate if candidate > local else candidate + dt.timedelta(days=1)
