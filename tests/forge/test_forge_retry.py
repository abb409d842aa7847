"""When the forge client retries, and how long it waits: a table."""

from __future__ import annotations

import pytest

from agent_smith.forge import GiveUp, RetryPolicy, Wait, decide

POLICY = RetryPolicy(attempts=3, backoff=0.5, max_wait=60)
NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("attempt", "status", "headers", "message", "idempotent", "expected"),
    [
        (1, 200, {}, "", True, None),
        (1, 404, {}, "Not Found", True, None),
        (1, 401, {}, "Bad credentials", True, None),
        (1, 403, {}, "Must have push access", True, None),
        (1, 502, {}, "", True, Wait(0.5)),
        (2, 503, {}, "", True, Wait(1.0)),
        (3, 500, {}, "", True, GiveUp("server error 500 after 3 tries")),
        (1, 502, {}, "", False, None),  # a write may have happened: never resent
        (1, 403, {"retry-after": "7"}, "secondary rate limit", True, Wait(7.0)),
        (1, 403, {"retry-after": "7"}, "secondary rate limit", False, Wait(7.0)),
        (1, 429, {"retry-after": "2"}, "", False, Wait(2.0)),
        (
            1,
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)},
            "API rate limit exceeded",
            True,
            Wait(30.0),
        ),
        (
            1,
            403,
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)},
            "API rate limit exceeded",
            True,
            Wait(0.0),
        ),
        (1, 403, {}, "You have exceeded a secondary rate limit", True, Wait(60.0)),
        (1, 403, {"retry-after": "3600"}, "", True, GiveUp("rate limited for 3600 s more (longer than 60 s)")),
        (3, 429, {"retry-after": "1"}, "", True, GiveUp("rate limited after 3 tries")),
    ],
)
def test_decide(
    attempt: int, status: int, headers: dict[str, str], message: str, idempotent: bool, expected: Wait | GiveUp | None
) -> None:
    assert decide(POLICY, attempt, status, headers, message, now=NOW, idempotent=idempotent) == expected
