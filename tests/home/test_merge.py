"""The three-way settings merge: tables of cases and properties over arbitrary JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.home.merge import MISSING, merge3, merge_named, withdraw

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b", "c"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.sampled_from(["x", "y", "z", "hooks"]), json_values, max_size=4)


@pytest.mark.parametrize(
    ("existing", "previous", "new", "expected"),
    [
        pytest.param(MISSING, MISSING, {"a": 1}, {"a": 1}, id="fresh"),
        pytest.param({"a": 1, "mine": 2}, MISSING, {"a": 3}, {"a": 3, "mine": 2}, id="keeps-others"),
        pytest.param({"l": ["u", "c"]}, {"l": ["c"]}, {"l": ["c", "n"]}, {"l": ["u", "c", "n"]}, id="list-append"),
        pytest.param({"l": ["u", "old"]}, {"l": ["old"]}, {"l": ["n"]}, {"l": ["u", "n"]}, id="list-stale-dropped"),
        pytest.param({"gone": 1, "k": 0}, {"gone": 1}, {"k": 0}, {"k": 0}, id="stale-key-removed"),
        pytest.param({"gone": 9, "k": 0}, {"gone": 1}, {"k": 0}, {"gone": 9, "k": 0}, id="edited-stale-key-kept"),
        pytest.param({"d": {"a": 1, "b": 2}}, {"d": {"a": 1}}, {}, {"d": {"b": 2}}, id="nested-withdraw"),
        pytest.param({"d": {"a": 1}}, {"d": {"a": 1}}, {}, {}, id="nested-withdraw-empties"),
        pytest.param({"s": "user"}, MISSING, {"s": "crew"}, {"s": "crew"}, id="scalar-crew-wins"),
    ],
)
def test_merge3_cases(existing: Any, previous: Any, new: Any, expected: Any) -> None:
    assert merge3(existing, previous, new) == expected


@given(objects, objects, objects)
def test_a_second_merge_changes_nothing(
    existing: dict[str, Any], previous: dict[str, Any], new: dict[str, Any]
) -> None:
    once = merge3(existing, previous, new)
    assert merge3(once, new, new) == once


@given(objects, objects, objects)
def test_every_contribution_is_present_after_a_merge(
    existing: dict[str, Any], previous: dict[str, Any], new: dict[str, Any]
) -> None:
    merged = merge3(existing, previous, new)
    for key, value in new.items():
        if not isinstance(value, dict | list):
            assert merged[key] == value
        elif isinstance(value, list) and isinstance(existing.get(key), list):
            assert all(item in merged[key] for item in value)


@given(objects, objects, objects)
def test_merge_does_not_modify_its_arguments(
    existing: dict[str, Any], previous: dict[str, Any], new: dict[str, Any]
) -> None:
    copies = repr((existing, previous, new))
    merge3(existing, previous, new)
    assert repr((existing, previous, new)) == copies


def test_withdraw_keeps_what_someone_changed() -> None:
    assert withdraw("edited", "original") == "edited"
    assert withdraw("original", "original") is MISSING
    assert withdraw(["a", "b"], ["a"]) == ["b"]


def test_named_entries_are_replaced_whole() -> None:
    existing = {"ours": {"args": ["a", "b"]}, "theirs": {"args": ["x"]}, "stale": {"args": []}}
    previous = {"ours": {"args": ["a", "b"]}, "stale": {"args": []}}
    merged = merge_named(existing, previous, {"ours": {"args": ["b"]}})
    assert merged == {"ours": {"args": ["b"]}, "theirs": {"args": ["x"]}}
    assert merge_named(merged, {"ours": {"args": ["b"]}}, {"ours": {"args": ["b"]}}) == merged
    edited = merge_named({"stale": {"args": ["changed"]}}, previous, {})
    assert edited == {"stale": {"args": ["changed"]}}
