"""GitHub's REST API (``/api/v3``) over the stand-in's state.

Each route names the OpenAPI path template it implements, so tests can check
every response against GitHub's published description of that operation.
Representations follow ``components/schemas`` of ``api.github.com.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from agent_smith.standins.github.state import (
    GitHubRefusal,
    InlineComment,
    IssueComment,
    PullRequest,
    Repository,
    Review,
    ReviewComment,
    User,
    World,
    iso,
)

__all__ = ["Links", "RestRequest", "RestResponse", "route"]

Json = dict[str, Any]
_T = TypeVar("_T")

# GitHub's page size when per_page is not given, and the most it gives.
PER_PAGE = 30
MAX_PER_PAGE = 100


@dataclass(frozen=True)
class Links:
    """Where things live: ``web`` is https://HOST, ``api`` is https://HOST/api/v3."""

    web: str
    api: str


@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    accept: str
    viewer: User | None


@dataclass(frozen=True)
class RestResponse:
    status: int
    body: Any
    template: str
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class _Shapes:
    def __init__(self, links: Links) -> None:
        self.web = links.web
        self.api = links.api

    def user(self, u: User) -> Json:
        api = f"{self.api}/users/{u.login}"
        return {
            "login": u.login,
            "id": u.id,
            "node_id": u.node_id,
            "avatar_url": f"{self.web}/avatars/{u.login}",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{self.web}/{u.login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": u.type,
            "site_admin": False,
            "user_view_type": "public",
        }

    def private_user(self, u: User, world: World) -> Json:
        owned = [r for r in world.repos.values() if r.owner is u]
        return {
            **self.user(u),
            "name": u.name,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "twitter_username": None,
            "public_repos": sum(1 for r in owned if not r.private),
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": iso(u.created_at),
            "updated_at": iso(u.created_at),
            "private_gists": 0,
            "total_private_repos": sum(1 for r in owned if r.private),
            "owned_private_repos": sum(1 for r in owned if r.private),
            "disk_usage": 0,
            "collaborators": 0,
            "two_factor_authentication": False,
            "user_view_type": "private",
        }

    def repo(self, r: Repository, viewer: User | None, world: World) -> Json:
        api = f"{self.api}/repos/{r.full_name}"
        open_count = sum(1 for p in world.pulls(r) if p.state == "OPEN")
        forks = len(world.forks(r))
        push = viewer is not None and r.can_push(viewer)
        shape: Json = {
            "id": r.id,
            "node_id": r.node_id,
            "name": r.name,
            "full_name": r.full_name,
            "owner": self.user(r.owner),
            "private": r.private,
            "visibility": "private" if r.private else "public",
            "html_url": f"{self.web}/{r.full_name}",
            "description": r.description or None,
            "fork": r.parent is not None,
            "url": api,
            "clone_url": f"{self.web}/{r.full_name}.git",
            "git_url": f"git://{self.web.split('://', 1)[1]}/{r.full_name}.git",
            "ssh_url": f"git@{self.web.split('://', 1)[1]}:{r.full_name}.git",
            "svn_url": f"{self.web}/{r.full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": None,
            "forks": forks,
            "forks_count": forks,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": r.default_branch,
            "open_issues": open_count,
            "open_issues_count": open_count,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": False,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": iso(r.created_at),
            "created_at": iso(r.created_at),
            "updated_at": iso(r.created_at),
            "allow_merge_commit": True,
            "allow_squash_merge": True,
            "allow_rebase_merge": False,
            "permissions": {
                "admin": viewer is r.owner,
                "maintain": push,
                "push": push,
                "triage": push,
                "pull": True,
            },
        }
        for name, suffix in _REPO_URLS.items():
            shape[name] = f"{api}/{suffix}"
        return shape

    def full_repo(self, r: Repository, viewer: User | None, world: World) -> Json:
        source = r.source
        network = sum(1 for other in world.repos.values() if other is not source and other.source is source)
        shape = {**self.repo(r, viewer, world), "network_count": network, "subscribers_count": 0}
        if r.parent is not None:
            # GitHub names a fork's parent (what it was forked from) and source (its network's root).
            shape["parent"] = self.repo(r.parent, viewer, world)
            shape["source"] = self.repo(source, viewer, world)
        return shape

    def pull(self, p: PullRequest, viewer: User | None, world: World, full: bool) -> Json:
        api = f"{self.api}/repos/{p.repo.full_name}"
        html = f"{self.web}/{p.repo.full_name}/pull/{p.number}"
        repo = self.repo(p.repo, viewer, world)
        shape: Json = {
            "url": f"{api}/pulls/{p.number}",
            "id": p.id,
            "node_id": p.node_id,
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{p.number}",
            "commits_url": f"{api}/pulls/{p.number}/commits",
            "review_comments_url": f"{api}/pulls/{p.number}/comments",
            "review_comment_url": f"{api}/pulls/comments{{/number}}",
            "comments_url": f"{api}/issues/{p.number}/comments",
            "statuses_url": f"{api}/statuses/{p.head_sha}",
            "number": p.number,
            "state": "open" if p.state == "OPEN" else "closed",
            "locked": False,
            "title": p.title,
            "user": self.user(p.author),
            "body": p.body or None,
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": iso(p.created_at),
            "updated_at": iso(p.updated_at),
            "closed_at": iso(p.closed_at) if p.closed_at else None,
            "merged_at": iso(p.merged_at) if p.merged_at else None,
            "merge_commit_sha": p.merge_commit_sha,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self.user(u) for u in p.requested_reviewers],
            "requested_teams": [],
            "head": {
                "label": p.head_label,
                "ref": p.head_ref,
                "sha": p.head_sha,
                "user": self.user(p.head_repo.owner),
                "repo": self.repo(p.head_repo, viewer, world) if p.is_cross_repository else repo,
            },
            "base": {
                "label": f"{p.repo.owner.login}:{p.base_ref}",
                "ref": p.base_ref,
                "sha": p.base_sha,
                "user": self.user(p.repo.owner),
                "repo": repo,
            },
            "_links": {
                "self": {"href": f"{api}/pulls/{p.number}"},
                "html": {"href": html},
                "issue": {"href": f"{api}/issues/{p.number}"},
                "comments": {"href": f"{api}/issues/{p.number}/comments"},
                "review_comments": {"href": f"{api}/pulls/{p.number}/comments"},
                "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
                "commits": {"href": f"{api}/pulls/{p.number}/commits"},
                "statuses": {"href": f"{api}/statuses/{p.head_sha}"},
            },
            "author_association": p.repo.association(p.author),
            "auto_merge": None,
            "draft": p.draft,
        }
        if full:
            stats = p.stats()
            mergeable = p.mergeable()
            shape.update(
                {
                    "merged": p.state == "MERGED",
                    "mergeable": None if mergeable == "UNKNOWN" else mergeable == "MERGEABLE",
                    "rebaseable": False,
                    "mergeable_state": p.merge_state_status().lower(),
                    "merged_by": self.user(p.merged_by) if p.merged_by else None,
                    "comments": len(p.comments),
                    "review_comments": sum(len(t.comments) for t in p.threads),
                    "maintainer_can_modify": False,
                    "commits": stats.commits,
                    "additions": stats.additions,
                    "deletions": stats.deletions,
                    "changed_files": stats.changed_files,
                }
            )
        return shape

    def review_comment(self, c: ReviewComment) -> Json:
        p = c.thread.pull
        api = f"{self.api}/repos/{p.repo.full_name}"
        html = f"{self.web}/{p.repo.full_name}/pull/{p.number}#discussion_r{c.id}"
        t = c.thread
        anchor = t.anchor()
        shape: Json = {
            "url": f"{api}/pulls/comments/{c.id}",
            "pull_request_review_id": c.review.id,
            "id": c.id,
            "node_id": c.node_id,
            "diff_hunk": c.diff_hunk,
            "path": t.path,
            # Once outdated, GitHub keeps pointing at a commit the line was still on.
            "commit_id": p.head_sha if anchor else c.commit_id,
            "original_commit_id": c.commit_id,
            "user": self.user(c.author),
            "body": c.body,
            "created_at": iso(c.created_at),
            "updated_at": iso(c.created_at),
            "html_url": html,
            "pull_request_url": f"{api}/pulls/{p.number}",
            "author_association": p.repo.association(c.author),
            "_links": {
                "self": {"href": f"{api}/pulls/comments/{c.id}"},
                "html": {"href": html},
                "pull_request": {"href": f"{api}/pulls/{p.number}"},
            },
            # start_line/start_side are for multi-line comments, which the stand-in
            # does not take; left out because the description's enum has no null.
            # Null once outdated, as GitHub answers (its OpenAPI description says integer).
            "line": anchor[0] if anchor else None,
            "original_line": t.line,
            "position": anchor[1] if anchor else None,
            "original_position": t.original_position,
            "side": t.side,
            "subject_type": "line",
        }
        if c.reply_to is not None:
            shape["in_reply_to_id"] = c.reply_to.id
        return shape

    def review(self, r: Review) -> Json:
        p = r.pull
        api = f"{self.api}/repos/{p.repo.full_name}"
        html = f"{self.web}/{p.repo.full_name}/pull/{p.number}#pullrequestreview-{r.id}"
        return {
            "id": r.id,
            "node_id": r.node_id,
            "user": self.user(r.author),
            "body": r.body,
            "state": r.state,
            "html_url": html,
            "pull_request_url": f"{api}/pulls/{p.number}",
            "_links": {"html": {"href": html}, "pull_request": {"href": f"{api}/pulls/{p.number}"}},
            "submitted_at": iso(r.submitted_at),
            "commit_id": r.commit_id,
            "author_association": p.repo.association(r.author),
        }

    def issue_comment(self, c: IssueComment) -> Json:
        p = c.pull
        api = f"{self.api}/repos/{p.repo.full_name}"
        return {
            "id": c.id,
            "node_id": c.node_id,
            "url": f"{api}/issues/comments/{c.id}",
            "body": c.body,
            "html_url": f"{self.web}/{p.repo.full_name}/pull/{p.number}#issuecomment-{c.id}",
            "user": self.user(c.author),
            "created_at": iso(c.created_at),
            "updated_at": iso(c.created_at),
            "issue_url": f"{api}/issues/{p.number}",
            "author_association": p.repo.association(c.author),
        }

    def root(self) -> Json:
        a = self.api
        return {
            "current_user_url": f"{a}/user",
            "current_user_authorizations_html_url": f"{self.web}/settings/connections/applications{{/client_id}}",
            "authorizations_url": f"{a}/authorizations",
            "code_search_url": f"{a}/search/code?q={{query}}{{&page,per_page,sort,order}}",
            "commit_search_url": f"{a}/search/commits?q={{query}}{{&page,per_page,sort,order}}",
            "emails_url": f"{a}/user/emails",
            "emojis_url": f"{a}/emojis",
            "events_url": f"{a}/events",
            "feeds_url": f"{a}/feeds",
            "followers_url": f"{a}/user/followers",
            "following_url": f"{a}/user/following{{/target}}",
            "gists_url": f"{a}/gists{{/gist_id}}",
            "hub_url": f"{a}/hub",
            "issue_search_url": f"{a}/search/issues?q={{query}}{{&page,per_page,sort,order}}",
            "issues_url": f"{a}/issues",
            "keys_url": f"{a}/user/keys",
            "label_search_url": f"{a}/search/labels?q={{query}}&repository_id={{repository_id}}{{&page,per_page}}",
            "notifications_url": f"{a}/notifications",
            "organization_url": f"{a}/orgs/{{org}}",
            "organization_repositories_url": f"{a}/orgs/{{org}}/repos{{?type,page,per_page,sort}}",
            "organization_teams_url": f"{a}/orgs/{{org}}/teams",
            "public_gists_url": f"{a}/gists/public",
            "rate_limit_url": f"{a}/rate_limit",
            "repository_url": f"{a}/repos/{{owner}}/{{repo}}",
            "repository_search_url": f"{a}/search/repositories?q={{query}}{{&page,per_page,sort,order}}",
            "current_user_repositories_url": f"{a}/user/repos{{?type,page,per_page,sort}}",
            "starred_url": f"{a}/user/starred{{/owner}}{{/repo}}",
            "starred_gists_url": f"{a}/gists/starred",
            "topic_search_url": f"{a}/search/topics?q={{query}}{{&page,per_page}}",
            "user_url": f"{a}/users/{{user}}",
            "user_organizations_url": f"{a}/user/orgs",
            "user_repositories_url": f"{a}/users/{{user}}/repos{{?type,page,per_page,sort}}",
            "user_search_url": f"{a}/search/users?q={{query}}{{&page,per_page,sort,order}}",
        }


