"""The code host: GitHub and GitHub Enterprise, REST and GraphQL.

`ForgeClient` talks to it (async, retrying, conditional); `review_activity_once`
is the one-shot check for hooks; `unaddressed` decides, purely, which review
activity on an agent's pull requests still wants an answer. Exports load on
first use, so a hook importing the light parts never loads httpx.
"""

from __future__ import annotations

from agent_smith.deferred import names_from_parts

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.forge.activity import (
        Comment,
        Item,
        ItemKind,
        PullRequestActivity,
        Review,
        ReviewActivity,
        Thread,
        unaddressed,
    )
    from agent_smith.forge.client import ForgeClient, InlineComment, OpenedPullRequest
    from agent_smith.forge.oneshot import review_activity_once
    from agent_smith.forge.query import parse_review_activity, review_activity_request
    from agent_smith.forge.retry import GiveUp, RetryPolicy, Wait, decide

_WHERE = {
    "Comment": "activity",
    "Item": "activity",
    "ItemKind": "activity",
    "PullRequestActivity": "activity",
    "Review": "activity",
    "ReviewActivity": "activity",
    "Thread": "activity",
    "unaddressed": "activity",
    "ForgeClient": "client",
    "InlineComment": "client",
    "OpenedPullRequest": "client",
    "review_activity_once": "oneshot",
    "parse_review_activity": "query",
    "review_activity_request": "query",
    "GiveUp": "retry",
    "RetryPolicy": "retry",
    "Wait": "retry",
    "decide": "retry",
}

__all__ = [
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
]


__getattr__ = names_from_parts(__name__, _WHERE)
