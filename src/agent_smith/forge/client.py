"""The async client for GitHub and GitHub Enterprise (the I/O shell of `forge`).

One request at a time through httpx; retries follow `forge.retry`, review
activity is parsed by `forge.activity`. Behind the credential firewall the
token is a placeholder and the proxy and CA come from the environment.
Errors surface as one-line :class:`OperationError`s that never carry the token.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx

from agent_smith.errors import OperationError, RateLimited, UsageError
from agent_smith.forge.activity import ReviewActivity
from agent_smith.forge.environment import proxy_for, ssl_context
from agent_smith.forge.query import ReviewActivityPages, repo_path
from agent_smith.forge.retry import GiveUp, RetryPolicy, Wait, after_failure, decide, graphql_rate_limited

if TYPE_CHECKING:
    # Only for a signature: a Stop hook importing the client should not pay for
    # loading the crew models (about half of this module's import time).
    from agent_smith.crew import Forge

__all__ = ["ForgeClient", "InlineComment", "OpenedPullRequest"]


@dataclass(frozen=True)
class InlineComment:
    """A review comment on one line of the pull request's new code."""

    path: str
    line: int
    body: str
    side: str = "RIGHT"


@dataclass(frozen=True)
class OpenedPullRequest:
    repo: str
    number: int
    url: str
    node_id: str
    head_sha: str


Sleep = Callable[[float], Awaitable[None]]


