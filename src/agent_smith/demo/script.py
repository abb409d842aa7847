"""What the demo's two agents say and do: the scripted model's script, built from the run's facts.

Pure: the room id, repository and placeholders go in, a script mapping for
`agent_smith.standins.parse_script` comes out. Each turn waits (``when``) for
what really reaches the agent — the operator's message through the Matrix
channel, the announcement of the PR, the Stop hook's reason, a tool's result
— so the story advances only as fast as the real parts carry it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

REPLY_TOOL = "mcp__matrix__reply"
BRANCH = "fix/count-none"
PR_TITLE = "count(): treat None as an empty list"
SOURCE_FILE = "src/widgets.py"
TEST_FILE = "tests/test_widgets.py"
WIDGETS = "def widget(n):\n    return [n] * n\n\n\ndef count(ws):\n    return len(ws)\n"
FIXED_LINE = 6
"""The line of `SOURCE_FILE` the fix changes, where the reviewer comments."""
ASK = "please make count() in example/widgets treat None as an empty list, and get it reviewed."
REVIEW_COMMENT = "None and [] both count as 0 now; please add a test for count(None)."
ANNOUNCED = "opened a pull request for review"
"""Part of the PR announcement the tool hook posts (agent_smith.hooks), which wakes the reviewer."""
ADDRESSED = "addressed your comment"
APPROVED = "approved"
TEST_CODE = "from widgets import count\n\n\ndef test_count_none():\n    assert count(None) == 0\n"


@dataclass(frozen=True)
class Story:
    """The facts the script needs: where the agents talk, what they work on, who they are."""

    room_id: str
    repo: str
    developer: str
    reviewer: str
    reviewer_user: str
    developer_user: str
    refused_host: str
    pr_number: int = 1


def _bash(command: str, description: str) -> dict[str, Any]:
    return {"name": "Bash", "input": {"command": command, "description": description}}


def _reply(room_id: str, text: str) -> dict[str, Any]:
    return {"name": REPLY_TOOL, "input": {"room_id": room_id, "text": text}}


def developer_turns(story: Story) -> list[dict[str, Any]]:
    n = story.pr_number
    fix = (
        f"git switch -c {BRANCH} && sed -i 's/return len(ws)$/return len(ws or [])/' {SOURCE_FILE} "
        f'&& git commit -qam "count(): treat None as an empty list" && git push -q -u origin {BRANCH}'
    )
    open_pr = (
        f"gh pr create -R {story.repo} --base main --head {BRANCH} --title {shlex.quote(PR_TITLE)} "
        "--body 'Asked for in the crew room: count(None) now returns 0.'"
    )
    add_test = (
        f"mkdir -p tests && printf '%s' {shlex.quote(TEST_CODE)} > {TEST_FILE} && git add {TEST_FILE} "
        '&& git commit -qm "Test count(None)" && git push -q'
    )
    slack = (
        "curl -sS --max-time 10 -X POST https://"
        f'{story.refused_host}/services/T0/B0/demo -d \'{{"text": "merged {story.repo}#{n}"}}\''
    )
    return [
        {
            "when": {"contains": "count() in example/widgets"},
            "tool_calls": [_reply(story.room_id, "On it: I'll fix count() on a branch and open a pull request.")],
        },
        {"when": {"tool_result": True}, "tool_calls": [_bash(fix, "Branch, fix count(), commit and push")]},
        {"when": {"tool_result": True}, "tool_calls": [_bash(open_pr, "Open the pull request")]},
        {"when": {"tool_result": True}, "text": f"Opened {story.repo}#{n}; waiting for the review."},
        {"when": {"contains": REVIEW_COMMENT}, "tool_calls": [_bash(add_test, "Add the test the reviewer asked for")]},
        {
            "when": {"tool_result": True},
            "tool_calls": [
                _reply(
                    story.room_id,
                    f"@{story.reviewer} {ADDRESSED} on {story.repo}#{n}: count(None) has a test now. "
                    "Please take another look.",
                )
            ],
        },
        {"when": {"tool_result": True}, "text": "Pushed the test and told the reviewer."},
        {
            "when": {"contains": APPROVED},
            "tool_calls": [_bash(f"gh pr merge {n} -R {story.repo} --squash", "Merge the approved pull request")],
        },
        {"when": {"tool_result": True}, "tool_calls": [_bash(slack, "Tell the team's Slack about the merge")]},
        {
            "when": {"tool_result": True},
            "tool_calls": [
                _reply(
                    story.room_id,
                    f"Merged {story.repo}#{n}. {story.refused_host} is not on the egress allowlist "
                    "(the firewall refused it), so the news is here instead.",
                )
            ],
        },
        {"when": {"tool_result": True}, "text": "Done: merged, and the team knows."},
    ]


def reviewer_turns(story: Story) -> list[dict[str, Any]]:
    n = story.pr_number
    review = {
        "event": "COMMENT",
        "body": "One thing before I approve.",
        "comments": [{"path": SOURCE_FILE, "line": FIXED_LINE, "body": REVIEW_COMMENT}],
    }
    post_review = (
        f"review=$(mktemp) && printf '%s' {shlex.quote(json.dumps(review))} > \"$review\" && "
        f'gh api --method POST repos/{story.repo}/pulls/{n}/reviews --input "$review"'
    )
    approve = f"gh pr review {n} -R {story.repo} --approve --body 'The test covers it. Approved.'"
    return [
        {"when": {"contains": ANNOUNCED}, "tool_calls": [_bash(post_review, "Review the PR with an inline comment")]},
        {"when": {"tool_result": True}, "text": f"Reviewed {story.repo}#{n}: one inline comment on {SOURCE_FILE}."},
        {"when": {"contains": ADDRESSED}, "tool_calls": [_bash(approve, "Approve the pull request")]},
        {
            "when": {"tool_result": True},
            "tool_calls": [_reply(story.room_id, f"@{story.developer} {APPROVED} {story.repo}#{n}; merge when ready.")],
        },
        {"when": {"tool_result": True}, "text": f"Approved {story.repo}#{n}."},
    ]


def build_script(story: Story) -> dict[str, Any]:
    """The script mapping: the developer's and the reviewer's turns, in the order the story needs them."""
    return {
        "idle_text": "Standing by.",
        "agents": {story.developer: developer_turns(story), story.reviewer: reviewer_turns(story)},
    }