_REPO_URLS = {
    "archive_url": "{archive_format}{/ref}",
    "assignees_url": "assignees{/user}",
    "blobs_url": "git/blobs{/sha}",
    "branches_url": "branches{/branch}",
    "collaborators_url": "collaborators{/collaborator}",
    "comments_url": "comments{/number}",
    "commits_url": "commits{/sha}",
    "compare_url": "compare/{base}...{head}",
    "contents_url": "contents/{+path}",
    "contributors_url": "contributors",
    "deployments_url": "deployments",
    "downloads_url": "downloads",
    "events_url": "events",
    "forks_url": "forks",
    "git_commits_url": "git/commits{/sha}",
    "git_refs_url": "git/refs{/sha}",
    "git_tags_url": "git/tags{/sha}",
    "hooks_url": "hooks",
    "issue_comment_url": "issues/comments{/number}",
    "issue_events_url": "issues/events{/number}",
    "issues_url": "issues{/number}",
    "keys_url": "keys{/key_id}",
    "labels_url": "labels{/name}",
    "languages_url": "languages",
    "merges_url": "merges",
    "milestones_url": "milestones{/number}",
    "notifications_url": "notifications{?since,all,participating}",
    "pulls_url": "pulls{/number}",
    "releases_url": "releases{/id}",
    "stargazers_url": "stargazers",
    "statuses_url": "statuses/{sha}",
    "subscribers_url": "subscribers",
    "subscription_url": "subscription",
    "tags_url": "tags",
    "teams_url": "teams",
    "trees_url": "git/trees{/sha}",
}


