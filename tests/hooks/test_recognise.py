"""Recognising PR actions in PostToolUse payloads: a table of what agents really run."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.hooks.recognise import SHELL_PIECES, PrAction, recognise, simple_commands

URL = "https://ghe.test/acme/widgets/pull/12"


def bash(command: str, stdout: str = "", stderr: str = "") -> dict[str, Any]:
    return {
        "hook_event_name": "PostToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "x"},
        "tool_response": {"stdout": stdout, "stderr": stderr, "interrupted": False, "isImage": False},
    }


CASES = [
    (
        bash('gh pr create --title "Add retries" --body "why" --base main', stdout=URL + "\n"),
        PrAction("opened", "acme/widgets", 12, URL, "Add retries", base="main"),
    ),
    (
        bash("gh pr create -t x -B release/2 --head=alice:fix", stdout=URL),
        PrAction("opened", "acme/widgets", 12, URL, "x", base="release/2", head="fix"),
    ),
    (
        bash("git push -u origin dev/retries && gh pr create -t 'Add retries' -b x", stdout=f"branch set up\n{URL}\n"),
        PrAction("opened", "acme/widgets", 12, URL, "Add retries"),
    ),
    (bash("gh pr create --title x", stderr="pull request create failed: GraphQL: No commits between main and x"), None),
    (
        bash("gh pr review 12 --approve -b 'LGTM'"),
        PrAction("reviewed", None, 12, None, review_state="APPROVED", comments=0, repo_of_checkout=True),
    ),
    (
        bash("gh pr review 12 -R acme/widgets --request-changes -b 'no'"),
        PrAction("reviewed", "acme/widgets", 12, None, review_state="CHANGES_REQUESTED", comments=0),
    ),
    (
        bash(f"gh pr review {URL} --comment -b 'hm'", stderr="- Reviewed pull request acme/widgets#12\n"),
        PrAction("reviewed", "acme/widgets", 12, URL, review_state="COMMENTED", comments=0),
    ),
    (
        bash("gh pr review 12 --approve", stderr="X Could not approve: GraphQL: Can not approve your own pull request"),
        None,
    ),
    (
        bash("gh pr merge 12 --merge --delete-branch", stderr="✓ Merged pull request #12 (Add retries)\n"),
        PrAction("merged", None, 12, None, repo_of_checkout=True),
    ),
    (bash("gh pr merge 12 -R acme/widgets --squash"), PrAction("merged", "acme/widgets", 12, None)),
    # -R and GH_REPO take [HOST/]OWNER/REPO or a URL, as gh does.
    (bash("gh pr merge 12 -R ghe.test/acme/widgets"), PrAction("merged", "acme/widgets", 12, None)),
    (bash("gh pr merge 12 --repo=https://ghe.test/acme/widgets.git"), PrAction("merged", "acme/widgets", 12, None)),
    (bash("GH_REPO=acme/other gh pr merge 12"), PrAction("merged", "acme/other", 12, None)),
    (bash("GH_REPO=nonsense gh pr merge 12"), PrAction("merged", None, 12, None, repo_of_checkout=True)),
    (
        bash(
            "gh pr merge 12", stderr="X Pull request #12 is not mergeable: the merge commit cannot be cleanly created."
        ),
        None,
    ),
    (
        bash(
            "gh api repos/acme/widgets/pulls/12/reviews -X POST -f event=APPROVE",
            stdout='{"id": 5, "state": "APPROVED", "html_url": "' + URL + '#pullrequestreview-5"}',
        ),
        PrAction("reviewed", "acme/widgets", 12, URL + "#pullrequestreview-5", review_state="APPROVED", comments=0),
    ),
    (
        bash("gh api -X PUT repos/acme/widgets/pulls/12/merge", stdout='{"merged": true, "sha": "abc1234"}'),
        PrAction("merged", "acme/widgets", 12, None),
    ),
    (bash("gh api repos/acme/widgets/pulls/12/comments -f body=x -f path=a.py -F line=3", stdout='{"id": 1}'), None),
    (bash("gh pr view 12 --comments", stdout="title: x"), None),
    (bash("echo 'gh pr merge 12'"), None),
    (
        bash("cat > NOTES.md <<'EOF'\nDon't forget\nEOF\ngh pr create -t Notes", stdout=URL),
        PrAction("opened", "acme/widgets", 12, URL, "Notes"),
    ),
    (
        bash("cat <<-END >> log\n\tit's \"odd\nEND\ngh pr merge 12 --squash"),
        PrAction("merged", None, 12, None, repo_of_checkout=True),
    ),
    (bash("GH_DEBUG=0 gh pr create -t Env", stdout=URL), PrAction("opened", "acme/widgets", 12, URL, "Env")),
    (bash("/usr/bin/gh pr create -t Path", stdout=URL), PrAction("opened", "acme/widgets", 12, URL, "Path")),
    (
        bash(
            "gh pr create -t Again || true",
            stderr=f'a pull request for branch "feat" into branch "main" already exists:\n{URL}',
        ),
        None,
    ),
    (bash("gh pr merge 12 --disable-auto"), None),
    # Without a number: a branch gh was given, else the checked-out branch's PR (where gh ran).
    (bash("gh pr merge feat/b --squash"), PrAction("merged", None, None, branch="feat/b", repo_of_checkout=True)),
    (bash("gh pr merge --squash"), PrAction("merged", None, None, on_checkout=True, repo_of_checkout=True)),
    (
        bash("gh pr review --approve"),
        PrAction("reviewed", None, None, review_state="APPROVED", comments=0, on_checkout=True, repo_of_checkout=True),
    ),
    # Claude Code reports the directory the shell ended in: where gh ran, unless a `cd` came after
    # it, a subshell ran it, or the tool reset a cwd that left the project.
    (
        bash("cd ../other && gh pr merge --squash"),
        PrAction("merged", None, None, on_checkout=True, repo_of_checkout=True),
    ),
    *(
        (
            bash(command, stderr=stderr),
            PrAction("merged", None, 12, None, repo_of_checkout=True, ran_in_cwd=False),
        )
        for command, stderr in (
            ("gh pr merge 12 && cd ..", ""),
            ("(cd ../other && gh pr merge 12)", ""),
            ("cd /srv/other && gh pr merge 12", "\nShell cwd was reset to /work/app"),
        )
    ),
    # --delete-branch of the checked-out branch's PR: gh switches away and deletes it.
    *(
        (
            bash(f"gh pr merge {args}"),
            PrAction("merged", None, None, on_checkout=True, repo_of_checkout=True, deleted_branch=True),
        )
        for args in ("--squash --delete-branch", "-d", "-sd", "--delete-branch=true")
    ),
    (
        bash("gh pr merge -ds -t x"),
        PrAction("merged", None, None, on_checkout=True, repo_of_checkout=True, deleted_branch=True),
    ),
    (bash("gh pr merge -td"), PrAction("merged", None, None, on_checkout=True, repo_of_checkout=True)),
    (bash("gh pr merge 12 -d"), PrAction("merged", None, 12, None, repo_of_checkout=True)),
    (bash("gh pr merge -R acme/other --squash"), PrAction("merged", "acme/other", None)),
    # gh asks for a PR with -R, but with GH_REPO it acts on the checked-out branch's PR.
    (
        bash("GH_REPO=acme/other gh pr merge --squash"),
        PrAction("merged", "acme/other", None, on_checkout=True),
    ),
    # gh's selector names a fork's branch `owner:branch`: the head it is found by.
    (bash("gh pr merge dave:fix -s"), PrAction("merged", None, None, branch="dave:fix", repo_of_checkout=True)),
    (bash("gh pr merge 12 --auto --squash"), None),
    (bash("gh pr merge --help", stdout="Merge a pull request on GitHub."), None),
    (bash("ls -la"), None),
    ({"tool_name": "Read", "tool_input": {"file_path": "/x"}, "tool_response": "gh pr create"}, None),
    (
        {
            "tool_name": "mcp__github__create_pull_request",
            "tool_input": {"owner": "acme", "repo": "widgets", "title": "Add retries", "head": "x", "base": "main"},
            "tool_response": [{"type": "text", "text": '{"number": 12, "html_url": "' + URL + '"}'}],
        },
        PrAction("opened", "acme/widgets", 12, URL, "Add retries", base="main", head="x"),
    ),
    (
        {
            "tool_name": "mcp__forge__pulls_create",
            "tool_input": {"owner": "acme", "repo": "widgets", "title": "T"},
            "tool_response": json.dumps(
                {"number": 12, "html_url": URL, "base": {"ref": "main"}, "head": {"ref": "dev/t", "sha": "abc"}}
            ),
        },
        PrAction("opened", "acme/widgets", 12, URL, "T", base="main", head="dev/t"),
    ),
    (
        {
            "tool_name": "mcp__github__merge_pull_request",
            "tool_input": {"owner": "acme", "repo": "widgets", "pullNumber": 12},
            "tool_response": {"content": [{"type": "text", "text": '{"merged": true}'}]},
        },
        PrAction("merged", "acme/widgets", 12, None),
    ),
    (
        {
            "tool_name": "mcp__github__merge_pull_request",
            "tool_input": {"owner": "acme", "repo": "widgets", "pullNumber": 12},
            "tool_response": {"content": [{"type": "text", "text": '{"merged": false, "message": "conflict"}'}]},
        },
        None,
    ),
    (
        {
            "tool_name": "mcp__github__create_pull_request_review",
            "tool_input": {"owner": "acme", "repo": "widgets", "pull_number": 12, "event": "REQUEST_CHANGES"},
            "tool_response": "{}",
        },
        PrAction("reviewed", "acme/widgets", 12, None, review_state="REQUEST_CHANGES", comments=0),
    ),
    ({"tool_name": "mcp__github__list_pull_requests", "tool_input": {}, "tool_response": "[]"}, None),
    # Reading reviews, or starting one that is still pending, is no review.
    *(
        (
            {
                "tool_name": f"mcp__github__{tool}",
                "tool_input": {"owner": "acme", "repo": "widgets", "pullNumber": 12, **extra},
                "tool_response": response,
            },
            None,
        )
        for tool, extra, response in (
            ("get_pull_request_reviews", {}, '[{"state": "APPROVED"}]'),
            ("get_pull_request_review_comments", {}, "[]"),
            ("create_pending_pull_request_review", {}, '{"state": "PENDING"}'),
            ("create_pull_request_review", {}, '{"state": "PENDING"}'),
            ("pull_request_review_write", {"method": "delete_pending"}, "{}"),
            ("pull_request_review_write", {"method": "create"}, "{}"),
        )
    ),
    (
        {
            "tool_name": "mcp__github__pull_request_review_write",
            "tool_input": {
                "method": "submit_pending",
                "owner": "acme",
                "repo": "widgets",
                "pullNumber": 12,
                "event": "APPROVE",
            },
            "tool_response": "{}",
        },
        PrAction("reviewed", "acme/widgets", 12, None, review_state="APPROVE"),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), CASES)
def test_recognise(payload: dict[str, Any], expected: PrAction | None) -> None:
    assert recognise(payload) == expected


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_payload_shape_is_handled(junk: Any) -> None:
    for payload in (
        {"tool_name": "Bash", "tool_input": junk, "tool_response": junk},
        {"tool_name": "mcp__x__merge_pull_request", "tool_input": {}, "tool_response": junk},
        {"tool_name": junk},
    ):
        result = recognise(payload)
        assert result is None or isinstance(result, PrAction)


@given(st.text(max_size=300))
def test_any_command_text_is_handled(command: str) -> None:
    result = recognise(bash(command, stdout=command))
    assert result is None or isinstance(result, PrAction)


@given(st.text())
def test_the_pieces_of_a_line_are_the_whole_line(text: str) -> None:
    assert "".join(SHELL_PIECES.findall(text)) == text


@given(
    st.lists(st.from_regex(r"[a-z0-9/=.-]{1,12}", fullmatch=True), min_size=1, max_size=6),
    st.integers(0, 6),
    st.sampled_from(["'", '"']),
    st.integers(1001, 4000),
)
def test_a_long_argument_is_cut_to_a_stand_in_and_the_others_are_kept(
    words: list[str], at: int, quote: str, length: int
) -> None:
    args = [*words[:at], quote + "w " * (length // 2) + quote, *words[at:]]
    command = "gh pr create " + " ".join(args) + " && echo done"
    [cut, echo] = simple_commands(command)
    assert cut == ["gh", "pr", "create", *words[:at], "", *words[at:]]
    assert echo == ["echo", "done"]


def test_a_pr_opened_with_a_body_of_megabytes_is_recognised() -> None:
    """shlex alone took 83 s on a 1.6 MB body (quadratic in a token's length): past the hook's timeout."""
    body = "word " * 400_000
    payload = bash(f'gh pr create --title "Add retries" --body "{body}" -R acme/widgets', stdout=URL + "\n")
    assert recognise(payload) == PrAction("opened", "acme/widgets", 12, URL, "Add retries")


# Every spelling pflag (gh's flag parser) takes for `-R`/`--repo`, alone or at the end of a
# cluster of one-letter flags that take no value.
REPO_SPELLINGS = [
    ["-R", "devbot/widgets"],
    ["-Rdevbot/widgets"],
    ["-R=devbot/widgets"],
    ["--repo", "devbot/widgets"],
    ["--repo=devbot/widgets"],
]


@given(
    st.sampled_from(["merge", "review"]),
    st.sampled_from(REPO_SPELLINGS),
    st.sampled_from([[], ["-d"], ["-s"], ["-c"], ["-a"]]),
    st.booleans(),
    st.booleans(),
)
def test_every_spelling_of_the_repository_flag_names_it(
    verb: str, spelling: list[str], before: list[str], clustered: bool, number_first: bool
) -> None:
    if clustered and before and spelling[0].startswith("-R"):
        flags = [before[0] + spelling[0][1:], *spelling[1:]]  # -dR x, -dRx, -dR=x
    else:
        flags = [*before, *spelling]
    words = ["gh", "pr", verb, *(["12", *flags] if number_first else [*flags, "12"])]
    if verb == "review" and not {"-c", "-a"} & set(before):
        words.append("--comment")
    action = recognise(bash(" ".join(words)))
    assert action is not None
    assert (action.repo, action.number, action.repo_of_checkout) == ("devbot/widgets", 12, False)


@pytest.mark.parametrize(
    ("command", "repo", "number"),
    [
        ("gh pr merge 1 -Rdevbot/widgets", "devbot/widgets", 1),
        ("gh pr merge 1 -R=devbot/widgets", "devbot/widgets", 1),
        ("gh pr review 3 -aRdevbot/widgets", "devbot/widgets", 3),
        ("gh pr merge -dsR devbot/widgets 4", "devbot/widgets", 4),
        # A value flag takes the rest of its cluster: here -b's value is "R", and -R is not given.
        ("gh pr review 5 -c -bR", None, 5),
        # pflag keeps the last value given; `--` ends the flags.
        ("gh pr merge 6 -R a/b --repo c/d", "c/d", 6),
        ("gh pr merge -R a/b -- 7", "a/b", 7),
    ],
)
def test_the_repository_flag_is_read_as_pflag_reads_it(command: str, repo: str | None, number: int) -> None:
    action = recognise(bash(command))
    assert action is not None
    assert (action.repo, action.number) == (repo, number)


def test_a_digit_that_is_no_number_names_a_branch_as_gh_reads_it() -> None:
    """The digit "²" is no number to `int` (the tool hook failed on it): gh reads it as a branch."""
    assert recognise(bash("gh pr merge ² --merge")) == PrAction("merged", None, None, branch="²", repo_of_checkout=True)
    merge = {"tool_name": "mcp__github__merge_pull_request", "tool_response": json.dumps({"merged": True})}
    assert recognise({**merge, "tool_input": {"owner": "acme", "repo": "widgets", "pull_number": "²"}}) == PrAction(
        "merged", "acme/widgets", None
    )


REVIEWED = '{"id": 5, "state": "COMMENTED", "html_url": "' + URL + '#pullrequestreview-5"}'


@pytest.mark.parametrize(
    ("fields", "comments"),
    [
        # Each count is that of the body gh 2.23 sent for these fields (GH_DEBUG=api).
        ("-f event=COMMENT -f body=x", 0),
        ("-f 'comments[][path]=a.py' -f 'comments[][body]=x' -F 'comments[][line]=3'", 1),
        ("-fcomments[][path]=a -fcomments[][path]=b", 2),
        ("--raw-field=comments[][path]=a --field comments[][line]=2", 1),
        # gh reads the -f fields first, then the -F ones: line=3 joins b's object, line=4 starts a third.
        (
            "-f 'comments[][path]=a' -f 'comments[][body]=x' -F 'comments[][line]=3' "
            "-f 'comments[][path]=b' -f 'comments[][body]=y' -F 'comments[][line]=4'",
            3,
        ),
        ("-f 'comments[][path]=a' -f 'comments[]' -f 'comments[][path]=b'", 1),
        ("-f 'comments[]'", 0),
        ("-f 'comments[][]=x' -f 'comments[][path]=a'", 2),
        ("-f 'comments[][][path]=a'", 1),
        ("-f 'comments[][path=x'", 1),
        ("-f 'comments[][body]=a=b[c]' -f 'comments[][path]=p'", 1),
        ("-f 'comments[][position][line]=a' -f 'comments[][position][side]=b'", 2),
        ("-f 'comment[][path]=a' -f 'comments[path]=b'", 0),
        # The body is a file gh reads: its comments are not in the command.
        ("--input review.json", None),
        ("--input \"$review\" -f 'comments[][path]=a'", None),
    ],
)
def test_an_api_review_counts_the_inline_comments_its_body_carries(fields: str, comments: int | None) -> None:
    action = recognise(bash(f"gh api -X POST repos/acme/widgets/pulls/12/reviews {fields}", stdout=REVIEWED))
    assert action is not None
    assert (action.review_state, action.comments) == ("COMMENTED", comments)


COMMENT_KEYS = ("body", "line", "side", "start_line", "start_side")
# A review comment as the API takes it: a `path`, with the other keys in any order before or after it.
A_COMMENT = (
    st.lists(st.sampled_from(COMMENT_KEYS), unique=True)
    .flatmap(lambda keys: st.permutations(["path", *keys]))
    .flatmap(lambda keys: st.fixed_dictionaries({key: st.text(min_size=1, max_size=8) for key in keys}))
)


@given(
    st.lists(A_COMMENT, max_size=6),
    st.sampled_from(["-f", "-F", "--raw-field", "--field="]),
    st.lists(st.sampled_from(["event=COMMENT", "body=ok", "commit_id=abc"]), max_size=3),
    st.integers(0, 10),
)
def test_every_comment_written_as_fields_is_counted(
    written: list[dict[str, str]], flag: str, others: list[str], at: int
) -> None:
    """Comments written one after the other as `comments[][KEY]=VALUE` fields, all of one kind
    (gh puts the -f fields before the -F ones), with other fields anywhere among them. Each is
    one object: the object gh is filling has the last comment's `path`, so this one's `path`, if
    no key before it, starts a new one."""
    fields = [f"comments[][{key}]={value}" for comment in written for key, value in comment.items()]
    fields[at:at] = others
    words = " ".join(
        f"{flag}{shlex.quote(field)}" if flag.endswith("=") else f"{flag} {shlex.quote(field)}" for field in fields
    )
    action = recognise(bash(f"gh api repos/acme/widgets/pulls/12/reviews {words}", stdout=REVIEWED))
    assert action is not None
    assert action.comments == len(written)


@pytest.mark.parametrize(
    ("tool", "tool_input", "comments"),
    [
        (
            "create_pull_request_review",
            {"event": "COMMENT", "comments": [{"path": "a", "line": 1, "body": "x"}] * 2},
            2,
        ),
        ("pulls_create_review", {"event": "APPROVE"}, 0),
        ("create_and_submit_pull_request_review", {"event": "COMMENT", "body": "x"}, 0),
        ("pull_request_review_write", {"method": "create", "event": "APPROVE"}, 0),
        # Submitting a pending review: its comments came with earlier calls.
        ("submit_pending_pull_request_review", {"event": "COMMENT"}, None),
        ("pull_request_review_write", {"method": "submit_pending", "event": "COMMENT"}, None),
        # Not a list: what the tool sent is not known.
        ("create_pull_request_review", {"event": "COMMENT", "comments": "[{}]"}, None),
    ],
)
def test_a_review_tool_counts_the_inline_comments_of_its_call(
    tool: str, tool_input: dict[str, Any], comments: int | None
) -> None:
    payload = {
        "tool_name": f"mcp__github__{tool}",
        "tool_input": {"owner": "acme", "repo": "widgets", "pullNumber": 12, **tool_input},
        "tool_response": "{}",
    }
    action = recognise(payload)
    assert action is not None
    assert action.comments == comments
