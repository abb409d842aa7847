"""Where gh ran, read from the checkout as gh reads it: the repository it acts on (its remotes
on the forge's host, in gh's order), the head the checked-out branch's PR is found by (the
branch's upstream: a fork's is ``owner:branch``), and the branch a `gh pr merge --delete-branch`
left (HEAD's reflog). The readers are pure; `git_output` is the one call out."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from typing import NamedTuple

from agent_smith.hooks.recognise import repo_name


def git_output(directory: str, *args: str) -> str | None:
    """What `git -C directory args` printed, stripped; None when it failed or printed nothing."""
    try:
        found = subprocess.run(
            ["git", "-C", directory, *args], capture_output=True, text=True, timeout=5, check=False
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def git_remotes(directory: str) -> list[Remote]:
    """The checkout's remotes as gh reads them: `git remote -v` (URLs as rewritten by
    `url.*.insteadOf`) and the `gh-resolved` marks `gh repo set-default` leaves."""
    marks = git_output(directory, "config", "--get-regexp", r"^remote\..*\.gh-resolved$") or ""
    return parse_remotes(git_output(directory, "remote", "-v") or "", marks)


def merged_branch(directory: str, current: str) -> str:
    """The branch `gh pr merge --delete-branch` merged: gh checked out the default branch, pulled
    and deleted the merged one, so HEAD's reflog says which it left."""
    reflog = git_output(directory, "reflog", "show", "--date=unix", "--format=%gd%x00%gs", "-n", "50", "HEAD") or ""
    left = branch_left_for(current, parse_reflog(reflog), time.time())
    if left is None or git_output(directory, "rev-parse", "--verify", "-q", f"refs/heads/{left}") is not None:
        return current  # no switch of gh's, or the branch is still there: gh deleted nothing
    return left


def branch_config(directory: str, branch: str) -> BranchConfig:
    """`branch`'s upstream as gh reads it: ``git config --get-regexp '^branch\\.B\\.(remote|merge)$'``."""
    pattern = rf"^branch\.{re.escape(branch)}\.(remote|merge)$"
    return parse_branch_config(git_output(directory, "config", "--get-regexp", pattern) or "")


class BranchConfig(NamedTuple):
    """A branch's upstream: ``branch.B.remote`` (a remote's name, or a URL) and ``branch.B.merge``."""

    remote: str = ""
    merge: str = ""


def parse_branch_config(text: str) -> BranchConfig:
    """The upstream in `git config --get-regexp '^branch\\.B\\.(remote|merge)$'`'s lines. Pure."""
    found = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        found[key.rpartition(".")[2]] = value.strip()
    return BranchConfig(found.get("remote", ""), found.get("merge", ""))


_PR_HEAD_REF = re.compile(r"refs/pull/(\d+)/head")


def pr_head(branch: str, config: BranchConfig, remotes: Sequence[Remote], base_repo: str, host: str) -> str | int:
    """What gh looks up the PR of the checked-out `branch` by (gh 2.23's `parseCurrentBranch`):
    the PR's number when the branch merges ``refs/pull/N/head`` (as `gh pr checkout` of a fork's
    PR leaves it); else the head, the upstream's branch qualified ``owner:branch`` when the
    upstream (a remote on the forge's host, or a URL) is owned by another than `base_repo`'s owner,
    as a branch pushed to a fork is; else `branch` itself. Pure."""
    if match := _PR_HEAD_REF.fullmatch(config.merge):
        return int(match[1])
    remote = config.remote
    if ":" in remote:
        # A URL: gh takes its owner whatever its host.
        url_repo = remote_repo(remote, None)
    elif remote and remote != "." and not remote.startswith(("./", "/")):
        url_repo = next((remote_repo(r.url, host) for r in remotes if r.name == remote), None)
    else:
        url_repo = None  # no upstream, or one in a directory: no owner to say
    if url_repo is None:
        return branch
    owner = url_repo.partition("/")[0]
    name = config.merge.removeprefix("refs/heads/") if config.merge.startswith("refs/heads/") else branch
    return name if owner.lower() == base_repo.partition("/")[0].lower() else f"{owner}:{name}"


class Remote(NamedTuple):
    """A git remote as gh sees it: its name, fetch URL, and `gh-resolved` mark ("" when none)."""

    name: str
    url: str
    resolved: str = ""


