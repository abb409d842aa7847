"""When to try a GitHub request again, and after how long. Pure: no clock, no I/O.

GitHub asks clients to honour ``Retry-After`` on secondary rate limits, to wait
for ``X-RateLimit-Reset`` when ``X-RateLimit-Remaining`` is 0, and tolerates
retries of server errors with backoff. Writes are retried only when GitHub
guarantees it did not act (rate limited), so a comment is never posted twice.
Every call has a deadline: no wait is begun that would outlast it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["GiveUp", "RetryPolicy", "Wait", "after_failure", "decide", "graphql_rate_limited", "rate_limited_for"]

_SERVER_ERRORS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    backoff: float = 0.5  # first backoff for a server error; doubles each time
    max_wait: float = 60.0  # longer waits than this are not worth blocking on
    # One call's whole time, every try, wait and read of an answer included: httpx's timeout
    # bounds each read alone, so a server sending a byte at a time would restart it forever.
    deadline: float = 120.0


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class GiveUp:
    reason: str
    wait_asked: float | None = None  # when rate limited: how long GitHub asks to wait


def _rate_limited(status: int, headers: Mapping[str, str], message: str) -> bool:
    if status == 429:
        return True
    if status != 403:
        return False
    return "retry-after" in headers or headers.get("x-ratelimit-remaining") == "0" or "rate limit" in message.lower()


def decide(
    policy: RetryPolicy,
    attempt: int,
    status: int,
    headers: Mapping[str, str],
    message: str,
    *,
    now: float,
    idempotent: bool,
    limited: bool = False,
    left: float = math.inf,
) -> Wait | GiveUp | None:
    """After try number ``attempt`` (1-based) answered ``status``: wait, give up, or
    None when the answer is final (success or an error retrying cannot fix).

    ``headers`` have lower-case names; ``now`` is the Unix time the answer came;
    ``limited`` says the body itself is a rate limit (GraphQL's, answered 200:
    :func:`graphql_rate_limited`); ``left`` is the seconds left of the call's deadline.
    """
    limited = limited or _rate_limited(status, headers, message)
    if not limited and (status not in _SERVER_ERRORS or not idempotent):
        return None
    backoff = policy.backoff * 2.0 ** (attempt - 1)
    wait = _rate_limit_wait(headers, now, backoff) if limited else backoff
    what = "rate limited" if limited else f"server error {status}"
    asked = wait if limited else None
    if attempt >= policy.attempts:
        return GiveUp(f"{what} after {attempt} tries", asked)
    if wait > policy.max_wait:
        return GiveUp(f"rate limited for {wait:.0f} s more (longer than {policy.max_wait:.0f} s)", asked)
    if wait > left:
        return GiveUp(f"{what}, and the call's deadline comes before its {round(wait, 1):g} s wait ends", asked)
    return Wait(wait)


def after_failure(policy: RetryPolicy, attempt: int, *, resendable: bool, left: float) -> Wait | None:
    """After try number ``attempt`` got no answer at all (refused, timed out, cut off): the wait
    before the next try, or None to give up. ``resendable``: sending it again cannot act twice
    (a read, or a request that never left); ``left``: seconds left of the call's deadline."""
    wait = policy.backoff * 2.0 ** (attempt - 1)
    if not resendable or attempt >= policy.attempts or wait >= left:
        return None
    return Wait(wait)


def rate_limited_for(
    status: int, headers: Mapping[str, str], message: str, *, now: float, limited: bool = False
) -> float | None:
    """How long GitHub asks to wait before the next request when this answer is a rate limit
    (``limited``: its body says so); None when it is not one. ``headers`` have lower-case
    names; ``now`` is Unix time."""
    return _rate_limit_wait(headers, now, 0.0) if limited or _rate_limited(status, headers, message) else None


# GitHub's GraphQL API answers a spent rate limit with 200 and an error of this type (newer
# answers say RATE_LIMIT), not with a 403 or 429 as its REST API does.
_GRAPHQL_RATE_LIMITED = frozenset({"RATE_LIMITED", "RATE_LIMIT"})


def graphql_rate_limited(body: object) -> bool:
    """Whether a GraphQL answer's body says the token's rate limit is spent."""
    if not isinstance(body, Mapping):
        return False
    errors = body.get("errors")
    if not isinstance(errors, list):
        return False
    return any(isinstance(e, Mapping) and e.get("type") in _GRAPHQL_RATE_LIMITED for e in errors)


def _rate_limit_wait(headers: Mapping[str, str], now: float, backoff: float) -> float:
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "").strip()
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        # A reset already past means our clock runs ahead of GitHub's, which still limits the
        # token: at least the backoff, so the tries left are not all spent at once.
        return max(float(reset) - now, backoff)
    # GitHub: without either header, wait at least a minute before retrying.
    return max(60.0, backoff)
