"""What the GitHub stand-in knows: users, repositories, pull requests and their talk.

Plain objects changed only through :class:`World`'s methods, which enforce the
rules GitHub enforces (no self-approval, comments only on diff lines, one open
pull request per head branch, …) and raise :class:`GitHubRefusal` otherwise.
The server holds :attr:`World.lock` around every request.
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent_smith.standins.github.gitstore import DiffStats, GitStore, Identity

__all__ = [
    "RATE_LIMIT",
    "RATE_RESET",
    "GitHubRefusal",
    "InlineComment",
    "IssueComment",
    "PullRequest",
    "Repository",
    "Review",
    "ReviewComment",
    "ReviewThread",
    "User",
    "World",
]


# GitHub's hourly budget per user; the stand-in never resets it within a test.
RATE_LIMIT = 5000
RATE_RESET = "2099-01-01T00:00:00Z"


class GitHubRefusal(Exception):
    """GitHub would refuse this: ``status`` is the REST status, ``headline`` its body's message
    and ``errors`` its ``errors[]``. GitHub keeps the particulars of a 422 out of the headline
    ("Validation Failed", "Unprocessable Entity") and in ``errors``: objects naming resource,
    field and code, or plain sentences (reviews). GraphQL says the particulars themselves:
    ``message`` (graphql-core reads that attribute for the error's message)."""

    def __init__(self, status: int, headline: str, errors: Sequence[str | dict[str, str]] = ()) -> None:
        self.message = _particulars(headline, errors)
        super().__init__(self.message)
        self.status = status
        self.headline = headline
        self.errors = list(errors)

    @classmethod
    def invalid(cls, resource: str, field: str, code: str = "invalid", message: str | None = None) -> GitHubRefusal:
        """REST's 422 "Validation Failed" over one field of `resource`."""
        error = {"resource": resource, "field": field, "code": code}
        return cls(422, "Validation Failed", [error | ({"message": message} if message else {})])

    @classmethod
    def custom(cls, resource: str, message: str) -> GitHubRefusal:
        """REST's 422 "Validation Failed" with a rule's own words."""
        return cls(422, "Validation Failed", [{"resource": resource, "code": "custom", "message": message}])

    @classmethod
    def unprocessable(cls, sentence: str) -> GitHubRefusal:
        """REST's 422 "Unprocessable Entity" with a sentence, as reviews are refused."""
        return cls(422, "Unprocessable Entity", [sentence])


def _particulars(headline: str, errors: Sequence[str | dict[str, str]]) -> str:
    said = [
        e if isinstance(e, str) else e.get("message") or f"{e['resource']}.{e['field']} is {e['code']}" for e in errors
    ]
    return ", ".join(said) or headline


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(prefix: str, number: int) -> str:
    packed = base64.urlsafe_b64encode(number.to_bytes(8, "big")).decode().rstrip("=")
    return f"{prefix}_kw{packed}"


@dataclass(eq=False)
class User:
    id: int
    login: str
    token: str
    name: str
    created_at: dt.datetime
    type: str = "User"

    @property
    def node_id(self) -> str:
        return node_id("U", self.id)

    @property
    def identity(self) -> Identity:
        return Identity(self.name, f"{self.id}+{self.login}@users.noreply.github.com")


@dataclass(eq=False)
class Repository:
    id: int
    owner: User
    name: str
    git: GitStore
    default_branch: str
    private: bool
    created_at: dt.datetime
    description: str = ""
    collaborators: set[str] = field(default_factory=set)
    # Those whose pull request was merged into the default branch: "previously committed to the
    # repository", GitHub's CONTRIBUTOR.
    contributors: set[str] = field(default_factory=set)
    next_number: int = 1
    # The repository this one was forked from; None for one that is no fork.
    parent: Repository | None = None

    @property
    def node_id(self) -> str:
        return node_id("R", self.id)

    @property
    def source(self) -> Repository:
        """The root of the fork network: GitHub's ``source`` (the repository itself when no fork)."""
        root = self
        while root.parent is not None:
            root = root.parent
        return root

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"

    def can_push(self, user: User) -> bool:
        return user is self.owner or user.login in self.collaborators

    def can_read(self, user: User | None) -> bool:
        return not self.private or (user is not None and self.can_push(user))

    def association(self, user: User) -> str:
        """`user`'s GitHub CommentAuthorAssociation with this repository (GraphQL `authorAssociation`,
        REST `author_association`). There are no organisations here, so no MEMBER; nor GitHub's
        first-time marks (FIRST_TIME_CONTRIBUTOR, FIRST_TIMER): an outsider with nothing merged is NONE,
        which trusts them no more than GitHub's marks would."""
        if user is self.owner:
            return "OWNER"
        if user.login in self.collaborators:
            return "COLLABORATOR"
        return "CONTRIBUTOR" if user.login in self.contributors else "NONE"


@dataclass(eq=False)
class ReviewComment:
    id: int
    thread: ReviewThread
    review: Review
    author: User
    body: str
    commit_id: str
    diff_hunk: str
    created_at: dt.datetime
    reply_to: ReviewComment | None = None

    @property
    def node_id(self) -> str:
        return node_id("PRRC", self.id)


@dataclass(eq=False)
class ReviewThread:
    id: int
    pull: PullRequest
    path: str
    line: int  # as first commented on; GitHub's original_line
    side: str
    original_position: int
    comments: list[ReviewComment] = field(default_factory=list)
    resolved_by: User | None = None

    @property
    def node_id(self) -> str:
        return node_id("PRRT", self.id)

    @property
    def original_commit(self) -> str:
        return self.comments[0].commit_id

    def anchor(self) -> tuple[int, int] | None:
        """(line, diff position) of the thread on the pull request's head now; None once
        outdated: a push changed or removed its line, or took it out of the diff."""
        pr = self.pull
        git = pr.repo.git
        head = pr.head_sha
        line = git.follow_line(self.original_commit, head, self.path, self.line)
        if line is None:
            return None
        found = git.locate(pr.base_sha, head, self.path, line)
        return None if found is None else (line, found[1])

    @property
    def is_resolved(self) -> bool:
        return self.resolved_by is not None


@dataclass(eq=False)
class Review:
    id: int
    pull: PullRequest
    author: User
    state: str
    body: str
    commit_id: str
    submitted_at: dt.datetime

    @property
    def node_id(self) -> str:
        return node_id("PRR", self.id)


@dataclass(eq=False)
class IssueComment:
    id: int
    pull: PullRequest
    author: User
    body: str
    created_at: dt.datetime

    @property
    def node_id(self) -> str:
        return node_id("IC", self.id)


@dataclass(eq=False)
class PullRequest:
    id: int
    repo: Repository
    number: int
    author: User
    title: str
    body: str
    head_ref: str
    base_ref: str
    draft: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    # Where `head_ref` lives: `repo` itself, or a fork of it (a cross-repository pull request).
    head_repo: Repository
    state: str = "OPEN"
    closed_at: dt.datetime | None = None
    merged_at: dt.datetime | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    # Once merged the branches may move on; GitHub keeps the shas it merged.
    frozen_head: str | None = None
    frozen_base: str | None = None
    requested_reviewers: list[User] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    threads: list[ReviewThread] = field(default_factory=list)
    comments: list[IssueComment] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return node_id("PR", self.id)

    @property
    def is_cross_repository(self) -> bool:
        return self.head_repo is not self.repo

    @property
    def head_label(self) -> str:
        """``owner:branch`` of the head, as REST's ``head.label`` and its ``?head=`` filter say it."""
        return f"{self.head_repo.owner.login}:{self.head_ref}"

    @property
    def head_sha(self) -> str:
        if self.frozen_head:
            return self.frozen_head
        if not self.is_cross_repository:
            return self.repo.git.rev_parse(self.head_ref) or ""
        # As GitHub does, the base repository keeps the fork's head as refs/pull/N/head, so that
        # diffs, review lines and merges find its commits where the base branch's are.
        ref = f"refs/pull/{self.number}/head"
        tip = self.head_repo.git.rev_parse(self.head_ref)
        if tip is not None and tip != self.repo.git.resolve(ref):
            self.repo.git.fetch_ref(self.head_repo.git, f"refs/heads/{self.head_ref}", ref)
        return self.repo.git.resolve(ref) or ""

    @property
    def base_sha(self) -> str:
        if self.frozen_base:
            return self.frozen_base
        return self.repo.git.rev_parse(self.base_ref) or ""

    def stats(self) -> DiffStats:
        return self.repo.git.stats(self.base_sha, self.head_sha)

    def mergeable(self) -> str:
        """GitHub's MergeableState: MERGEABLE, CONFLICTING (UNKNOWN never lingers here)."""
        if self.state == "MERGED":
            return "UNKNOWN"
        if self.repo.git.merge_tree(self.base_sha, self.head_sha) is None:
            return "CONFLICTING"
        return "MERGEABLE"

    def merge_state_status(self) -> str:
        if self.state != "OPEN":
            return "UNKNOWN"
        if self.draft:
            return "DRAFT"
        if self.mergeable() == "CONFLICTING":
            return "DIRTY"
        # BEHIND needs a branch protection rule asking for up-to-date branches; the
        # stand-in has no branch protection, so a clean merge is always CLEAN.
        return "CLEAN"


@dataclass(frozen=True)
class InlineComment:
    path: str
    line: int
    body: str
    side: str = "RIGHT"


class World:
    """All of the stand-in's state, with GitHub's rules on every change."""

    def __init__(self, root: Path, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.root = root
        self.lock = threading.RLock()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._ids = 1000
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repository] = {}
        self.nodes: dict[str, object] = {}
        # (login, "core" | "graphql") -> requests counted against the budget
        self.rate_used: dict[tuple[str, str], int] = {}

    def now(self) -> dt.datetime:
        return self._clock().replace(microsecond=0)

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _register(
        self,
        obj: User | Repository | PullRequest | Review | ReviewThread | ReviewComment | IssueComment,
    ) -> None:
        self.nodes[obj.node_id] = obj

    # -- users and repositories -------------------------------------------------

    def add_user(self, login: str, token: str, name: str | None = None) -> User:
        if login.lower() in (u.lower() for u in self.users):
            raise GitHubRefusal(422, f"login {login!r} is taken")
        user = User(self._next_id(), login, token, name or login, self.now())
        self.users[login] = user
        self._register(user)
        return user

    def user_by_token(self, token: str) -> User | None:
        for user in self.users.values():
            if user.token == token:
                return user
        return None

    def user(self, login: str) -> User:
        for key, user in self.users.items():
            if key.lower() == login.lower():
                return user
        raise GitHubRefusal(404, f"user {login!r} not found")

    def add_repo(
        self,
        owner: str,
        name: str,
        *,
        files: dict[str, str] | None = None,
        default_branch: str = "main",
        private: bool = False,
        collaborators: tuple[str, ...] = (),
    ) -> Repository:
        user = self.user(owner)
        key = f"{owner}/{name}".lower()
        if key in self.repos:
            raise GitHubRefusal(422, f"repository {owner}/{name} exists")
        git = GitStore(self.root / owner / f"{name}.git")
        git.init(default_branch)
        git.commit_files(default_branch, files or {"README.md": f"# {name}\n"}, "Initial commit", user.identity)
        repo = Repository(self._next_id(), user, name, git, default_branch, private, self.now())
        repo.collaborators.update(self.user(c).login for c in collaborators)
        self.repos[key] = repo
        self._register(repo)
        return repo

    def fork(
        self, parent: Repository, user: User, *, name: str | None = None, only_default: bool = False
    ) -> Repository:
        """``POST …/forks``: `user`'s fork of `parent` (the one they have, if they forked it before)."""
        if not parent.can_read(user):
            raise GitHubRefusal(404, "Not Found")
        if user is parent.owner:
            raise GitHubRefusal.custom("Repository", "A repository cannot be forked into its own owner's account")
        for repo in self.repos.values():
            if repo.owner is user and repo.parent is parent:
                return repo
        name = name or parent.name
        if f"{user.login}/{name}".lower() in self.repos:
            raise GitHubRefusal.invalid("Repository", "name", "custom", "name already exists on this account")
        git = GitStore(self.root / user.login / f"{name}.git")
        git.fork_from(parent.git, parent.default_branch, only_default=only_default)
        fork = Repository(
            self._next_id(), user, name, git, parent.default_branch, parent.private, self.now(), parent.description
        )
        fork.parent = parent
        self.repos[fork.full_name.lower()] = fork
        self._register(fork)
        return fork

    def forks(self, repo: Repository) -> list[Repository]:
        return [r for r in self.repos.values() if r.parent is repo]

    def repo(self, owner: str, name: str, viewer: User | None) -> Repository:
        repo = self.repos.get(f"{owner}/{name}".lower().removesuffix(".git"))
        if repo is None or not repo.can_read(viewer):
            raise GitHubRefusal(404, "Not Found")
        return repo

    # -- pull requests ----------------------------------------------------------

    def pull(self, repo: Repository, number: int) -> PullRequest:
        for pr in self.pulls(repo):
            if pr.number == number:
                return pr
        raise GitHubRefusal(404, "Not Found")

    def pulls(self, repo: Repository) -> list[PullRequest]:
        return [n for n in self.nodes.values() if isinstance(n, PullRequest) and n.repo is repo]

    def all_pulls(self) -> list[PullRequest]:
        return [n for n in self.nodes.values() if isinstance(n, PullRequest)]

    def open_pull(
        self,
        repo: Repository,
        author: User,
        *,
        head: str,
        base: str,
        title: str,
        body: str = "",
        draft: bool = False,
        head_repo: Repository | None = None,
    ) -> PullRequest:
        """A new pull request into `repo`'s `base` from `head`: a branch of `repo`, or
        ``owner:branch`` of the repository `owner` has in `repo`'s fork network (`head_repo`, when
        given, says which, as GraphQL's ``headRepositoryId``)."""
        owner, _, branch = head.rpartition(":")
        if head_repo is None:
            head_repo = self._network_repo(repo, owner) if owner else repo
        elif head_repo.source is not repo.source or (owner and owner.lower() != head_repo.owner.login.lower()):
            raise GitHubRefusal.invalid("PullRequest", "head_repo")
        if not head_repo.can_read(author) or not (head_repo.can_push(author) or repo.can_push(author)):
            # GitHub: "you must have write access to the head or the source branch".
            raise GitHubRefusal(403, "Must have push access to open a pull request here")
        if not title.strip():
            raise GitHubRefusal.invalid("PullRequest", "title", "missing_field")
        head_sha = head_repo.git.rev_parse(branch)
        if head_sha is None:
            raise GitHubRefusal.invalid("PullRequest", "head")
        base_sha = repo.git.rev_parse(base)
        if base_sha is None:
            raise GitHubRefusal.invalid("PullRequest", "base")
        if head_repo is not repo:
            repo.git.fetch_ref(head_repo.git, f"refs/heads/{branch}", f"refs/pull/{repo.next_number}/head")
        if head_sha == base_sha or repo.git.is_ancestor(head_sha, base_sha):
            raise GitHubRefusal.custom("PullRequest", f"No commits between {base} and {head}")
        for pr in self.pulls(repo):
            if pr.state == "OPEN" and pr.head_repo is head_repo and pr.head_ref == branch and pr.base_ref == base:
                raise GitHubRefusal.custom("PullRequest", f"A pull request already exists for {pr.head_label}.")
        now = self.now()
        pr = PullRequest(
            self._next_id(),
            repo,
            repo.next_number,
            author,
            title,
            body,
            branch,
            base,
            draft,
            now,
            now,
            head_repo,
        )
        repo.next_number += 1
        self._register(pr)
        return pr

    def _network_repo(self, repo: Repository, owner: str) -> Repository:
        """The repository `owner` has in `repo`'s fork network (`repo` itself when it is theirs)."""
        for candidate in [repo, *self.repos.values()]:
            if candidate.owner.login.lower() == owner.lower() and candidate.source is repo.source:
                return candidate
        raise GitHubRefusal.invalid("PullRequest", "head")

    def request_reviewers(self, pr: PullRequest, actor: User, logins: list[str]) -> None:
        if not pr.repo.can_push(actor):
            raise GitHubRefusal(403, "Must have push access to request reviewers")
        wanted = [next((u for u in self.users.values() if u.login.lower() == x.lower()), None) for x in logins]
        if pr.author in wanted:
            raise GitHubRefusal(422, "Review cannot be requested from pull request author.")
        found = [u for u in wanted if u is not None and pr.repo.can_push(u)]
        if len(found) < len(wanted):
            raise GitHubRefusal(
                422,
                "Reviews may only be requested from collaborators. One or more of the users or teams you "
                f"specified is not a collaborator of the {pr.repo.full_name} repository.",
            )
        pr.requested_reviewers += [u for u in dict.fromkeys(found) if u not in pr.requested_reviewers]
        pr.updated_at = self.now()

    def comment(self, pr: PullRequest, author: User, body: str) -> IssueComment:
        if not body.strip():
            raise GitHubRefusal.invalid("IssueComment", "body", "missing_field")
        c = IssueComment(self._next_id(), pr, author, body, self.now())
        pr.comments.append(c)
        pr.updated_at = c.created_at
        self._register(c)
        return c

    def review(
        self,
        pr: PullRequest,
        author: User,
        event: str,
        body: str = "",
        comments: tuple[InlineComment, ...] = (),
        commit_id: str | None = None,
    ) -> Review:
        if pr.state != "OPEN":
            raise GitHubRefusal.unprocessable("Pull request is closed")
        if author is pr.author and event in ("APPROVE", "REQUEST_CHANGES"):
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise GitHubRefusal.unprocessable(f"Can not {verb} your own pull request")
        if event == "REQUEST_CHANGES" and not body.strip():
            raise GitHubRefusal.unprocessable("Review body is required")
        if event == "COMMENT" and not body.strip() and not comments:
            raise GitHubRefusal.unprocessable("Review body is required")
        state = {
            "APPROVE": "APPROVED",
            "REQUEST_CHANGES": "CHANGES_REQUESTED",
            "COMMENT": "COMMENTED",
        }.get(event)
        if state is None:
            raise GitHubRefusal.unprocessable(f"Unknown review event {event!r}")
        head = pr.head_sha
        if commit_id and commit_id != head:
            raise GitHubRefusal.unprocessable("The stand-in reviews only the head commit")
        places = [self._locate(pr, c.path, c.line, c.side) for c in comments]
        review = Review(self._next_id(), pr, author, state, body, head, self.now())
        pr.reviews.append(review)
        self._register(review)
        for c, (hunk, position) in zip(comments, places, strict=True):
            thread = ReviewThread(self._next_id(), pr, c.path, c.line, c.side, position)
            pr.threads.append(thread)
            self._register(thread)
            self._add_thread_comment(thread, review, author, c.body, hunk, None)
        if author in pr.requested_reviewers:
            pr.requested_reviewers.remove(author)
        pr.updated_at = review.submitted_at
        return review

    def _locate(self, pr: PullRequest, path: str, line: int, side: str) -> tuple[str, int]:
        found = None
        if side == "RIGHT" and line > 0:
            found = pr.repo.git.locate(pr.base_sha, pr.head_sha, path, line)
        if found is None:
            raise GitHubRefusal.unprocessable(
                "Pull request review thread line must be part of the diff"
                " and Pull request review thread diff hunk can't be blank"
            )
        return found

    def _add_thread_comment(
        self,
        thread: ReviewThread,
        review: Review,
        author: User,
        body: str,
        hunk: str,
        reply_to: ReviewComment | None,
    ) -> ReviewComment:
        if not body.strip():
            raise GitHubRefusal.invalid("PullRequestReviewComment", "body", "missing_field")
        c = ReviewComment(
            self._next_id(),
            thread,
            review,
            author,
            body,
            thread.pull.head_sha,
            hunk,
            self.now(),
            reply_to,
        )
        thread.comments.append(c)
        self._register(c)
        return c

    def inline_comment(self, pr: PullRequest, author: User, comment: InlineComment, commit_id: str) -> ReviewComment:
        """A single review comment (REST ``POST …/pulls/N/comments``): its own review."""
        if commit_id != pr.head_sha:
            # GitHub takes any commit of the pull request; the stand-in anchors lines on its head only.
            field = "pull_request_review_thread.end_commit_oid"
            raise GitHubRefusal.invalid(
                "PullRequestReviewComment", field, "custom", f"{field} is not part of the pull request"
            )
        try:
            self._locate(pr, comment.path, comment.line, comment.side)
        except GitHubRefusal as refusal:
            # This endpoint says the review endpoint's "must be part of the diff" in its own words.
            raise GitHubRefusal.invalid(
                "PullRequestReviewComment", "pull_request_review_thread.line", "custom", "could not be resolved"
            ) from refusal
        review = self.review(pr, author, "COMMENT", "", (comment,))
        return review.pull.threads[-1].comments[-1]

    def reply(self, comment: ReviewComment, author: User, body: str) -> ReviewComment:
        thread = comment.thread
        pr = thread.pull
        review = Review(self._next_id(), pr, author, "COMMENTED", "", pr.head_sha, self.now())
        pr.reviews.append(review)
        self._register(review)
        root = thread.comments[0]
        reply = self._add_thread_comment(thread, review, author, body, root.diff_hunk, root)
        pr.updated_at = reply.created_at
        return reply

    def set_resolved(self, thread: ReviewThread, actor: User, resolved: bool) -> None:
        if not thread.pull.repo.can_push(actor) and actor is not thread.pull.author:
            raise GitHubRefusal(403, "Resource not accessible by integration")
        thread.resolved_by = actor if resolved else None

    def merge(
        self,
        pr: PullRequest,
        actor: User,
        method: str,
        *,
        title: str | None = None,
        body: str | None = None,
        expected_head: str | None = None,
    ) -> str:
        if not pr.repo.can_push(actor):
            raise GitHubRefusal(403, "Must have push access to merge this pull request")
        if pr.state != "OPEN":
            raise GitHubRefusal(405, "Pull Request is not mergeable")
        if pr.draft:
            raise GitHubRefusal(405, "Pull Request is still a draft")
        head = pr.head_sha
        if expected_head and expected_head != head:
            raise GitHubRefusal(409, "Head branch was modified. Review and try the merge again.")
        if method not in ("merge", "squash"):
            raise GitHubRefusal(405, f"{method.capitalize()} merges are not allowed on this repository.")
        if pr.mergeable() != "MERGEABLE":
            raise GitHubRefusal(405, "Pull Request is not mergeable")
        base = pr.base_sha
        if method == "squash":
            headline, default_body = f"{pr.title} (#{pr.number})", ""
        else:
            headline = f"Merge pull request #{pr.number} from {pr.head_repo.owner.login}/{pr.head_ref}"
            default_body = pr.title
        message = f"{title or headline}\n\n{body if body is not None else default_body}".strip()
        sha = pr.repo.git.merge(pr.base_ref, head, squash=method == "squash", message=message, who=actor.identity)
        now = self.now()
        pr.state = "MERGED"
        pr.frozen_head, pr.frozen_base = head, base
        pr.merged_at = pr.closed_at = pr.updated_at = now
        pr.merged_by = actor
        pr.merge_commit_sha = sha
        if pr.base_ref == pr.repo.default_branch:
            pr.repo.contributors.add(pr.author.login)
        return sha

    def delete_ref(self, repo: Repository, actor: User, ref: str) -> None:
        """``DELETE …/git/refs/{ref}``: only branches (``heads/…``) exist here."""
        if not repo.can_push(actor):
            raise GitHubRefusal(403, "Must have push access to delete a reference")
        branch = ref.removeprefix("heads/") if ref.startswith("heads/") else None
        sha = repo.git.rev_parse(branch) if branch else None
        if branch is None or sha is None:
            raise GitHubRefusal(422, "Reference does not exist")
        if branch == repo.default_branch:
            raise GitHubRefusal(422, "Cannot delete the default branch")
        if any(p.state == "OPEN" and p.base_ref == branch for p in self.pulls(repo)):
            # GitHub retargets or closes those pull requests; the stand-in does not model either.
            raise GitHubRefusal(422, f"the stand-in does not delete {branch}: open pull requests target it")
        for pr in self.all_pulls():
            if pr.state == "OPEN" and pr.head_repo is repo and pr.head_ref == branch:
                # As on GitHub: a pull request whose head branch is gone is closed.
                self.close(pr, actor)
        repo.git.delete_branch(branch, sha)

    def mark_ready(self, pr: PullRequest, actor: User) -> None:
        """A draft made ready for review (GraphQL ``markPullRequestReadyForReview``)."""
        if actor is not pr.author and not pr.repo.can_push(actor):
            raise GitHubRefusal(403, "Resource not accessible by integration")
        if pr.state != "OPEN":
            raise GitHubRefusal.unprocessable("Pull request is closed")
        if pr.draft:
            pr.draft = False
            pr.updated_at = self.now()

    def close(self, pr: PullRequest, actor: User) -> None:
        if actor is not pr.author and not pr.repo.can_push(actor):
            raise GitHubRefusal(403, "Must have push access to close this pull request")
        if pr.state == "OPEN":
            pr.frozen_head, pr.frozen_base = pr.head_sha, pr.base_sha
            pr.state = "CLOSED"
            pr.closed_at = pr.updated_at = self.now()
