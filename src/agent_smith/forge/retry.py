"""When to try a GitHub request again, and after how long. Pure: no clock, no I/O.

GitHub asks clients to honour ``Retry-After`` on secondary rate limits, to wait
for ``X-RateLimit-Reset`` when ``X-RateLimit-Remaining`` is 0, and tolerates
retries of server errors with backoff. Writes are retried only when GitHub
guarantees it did not act (rate limited), so a comment is never posted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["GiveUp", "RetryPolicy", "Wait", "decide", "rate_limited_for"]

_SERVER_ERRORS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    backoff: float = 0.5  # first backoff for a server error; doubles each time
    max_wait: float = 60.0  # longer waits than this are not worth blocking on


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


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
) -> Wait | GiveUp | None:
    """After try number ``attempt`` (1-based) answered ``status``: wait, give up, or
    None when the answer is final (success or an error retrying cannot fix).

    ``headers`` have lower-case names; ``now`` is the Unix time the answer came.
    """
    limited = _rate_limited(status, headers, message)
    if not limited and (status not in _SERVER_ERRORS or not idempotent):
        return None
    if attempt >= policy.attempts:
        what = "rate limited" if limited else f"server error {status}"
        return GiveUp(f"{what} after {attempt} tries")
    backoff = policy.backoff * 2.0 ** (attempt - 1)
    wait = _rate_limit_wait(headers, now, backoff) if limited else backoff
    if wait > policy.max_wait:
        return GiveUp(f"rate limited for {wait:.0f} s more (longer than {policy.max_wait:.0f} s)")
    return Wait(wait)


def rate_limited_for(status: int, headers: Mapping[str, str], message: str, *, now: float) -> float | None:
    """How long GitHub asks to wait before the next request when this answer is a rate limit;
    None when it is not one. ``headers`` have lower-case names; ``now`` is Unix time."""
    return _rate_limit_wait(headers, now, 0.0) if _rate_limited(status, headers, message) else None


def _rate_limit_wait(headers: Mapping[str, str], now: float, backoff: float) -> float:
    retry_after = headers.get("retry-after", "").strip()
    if retry_after.isdigit():
        return float(retry_after)
    reset = headers.get("x-ratelimit-reset", "").strip()
    if headers.get("x-ratelimit-remaining") == "0" and reset.isdigit():
        return max(float(reset) - now, 0.0)
    # GitHub: without either header, wait at least a minute before retrying.
    return max(60.0, backoff)
