"""The channel's own pure decisions: how often a configured room that cannot be joined is tried again."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent_smith.chat.channel import (
    JOIN_MISSING_FIRST,
    JOIN_MISSING_MAX,
    JOIN_RETRY_FIRST,
    JOIN_RETRY_MAX,
    join_retry_delay,
)

failures = st.integers(min_value=1, max_value=10_000)


@given(failures, st.booleans())
def test_a_join_is_retried_ever_later_up_to_a_ceiling(n: int, missing: bool) -> None:
    delay = join_retry_delay(n, missing=missing)
    first, most = (JOIN_MISSING_FIRST, JOIN_MISSING_MAX) if missing else (JOIN_RETRY_FIRST, JOIN_RETRY_MAX)
    assert first <= delay <= most
    assert join_retry_delay(n + 1, missing=missing) >= delay


@given(failures)
def test_a_room_the_homeserver_does_not_know_waits_longer_than_a_passing_failure(n: int) -> None:
    assert join_retry_delay(n, missing=True) > join_retry_delay(n, missing=False)


def test_the_first_retries() -> None:
    assert [join_retry_delay(n, missing=False) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert join_retry_delay(1, missing=True) == 300.0
    assert join_retry_delay(100, missing=True) == 3600.0
