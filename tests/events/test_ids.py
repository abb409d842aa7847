from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.events.ids import ID_PATTERN, IdFactory, encode, timestamp_of


def test_ids_are_26_crockford_characters_and_carry_their_time() -> None:
    make = IdFactory(clock=lambda: 1_700_000_000.123)
    event_id = make()
    assert ID_PATTERN.match(event_id)
    assert timestamp_of(event_id) == datetime.fromtimestamp(1_700_000_000.123, tz=UTC).replace(microsecond=123000)


def test_ids_within_one_millisecond_still_sort_in_creation_order() -> None:
    make = IdFactory(clock=lambda: 1_700_000_000.0, random_bits=lambda: 5)
    ids = [make() for _ in range(1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000


def test_a_clock_stepping_back_does_not_break_the_order() -> None:
    times = iter([100.0, 99.0, 98.5, 101.0])
    make = IdFactory(clock=lambda: next(times))
    ids = [make() for _ in range(4)]
    assert ids == sorted(ids)


def test_an_exhausted_random_part_moves_to_the_next_millisecond() -> None:
    make = IdFactory(clock=lambda: 1.0, random_bits=lambda: (1 << 79) - 1)
    first, second = make(), make()
    assert second > first


@pytest.mark.parametrize(("millis", "randomness"), [(-1, 0), (1 << 48, 0), (0, 1 << 80)])
def test_encode_rejects_values_that_do_not_fit(millis: int, randomness: int) -> None:
    with pytest.raises(ValueError, match="fit"):
        encode(millis, randomness)


@given(st.lists(st.floats(min_value=0, max_value=2**40 / 1000, allow_nan=False), min_size=1, max_size=50))
def test_ids_from_one_factory_are_strictly_increasing_whatever_the_clock(clock_values: list[float]) -> None:
    values = iter(clock_values)
    make = IdFactory(clock=lambda: next(values))
    ids = [make() for _ in clock_values]
    assert all(a < b for a, b in itertools.pairwise(ids))


@given(st.integers(0, (1 << 48) - 1), st.integers(0, (1 << 80) - 1), st.integers(0, (1 << 48) - 1))
def test_encoding_preserves_order_of_time(m1: int, r1: int, m2: int) -> None:
    if m1 < m2:
        assert encode(m1, r1) < encode(m2, 0)
