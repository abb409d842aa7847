"""The code host: GitHub and GitHub Enterprise, REST and GraphQL.

`ForgeClient` talks to it (async, retrying, conditional); `unaddressed` decides,
purely, which review activity on an agent's pull requests still wants an answer.
"""

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
from agent_smith.forge.client import (
    REVIEW_ACTIVITY_QUERY,
    ForgeClient,
    InlineComment,
    OpenedPullRequest,
    parse_review_activity,
)
from agent_smith.forge.retry import GiveUp, RetryPolicy, Wait, decide

__all__ = [
    "REVIEW_ACTIVITY_QUERY",
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
    "unaddressed",
]