class ForgeClient:
    """GitHub REST + GraphQL for one token. Use as ``async with ForgeClient(...)``."""

    def __init__(
        self,
        *,
        api_url: str,
        graphql_url: str,
        token: str,
        verify: ssl.SSLContext | bool = True,
        proxy: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        timeout: float = 30.0,
    ) -> None:
        if not token:
            raise UsageError("no GitHub token: set GITHUB_TOKEN")
        self.api_url = api_url.rstrip("/")
        self.graphql_url = graphql_url
        self.host = urlsplit(self.api_url).netloc
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._etags: dict[str, tuple[str, Any]] = {}
        self._http = httpx.AsyncClient(
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "agent-smith",
            },
            verify=verify,
            proxy=proxy,
            transport=transport,
            trust_env=False,
            timeout=timeout,
        )
        self.requests = 0  # HTTP requests sent, retries included

    @classmethod
    def from_env(
        cls,
        *,
        api_url: str,
        graphql_url: str,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> ForgeClient:
        """A client as an agent's process gets one: GITHUB_TOKEN (or GH_TOKEN), the
        CA in SSL_CERT_FILE / SSL_CERT_DIR and the proxy in HTTPS_PROXY / NO_PROXY."""
        source = os.environ if env is None else env
        token = source.get("GITHUB_TOKEN") or source.get("GH_TOKEN") or ""
        return cls(
            api_url=api_url,
            graphql_url=graphql_url,
            token=token,
            verify=ssl_context(source),
            proxy=proxy_for(api_url, source),
            **kwargs,
        )

    @classmethod
    def from_crew(cls, forge: Forge, env: Mapping[str, str] | None = None, **kwargs: Any) -> ForgeClient:
        return cls.from_env(api_url=forge.base_url, graphql_url=forge.graphql_url, env=env, **kwargs)

    async def __aenter__(self) -> ForgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport ---------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool,
        what: str,
        graphql: bool = False,
    ) -> httpx.Response:
        deadline = time.monotonic() + self._retry.deadline
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                # The whole try within the call's deadline: httpx's timeout bounds each read alone.
                async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                    response = await self._http.request(method, url, json=json, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if _untrusted(exc):
                    raise OperationError(
                        f"{what}: the certificate of {self.host} is not trusted "
                        "(set SSL_CERT_FILE to the CA that signs it)"
                    ) from exc
                # Nothing reached the server, so even a write may be sent again.
                if await self._backed_off(attempt, deadline, resendable=True):
                    continue
                raise OperationError(f"{what}: cannot reach {self.host}: {_said(exc)}") from exc
            except (httpx.TimeoutException, TimeoutError) as exc:
                if await self._backed_off(attempt, deadline, resendable=idempotent):
                    continue
                raise OperationError(f"{what}: {self.host} did not answer in time{_maybe_applied(idempotent)}") from exc
            except (httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # The connection broke once the request was out: a write may have landed.
                if await self._backed_off(attempt, deadline, resendable=idempotent):
                    continue
                raise OperationError(
                    f"{what}: {self.host} dropped the connection ({_said(exc)}){_maybe_applied(idempotent)}"
                ) from exc
            except httpx.HTTPError as exc:
                raise OperationError(f"{what}: {self.host}: {_said(exc)}") from exc
            verdict = decide(
                self._retry,
                attempt,
                response.status_code,
                {k.lower(): v for k, v in response.headers.items()},
                _message(response),
                now=time.time(),
                idempotent=idempotent,
                limited=graphql and _graphql_rate_limited(response),
                left=deadline - time.monotonic(),
            )
            if verdict is None:
                return response
            if isinstance(verdict, GiveUp):
                if verdict.wait_asked is not None:
                    raise RateLimited(f"{what}: {self.host}: {verdict.reason}", verdict.wait_asked)
                raise OperationError(f"{what}: {self.host}: {verdict.reason}")
            assert isinstance(verdict, Wait)
            await self._sleep(verdict.seconds)

    async def _backed_off(self, attempt: int, deadline: float, *, resendable: bool) -> bool:
        """After a try that got no answer: whether to try again (having waited the backoff)."""
        wait = after_failure(self._retry, attempt, resendable=resendable, left=deadline - time.monotonic())
        if wait is None:
            return False
        await self._sleep(wait.seconds)
        return True

    def _fail(self, response: httpx.Response, what: str, *, idempotent: bool) -> OperationError:
        status = response.status_code
        message = _message(response)
        if status == 401:
            return OperationError(
                f"{what}: {self.host} rejected the token (401 {message or 'Bad credentials'}); check GITHUB_TOKEN"
            )
        if status == 403:
            return OperationError(f"{what}: forbidden by {self.host} (403 {message})")
        if status == 404:
            return OperationError(f"{what}: not found on {self.host} (404; or the token cannot see it)")
        # A write that met a server error is not sent again (see `_rest`), but it may have landed.
        unsure = _maybe_applied(idempotent) if status >= 500 else ""
        return OperationError(f"{what}: {self.host} answered {status} {message}".rstrip() + unsure)

    async def _rest(self, method: str, path: str, what: str, body: Any = None, *, accept: str | None = None) -> Any:
        url = f"{self.api_url}{path}"
        headers: dict[str, str] = {}
        if accept:
            headers["Accept"] = accept
        cached = self._etags.get(url) if method == "GET" and not accept else None
        if cached:
            # A 304 does not count against GitHub's rate limit.
            headers["If-None-Match"] = cached[0]
        # Only reads are resent after a server error or a timeout: GitHub may have acted before it
        # failed to answer, and its PUTs are not idempotent in effect (a merge sent again is 405).
        response = await self._send(method, url, json=body, headers=headers, idempotent=method == "GET", what=what)
        if response.status_code == 304 and cached:
            return cached[1]
        if response.status_code >= 400:
            raise self._fail(response, what, idempotent=method == "GET")
        if accept and "diff" in accept:
            return response.text
        try:
            data = response.json() if response.content else None
        except ValueError as exc:
            # A proxy's page in GitHub's place, say: a 2xx GitHub itself never sends.
            raise OperationError(f"{what}: {self.host} answered {response.status_code} but not in JSON") from exc
        etag = response.headers.get("etag")
        if method == "GET" and etag and not accept:
            self._etags[url] = (etag, data)
        return data

    async def graphql(self, query: str, variables: Mapping[str, Any], what: str) -> Any:
        """One GraphQL request; its ``data``, or an OperationError naming GitHub's complaint."""
        is_query = not query.lstrip().startswith("mutation")
        response = await self._send(
            "POST",
            self.graphql_url,
            json={"query": query, "variables": dict(variables)},
            idempotent=is_query,
            what=what,
            graphql=True,
        )
        if response.status_code >= 400:
            raise self._fail(response, what, idempotent=is_query)
        try:
            body = response.json()
        except ValueError as exc:
            raise OperationError(f"{what}: {self.host} sent a non-JSON GraphQL answer") from exc
        if not isinstance(body, dict):
            raise OperationError(f"{what}: {self.host} sent a GraphQL answer that is not an object")
        errors = body.get("errors") or []
        if errors:
            first = errors[0]
            said = first.get("message", first) if isinstance(first, dict) else first
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise OperationError(f"{what}: GitHub says: {_one_line(str(said))}{more}")
        return body.get("data")

    # -- reading -----------------------------------------------------------------

    async def viewer_login(self) -> str:
        data = await self._rest("GET", "/user", "who am I")
        return str(data["login"])

    async def pull_request(self, repo: str, number: int) -> dict[str, Any]:
        data = await self._rest("GET", f"/repos/{repo_path(repo)}/pulls/{number}", f"{repo}#{number}")
        return dict(data)

    async def pull_request_of_branch(self, repo: str, branch: str) -> dict[str, Any] | None:
        """The newest pull request (any state) into `repo` from `branch`: ``owner:branch`` for a
        fork's (gh's and the API's head label), else a branch of `repo`'s owner; None if none."""
        # GitHub ignores a head without its owner, so the owner is always named. No git ref name has
        # a ":" (git check-ref-format), so one says an owner is there.
        head = branch if ":" in branch else f"{repo.partition('/')[0]}:{branch}"
        found = await self._rest(
            "GET",
            f"/repos/{repo_path(repo)}/pulls?{urlencode({'head': head, 'state': 'all', 'per_page': 1})}",
            f"the pull request of {repo} branch {branch}",
        )
        return dict(found[0]) if isinstance(found, list) and found and isinstance(found[0], dict) else None

    async def diff(self, repo: str, number: int) -> str:
        text = await self._rest(
            "GET",
            f"/repos/{repo_path(repo)}/pulls/{number}",
            f"diff of {repo}#{number}",
            accept="application/vnd.github.diff",
        )
        return str(text)

    async def review_activity(
        self,
        login: str,
        repos: Sequence[str] | None = None,
        *,
        since: dt.datetime | None = None,
    ) -> ReviewActivity:
        """Every open pull request ``login`` authored in ``repos`` (all repos when None),
        with its unresolved review threads, and its reviews and conversation comments
        newer than ``since``: one GraphQL round trip (another per page past GitHub's 100)."""
        pages = ReviewActivityPages(login, repos)
        while (request := pages.request()) is not None:
            pages.add(await self.graphql(*request, f"review activity of {login}"))
        return pages.activity(since)

    # -- pull request actions --------------------------------------------------

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str = "", draft: bool = False
    ) -> OpenedPullRequest:
        data = await self._rest(
            "POST",
            f"/repos/{repo_path(repo)}/pulls",
            f"open a pull request on {repo}",
            {"head": head, "base": base, "title": title, "body": body, "draft": draft},
        )
        return OpenedPullRequest(
            repo,
            int(data["number"]),
            str(data["html_url"]),
            str(data["node_id"]),
            str(data["head"]["sha"]),
        )

    async def comment(self, repo: str, number: int, body: str) -> str:
        data = await self._rest(
            "POST",
            f"/repos/{repo_path(repo)}/issues/{number}/comments",
            f"comment on {repo}#{number}",
            {"body": body},
        )
        return str(data["html_url"])

    async def review(
        self,
        repo: str,
        number: int,
        *,
        event: str = "COMMENT",
        body: str = "",
        comments: Sequence[InlineComment] = (),
    ) -> str:
        """Submit a review (COMMENT, APPROVE or REQUEST_CHANGES) with inline comments."""
        payload: dict[str, Any] = {"event": event, "body": body}
        if comments:
            payload["comments"] = [{"path": c.path, "line": c.line, "side": c.side, "body": c.body} for c in comments]
        data = await self._rest(
            "POST",
            f"/repos/{repo_path(repo)}/pulls/{number}/reviews",
            f"review {repo}#{number}",
            payload,
        )
        return str(data["html_url"])

    async def reply(self, repo: str, number: int, comment_id: int, body: str) -> str:
        """Answer an inline review comment in its thread."""
        data = await self._rest(
            "POST",
            f"/repos/{repo_path(repo)}/pulls/{number}/comments/{comment_id}/replies",
            f"reply on {repo}#{number}",
            {"body": body},
        )
        return str(data["html_url"])

    async def resolve_thread(self, thread_id: str) -> None:
        await self.graphql(
            "mutation Resolve($id: ID!) { resolveReviewThread(input: {threadId: $id}) { thread { id isResolved } } }",
            {"id": thread_id},
            "resolve a review thread",
        )

    async def merge(self, repo: str, number: int, *, method: str = "merge", expected_head: str | None = None) -> str:
        """Merge (``merge`` or ``squash``); the merge commit's sha."""
        payload: dict[str, Any] = {"merge_method": method}
        if expected_head:
            payload["sha"] = expected_head
        data = await self._rest(
            "PUT", f"/repos/{repo_path(repo)}/pulls/{number}/merge", f"merge {repo}#{number}", payload
        )
        return str(data["sha"])


def _untrusted(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _maybe_applied(idempotent: bool) -> str:
    # Said of a write that got no clear answer: GitHub may have acted before it failed to answer,
    # so sending it again blindly could post a comment twice.
    return "" if idempotent else "; GitHub may have applied it anyway: look before sending it again"


def _said(exc: BaseException) -> str:
    """An exception's text on one line. httpx's are sometimes empty (a reset connection is a bare
    ReadError): then the first text among its causes (the OS's "Connection reset by peer"), else
    its kind."""
    seen: BaseException | None = exc
    while seen is not None:
        if text := _one_line(str(seen)):
            return text
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _graphql_rate_limited(response: httpx.Response) -> bool:
    # A cheap look at the bytes first: only a rate-limited answer is parsed here.
    if response.status_code != 200 or b"RATE_LIMIT" not in response.content:
        return False
    try:
        return graphql_rate_limited(response.json())
    except ValueError:
        return False


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return said_by_github(body)


def said_by_github(body: object) -> str:
    """What a REST error body says, on one line (pure). GitHub puts the reasons of a 422 in
    `errors`, not in `message` ("Validation Failed", "Unprocessable Entity"): each a sentence,
    or an object whose `message` says it, else its `resource`, `field` and `code`."""
    if not isinstance(body, dict):
        return ""
    message = _one_line(str(body.get("message") or ""))
    errors = body.get("errors")
    reasons = [r for r in (_one_line(_reason(e)) for e in (errors if isinstance(errors, list) else [])) if r]
    if not reasons:
        return message
    return f"{message}: {'; '.join(reasons)}" if message else "; ".join(reasons)


def _reason(error: object) -> str:
    if not isinstance(error, dict):
        return str(error or "")
    if error.get("message"):
        return str(error["message"])
    return " ".join(str(error[key]) for key in ("resource", "field", "code") if error.get(key))