# -- routing ---------------------------------------------------------------------

Handler = Callable[["_Ctx", dict[str, str]], RestResponse]
_ROUTES: list[tuple[str, re.Pattern[str], str, Handler]] = []


def _param(name: str) -> str:
    # A git ref (heads/feature/x) spans slashes; every other parameter is one segment.
    return f"(?P<{name}>{'.+' if name == 'ref' else '[^/]+'})"


def _route(method: str, template: str) -> Callable[[Handler], Handler]:
    pattern = re.compile("^" + re.sub(r"\\{(\w+)\\}", lambda m: _param(m[1]), re.escape(template)) + "$")

    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, pattern, template, fn))
        return fn

    return register


@dataclass(frozen=True)
class _Ctx:
    world: World
    shapes: _Shapes
    req: RestRequest

    def viewer(self) -> User:
        if self.req.viewer is None:
            raise GitHubRefusal(401, "Requires authentication")
        return self.req.viewer

    def repo(self, a: dict[str, str]) -> Repository:
        return self.world.repo(a["owner"], a["repo"], self.req.viewer)

    def pull(self, a: dict[str, str]) -> PullRequest:
        return self.world.pull(self.repo(a), _int(a["pull_number"]))

    def field(self, name: str, kind: type = str, *, required: bool = True) -> Any:
        body = self.req.body if isinstance(self.req.body, dict) else {}
        value = body.get(name)
        if value is None:
            if required:
                raise GitHubRefusal(422, f'Invalid request.\n\n"{name}" wasn\'t supplied.')
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            said = f"For 'properties/{name}', {json.dumps(value)} is not {_JSON_TYPES[kind]}."
            raise GitHubRefusal(422, f"Invalid request.\n\n{said}")
        return value


