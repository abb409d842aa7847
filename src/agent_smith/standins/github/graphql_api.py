"""GitHub's GraphQL API executed against GitHub's published schema.

The schema is ``schema.graphql`` from npm ``@octokit/graphql-schema``, so every
query is validated exactly as GitHub validates it: an unknown field or a wrong
argument fails here as it fails there. Resolvers are methods on thin views of
the stand-in's state, named after the schema's fields.

A field the stand-in does not model resolves to what GitHub answers for a
repository that never used the feature: null when nullable, an empty list or
connection when it is one (no labels, no projects, no check runs). A non-null
scalar or a mutation the stand-in does not model fails loudly rather than
invent a value or pretend a change.
"""

from __future__ import annotations

import base64
import functools
import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OverlappingFieldsCanBeMergedRule,
    build_schema,
    execute_sync,
    get_named_type,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.type import GraphQLInterfaceType, GraphQLUnionType

from agent_smith.standins.github.gitstore import ChangedFile, Identity
from agent_smith.standins.github.state import (
    RATE_LIMIT,
    RATE_RESET,
    GitHubRefusal,
    InlineComment,
    IssueComment,
    PullRequest,
    Repository,
    Review,
    ReviewComment,
    ReviewThread,
    User,
    World,
    iso,
)

__all__ = [
    "MAX_PAGE",
    "Connection",
    "GraphQLContext",
    "PageRefusal",
    "execute_query",
    "load_schema",
    "search_pulls",
    "view",
]

MAX_PAGE = 100  # the most records GitHub gives from one connection

# GitHub does not enforce this rule (gh's own `issue view` query breaks it).
_T = TypeVar("_T")

_RULES = tuple(r for r in specified_rules if r is not OverlappingFieldsCanBeMergedRule)


@functools.cache
def load_schema(path: Path) -> GraphQLSchema:
    """Build GitHub's schema once per process (it takes about a second)."""
    # The published file defines two fields twice; GitHub's own server accepts it.
    schema = build_schema(path.read_text(), assume_valid_sdl=True)
    for named in schema.type_map.values():
        if isinstance(named, GraphQLInterfaceType | GraphQLUnionType):
            named.resolve_type = _resolve_type
    return schema


def _resolve_type(value: Any, info: GraphQLResolveInfo, abstract: Any) -> str:
    return str(value.typename)


@dataclass(frozen=True)
class GraphQLContext:
    world: World
    viewer: User
    web: str
    operations: list[str] = field(default_factory=list)


