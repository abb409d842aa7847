"""Seeding Claude Code's ``.claude.json`` so the CLI starts straight at its prompt, offline.

Without these keys the interactive CLI shows its onboarding (which calls
api.anthropic.com), asks to approve a custom API key, and asks whether to
trust the working directory — whose preselected answer quits. The seed
answers all of that ahead of time. It is a merge: whatever the CLI wrote
itself (ids, migrations, usage counters) is kept.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

API_KEY_SUFFIX_LENGTH = 20


def api_key_suffix(api_key: str) -> str:
    """What Claude Code records to remember an approved key: its last 20 characters."""
    return api_key[-API_KEY_SUFFIX_LENGTH:]


def seed_claude_json(
    existing: Mapping[str, Any],
    *,
    version: str,
    trusted_dirs: Iterable[str],
    approved_key_suffix: str | None = None,
    theme: str = "dark",
    growthbook_features: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`existing` with onboarding done, `trusted_dirs` trusted, and the key approved.

    `trusted_dirs` are absolute paths, as the CLI keys its ``projects`` map.
    `growthbook_features` pre-seeds the feature-flag cache the CLI would
    otherwise fetch (the test harness turns channels on this way).
    Pure: `existing` is not modified.
    """
    seeded: dict[str, Any] = copy.deepcopy(dict(existing))
    seeded.update(
        {
            "hasCompletedOnboarding": True,
            "lastOnboardingVersion": version,
            "theme": theme,
            "hasSeenAutoDefaultNudge": True,
        }
    )
    projects = seeded.get("projects")
    projects = dict(projects) if isinstance(projects, dict) else {}
    for directory in trusted_dirs:
        if not directory.startswith("/"):
            raise ValueError(f"trusted directory {directory!r} must be an absolute path")
        entry = projects.get(directory)
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry.setdefault("allowedTools", [])
        entry["hasTrustDialogAccepted"] = True
        entry["hasCompletedProjectOnboarding"] = True
        projects[directory] = entry
    seeded["projects"] = projects
    if approved_key_suffix is not None:
        responses = seeded.get("customApiKeyResponses")
        responses = dict(responses) if isinstance(responses, dict) else {}
        approved = [s for s in _strings(responses.get("approved")) if s != approved_key_suffix]
        rejected = [s for s in _strings(responses.get("rejected")) if s != approved_key_suffix]
        responses["approved"] = [*approved, approved_key_suffix]
        responses["rejected"] = rejected
        seeded["customApiKeyResponses"] = responses
    if growthbook_features:
        cached = seeded.get("cachedGrowthBookFeatures")
        cached = dict(cached) if isinstance(cached, dict) else {}
        cached.update(growthbook_features)
        seeded["cachedGrowthBookFeatures"] = cached
    return seeded


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
