"""The hooks' entry: the Stop hook's periods from the environment, the payload, the first look (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.hooks.entry import env_seconds, may_be_pr_action, read_payload, unattended


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


def test_a_session_is_unattended_only_where_claude_code_says_so() -> None:
    # Claude Code's own variable: "0" in `claude -p`, which runs an asyncRewake hook in the foreground.
    assert unattended({"CLAUDE_CODE_SESSION_ATTENDED": "0"})
    assert not unattended({"CLAUDE_CODE_SESSION_ATTENDED": "1"})
    assert not unattended({})


@pytest.mark.parametrize(
    "raw", ["not json", "[1]", "", "[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000]
)
def test_a_payload_that_is_no_object_is_an_empty_one(raw: str) -> None:
    assert read_payload(raw) == {}


def test_forge_tools_named_after_the_rest_operations_get_a_closer_look() -> None:
    assert may_be_pr_action({"tool_name": "mcp__gh__pulls_create_review"})
    assert may_be_pr_action({"tool_name": "mcp__github__create_pull_request"})
    assert not may_be_pr_action({"tool_name": "mcp__github__search_code"})
