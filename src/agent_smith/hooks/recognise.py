"""Recognise a pull request opened, reviewed or merged in a PostToolUse payload. Pure.

Sources, as Claude Code reports them to the hook:
- the Bash tool running `gh pr create|review|merge` or `gh api` on a pull
  request (the command in `tool_input.command`, its output in
  `tool_response.stdout`/`stderr`);
- a forge MCP tool (`mcp__<server>__<tool>`) whose name says create/review/merge
  pull request, with the PR in its input (owner, repo, pull_number) or in its
  response (`html_url`).
Anything unrecognised is None: the hook then does nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Action = Literal["opened", "reviewed", "merged"]

PR_URL = re.compile(r"https?://[^\s/]+(?:/[^\s/]+)*?/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/pull/(?P<number>\d+)")
_API_PR = re.compile(r"^/?repos/(?P<owner>[\w.-]+)/(?P<repo>[\w.-]+)/pulls/(?P<number>\d+)(?P<rest>/[\w/]*)?$")
_GH_REVIEW_OUTPUT = (
    (re.compile(r"Approved pull request (?:[\w.-]+/[\w.-]+)?#(\d+)"), "APPROVED"),
    (re.compile(r"Requested changes to pull request (?:[\w.-]+/[\w.-]+)?#(\d+)"), "CHANGES_REQUESTED"),
    (re.compile(r"Reviewed pull request (?:[\w.-]+/[\w.-]+)?#(\d+)"), "COMMENTED"),
)
_GH_MERGED_OUTPUT = re.compile(
    r"(?:Merged|Squashed and merged|Rebased and merged) pull request (?:[\w.-]+/[\w.-]+)?#(\d+)"
)
_SEPARATORS = {"&&", "||", ";", "|", "&"}
_ALREADY_EXISTS = re.compile(r"a pull request for branch .* already exists", re.IGNORECASE)


@dataclass(frozen=True)
class PrAction:
    """A PR action. Without a `number`, the PR is `branch`'s (as gh's selector and the API's head
    label name it: ``branch`` of the repository's owner, ``owner:branch`` of a fork), or
    (`on_checkout`) that of the branch checked out where the command ran."""

    action: Action
    repo: str | None
    number: int | None
    url: str | None = None
    title: str | None = None
    review_state: str | None = None
    # Inline comments the review's request carried, where the command or tool shows them (a body
    # gh read from a file, or a pending review's earlier comments, it does not).
    comments: int | None = None
    branch: str | None = None
    on_checkout: bool = False
    # A new PR's branches, where the command or tool named them (else its delivery asks the forge).
    base: str | None = None
    head: str | None = None
    # gh named no repository (`repo` is None): it acted on that of the checkout it ran in.
    repo_of_checkout: bool = False
    # Where gh ran is the tool call's `cwd`: Claude Code reports the directory the shell ended in,
    # so a `cd` after gh, a subshell, or a cwd it reset, leaves where gh ran unknown.
    ran_in_cwd: bool = True
    # `gh pr merge --delete-branch` of the checked-out branch's PR: gh switched the checkout to
    # the default branch and deleted the merged one before the hook could read it.
    deleted_branch: bool = False


def recognise(payload: Mapping[str, Any]) -> PrAction | None:
    """The PR action a finished tool call performed, if any."""
    tool = str(payload.get("tool_name") or "")
    tool_input = payload.get("tool_input")
    tool_input = tool_input if isinstance(tool_input, Mapping) else {}
    output = _output_text(payload.get("tool_response"))
    if tool == "Bash":
        return _from_bash(str(tool_input.get("command") or ""), output)
    if tool.startswith("mcp__"):
        return _from_mcp(tool.rsplit("__", 1)[-1].lower(), tool_input, output)
    return None


def _output_text(response: Any) -> str:
    if isinstance(response, str):
        return response
    if isinstance(response, Mapping):
        parts = [str(response.get(k) or "") for k in ("stdout", "stderr", "output", "result")]
        content = response.get("content")
        if isinstance(content, Sequence) and not isinstance(content, str):
            parts.extend(str(c.get("text") or "") for c in content if isinstance(c, Mapping))
        return "\n".join(p for p in parts if p)
    if isinstance(response, Sequence):
        return "\n".join(str(c.get("text") or "") if isinstance(c, Mapping) else str(c) for c in response)
    return ""


# Pieces of a shell line as quoting makes them: an escape, a quoted string, a run of other
# non-blank characters, blanks, or a lone quote that closes nothing (possessive: linear).
SHELL_PIECES = re.compile(r"""\\.|'[^']*+'|"(?:[^"\\]++|\\.)*+"|[^\\'"\s]++|\s++|.""", re.DOTALL)
_LONG = 1000


