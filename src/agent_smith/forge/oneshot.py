"""One review-activity check without an HTTP library or an event loop: the Stop hook's path.

A hook is a new process every time, so what it imports is what it costs:
`http.client` and `ssl` instead of httpx and asyncio, one POST, no retries
(the hook tries again at its next poll). Proxy (with credentials) and CA come
from the environment, as for the async client.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Mapping, Sequence
from urllib.parse import unquote, urlsplit

from agent_smith.errors import OperationError, UsageError
from agent_smith.forge.activity import ReviewActivity
from agent_smith.forge.environment import proxy_for, ssl_context
from agent_smith.forge.query import REVIEW_ACTIVITY_QUERY, parse_review_activity, review_activity_search


def review_activity_once(
    graphql_url: str,
    login: str,
    repos: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = 20.0,
) -> ReviewActivity:
    """`ForgeClient.review_activity`'s one round trip, synchronously; OperationError on any failure."""
    source = os.environ if env is None else env
    token = source.get("GITHUB_TOKEN") or source.get("GH_TOKEN") or ""
    if not token:
        raise UsageError("no GitHub token: set GITHUB_TOKEN")
    target = urlsplit(graphql_url)
    host = target.hostname or ""
    port = target.port or 443
    body = json.dumps({"query": REVIEW_ACTIVITY_QUERY, "variables": {"q": review_activity_search(login, repos)}})
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": "agent-smith",
    }
    connection = _connection(graphql_url, host, port, source, timeout)
    what = f"review activity of {login}"
    try:
        connection.request("POST", target.path or "/graphql", body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise OperationError(f"{what}: cannot reach {host}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
    if response.status == 401:
        raise OperationError(f"{what}: {host} rejected the token (401); check GITHUB_TOKEN")
    if response.status >= 400:
        raise OperationError(f"{what}: {host} answered {response.status} {response.reason}".rstrip())
    try:
        answer = json.loads(raw)
    except ValueError as exc:
        raise OperationError(f"{what}: {host} sent a non-JSON GraphQL answer") from exc
    if answer.get("errors"):
        first = answer["errors"][0]
        raise OperationError(f"{what}: GitHub says: {first.get('message', first)}")
    return parse_review_activity(login, answer["data"], None)


def _connection(url: str, host: str, port: int, env: Mapping[str, str], timeout: float) -> http.client.HTTPSConnection:
    context = ssl_context(env)
    proxy = proxy_for(url, env)
    if proxy is None:
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    connection = http.client.HTTPSConnection(via.hostname or "", via.port or 80, timeout=timeout, context=context)
    tunnel_headers = {}
    if via.username is not None:
        credentials = f"{unquote(via.username)}:{unquote(via.password or '')}"
        tunnel_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    connection.set_tunnel(host, port, headers=tunnel_headers)
    return connection
