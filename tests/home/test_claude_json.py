"""Seeding `.claude.json`: a pure merge that answers onboarding, trust and key approval ahead of time."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.home import api_key_suffix, seed_claude_json

WRITTEN_BY_THE_CLI = {
    "firstStartTime": "2026-11-25T01:41:40.083Z",
    "userID": "c1c9",
    "migrationVersion": 15,
    "projects": {"/work/other": {"allowedTools": ["Bash"], "hasTrustDialogAccepted": False, "lastCost": 0.5}},
    "customApiKeyResponses": {"approved": ["older-key-suffix"], "rejected": ["abcdefghij0123456789"]},
    "cachedGrowthBookFeatures": {"tengu_other": 3},
}


def test_a_fresh_seed() -> None:
    seeded = seed_claude_json(
        {}, version="2.1.331", trusted_dirs=["/work/alice"], approved_key_suffix="abcdefghij0123456789"
    )
    assert seeded == {
        "hasCompletedOnboarding": True,
        "lastOnboardingVersion": "2.1.331",
        "theme": "dark",
        "hasSeenAutoDefaultNudge": True,
        "projects": {
            "/work/alice": {
                "allowedTools": [],
                "hasTrustDialogAccepted": True,
                "hasCompletedProjectOnboarding": True,
            }
        },
        "customApiKeyResponses": {"approved": ["abcdefghij0123456789"], "rejected": []},
    }


def test_merging_keeps_what_the_cli_wrote() -> None:
    before = copy.deepcopy(WRITTEN_BY_THE_CLI)
    seeded = seed_claude_json(
        WRITTEN_BY_THE_CLI,
        version="2.1.331",
        trusted_dirs=["/work/other", "/work/alice"],
        approved_key_suffix="abcdefghij0123456789",
        theme="light",
        growthbook_features={"tengu_harbor": True},
    )
    assert before == WRITTEN_BY_THE_CLI, "the input is not modified"
    assert seeded["userID"] == "c1c9"
    assert seeded["migrationVersion"] == 15
    assert seeded["theme"] == "light"
    assert seeded["projects"]["/work/other"] == {
        "allowedTools": ["Bash"],
        "hasTrustDialogAccepted": True,
        "hasCompletedProjectOnboarding": True,
        "lastCost": 0.5,
    }
    assert seeded["projects"]["/work/alice"]["hasTrustDialogAccepted"] is True
    assert seeded["customApiKeyResponses"] == {
        "approved": ["older-key-suffix", "abcdefghij0123456789"],
        "rejected": [],
    }
    assert seeded["cachedGrowthBookFeatures"] == {"tengu_other": 3, "tengu_harbor": True}


def test_without_a_key_or_features_those_keys_are_left_alone() -> None:
    seeded = seed_claude_json({"customApiKeyResponses": "odd"}, version="1.0.0", trusted_dirs=[])
    assert seeded["customApiKeyResponses"] == "odd"
    assert "cachedGrowthBookFeatures" not in seeded
    assert seeded["projects"] == {}


def test_relative_trusted_dirs_are_refused() -> None:
    with pytest.raises(ValueError, match="must be an absolute path"):
        seed_claude_json({}, version="1", trusted_dirs=["work"])


def test_api_key_suffix_is_the_last_20_characters() -> None:
    assert api_key_suffix("x" * 30 + "abcdefghij0123456789") == "abcdefghij0123456789"
    assert api_key_suffix("short") == "short"


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
)
documents = st.dictionaries(
    st.sampled_from(["projects", "customApiKeyResponses", "cachedGrowthBookFeatures", "theme", "userID", "x"]),
    json_value,
)
dirs = st.lists(st.text(min_size=1, max_size=8).map(lambda s: "/" + s), max_size=3)


@settings(deadline=None)  # the build machine is shared; no timing in unit tests
@given(documents, dirs, st.one_of(st.none(), st.text(min_size=1, max_size=20)))
def test_seeding_is_idempotent_and_keeps_unrelated_keys(
    existing: dict[str, Any], trusted: list[str], suffix: str | None
) -> None:
    once = seed_claude_json(existing, version="2.1.331", trusted_dirs=trusted, approved_key_suffix=suffix)
    twice = seed_claude_json(once, version="2.1.331", trusted_dirs=trusted, approved_key_suffix=suffix)
    assert once == twice
    for directory in trusted:
        assert once["projects"][directory]["hasTrustDialogAccepted"] is True
    if suffix is not None:
        assert once["customApiKeyResponses"]["approved"].count(suffix) == 1
        assert suffix not in once["customApiKeyResponses"]["rejected"]
    for key in ("userID", "x"):
        if key in existing:
            assert once[key] == existing[key]
