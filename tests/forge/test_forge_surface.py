"""The public surfaces of forge and the GitHub stand-in, pinned (httpx's test_exported_members)."""

from __future__ import annotations

import agent_smith.forge
import agent_smith.standins.github


def test_forge_exports() -> None:
    assert set(agent_smith.forge.__all__) == {
        "Comment",
        "ForgeClient",
        "GiveUp",
        "InlineComment",
        "Item",
        "ItemKind",
        "OpenedPullRequest",
        "PullRequestActivity",
        "RetryPolicy",
        "Review",
        "ReviewActivity",
        "Thread",
        "Wait",
        "decide",
        "parse_review_activity",
        "review_activity_once",
        "review_activity_request",
        "unaddressed",
    }
    for name in agent_smith.forge.__all__:
        assert hasattr(agent_smith.forge, name)


def test_github_standin_exports() -> None:
    exported = agent_smith.standins.github.__all__
    assert "GitHubStandin" in exported
    assert "Faults" in exported
    for name in exported:
        assert hasattr(agent_smith.standins.github, name)