def execute_query(
    schema: GraphQLSchema,
    ctx: GraphQLContext,
    query: str,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> dict[str, Any]:
    """One GraphQL request → the JSON body GitHub would answer with."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return {"errors": [_error(exc, None)]}
    problems = validate(schema, document, _RULES)
    if problems:
        return {"errors": [_invalid(p) for p in problems]}
    operation = get_operation_ast(document, operation_name)
    result = execute_sync(
        schema,
        document,
        root_value=_Root(ctx),
        context_value=ctx,
        variable_values=variables,
        operation_name=operation_name,
        field_resolver=_field_resolver,
    )
    body: dict[str, Any] = {"data": result.data}
    if operation is not None and operation.name is not None:
        ctx.operations.append(operation.name.value)
    if result.errors:
        body["errors"] = [_error(e, _error_type(e)) for e in result.errors]
    return body


def _error(exc: GraphQLError, kind: str | None) -> dict[str, Any]:
    # GitHub gives a `type` only to errors met while executing; a query it cannot parse or
    # validate gets none.
    shaped: dict[str, Any] = {"message": exc.message} if kind is None else {"type": kind, "message": exc.message}
    if exc.locations:
        shaped["locations"] = [{"line": loc.line, "column": loc.column} for loc in exc.locations]
    if exc.path:
        shaped["path"] = list(exc.path)
    return shaped


_UNDEFINED_FIELD = re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'\.")


def _invalid(exc: GraphQLError) -> dict[str, Any]:
    """A validation error as GitHub words the common one, an unknown field; others as graphql-core
    words them."""
    shaped = _error(exc, None)
    if m := _UNDEFINED_FIELD.match(exc.message):
        field_name, type_name = m.groups()
        shaped["message"] = f"Field '{field_name}' doesn't exist on type '{type_name}'"
        shaped["extensions"] = {"code": "undefinedField", "typeName": type_name, "fieldName": field_name}
    return shaped


class PageRefusal(Exception):
    """A connection asked for without bounds, or beyond them: GitHub's error ``type``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _error_type(exc: GraphQLError) -> str:
    original = exc.original_error
    if isinstance(original, PageRefusal):
        return original.kind
    if isinstance(original, GitHubRefusal):
        return {404: "NOT_FOUND", 403: "FORBIDDEN", 401: "UNAUTHORIZED"}.get(original.status, "UNPROCESSABLE")
    return "INTERNAL"


_MISSING = object()


def _field_resolver(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    _check_bounds(info, args)
    value = getattr(source, info.field_name, _MISSING)
    if value is _MISSING:
        return _unmodelled(info)
    if callable(value):
        return value(info, **args)
    return value


def _check_bounds(info: GraphQLResolveInfo, args: dict[str, Any]) -> None:
    """GitHub's limits on every connection, modelled or not: at most 100 records, and
    ``first`` or ``last`` whenever records (not only ``totalCount``) are asked for."""
    declared = info.parent_type.fields[info.field_name].args
    kind = get_named_type(info.return_type)
    if "first" not in declared or not kind.name.endswith("Connection"):
        return
    name = info.field_name
    for bound in ("first", "last"):
        n = args.get(bound)
        if n is not None and not 0 <= n <= MAX_PAGE:
            raise PageRefusal(
                "EXCESSIVE_PAGINATION",
                f"Requesting {n} records on the `{name}` connection exceeds the `{bound}` limit of {MAX_PAGE} records.",
            )
    if args.get("first") is None and args.get("last") is None and _asks_for_records(info):
        raise PageRefusal(
            "MISSING_PAGINATION_BOUNDARIES",
            f"You must provide a `first` or `last` value to properly paginate the `{name}` connection.",
        )


def _asks_for_records(info: GraphQLResolveInfo) -> bool:
    pending = [node.selection_set for node in info.field_nodes]
    while pending:
        selections = pending.pop()
        for sel in selections.selections if selections else ():
            if isinstance(sel, FieldNode):
                if sel.name.value in ("nodes", "edges"):
                    return True
            elif isinstance(sel, InlineFragmentNode):
                pending.append(sel.selection_set)
            elif isinstance(sel, FragmentSpreadNode) and sel.name.value in info.fragments:
                pending.append(info.fragments[sel.name.value].selection_set)
    return False


def _unmodelled(info: GraphQLResolveInfo) -> Any:
    if info.parent_type is info.schema.mutation_type:
        # A null payload with no error reads as success: the client would believe a change that
        # never happened (gh says "Reopened", "Edited").
        raise GraphQLError(f"the GitHub stand-in does not model the mutation {info.field_name}")
    kind = info.return_type
    inner = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
    if isinstance(inner, GraphQLList):
        return []
    if isinstance(inner, GraphQLObjectType) and inner.name.endswith("Connection"):
        return Connection([], {})
    if not isinstance(kind, GraphQLNonNull):
        return None
    raise GraphQLError(f"the GitHub stand-in does not model {info.parent_type.name}.{info.field_name}")


# -- connections -------------------------------------------------------------------


def _cursor(index: int) -> str:
    return base64.b64encode(f"cursor:v2:{index}".encode()).decode()


def _uncursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(base64.b64decode(cursor).decode().rsplit(":", 1)[1])
    except (ValueError, IndexError) as exc:
        raise GitHubRefusal(422, f"`{cursor}` does not appear to be a valid cursor.") from exc


class Connection:
    """A Relay connection over a list, paged by first/after/last/before like GitHub."""

    def __init__(self, items: Sequence[Any], args: dict[str, Any]) -> None:
        first, last = args.get("first"), args.get("last")
        start, end = 0, len(items)
        after, before = _uncursor(args.get("after")), _uncursor(args.get("before"))
        if after is not None:
            start = after + 1
        if before is not None:
            end = min(end, before)
        if first is not None:
            end = min(end, start + first)
        if last is not None:
            start = max(start, end - last)
        self._all = items
        self._start, self._end = start, end

    def nodes(self, info: GraphQLResolveInfo) -> list[Any]:
        return list(self._all[self._start : self._end])

    def edges(self, info: GraphQLResolveInfo) -> list[Any]:
        return [_Edge(_cursor(i), self._all[i]) for i in range(self._start, self._end)]

    def totalCount(self, info: GraphQLResolveInfo) -> int:
        return len(self._all)

    def pageInfo(self, info: GraphQLResolveInfo) -> _PageInfo:
        empty = self._start >= self._end
        return _PageInfo(
            hasNextPage=self._end < len(self._all),
            hasPreviousPage=self._start > 0,
            startCursor=None if empty else _cursor(self._start),
            endCursor=None if empty else _cursor(self._end - 1),
        )


@dataclass(frozen=True)
class _Edge:
    cursor: str
    node: Any


@dataclass(frozen=True)
class _PageInfo:
    hasNextPage: bool
    hasPreviousPage: bool
    startCursor: str | None
    endCursor: str | None


# -- views over the state ----------------------------------------------------------


def _ctx(info: GraphQLResolveInfo) -> GraphQLContext:
    ctx: GraphQLContext = info.context
    return ctx


def view(obj: object) -> Any:
    """The GraphQL view of a state object."""
    if isinstance(obj, User):
        return UserView(obj)
    if isinstance(obj, Repository):
        return RepositoryView(obj)
    if isinstance(obj, PullRequest):
        return PullRequestView(obj)
    if isinstance(obj, Review):
        return ReviewView(obj)
    if isinstance(obj, ReviewThread):
        return ThreadView(obj)
    if isinstance(obj, ReviewComment):
        return ReviewCommentView(obj)
    if isinstance(obj, IssueComment):
        return IssueCommentView(obj)
    raise GitHubRefusal(404, "Could not resolve to a node")


class UserView:
    typename = "User"

    def __init__(self, user: User) -> None:
        self.u = user
        self.id = user.node_id
        self.databaseId = user.id
        self.login = user.login
        self.name = user.name
        self.isSiteAdmin = False

    def url(self, info: GraphQLResolveInfo) -> str:
        return f"{_ctx(info).web}/{self.u.login}"

    def resourcePath(self, info: GraphQLResolveInfo) -> str:
        return f"/{self.u.login}"

    def avatarUrl(self, info: GraphQLResolveInfo, **_: Any) -> str:
        return f"{_ctx(info).web}/avatars/{self.u.login}"

    def createdAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.u.created_at)

    def updatedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.u.created_at)

    def isViewer(self, info: GraphQLResolveInfo) -> bool:
        return _ctx(info).viewer is self.u

    def pullRequests(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        ctx = _ctx(info)
        pulls = [p for p in ctx.world.all_pulls() if p.author is self.u and p.repo.can_read(ctx.viewer)]
        return _pull_connection(pulls, args)

    def repository(self, info: GraphQLResolveInfo, name: str, **_: Any) -> Any:
        return _repository(info, self.u.login, name)


def _repository(info: GraphQLResolveInfo, owner: str, name: str) -> RepositoryView:
    ctx = _ctx(info)
    try:
        return RepositoryView(ctx.world.repo(owner, name, ctx.viewer))
    except GitHubRefusal as exc:
        raise GitHubRefusal(404, f"Could not resolve to a Repository with the name '{owner}/{name}'.") from exc


def _pull_connection(pulls: list[PullRequest], args: dict[str, Any]) -> Connection:
    states = args.get("states")
    head, base = args.get("headRefName"), args.get("baseRefName")
    chosen = [
        p
        for p in pulls
        if (not states or p.state in states)
        and (head is None or p.head_ref == head)
        and (base is None or p.base_ref == base)
    ]
    order = args.get("orderBy") or {}
    by_update = order.get("field") == "UPDATED_AT"
    chosen.sort(
        key=lambda p: (p.updated_at if by_update else p.created_at, p.number),
        reverse=order.get("direction") == "DESC",
    )
    return Connection([PullRequestView(p) for p in chosen], args)


class RepositoryView:
    typename = "Repository"

    def __init__(self, repo: Repository) -> None:
        self.r = repo
        self.id = repo.node_id
        self.databaseId = repo.id
        self.name = repo.name
        self.nameWithOwner = repo.full_name
        self.isPrivate = repo.private
        self.isFork = repo.parent is not None
        self.isArchived = False
        self.isDisabled = False
        self.isEmpty = False
        self.isLocked = False
        self.isMirror = False
        self.isTemplate = False
        self.isInOrganization = False
        self.hasIssuesEnabled = True
        self.hasWikiEnabled = False
        self.hasProjectsEnabled = False
        self.hasDiscussionsEnabled = False
        self.mergeCommitAllowed = True
        self.squashMergeAllowed = True
        self.rebaseMergeAllowed = False
        self.autoMergeAllowed = False
        self.deleteBranchOnMerge = False
        self.forkingAllowed = True
        self.stargazerCount = 0
        self.visibility = "PRIVATE" if repo.private else "PUBLIC"
        self.description = repo.description or None

    def owner(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self.r.owner)

    def url(self, info: GraphQLResolveInfo) -> str:
        return f"{_ctx(info).web}/{self.r.full_name}"

    def sshUrl(self, info: GraphQLResolveInfo) -> str:
        return f"git@{_ctx(info).web.split('://', 1)[1]}:{self.r.full_name}.git"

    def resourcePath(self, info: GraphQLResolveInfo) -> str:
        return f"/{self.r.full_name}"

    def createdAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.r.created_at)

    def updatedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.r.created_at)

    def pushedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.r.created_at)

    def viewerPermission(self, info: GraphQLResolveInfo) -> str:
        viewer = _ctx(info).viewer
        if viewer is self.r.owner:
            return "ADMIN"
        return "WRITE" if self.r.can_push(viewer) else "READ"

    def viewerCanAdminister(self, info: GraphQLResolveInfo) -> bool:
        return _ctx(info).viewer is self.r.owner

    def defaultBranchRef(self, info: GraphQLResolveInfo) -> RefView:
        return RefView(self.r, self.r.default_branch)

    def ref(self, info: GraphQLResolveInfo, qualifiedName: str) -> RefView | None:
        name = qualifiedName.removeprefix("refs/heads/")
        return RefView(self.r, name) if self.r.git.rev_parse(name) else None

    def pullRequest(self, info: GraphQLResolveInfo, number: int) -> PullRequestView:
        try:
            return PullRequestView(_ctx(info).world.pull(self.r, number))
        except GitHubRefusal as exc:
            raise GitHubRefusal(404, f"Could not resolve to a PullRequest with the number of {number}.") from exc

    def pullRequests(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return _pull_connection(_ctx(info).world.pulls(self.r), args)

    def parent(self, info: GraphQLResolveInfo) -> RepositoryView | None:
        return RepositoryView(self.r.parent) if self.r.parent is not None else None

    def forkCount(self, info: GraphQLResolveInfo) -> int:
        return len(_ctx(info).world.forks(self.r))

    def forks(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        ctx = _ctx(info)
        readable = [RepositoryView(r) for r in ctx.world.forks(self.r) if r.can_read(ctx.viewer)]
        return Connection(readable, args)

    def viewerDefaultMergeMethod(self, info: GraphQLResolveInfo) -> str:
        return "MERGE"


class RefView:
    typename = "Ref"

    def __init__(self, repo: Repository, name: str) -> None:
        self.r = repo
        self.name = name
        self.prefix = "refs/heads/"
        self.id = f"REF_{repo.id}_{name}"

    def target(self, info: GraphQLResolveInfo) -> CommitView:
        return CommitView(self.r, self.r.git.rev_parse(self.name) or "")

    def repository(self, info: GraphQLResolveInfo) -> RepositoryView:
        return RepositoryView(self.r)


class CommitView:
    typename = "Commit"

    def __init__(self, repo: Repository, sha: str) -> None:
        self.r = repo
        self.oid = sha
        self.abbreviatedOid = sha[:7]
        self.id = f"C_{sha}"

    def message(self, info: GraphQLResolveInfo) -> str:
        return self.r.git.commit_message(self.oid)

    def messageHeadline(self, info: GraphQLResolveInfo) -> str:
        return self.r.git.commit_message(self.oid).split("\n", 1)[0]

    def messageBody(self, info: GraphQLResolveInfo) -> str:
        return self.r.git.commit_message(self.oid).partition("\n")[2].strip()

    def committedDate(self, info: GraphQLResolveInfo) -> str:
        return self.r.git.commit_date(self.oid)

    def authoredDate(self, info: GraphQLResolveInfo) -> str:
        return self.r.git.author_date(self.oid)

    def author(self, info: GraphQLResolveInfo) -> _GitActor:
        return _GitActor(self.r.git.commit_author(self.oid), self.r.git.author_date(self.oid))

    def authors(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return Connection([self.author(info)], args)

    def url(self, info: GraphQLResolveInfo) -> str:
        return f"{_ctx(info).web}/{self.r.full_name}/commit/{self.oid}"


class _GitActor:
    typename = "GitActor"

    def __init__(self, who: Identity, date: str) -> None:
        self.name = who.name
        self.email = who.email
        self.date = date

    def avatarUrl(self, info: GraphQLResolveInfo, **_: Any) -> str:
        return f"{_ctx(info).web}/avatars/u/{self.email}"

    def user(self, info: GraphQLResolveInfo) -> UserView | None:
        # GitHub links a commit to the account whose (noreply) address authored it.
        found = (u for u in _ctx(info).world.users.values() if u.identity.email == self.email)
        return next((UserView(u) for u in found), None)


class PullRequestView:
    typename = "PullRequest"

    def __init__(self, pr: PullRequest) -> None:
        self.p = pr
        self.id = pr.node_id
        self.databaseId = pr.id
        self.fullDatabaseId = str(pr.id)
        self.number = pr.number
        self.title = pr.title
        self.body = pr.body
        self.bodyText = pr.body
        self.state = pr.state
        self.isDraft = pr.draft
        self.closed = pr.state != "OPEN"
        self.merged = pr.state == "MERGED"
        self.locked = False
        self.headRefName = pr.head_ref
        self.baseRefName = pr.base_ref
        self.isCrossRepository = pr.is_cross_repository
        self.maintainerCanModify = False
        self.isInMergeQueue = False
        self.isMergeQueueEnabled = False
        self.createdViaEmail = False
        self.includesCreatedEdit = False
        self.canBeRebased = False

    def url(self, info: GraphQLResolveInfo) -> str:
        return f"{_ctx(info).web}/{self.p.repo.full_name}/pull/{self.p.number}"

    def permalink(self, info: GraphQLResolveInfo) -> str:
        return self.url(info)

    def resourcePath(self, info: GraphQLResolveInfo) -> str:
        return f"/{self.p.repo.full_name}/pull/{self.p.number}"

    def bodyHTML(self, info: GraphQLResolveInfo) -> str:
        return _html(self.p.body)

    def titleHTML(self, info: GraphQLResolveInfo) -> str:
        return _html(self.p.title)

    def author(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self.p.author)

    def authorAssociation(self, info: GraphQLResolveInfo) -> str:
        return self.p.repo.association(self.p.author)

    def repository(self, info: GraphQLResolveInfo) -> RepositoryView:
        return RepositoryView(self.p.repo)

    def baseRepository(self, info: GraphQLResolveInfo) -> RepositoryView:
        return RepositoryView(self.p.repo)

    def headRepository(self, info: GraphQLResolveInfo) -> RepositoryView:
        return RepositoryView(self.p.head_repo)

    def headRepositoryOwner(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self.p.head_repo.owner)

    def headRefOid(self, info: GraphQLResolveInfo) -> str:
        return self.p.head_sha

    def baseRefOid(self, info: GraphQLResolveInfo) -> str:
        return self.p.base_sha

    def headRef(self, info: GraphQLResolveInfo) -> RefView | None:
        if self.p.head_repo.git.rev_parse(self.p.head_ref) is None:
            return None
        return RefView(self.p.head_repo, self.p.head_ref)

    def baseRef(self, info: GraphQLResolveInfo) -> RefView | None:
        return RefView(self.p.repo, self.p.base_ref)

    def createdAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.p.created_at)

    def updatedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.p.updated_at)

    def publishedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.p.created_at)

    def lastEditedAt(self, info: GraphQLResolveInfo) -> None:
        return None

    def closedAt(self, info: GraphQLResolveInfo) -> str | None:
        return iso(self.p.closed_at) if self.p.closed_at else None

    def mergedAt(self, info: GraphQLResolveInfo) -> str | None:
        return iso(self.p.merged_at) if self.p.merged_at else None

    def mergedBy(self, info: GraphQLResolveInfo) -> UserView | None:
        return UserView(self.p.merged_by) if self.p.merged_by else None

    def mergeCommit(self, info: GraphQLResolveInfo) -> CommitView | None:
        sha = self.p.merge_commit_sha
        return CommitView(self.p.repo, sha) if sha else None

    def mergeable(self, info: GraphQLResolveInfo) -> str:
        return self.p.mergeable()

    def mergeStateStatus(self, info: GraphQLResolveInfo) -> str:
        return self.p.merge_state_status()

    def reviewDecision(self, info: GraphQLResolveInfo) -> None:
        # GitHub decides only under a branch protection rule that requires reviews, and answers
        # null without one, however the reviews went; the stand-in has no branch protection.
        return None

    def additions(self, info: GraphQLResolveInfo) -> int:
        return self.p.stats().additions

    def deletions(self, info: GraphQLResolveInfo) -> int:
        return self.p.stats().deletions

    def changedFiles(self, info: GraphQLResolveInfo) -> int:
        return self.p.stats().changed_files

    def files(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        changed = self.p.repo.git.changed_files(self.p.base_sha, self.p.head_sha)
        return Connection([_FileView(f) for f in changed], args)

    def commits(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        shas = self.p.repo.git.commits(self.p.base_sha, self.p.head_sha)
        return Connection([_PullCommit(self.p, sha) for sha in shas], args)

    def comments(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return Connection([IssueCommentView(c) for c in self.p.comments], args)

    def reviews(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        states = args.get("states")
        author = args.get("author")
        chosen = [
            r
            for r in self.p.reviews
            if (not states or r.state in states) and (author is None or r.author.login == author)
        ]
        return Connection([ReviewView(r) for r in chosen], args)

    def latestReviews(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        latest: dict[str, Review] = {}
        for r in self.p.reviews:
            if r.state != "COMMENTED" or r.author.login not in latest:
                latest[r.author.login] = r
        return Connection([ReviewView(r) for r in latest.values()], args)

    def latestOpinionatedReviews(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        latest: dict[str, Review] = {}
        for r in self.p.reviews:
            if r.state in ("APPROVED", "CHANGES_REQUESTED"):
                latest[r.author.login] = r
        return Connection([ReviewView(r) for r in latest.values()], args)

    def reviewThreads(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return Connection([ThreadView(t) for t in self.p.threads], args)

    def reviewRequests(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return Connection([_ReviewRequest(u) for u in self.p.requested_reviewers], args)

    def participants(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        people = [self.p.author, *(c.author for c in self.p.comments)]
        people += [r.author for r in self.p.reviews]
        unique = list(dict.fromkeys(people))
        return Connection([UserView(u) for u in unique], args)

    def viewerDidAuthor(self, info: GraphQLResolveInfo) -> bool:
        return _ctx(info).viewer is self.p.author

    def viewerCanUpdate(self, info: GraphQLResolveInfo) -> bool:
        return self.p.repo.can_push(_ctx(info).viewer)


def _html(text: str) -> str:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<p>{escaped}</p>" if escaped else ""


class _FileView:
    typename = "PullRequestChangedFile"

    def __init__(self, changed: ChangedFile) -> None:
        self.path = changed.path
        self.additions = changed.additions
        self.deletions = changed.deletions
        self.changeType = changed.change_type
        self.viewerViewedState = "UNVIEWED"  # the stand-in has no web UI to view files in


class _PullCommit:
    typename = "PullRequestCommit"

    def __init__(self, pr: PullRequest, sha: str) -> None:
        self.p = pr
        self.sha = sha
        self.id = f"PURC_{pr.id}_{sha}"

    def commit(self, info: GraphQLResolveInfo) -> CommitView:
        return CommitView(self.p.repo, self.sha)

    def url(self, info: GraphQLResolveInfo) -> str:
        return f"{_ctx(info).web}/{self.p.repo.full_name}/pull/{self.p.number}/commits/{self.sha}"


class _ReviewRequest:
    typename = "ReviewRequest"

    def __init__(self, user: User) -> None:
        self.u = user
        self.id = f"RR_{user.id}"
        self.asCodeOwner = False

    def requestedReviewer(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self.u)


class _CommentBase:
    """Fields every comment-like object shares (Comment interface)."""

    typename = ""

    def __init__(self, author: User, body: str, created: Any, repo: Repository) -> None:
        self._author = author
        self._repo = repo
        self.body = body
        self.bodyText = body
        self.includesCreatedEdit = False
        self.isMinimized = False
        self.minimizedReason = None
        self.createdViaEmail = False
        self._created = iso(created)

    def author(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self._author)

    def authorAssociation(self, info: GraphQLResolveInfo) -> str:
        return self._repo.association(self._author)

    def bodyHTML(self, info: GraphQLResolveInfo) -> str:
        return _html(self.body)

    def createdAt(self, info: GraphQLResolveInfo) -> str:
        return self._created

    def updatedAt(self, info: GraphQLResolveInfo) -> str:
        return self._created

    def publishedAt(self, info: GraphQLResolveInfo) -> str:
        return self._created

    def lastEditedAt(self, info: GraphQLResolveInfo) -> None:
        return None

    def viewerDidAuthor(self, info: GraphQLResolveInfo) -> bool:
        return _ctx(info).viewer is self._author


class IssueCommentView(_CommentBase):
    typename = "IssueComment"

    def __init__(self, c: IssueComment) -> None:
        super().__init__(c.author, c.body, c.created_at, c.pull.repo)
        self.c = c
        self.id = c.node_id
        self.databaseId = c.id
        self.fullDatabaseId = str(c.id)

    def url(self, info: GraphQLResolveInfo) -> str:
        p = self.c.pull
        return f"{_ctx(info).web}/{p.repo.full_name}/pull/{p.number}#issuecomment-{self.c.id}"

    def pullRequest(self, info: GraphQLResolveInfo) -> PullRequestView:
        return PullRequestView(self.c.pull)


class ReviewView(_CommentBase):
    typename = "PullRequestReview"

    def __init__(self, r: Review) -> None:
        super().__init__(r.author, r.body, r.submitted_at, r.pull.repo)
        self.r = r
        self.id = r.node_id
        self.databaseId = r.id
        self.fullDatabaseId = str(r.id)
        self.state = r.state
        self.authorCanPushToRepository = r.pull.repo.can_push(r.author)

    def submittedAt(self, info: GraphQLResolveInfo) -> str:
        return iso(self.r.submitted_at)

    def url(self, info: GraphQLResolveInfo) -> str:
        p = self.r.pull
        return f"{_ctx(info).web}/{p.repo.full_name}/pull/{p.number}#pullrequestreview-{self.r.id}"

    def commit(self, info: GraphQLResolveInfo) -> CommitView:
        return CommitView(self.r.pull.repo, self.r.commit_id)

    def pullRequest(self, info: GraphQLResolveInfo) -> PullRequestView:
        return PullRequestView(self.r.pull)

    def comments(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        mine = [c for t in self.r.pull.threads for c in t.comments if c.review is self.r]
        return Connection([ReviewCommentView(c) for c in mine], args)


class ThreadView:
    typename = "PullRequestReviewThread"

    def __init__(self, t: ReviewThread) -> None:
        self.t = t
        self.id = t.node_id
        self.path = t.path
        self.originalLine = t.line
        self.startLine = None
        self.originalStartLine = None
        self.diffSide = t.side
        self.startDiffSide = None
        self.isCollapsed = t.is_resolved
        self.subjectType = "LINE"

    def line(self, info: GraphQLResolveInfo) -> int | None:
        anchor = self.t.anchor()
        return anchor[0] if anchor else None

    def isOutdated(self, info: GraphQLResolveInfo) -> bool:
        return self.t.anchor() is None

    def isResolved(self, info: GraphQLResolveInfo) -> bool:
        return self.t.is_resolved

    def resolvedBy(self, info: GraphQLResolveInfo) -> UserView | None:
        return UserView(self.t.resolved_by) if self.t.resolved_by else None

    def viewerCanResolve(self, info: GraphQLResolveInfo) -> bool:
        viewer = _ctx(info).viewer
        return not self.t.is_resolved and (self.t.pull.repo.can_push(viewer) or viewer is self.t.pull.author)

    def viewerCanUnresolve(self, info: GraphQLResolveInfo) -> bool:
        viewer = _ctx(info).viewer
        return self.t.is_resolved and (self.t.pull.repo.can_push(viewer) or viewer is self.t.pull.author)

    def viewerCanReply(self, info: GraphQLResolveInfo) -> bool:
        return True

    def comments(self, info: GraphQLResolveInfo, **args: Any) -> Connection:
        return Connection([ReviewCommentView(c) for c in self.t.comments], args)

    def pullRequest(self, info: GraphQLResolveInfo) -> PullRequestView:
        return PullRequestView(self.t.pull)

    def repository(self, info: GraphQLResolveInfo) -> RepositoryView:
        return RepositoryView(self.t.pull.repo)


class ReviewCommentView(_CommentBase):
    typename = "PullRequestReviewComment"

    def __init__(self, c: ReviewComment) -> None:
        super().__init__(c.author, c.body, c.created_at, c.thread.pull.repo)
        self.c = c
        self.id = c.node_id
        self.databaseId = c.id
        self.fullDatabaseId = str(c.id)
        self.path = c.thread.path
        self.originalLine = c.thread.line
        self.originalPosition = c.thread.original_position
        self.diffHunk = c.diff_hunk
        self.state = "SUBMITTED"
        self.subjectType = "LINE"

    def line(self, info: GraphQLResolveInfo) -> int | None:
        anchor = self.c.thread.anchor()
        return anchor[0] if anchor else None

    def position(self, info: GraphQLResolveInfo) -> int | None:
        anchor = self.c.thread.anchor()
        return anchor[1] if anchor else None

    def outdated(self, info: GraphQLResolveInfo) -> bool:
        return self.c.thread.anchor() is None

    def url(self, info: GraphQLResolveInfo) -> str:
        p = self.c.thread.pull
        return f"{_ctx(info).web}/{p.repo.full_name}/pull/{p.number}#discussion_r{self.c.id}"

    def commit(self, info: GraphQLResolveInfo) -> CommitView:
        # Once outdated, GitHub keeps pointing at a commit the line was still on.
        pr = self.c.thread.pull
        return CommitView(pr.repo, pr.head_sha if self.c.thread.anchor() else self.c.commit_id)

    def originalCommit(self, info: GraphQLResolveInfo) -> CommitView:
        return CommitView(self.c.thread.pull.repo, self.c.commit_id)

    def replyTo(self, info: GraphQLResolveInfo) -> ReviewCommentView | None:
        return ReviewCommentView(self.c.reply_to) if self.c.reply_to else None

    def pullRequestReview(self, info: GraphQLResolveInfo) -> ReviewView:
        return ReviewView(self.c.review)

    def pullRequest(self, info: GraphQLResolveInfo) -> PullRequestView:
        return PullRequestView(self.c.thread.pull)


# -- search ---------------------------------------------------------------------

# GitHub does not support longer search queries ("Troubleshooting search queries"); its REST
# search answers 422 Validation Failed, "The search is longer than 256 characters.".
MAX_SEARCH_CHARS = 256
_QUALIFIER = re.compile(r"^(-?)([a-z-]+):(.+)$")
_IGNORED = frozenset({"sort", "archived", "in"})  # ordering and scope GitHub applies anyway here
_STATES = {"open": "OPEN", "closed": "CLOSED", "merged": "MERGED"}

PullFilter = Callable[[PullRequest], bool]


def _qualifier(key: str, value: str, viewer: User) -> PullFilter | None:
    """A filter for one ``key:value``; None when it keeps everything."""
    who = viewer.login if value == "@me" else value
    if key in ("is", "type", "state") and value in ("pr", "pull-request"):
        return None  # the stand-in holds pull requests only
    if key in ("is", "type") and value == "issue":
        return lambda p: False
    if key in ("is", "state") and value in _STATES:
        wanted = _STATES[value]
        if wanted == "CLOSED":
            return lambda p: p.state != "OPEN"
        return lambda p: p.state == wanted
    if key == "is" and value == "draft":
        return lambda p: p.draft
    if key == "draft":
        return lambda p: p.draft == (value == "true")
    if key == "author":
        return lambda p: p.author.login.casefold() == who.casefold()
    if key == "review-requested":
        return lambda p: any(u.login.casefold() == who.casefold() for u in p.requested_reviewers)
    if key == "reviewed-by":
        return lambda p: any(r.author.login.casefold() == who.casefold() for r in p.reviews)
    if key in ("user", "org"):
        return lambda p: p.repo.owner.login.casefold() == who.casefold()
    if key == "base":
        return lambda p: p.base_ref == value
    if key == "head":
        return lambda p: p.head_ref == value
    if key in _IGNORED:
        return None
    raise GitHubRefusal(422, f"the stand-in's search does not support {key}:{value}")


def _mentions(word: str) -> PullFilter:
    text = word.casefold()
    return lambda p: text in f"{p.title}\n{p.body}".casefold()


def _negated(keep: PullFilter) -> PullFilter:
    return lambda p: not keep(p)


def search_pulls(world: World, viewer: User, query: str) -> list[PullRequest]:
    """The pull requests an issue search (``is:pr is:open author:X repo:o/r``) finds,
    newest first. ``repo:`` qualifiers are alternatives, as on GitHub; the rest combine.
    A query longer than GitHub supports is refused with GitHub's words."""
    if len(query) > MAX_SEARCH_CHARS:
        raise GitHubRefusal(422, f"The search is longer than {MAX_SEARCH_CHARS} characters.")
    try:
        words = shlex.split(query)
    except ValueError as exc:
        raise GitHubRefusal(422, f"invalid search query: {exc}") from exc
    filters: list[PullFilter] = []
    repos: set[str] = set()
    for word in words:
        m = _QUALIFIER.match(word)
        if m is None:
            filters.append(_mentions(word))
            continue
        negated, key, value = m.group(1) == "-", m.group(2), m.group(3)
        if key == "repo":
            if negated:
                raise GitHubRefusal(422, "the stand-in's search does not support -repo:")
            repos.add(value.casefold())
            continue
        keep = _qualifier(key, value, viewer)
        if keep is not None:
            filters.append(_negated(keep) if negated else keep)
    found = [
        p
        for p in world.all_pulls()
        if p.repo.can_read(viewer)
        and (not repos or p.repo.full_name.casefold() in repos)
        and all(keep(p) for keep in filters)
    ]
    found.sort(key=lambda p: (p.created_at, p.id), reverse=True)
    return found


# -- root and mutations ---------------------------------------------------------


class _Root:
    def __init__(self, ctx: GraphQLContext) -> None:
        self.ctx = ctx

    def viewer(self, info: GraphQLResolveInfo) -> UserView:
        return UserView(self.ctx.viewer)

    def user(self, info: GraphQLResolveInfo, login: str) -> UserView | None:
        try:
            return UserView(self.ctx.world.user(login))
        except GitHubRefusal:
            return None

    def repository(self, info: GraphQLResolveInfo, owner: str, name: str, **_: Any) -> Any:
        return _repository(info, owner, name)

    def repositoryOwner(self, info: GraphQLResolveInfo, login: str) -> UserView | None:
        return self.user(info, login)

    def node(self, info: GraphQLResolveInfo, id: str) -> Any:
        return self._node(id)

    def nodes(self, info: GraphQLResolveInfo, ids: list[str]) -> list[Any]:
        return [self._node(i) for i in ids]

    def _node(self, node_id: str) -> Any:
        obj = self.ctx.world.nodes.get(node_id)
        if obj is None:
            raise GitHubRefusal(404, f"Could not resolve to a node with the global id of '{node_id}'")
        if isinstance(obj, Repository) and not obj.can_read(self.ctx.viewer):
            raise GitHubRefusal(404, f"Could not resolve to a node with the global id of '{node_id}'")
        return view(obj)

    def search(self, info: GraphQLResolveInfo, query: str, type: str, **args: Any) -> Any:
        if type != "ISSUE":
            raise GitHubRefusal(422, f"the stand-in searches issues and pull requests only, not {type}")
        found = [PullRequestView(p) for p in search_pulls(self.ctx.world, self.ctx.viewer, query)]
        return _SearchResult(found, args)

    def rateLimit(self, info: GraphQLResolveInfo, **_: Any) -> _RateLimit:
        used = self.ctx.world.rate_used.get((self.ctx.viewer.login, "graphql"), 0)
        return _RateLimit(used)

    # mutations share the root object: graphql-core resolves both from root_value.

    def createPullRequest(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        repo = self._repo_by_id(input["repositoryId"])
        head_repo = input.get("headRepositoryId")
        pr = self.ctx.world.open_pull(
            repo,
            self.ctx.viewer,
            head=input["headRefName"],
            base=input["baseRefName"],
            title=input["title"],
            body=input.get("body") or "",
            draft=bool(input.get("draft")),
            head_repo=self._repo_by_id(head_repo) if head_repo else None,
        )
        return _Payload(input, pullRequest=PullRequestView(pr))

    def addPullRequestReview(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["pullRequestId"])
        inline = tuple(
            InlineComment(t["path"], t["line"], t["body"], t.get("side") or "RIGHT") for t in input.get("threads") or []
        )
        event = input.get("event")
        if event is None:
            raise GitHubRefusal(422, "the stand-in does not keep pending reviews: pass an event")
        review = self.ctx.world.review(
            pr, self.ctx.viewer, event, input.get("body") or "", inline, input.get("commitOID")
        )
        return _Payload(input, pullRequestReview=ReviewView(review))

    def addPullRequestReviewThreadReply(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        thread = self._typed(input["pullRequestReviewThreadId"], ReviewThread)
        reply = self.ctx.world.reply(thread.comments[-1], self.ctx.viewer, input["body"])
        return _Payload(input, comment=ReviewCommentView(reply))

    def addComment(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["subjectId"])
        comment = self.ctx.world.comment(pr, self.ctx.viewer, input["body"])
        view_ = IssueCommentView(comment)
        return _Payload(
            input,
            commentEdge=_Edge(_cursor(len(pr.comments) - 1), view_),
            subject=PullRequestView(pr),
            timelineEdge=None,
        )

    def mergePullRequest(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["pullRequestId"])
        self.ctx.world.merge(
            pr,
            self.ctx.viewer,
            str(input.get("mergeMethod") or "MERGE").lower(),
            title=input.get("commitHeadline"),
            body=input.get("commitBody"),
            expected_head=input.get("expectedHeadOid"),
        )
        return _Payload(input, pullRequest=PullRequestView(pr), actor=UserView(self.ctx.viewer))

    def markPullRequestReadyForReview(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["pullRequestId"])
        self.ctx.world.mark_ready(pr, self.ctx.viewer)
        return _Payload(input, pullRequest=PullRequestView(pr))

    def closePullRequest(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["pullRequestId"])
        self.ctx.world.close(pr, self.ctx.viewer)
        return _Payload(input, pullRequest=PullRequestView(pr))

    def resolveReviewThread(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        thread = self._typed(input["threadId"], ReviewThread)
        self.ctx.world.set_resolved(thread, self.ctx.viewer, True)
        return _Payload(input, thread=ThreadView(thread))

    def unresolveReviewThread(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        thread = self._typed(input["threadId"], ReviewThread)
        self.ctx.world.set_resolved(thread, self.ctx.viewer, False)
        return _Payload(input, thread=ThreadView(thread))

    def requestReviews(self, info: GraphQLResolveInfo, input: dict[str, Any]) -> Any:
        pr = self._pull_by_id(input["pullRequestId"])
        logins = [self._typed(i, User).login for i in input.get("userIds") or []]
        self.ctx.world.request_reviewers(pr, self.ctx.viewer, logins)
        return _Payload(input, pullRequest=PullRequestView(pr), actor=UserView(self.ctx.viewer))

    def _typed(self, node_id: str, kind: type[_T]) -> _T:
        obj = self.ctx.world.nodes.get(node_id)
        if not isinstance(obj, kind):
            raise GitHubRefusal(404, f"Could not resolve to a node with the global id of '{node_id}'")
        return obj

    def _repo_by_id(self, node_id: str) -> Repository:
        repo = self._typed(node_id, Repository)
        if not repo.can_read(self.ctx.viewer):
            raise GitHubRefusal(404, f"Could not resolve to a node with the global id of '{node_id}'")
        return repo

    def _pull_by_id(self, node_id: str) -> PullRequest:
        pr = self._typed(node_id, PullRequest)
        if not pr.repo.can_read(self.ctx.viewer):
            raise GitHubRefusal(404, f"Could not resolve to a node with the global id of '{node_id}'")
        return pr


class _Payload:
    """A mutation's payload: clientMutationId plus the named results."""

    def __init__(self, input: dict[str, Any], **fields: Any) -> None:
        self.clientMutationId = input.get("clientMutationId")
        for name, value in fields.items():
            setattr(self, name, value)


class _SearchResult(Connection):
    def __init__(self, found: list[PullRequestView], args: dict[str, Any]) -> None:
        super().__init__(found, args)
        self.issueCount = len(found)
        self.repositoryCount = 0
        self.userCount = 0
        self.codeCount = 0
        self.discussionCount = 0
        self.wikiCount = 0


class _RateLimit:
    """The viewer's GraphQL budget; every query costs one point here."""

    def __init__(self, used: int) -> None:
        self.cost = 1
        self.limit = RATE_LIMIT
        self.used = used
        self.remaining = max(RATE_LIMIT - used, 0)
        self.nodeCount = 0
        self.resetAt = RATE_RESET