def parse_remotes(remote_v: str, marks: str) -> list[Remote]:
    """Remotes from `git remote -v` and `git config --get-regexp 'remote.*.gh-resolved'`. Pure."""
    resolved: dict[str, str] = {}
    for line in marks.splitlines():
        key, _, value = line.partition(" ")
        if key.startswith("remote.") and key.endswith(".gh-resolved"):
            resolved[key[len("remote.") : -len(".gh-resolved")]] = value.strip()
    remotes: dict[str, Remote] = {}
    for line in remote_v.splitlines():
        name, _, rest = line.partition("\t")
        url, _, kind = rest.rpartition(" ")
        if name and url and kind == "(fetch)" and name not in remotes:
            remotes[name] = Remote(name, url, resolved.get(name, ""))
    return list(remotes.values())


def forge_host(base_url: str) -> str:
    """The host the forge's repositories are cloned from: GitHub's API is on another. Pure."""
    # Imported here: the Stop hook loads this module, and urllib.parse costs it ~1 ms.
    from urllib.parse import urlsplit

    host = (urlsplit(base_url).hostname or "").lower()
    return "github.com" if host == "api.github.com" else host


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>[^/].*)$")


def remote_repo(url: str, host: str | None) -> str | None:
    """``OWNER/REPO`` of a remote URL on `host` (https, ssh, git, or ``user@host:path``), on any
    host when `host` is None; None for another host or no repository path. Pure."""
    if "://" in url:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(url)
            url_host, path = parts.hostname or "", parts.path
        except ValueError:  # a malformed host or port
            return None
    elif match := _SCP_LIKE.match(url):
        url_host, path = match["host"], match["path"]
    else:
        return None
    url_host = url_host.lower()
    # gh counts github.com's own subdomains (ssh.github.com, www.github.com) as github.com.
    if url_host.endswith(".github.com"):
        url_host = "github.com"
    if host is not None and (not host or url_host != host):
        return None
    owner, _, rest = path.strip("/").partition("/")
    name = rest.split("/", 1)[0].removesuffix(".git")
    return repo_name(f"{owner}/{name}") if owner and name else None


def _remote_rank(name: str) -> int:
    return {"upstream": 0, "github": 1, "origin": 2}.get(name.lower(), 3)


def gh_base_repo(remotes: Sequence[Remote], host: str) -> str | None:
    """The repository gh acts on in a checkout with `remotes`, without `-R` and outside a
    terminal (gh's own rule): of the remotes on the forge's host, ordered upstream, github,
    origin, then the rest, the first one `gh repo set-default` marked (``base``, or the
    ``OWNER/REPO`` it names), else the first. Pure."""
    on_host = [(r, repo) for r in remotes if (repo := remote_repo(r.url, host))]
    on_host.sort(key=lambda pair: _remote_rank(pair[0].name))
    for remote, repo in on_host:
        if remote.resolved == "base":
            return repo
        if remote.resolved:
            return repo_name(remote.resolved)
    return on_host[0][1] if on_host else None


def parse_reflog(text: str) -> list[tuple[float, str]]:
    """(time, subject) of HEAD's reflog entries, newest first, from
    `git reflog show --date=unix --format=%gd%x00%gs`. Pure."""
    entries = []
    for line in text.splitlines():
        selector, _, subject = line.partition("\0")
        if match := re.fullmatch(r".*@\{(\d+)\}", selector):
            entries.append((float(match[1]), subject))
    return entries


_CHECKOUT = re.compile(r"checkout: moving from (?P<before>\S+) to (?P<after>\S+)")
# How long before the hook gh's checkout may have happened: the Bash tool's longest timeout.
SWITCH_WINDOW = 600.0


def branch_left_for(current: str, reflog: Sequence[tuple[float, str]], now: float) -> str | None:
    """The branch the newest checkout (within `SWITCH_WINDOW` of `now`) left for `current`;
    None when the newest checkout is older or went elsewhere. Pure."""
    for at, subject in reflog:
        if match := _CHECKOUT.fullmatch(subject):
            recent = now - SWITCH_WINDOW <= at <= now + SWITCH_WINDOW
            before = match["before"]
            return before if recent and match["after"] == current and before != current else None
    return None
