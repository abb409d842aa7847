"""The Stop hook's watch and poll periods from the environment (pure)."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from agent_smith.hooks.entry import env_seconds


@given(st.one_of(st.text(), st.floats(allow_nan=True, allow_infinity=True).map(str), st.integers().map(str)))
def test_any_value_gives_a_finite_period_never_below_zero(value: str) -> None:
    seconds = env_seconds({"X": value}, "X", 3000.0)
    assert math.isfinite(seconds)
    assert seconds >= 0


def test_nan_and_infinity_are_no_period() -> None:
    for value in ("nan", "inf", "-inf", "soon"):
        assert env_seconds({"X": value}, "X", 3000.0) == 3000.0
    assert env_seconds({"X": "-5"}, "X", 3000.0) == 0.0
    assert env_seconds({"X": "90"}, "X", 3000.0) == 90.0
    assert env_seconds({}, "X", 3000.0) == 3000.0