_JSON_TYPES = {str: "a string", int: "an integer", bool: "a boolean", list: "an array"}


def _query_int(query: dict[str, str], name: str, default: int) -> int:
    # GitHub ignores a page or per_page it cannot read rather than refusing the request.
    text = query.get(name, "")
    return int(text) if text.isdigit() and int(text) > 0 else default


def _paged(
    ctx: _Ctx, repo: Repository, items: Sequence[_T], shape: Callable[[_T], Json], template: str
) -> RestResponse:
    """One page of a list, as GitHub pages every list: ``per_page`` (30, at most 100) and
    ``page``, with a ``Link`` header to the others when there are others."""
    query = ctx.req.query
    per_page = min(_query_int(query, "per_page", PER_PAGE), MAX_PER_PAGE)
    page = _query_int(query, "page", 1)
    body = [shape(item) for item in items[(page - 1) * per_page : page * per_page]]
    last = max(1, -(-len(items) // per_page))
    if last == 1 and page == 1:
        return RestResponse(200, body, template)
    under_repo = ctx.req.path.strip("/").split("/")[3:]  # after repos/OWNER/REPO
    base = f"{ctx.shapes.api}/repositories/{repo.id}/" + "/".join(under_repo)
    kept = {k: v for k, v in query.items() if k != "page"}

    def link(number: int, rel: str) -> str:
        return f'<{base}?{urlencode({**kept, "page": number})}>; rel="{rel}"'

    rels = []
    if page > 1:
        rels.append(link(page - 1, "prev"))
    if page < last:
        rels += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        rels.append(link(1, "first"))
    return RestResponse(200, body, template, headers={"Link": ", ".join(rels)})


def _int(text: str) -> int:
    if not text.isdigit():
        raise GitHubRefusal(404, "Not Found")
    return int(text)


_BY_ID = re.compile(r"^/repositories/(\d+)(/.*)?$")


def route(world: World, links: Links, req: RestRequest) -> RestResponse:
    """Answer one REST request (``req.path`` is relative to ``/api/v3``)."""
    # GitHub answers 404 to a path with a trailing slash; only the root has one.
    path = req.path
    if m := _BY_ID.match(path):
        # GitHub's Link headers name repositories by id; those URLs serve the same operations.
        repo = next((r for r in world.repos.values() if r.id == int(m[1]) and r.can_read(req.viewer)), None)
        if repo is None:
            return error(404, "Not Found", "")
        path = f"/repos/{repo.full_name}{m[2] or ''}"
        req = dataclasses.replace(req, path=path)
    ctx = _Ctx(world, _Shapes(links), req)
    for method, pattern, template, fn in _ROUTES:
        m = pattern.match(path)
        if m is None or method != req.method:
            continue
        try:
            return fn(ctx, m.groupdict())
        except GitHubRefusal as refusal:
            return error(refusal.status, refusal.headline, template, refusal.errors)
    # A method the path does not take is a 404 too, not a 405 (GitHub's "Troubleshooting the REST API").
    return error(404, "Not Found", "")


def error(status: int, message: str, template: str, errors: Sequence[str | dict[str, str]] = ()) -> RestResponse:
    body: Json = {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}
    if errors:
        body["errors"] = list(errors)
    return RestResponse(status, body, template)


@_route("GET", "/")
def _root(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    return RestResponse(200, ctx.shapes.root(), "/")


@_route("GET", "/user")
def _me(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    return RestResponse(200, ctx.shapes.private_user(ctx.viewer(), ctx.world), "/user")


@_route("GET", "/users/{username}")
def _user(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    user = ctx.world.user(a["username"])
    shape = ctx.shapes.private_user(user, ctx.world)
    for private in (
        "private_gists",
        "total_private_repos",
        "owned_private_repos",
        "disk_usage",
        "collaborators",
        "two_factor_authentication",
    ):
        shape.pop(private)
    shape["user_view_type"] = "public"
    return RestResponse(200, shape, "/users/{username}")


@_route("GET", "/repos/{owner}/{repo}")
def _repo(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    return RestResponse(200, ctx.shapes.full_repo(ctx.repo(a), ctx.req.viewer, ctx.world), "/repos/{owner}/{repo}")


@_route("POST", "/repos/{owner}/{repo}/forks")
def _create_fork(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    if ctx.field("organization", required=False) is not None:
        raise GitHubRefusal(422, "the stand-in does not model organizations: fork into your own account")
    fork = ctx.world.fork(
        ctx.repo(a),
        ctx.viewer(),
        name=ctx.field("name", required=False),
        only_default=bool(ctx.field("default_branch_only", bool, required=False)),
    )
    # 202: GitHub forks asynchronously; the stand-in's fork is complete when it answers.
    return RestResponse(202, ctx.shapes.full_repo(fork, ctx.req.viewer, ctx.world), "/repos/{owner}/{repo}/forks")


def _head_filter(value: str) -> Callable[[PullRequest], bool]:
    """``?head=owner:branch``: the pull requests from that branch of `owner`'s repository. GitHub
    silently ignores a head without its owner (every pull request passes)."""
    owner, _, branch = value.rpartition(":")
    if not owner:
        return lambda p: True
    return lambda p: p.head_repo.owner.login.lower() == owner.lower() and p.head_ref == branch


@_route("GET", "/repos/{owner}/{repo}/pulls")
def _pulls(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    repo = ctx.repo(a)
    want = ctx.req.query.get("state", "open")
    head = _head_filter(ctx.req.query.get("head", ""))
    base = ctx.req.query.get("base", "")
    found = [
        p
        for p in sorted(ctx.world.pulls(repo), key=lambda p: -p.number)
        if (want == "all" or (p.state == "OPEN") == (want == "open")) and head(p) and (not base or p.base_ref == base)
    ]
    return _paged(
        ctx,
        repo,
        found,
        lambda p: ctx.shapes.pull(p, ctx.req.viewer, ctx.world, full=False),
        "/repos/{owner}/{repo}/pulls",
    )


@_route("POST", "/repos/{owner}/{repo}/pulls")
def _create_pull(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.world.open_pull(
        ctx.repo(a),
        ctx.viewer(),
        head=ctx.field("head"),
        base=ctx.field("base"),
        title=ctx.field("title"),
        body=ctx.field("body", required=False) or "",
        draft=bool(ctx.field("draft", bool, required=False)),
    )
    return RestResponse(
        201,
        ctx.shapes.pull(pr, ctx.req.viewer, ctx.world, full=True),
        "/repos/{owner}/{repo}/pulls",
    )


@_route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
def _pull(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    template = "/repos/{owner}/{repo}/pulls/{pull_number}"
    if "diff" in ctx.req.accept:
        diff = pr.repo.git.diff(pr.base_sha, pr.head_sha)
        return RestResponse(200, diff, template, "text/plain; charset=utf-8")
    return RestResponse(200, ctx.shapes.pull(pr, ctx.req.viewer, ctx.world, full=True), template)


@_route("PUT", "/repos/{owner}/{repo}/pulls/{pull_number}/merge")
def _merge(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    sha = ctx.world.merge(
        pr,
        ctx.viewer(),
        ctx.field("merge_method", required=False) or "merge",
        title=ctx.field("commit_title", required=False),
        body=ctx.field("commit_message", required=False),
        expected_head=ctx.field("sha", required=False),
    )
    return RestResponse(
        200,
        {"sha": sha, "merged": True, "message": "Pull Request successfully merged"},
        "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
    )


@_route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/comments")
def _review_comments(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    comments = sorted((c for t in pr.threads for c in t.comments), key=lambda c: c.id)
    return _paged(
        ctx, pr.repo, comments, ctx.shapes.review_comment, "/repos/{owner}/{repo}/pulls/{pull_number}/comments"
    )


@_route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments")
def _add_review_comment(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    template = "/repos/{owner}/{repo}/pulls/{pull_number}/comments"
    reply_to = ctx.field("in_reply_to", int, required=False)
    if reply_to is not None:
        target = _find_review_comment(pr, reply_to)
        reply = ctx.world.reply(target, ctx.viewer(), ctx.field("body"))
        return RestResponse(201, ctx.shapes.review_comment(reply), template)
    comment = ctx.world.inline_comment(
        pr,
        ctx.viewer(),
        InlineComment(
            ctx.field("path"),
            ctx.field("line", int),
            ctx.field("body"),
            ctx.field("side", required=False) or "RIGHT",
        ),
        ctx.field("commit_id"),
    )
    return RestResponse(201, ctx.shapes.review_comment(comment), template)


@_route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies")
def _reply(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    target = _find_review_comment(pr, _int(a["comment_id"]))
    reply = ctx.world.reply(target, ctx.viewer(), ctx.field("body"))
    return RestResponse(
        201,
        ctx.shapes.review_comment(reply),
        "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies",
    )


def _find_review_comment(pr: PullRequest, comment_id: int) -> ReviewComment:
    for thread in pr.threads:
        for c in thread.comments:
            if c.id == comment_id:
                return c
    raise GitHubRefusal(404, "Not Found")


@_route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
def _reviews(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    return _paged(ctx, pr.repo, pr.reviews, ctx.shapes.review, "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")


@_route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")
def _add_review(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    raw = ctx.field("comments", list, required=False) or []
    inline = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("line"), int):
            raise GitHubRefusal(422, "Invalid request.\n\nEach comment needs path, line and body.")
        inline.append(
            InlineComment(
                str(item.get("path", "")),
                item["line"],
                str(item.get("body", "")),
                str(item.get("side", "RIGHT")),
            )
        )
    event = ctx.field("event", required=False)
    if event is None:
        # Without an event GitHub keeps the review PENDING: unseen by others until submitted. The
        # stand-in does not model pending reviews, and publishing it instead would hide the mistake.
        raise GitHubRefusal(422, "the stand-in does not keep pending reviews: pass an event")
    review = ctx.world.review(
        pr,
        ctx.viewer(),
        event,
        ctx.field("body", required=False) or "",
        tuple(inline),
        ctx.field("commit_id", required=False),
    )
    return RestResponse(200, ctx.shapes.review(review), "/repos/{owner}/{repo}/pulls/{pull_number}/reviews")


@_route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers")
def _request_reviewers(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.pull(a)
    logins = ctx.field("reviewers", list)
    ctx.world.request_reviewers(pr, ctx.viewer(), [str(x) for x in logins])
    return RestResponse(
        201,
        ctx.shapes.pull(pr, ctx.req.viewer, ctx.world, full=False),
        "/repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers",
    )


@_route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def _issue_comments(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.world.pull(ctx.repo(a), _int(a["issue_number"]))
    return _paged(
        ctx, pr.repo, pr.comments, ctx.shapes.issue_comment, "/repos/{owner}/{repo}/issues/{issue_number}/comments"
    )


@_route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def _add_issue_comment(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    pr = ctx.world.pull(ctx.repo(a), _int(a["issue_number"]))
    comment = ctx.world.comment(pr, ctx.viewer(), ctx.field("body"))
    return RestResponse(
        201,
        ctx.shapes.issue_comment(comment),
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    )


@_route("DELETE", "/repos/{owner}/{repo}/git/refs/{ref}")
def _delete_ref(ctx: _Ctx, a: dict[str, str]) -> RestResponse:
    ctx.world.delete_ref(ctx.repo(a), ctx.viewer(), a["ref"])
    return RestResponse(204, None, "/repos/{owner}/{repo}/git/refs/{ref}")
