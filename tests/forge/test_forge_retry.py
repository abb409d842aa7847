"""When the forge client retries, and how long it waits: a table."""

from __future__ import annotations

import pytest

from agent_smith.forge import GiveUp, RetryPolicy, Wait, decide
from agent_smith.forge.retry import after_failure, graphql_rate_limited, rate_limited_for

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
            Wait(0.5),  # a reset already past (our clock ahead of GitHub's): not at once
        ),
        (1, 403, {}, "You have exceeded a secondary rate limit", True, Wait(60.0)),
        (1, 403, {"retry-after": "3600"}, "", True, GiveUp("rate limited for 3600 s more (longer than 60 s)", 3600.0)),
        (3, 429, {"retry-after": "1"}, "", True, GiveUp("rate limited after 3 tries", 1.0)),
    ],
)
def test_decide(
    attempt: int, status: int, headers: dict[str, str], message: str, idempotent: bool, expected: Wait | GiveUp | None
) -> None:
    assert decide(POLICY, attempt, status, headers, message, now=NOW, idempotent=idempotent) == expected


LIMIT_SPENT = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}


@pytest.mark.parametrize(
    ("attempt", "status", "headers", "idempotent", "limited", "left", "expected"),
    [
        # GraphQL says its limit is spent with a 200: the body decides, reads and writes alike.
        (1, 200, LIMIT_SPENT, True, True, 100.0, Wait(30.0)),
        (1, 200, LIMIT_SPENT, False, True, 100.0, Wait(30.0)),
        (1, 200, {}, True, True, 100.0, Wait(60.0)),
        (1, 200, LIMIT_SPENT, True, False, 100.0, None),  # the last request the limit allowed
        # No wait is begun that the call's deadline would cut short.
        (
            1,
            502,
            {},
            True,
            False,
            0.4,
            GiveUp("server error 502, and the call's deadline comes before its 0.5 s wait ends"),
        ),
        (
            1,
            200,
            LIMIT_SPENT,
            True,
            True,
            10.0,
            GiveUp("rate limited, and the call's deadline comes before its 30 s wait ends", 30.0),
        ),
        (2, 503, {}, True, False, 1.5, Wait(1.0)),
    ],
)
def test_decide_with_a_graphql_rate_limit_and_a_deadline(
    attempt: int,
    status: int,
    headers: dict[str, str],
    idempotent: bool,
    limited: bool,
    left: float,
    expected: Wait | GiveUp | None,
) -> None:
    got = decide(POLICY, attempt, status, headers, "", now=NOW, idempotent=idempotent, limited=limited, left=left)
    assert got == expected


@pytest.mark.parametrize(
    ("attempt", "resendable", "left", "expected"),
    [
        (1, True, 100.0, Wait(0.5)),
        (2, True, 100.0, Wait(1.0)),
        (3, True, 100.0, None),  # the policy's last try
        (1, False, 100.0, None),  # a write that may have landed is not sent again
        (1, True, 0.5, None),  # the backoff would end at the deadline
    ],
)
def test_after_failure(attempt: int, resendable: bool, left: float, expected: Wait | None) -> None:
    assert after_failure(POLICY, attempt, resendable=resendable, left=left) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errors": [{"type": "RATE_LIMITED", "message": "API rate limit exceeded for user ID 1."}]}, True),
        ({"errors": [{"type": "RATE_LIMIT", "code": "graphql_rate_limit", "message": "…"}]}, True),
        ({"data": {"s0": None}, "errors": [{"type": "NOT_FOUND", "message": "…"}]}, False),
        ({"data": {}}, False),
        ({"errors": "RATE_LIMITED"}, False),
        (["RATE_LIMITED"], False),
        (None, False),
    ],
)
def test_graphql_rate_limited(body: object, expected: bool) -> None:
    assert graphql_rate_limited(body) is expected


def test_rate_limited_for_a_graphql_body_reads_the_reset() -> None:
    assert rate_limited_for(200, LIMIT_SPENT, "", now=NOW) is None
    assert rate_limited_for(200, LIMIT_SPENT, "", now=NOW, limited=True) == 30.0