def shortened(command: str) -> str:
    """`command` with each quoted string or word longer than 1000 characters cut to a stand-in
    (pure). No argument the hook reads is that long (a PR's body is), and shlex takes time
    quadratic in a token's length: a 1.6 MB body held the hook for 83 s, past its timeout."""
    if len(command) <= _LONG:
        return command
    return "".join(
        ("''" if piece[0] in "'\"" else "_") if len(piece) > _LONG else piece for piece in SHELL_PIECES.findall(command)
    )


_HEREDOC = re.compile(r"<<(-?)\s*(['\"]?)([A-Za-z_][\w-]*)\2")


def without_heredocs(command: str) -> str:
    """`command` without the bodies of its here-documents (pure): they are data, and a lone
    apostrophe in one ("Don't") would leave the shell words unbalanced."""
    lines = command.split("\n")
    kept: list[str] = []
    pending: list[tuple[bool, str]] = []
    for line in lines:
        if pending:
            tabs, end = pending[0]
            if (line.lstrip("\t") if tabs else line) == end:
                pending.pop(0)
            continue
        kept.append(line)
        pending = [(m.group(1) == "-", m.group(3)) for m in _HEREDOC.finditer(line)]
    return "\n".join(kept)


def simple_commands(command: str) -> list[list[str]]:
    """Simple commands of shell lines, split on && || ; | & and line ends (quotes respected)."""
    # A line end ends a command too (one inside quotes only changes that string, which is read
    # for nothing); a backslash before it continues the line.
    lines = without_heredocs(command).replace("\\\n", " ").replace("\n", " ; ")
    try:
        lexer = shlex.shlex(shortened(lines), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return []
    out: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            out.append([])
        else:
            out[-1].append(token)
    return [c for c in out if c]


def pflag(args: Sequence[str], takes_value: frozenset[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """(flags with their values, positional arguments) as pflag, gh's flag parser, reads `args`.

    Pure. A flag in `takes_value` takes one: ``--name value``, ``--name=value``, ``-n value``,
    ``-nvalue``, ``-n=value``, also at the end of a cluster of one-letter flags (``-dnvalue``,
    ``-dn value``). Any other flag's value is "" (or what follows its ``=``). ``--`` ends the flags.
    """
    flags: list[tuple[str, str]] = []
    positional: list[str] = []
    rest = iter(args)
    for arg in rest:
        if arg == "--":
            positional.extend(rest)
        elif arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in takes_value and not eq:
                value = next(rest, "")
            flags.append((name, value))
        elif arg.startswith("-") and len(arg) > 1:
            flags.extend(_cluster(arg[1:], rest, takes_value))
        else:
            positional.append(arg)
    return flags, positional


def _cluster(letters: str, rest: Iterator[str], takes_value: frozenset[str]) -> list[tuple[str, str]]:
    """One-letter flags given together (``-sd``); the first that takes a value takes what follows it
    in the cluster (one leading ``=`` dropped, as pflag does), else the next argument."""
    flags: list[tuple[str, str]] = []
    for at, letter in enumerate(letters):
        name, after = f"-{letter}", letters[at + 1 :]
        if after.startswith("="):
            return [*flags, (name, after[1:])]
        if name in takes_value:
            return [*flags, (name, after or next(rest, ""))]
        flags.append((name, ""))
    return flags


def _option(flags: Sequence[tuple[str, str]], *names: str) -> str | None:
    """The value of the last of `names` given (pflag keeps the last), None when none was."""
    return next((value for name, value in reversed(flags) if name in names), None)


_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_MOVES = frozenset({"cd", "pushd", "popd"})
_SUBSHELL = frozenset("();<>|&")  # what shlex makes a token of its own: `(` unquoted
# What Claude Code's Bash tool adds when it put the shell back in the project after a `cd` out of it.
_CWD_RESET = "Shell cwd was reset to "


def _from_bash(command: str, output: str) -> PrAction | None:
    commands = simple_commands(command)
    # `( … )` runs its `cd`s in a subshell the tool call's cwd knows nothing of.
    subshell = any(_SUBSHELL.issuperset(word) and {"(", ")"} & set(word) for words in commands for word in words)
    for index, words in enumerate(commands):
        # `GH_DEBUG=0 gh …` and `/usr/bin/gh …` run gh too; `GH_REPO=o/r gh …` names the repository.
        assignments = list(itertools.takewhile(_ASSIGNMENT.match, words))
        argv = words[len(assignments) :]
        if len(argv) < 2 or argv[0].rsplit("/", 1)[-1] != "gh" or {"-h", "--help"} & set(argv):
            continue
        if argv[1] == "api":
            found = _from_gh_api(argv[2:], output)
        elif argv[1] == "pr" and len(argv) > 2:
            env_repo = next((a.split("=", 1)[1] for a in reversed(assignments) if a.startswith("GH_REPO=")), None)
            found = _from_gh_pr(argv[2], argv[3:], output, repo_name(env_repo))
        else:
            found = None
        if found is not None:
            moved_after = any(later[:1] and later[0] in _MOVES for later in commands[index + 1 :])
            in_cwd = not (subshell or moved_after or _CWD_RESET in output)
            return found if in_cwd else replace(found, ran_in_cwd=False)
    return None


def repo_name(value: str | None) -> str | None:
    """``OWNER/REPO`` of a repository as gh takes it (``-R``, ``GH_REPO``): ``[HOST/]OWNER/REPO`` or
    a URL; None for anything else. Pure."""
    if not value:
        return None
    path = value.split("://", 1)[1].split("/", 1)[-1] if "://" in value else value
    parts = [p for p in path.split("/") if p]
    if len(parts) not in (2, 3) or (len(parts) == 3 and "://" in value):
        return None
    owner, name = parts[-2], parts[-1].removesuffix(".git")
    return f"{owner}/{name}" if _NAME.fullmatch(owner) and _NAME.fullmatch(name) else None


_NAME = re.compile(r"[\w.-]+")


# The flags of `gh pr <verb>` that take a value (for pflag's reading of a cluster like `-dR o/r`).
_PR_VALUE_FLAGS = {
    "create": frozenset(
        {"-R", "--repo", "-t", "--title", "-b", "--body", "-F", "--body-file", "-B", "--base", "-H", "--head"}
        | {"-a", "--assignee", "-l", "--label", "-m", "--milestone", "-p", "--project", "-r", "--reviewer"}
        | {"-T", "--template", "--recover"}
    ),
    "review": frozenset({"-R", "--repo", "-b", "--body", "-F", "--body-file"}),
    "merge": frozenset(
        {"-R", "--repo", "-b", "--body", "-F", "--body-file", "-t", "--subject", "-A", "--author-email"}
        | {"--match-head-commit"}
    ),
}
_API_VALUE_FLAGS = frozenset(
    {
        "-X",
        "--method",
        "-f",
        "--raw-field",
        "-F",
        "--field",
        "-H",
        "--header",
        "-q",
        "--jq",
        "-t",
        "--template",
        "--input",
        "--hostname",
        "--cache",
        "-p",
        "--preview",
    }
)


def _pr_ref(
    flags: Sequence[tuple[str, str]], target: str | None, output: str, env_repo: str | None, action: PrAction
) -> PrAction:
    """`action` with its PR as gh's arguments and output name it: a URL, a number, a branch, or
    nothing (the checked-out branch's). The repository is the one `-R` or `GH_REPO` names, else
    that of the checkout gh ran in (None here: the hook reads it). With no PR named, gh acts on the
    checked-out branch's, unless `-R` was given (gh then asks for one: `GH_REPO` does not)."""
    flag_repo = repo_name(_option(flags, "-R", "--repo"))
    named_repo = flag_repo or env_repo
    for text in (target or "", output):
        if match := PR_URL.search(text):
            return replace(
                action, repo=f"{match['owner']}/{match['repo']}", number=int(match["number"]), url=match.group(0)
            )
    action = replace(action, repo=named_repo, repo_of_checkout=named_repo is None)
    if target and (number := _number(target.lstrip("#"))) is not None:
        return replace(action, number=number)
    if action.number is not None:
        return action
    return replace(action, branch=target, on_checkout=target is None and flag_repo is None)


def _from_gh_pr(verb: str, args: Sequence[str], output: str, env_repo: str | None) -> PrAction | None:
    flags, positional = pflag(args, _PR_VALUE_FLAGS.get(verb, frozenset()))
    target = positional[0] if positional else None
    if verb == "create":
        match = PR_URL.search(output)
        if match is None or _ALREADY_EXISTS.search(output):
            return None  # gh failed, or points at the PR the branch already has: nothing was opened
        slug = f"{match['owner']}/{match['repo']}"
        return PrAction(
            "opened",
            slug,
            int(match["number"]),
            match.group(0),
            _option(flags, "-t", "--title"),
            base=_option(flags, "-B", "--base"),
            head=_branch(_option(flags, "-H", "--head")),
        )
    if verb == "review":
        state = _review_flag(flags)
        for pattern, said in _GH_REVIEW_OUTPUT:
            if found := pattern.search(output):
                reviewed = PrAction("reviewed", None, int(found.group(1)), review_state=said, comments=0)
                return _pr_ref(flags, target, output, env_repo, reviewed)
        # gh prints nothing on success when stdout is not a terminal (as in the Bash tool);
        # PostToolUse only runs for a command that succeeded.
        if state is None or _failed(output):
            return None
        # `gh pr review` posts a body and no inline comment.
        return _pr_ref(
            flags, target, output, env_repo, PrAction("reviewed", None, None, review_state=state, comments=0)
        )
    if verb == "merge":
        merged = _GH_MERGED_OUTPUT.search(output)
        if merged is None and (_failed(output) or {"--auto", "--disable-auto"} & {name for name, _ in flags}):
            return None  # failed, or only auto-merge was turned on or off: nothing merged yet
        number = int(merged.group(1)) if merged else None
        action = _pr_ref(flags, target, output, env_repo, PrAction("merged", None, number))
        return replace(action, deleted_branch=action.on_checkout and _deletes_branch(flags))
    return None


def _deletes_branch(flags: Sequence[tuple[str, str]]) -> bool:
    value = _option(flags, "-d", "--delete-branch")
    return value is not None and value.lower() not in ("false", "0", "f")


def _review_flag(flags: Sequence[tuple[str, str]]) -> str | None:
    given = {name for name, _ in flags}
    for names, state in (
        ({"-a", "--approve"}, "APPROVED"),
        ({"-r", "--request-changes"}, "CHANGES_REQUESTED"),
        ({"-c", "--comment"}, "COMMENTED"),
    ):
        if names & given:
            return state
    return None


_FAILURE = re.compile(
    r"^(?:X |error|failed|GraphQL:|HTTP \d{3}|could not|no pull requests? found)", re.IGNORECASE | re.MULTILINE
)


def _failed(output: str) -> bool:
    return bool(_FAILURE.search(output))


def _from_gh_api(args: Sequence[str], output: str) -> PrAction | None:
    flags, positional = pflag(args, _API_VALUE_FLAGS)
    path = positional[0] if positional else None
    if path is None or (match := _API_PR.fullmatch(path)) is None:
        return None
    repo, number = f"{match['owner']}/{match['repo']}", int(match["number"])
    rest = (match["rest"] or "").rstrip("/")
    response = _json_object(output)
    if rest == "/reviews" and response.get("state"):
        return PrAction(
            "reviewed",
            repo,
            number,
            _str(response.get("html_url")),
            review_state=str(response["state"]),
            comments=api_review_comments(flags),
        )
    if rest == "/merge" and response.get("merged") is True:
        return PrAction("merged", repo, number)
    return None


def api_review_comments(flags: Sequence[tuple[str, str]]) -> int | None:
    """How many inline comments the body `gh api` builds from its fields puts in a review's
    `comments` array; None when the body is a file or stdin (`--input`), which the hook cannot read.

    Pure. gh (2.23) reads the raw fields (`-f`) first, then the typed ones (`-F`): a
    `comments[][KEY]=…` goes into the array's last object unless that object has KEY already, or
    the last item is no object (`comments[]=…`); a bare `comments[]` empties the array.
    """
    if _option(flags, "--input") is not None:
        return None
    raw = [value for name, value in flags if name in ("-f", "--raw-field")]
    typed = [value for name, value in flags if name in ("-F", "--field")]
    count, last = 0, None  # the keys of the array's last object; None when the last item is none
    for field in raw + typed:
        keys, value = api_field_keys(field)
        if keys[:2] != ["comments", ""]:
            continue
        # gh reads `[]` after `[]` as one (`comments[][]=x` is `comments[]=x`).
        key = next((k for k in keys[2:] if k), None)
        if key is None:
            count, last = (count + 1, None) if value is not None else (0, None)
        elif last is None or key in last:
            count, last = count + 1, {key}
        else:
            last.add(key)
    return count


def api_field_keys(field: str) -> tuple[list[str], str | None]:
    """(keys, value) of a `gh api` field as gh splits ``key[sub][]=value``: ``["key", "sub", ""]``;
    the value is None without an ``=``. Pure."""
    keys: list[str] = []
    start = 0
    for at, char in enumerate(field):
        if char == "[":
            if start == 0:
                keys.append(field[:at])
            start = at + 1
        elif char == "]":
            keys.append(field[start:at])
        elif char == "=":
            if start == 0:
                keys.append(field[:at])
            return keys, field[at + 1 :]
    return keys, None


# Forge MCP tools that open, review or merge a PR, by name (GitHub's MCP server, and tools named
# after the REST operations). Those that read (get_pull_request_reviews…) or start a pending
# review act on nothing yet.
_MCP_OPEN = frozenset({"create_pull_request", "pulls_create"})
_MCP_MERGE = frozenset({"merge_pull_request", "pulls_merge"})
_MCP_REVIEW = frozenset(
    {
        "create_pull_request_review",
        "create_and_submit_pull_request_review",
        "submit_pending_pull_request_review",
        "pull_request_review_write",
        "pulls_create_review",
    }
)


def _from_mcp(tool: str, tool_input: Mapping[str, Any], output: str) -> PrAction | None:
    if tool not in _MCP_OPEN | _MCP_MERGE | _MCP_REVIEW:
        return None
    response = _json_object(output)
    url = _str(response.get("html_url")) or _str(response.get("url"))
    match = PR_URL.search(url or "") or PR_URL.search(output)
    owner, name = tool_input.get("owner"), tool_input.get("repo")
    repo = f"{owner}/{name}" if owner and name else (f"{match['owner']}/{match['repo']}" if match else None)
    raw_number = str(tool_input.get("pull_number") or tool_input.get("pullNumber") or response.get("number") or "")
    number = _number(raw_number)
    if number is None and match:
        number = int(match["number"])
    pr_url = match.group(0) if match else None
    if tool in _MCP_MERGE:
        if response.get("merged") is False:
            return None
        return PrAction("merged", repo, number, pr_url)
    if tool in _MCP_REVIEW:
        method = _str(tool_input.get("method"))
        state = _str(response.get("state")) or _str(tool_input.get("event"))
        if state is None or state.upper() == "PENDING" or method not in (None, "create", "submit_pending"):
            return None  # a pending review (no event yet), or one deleted
        return PrAction("reviewed", repo, number, pr_url, review_state=state, comments=_mcp_comments(tool, tool_input))
    if match is not None:
        return PrAction(
            "opened",
            repo,
            number,
            pr_url,
            _str(tool_input.get("title")) or _str(response.get("title")),
            base=_str(tool_input.get("base")) or branch_ref(response, "base"),
            head=_branch(_str(tool_input.get("head"))) or branch_ref(response, "head"),
        )
    return None


def _mcp_comments(tool: str, tool_input: Mapping[str, Any]) -> int | None:
    """The inline comments a review tool's call carried: its `comments` list; none without one,
    unless it submits a pending review, whose comments earlier calls added (unknown here)."""
    comments = tool_input.get("comments")
    if isinstance(comments, list):
        return len(comments)
    submits_pending = tool == "submit_pending_pull_request_review" or tool_input.get("method") == "submit_pending"
    if comments is not None or submits_pending:
        return None
    return 0


def _branch(head: str | None) -> str | None:
    """The branch a head names: a fork's is given as ``owner:branch``, as the forge's ``label``."""
    return head.rpartition(":")[2] or None if head else None


def branch_ref(pull: Mapping[str, Any], side: Literal["base", "head"]) -> str | None:
    """The branch name on one side of a pull request as the API describes it ({"base": {"ref": …}})."""
    end = pull.get(side)
    return _str(end.get("ref")) if isinstance(end, Mapping) else None


def _json_object(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _number(text: str) -> int | None:
    """A PR's number, in ASCII digits as gh and the API take one: "²" is a digit to `str.isdigit`
    but no number to `int`, and gh reads it as a branch."""
    return int(text) if text.isascii() and text.isdigit() else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
