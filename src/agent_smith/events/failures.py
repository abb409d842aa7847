"""What a failure to use NATS tells a person, for the publisher and the readers alike (pure).

nats-py reports a refused login as an error callback and then raises
`NoServersError`, and a server without JetStream as a 503 that reads like an
outage. Both are configuration problems that no retry fixes: said as such,
rather than "unreachable", they send people to the right place.
"""

from __future__ import annotations

from collections.abc import Iterable

import nats

from agent_smith.credentials import shown_url

_AUTHORIZATION = "authorization violation"


def refusal(error: BaseException) -> str | None:
    """What the server said when it refused this client's credentials, or None for any other error."""
    if isinstance(error, nats.errors.AuthorizationError) or (
        isinstance(error, nats.errors.Error) and _AUTHORIZATION in str(error).lower()
    ):
        return _AUTHORIZATION
    return None


def configuration_problem(url: str, errors: Iterable[BaseException]) -> str | None:
    """The one line for the first of `errors` that is a configuration problem (a refused login, no
    JetStream), or None when none is: then the server is just unreachable or failing."""
    for error in errors:
        # No code: no responder on the JetStream API at all. A 503 with a code is a JetStream that
        # is there but busy (a leader election), which passes.
        if isinstance(error, nats.js.errors.ServiceUnavailableError) and error.code is None:
            return f"JetStream is not enabled on {shown_url(url)}"
        said = refusal(error)
        if said is not None:
            return f"NATS at {shown_url(url)} refused the credentials ({said})"
    return None
