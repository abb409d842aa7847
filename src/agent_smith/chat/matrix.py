"""The homeserver, through httpx: a thin shell over the client-server API that hands back plain data.

Every transport failure and every answer that is not 2xx becomes an
`OperationError` with one line saying what failed where. A 429 is waited
out (``retry_after_ms``, or Retry-After) up to `RATE_LIMIT_RETRIES` times
per request, when it asks for at most `RATE_LIMIT_WAIT_MAX` seconds. A
connection that broke mid-request is tried once more at once (`BROKEN`);
other transport errors are not retried: the sync loop owns backoff, and a
tool call must fail promptly rather than hang on a dead homeserver.
What the answers mean is decided in `wire`, over plain data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import uuid
from collections.abc import Mapping, MutableMapping
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx

from agent_smith.chat.wire import Rooms, SyncBatch, failure, rate_limit_wait, read_batch, read_page
from agent_smith.errors import OperationError

__all__ = [
    "RATE_LIMIT_RETRIES",
    "RATE_LIMIT_WAIT_MAX",
    "SYNC_TIMELINE_LIMIT",
    "AgentLog",
    "BadRequest",
    "MatrixLink",
    "NotFound",
    "RateLimited",
    "SinceRefused",
    "SyncBatch",
    "TokenRefused",
    "wait_or_stop",
]

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 5
# A longer wait asked for is a failure now: a sync or a tool call must not hang on it for hours.
RATE_LIMIT_WAIT_MAX = 60.0
SYNC_TIMELINE_LIMIT = 100
# A homeserver that takes connections but does not answer fails a tool call after this, not a minute
# later (a sync's long-poll gets its own wait on top).
REQUEST_TIMEOUT = 15.0
API = "/_matrix/client/v3"
# The widest spread of a first sync's timeout (see `MatrixLink.sync`): a homeserver that did wait it out
# would hold a start up by a second at most.
FIRST_SYNC_TIMEOUT_MS = 1000

# A connection that broke after the request may have reached the homeserver (a keep-alive it had
# closed, a proxy's reset): not a refused connection, nor one that was left unanswered (a timeout).
BROKEN = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)

# Typing, receipts and presence would only wake the long-poll for nothing.
_NOTHING = {"not_types": ["*"]}
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": SYNC_TIMELINE_LIMIT}, "ephemeral": _NOTHING, "account_data": _NOTHING},
        "presence": _NOTHING,
        "account_data": _NOTHING,
    },
    separators=(",", ":"),
)

HISTORY_FILTER = json.dumps({"types": ["m.room.message"]}, separators=(",", ":"))
# What the channel acts on in a sync gap: the room's state and the reactions (its own 👀 among them)
# would only take places in the pages.
GAP_FILTER = json.dumps({"types": ["m.room.message", "m.room.encrypted", "m.room.redaction"]}, separators=(",", ":"))
GAP_PAGE = 100


@cache
def _trust() -> ssl.SSLContext:
    """The system's CA certificates (and SSL_CERT_FILE), not httpx's default certifi bundle.

    One context per process: loading the certificates costs time and memory,
    and the supervisor holds a link per agent.
    """
    return ssl.create_default_context()


def _part(value: str) -> str:
    """One path segment: room ids, aliases and event ids carry ``!``, ``#``, ``$`` and ``:``."""
    return quote(value, safe="")


class AgentLog(logging.LoggerAdapter[logging.Logger]):
    """Log lines each saying which agent they are about: the supervisor hosts every agent's
    channel, and their lines meet in one log."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        agent = (self.extra or {}).get("agent")
        kwargs["extra"] = {**(kwargs.get("extra") or {}), "agent": agent}
        return f"agent {agent}: {msg}", kwargs


class TokenRefused(OperationError):
    """A 401: the homeserver does not take the access token (unknown, missing or logged out)."""


class NotFound(OperationError):
    """A 404: no such room, event or alias (or none the agent may see)."""


class BadRequest(OperationError):
    """A 400: the homeserver does not take what was asked for."""


class SinceRefused(BadRequest):
    """A 400 to a sync from a token: perhaps a token this homeserver never gave (another one's, or
    one from before its database was reset), which no retry mends."""


class RateLimited(OperationError):
    """A 429 not waited out (a longer wait asked for than a call may take, or still refused after
    the retries): the homeserver asks for no request before `wait` seconds."""

    def __init__(self, line: str, wait: float) -> None:
        super().__init__(line)
        self.wait = wait


class MatrixLink:
    """One agent's connection to its homeserver (an access token, no end-to-end encryption)."""

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        access_token: str,
        *,
        agent: str,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self.log = AgentLog(log, {"agent": agent})
        self._timeout = request_timeout
        self._rooms = Rooms(user_id)
        # trust_env=False: the homeserver is reached directly (the pod's network policy allows it), never
        # through the HTTPS_PROXY an agent's environment names, which is its egress firewall.
        self._http = httpx.AsyncClient(
            base_url=self.homeserver + API,
            headers={"Authorization": f"Bearer {access_token}", "User-Agent": "agent-smith"},
            timeout=request_timeout,
            verify=_trust(),
            trust_env=False,
        )

    def use_token(self, access_token: str) -> None:
        """Call with `access_token` from now on (the agent was given a new one)."""
        self._http.headers["Authorization"] = f"Bearer {access_token}"

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        held: float = 0.0,
    ) -> Mapping[str, Any]:
        """One request's JSON answer; a 429 is waited out and a broken connection tried once more, each
        time with the same request (so the same txn id).

        `held`: how long the homeserver may hold the answer on purpose (a sync's
        long-poll), which the read may take on top of the request timeout.
        """
        timeout = httpx.Timeout(self._timeout, read=self._timeout + held)
        limited = 0
        broke = False
        while True:
            try:
                response = await self._http.request(method, path, params=params, json=body, timeout=timeout)
            except BROKEN as exc:
                # Every request here may be made twice (a send's transaction id has the homeserver answer
                # a repeat with the event it took the first time): failing it instead would have the model
                # send again a message that may well have been posted, under a new id, so twice.
                if not broke:
                    broke = True
                    continue
                raise OperationError(
                    f"{what}: homeserver {self.homeserver} unreachable ({type(exc).__name__}, twice)"
                ) from exc
            except httpx.TransportError as exc:
                raise OperationError(
                    f"{what}: homeserver {self.homeserver} unreachable ({type(exc).__name__})"
                ) from exc
            except httpx.HTTPError as exc:
                raise OperationError(f"{what}: homeserver {self.homeserver} failed ({type(exc).__name__})") from exc
            try:
                answer = response.json()
            except ValueError:
                answer = None
            wait = rate_limit_wait(response.status_code, answer, response.headers.get("retry-after"))
            if wait is not None and wait <= RATE_LIMIT_WAIT_MAX and limited < RATE_LIMIT_RETRIES:
                limited += 1
                self.log.warning("%s: rate limited by the homeserver; retrying in %.1fs", what, wait)
                await asyncio.sleep(wait)
                continue
            if not response.is_success:
                line = failure(what, response.status_code, response.reason_phrase, answer)
                if wait is not None:
                    raise RateLimited(line, wait)
                raise {400: BadRequest, 401: TokenRefused, 404: NotFound}.get(response.status_code, OperationError)(
                    line
                )
            if not isinstance(answer, Mapping):
                raise OperationError(f"{what}: {response.status_code} but the answer is not a JSON object")
            return answer

    async def sync(self, since: str | None, *, timeout_ms: int, full_state: bool = False) -> SyncBatch:
        if since is None:
            # Synapse hands an answer back to the same request for 2 minutes (its
            # `sync_response_cache_duration`), and the timeout is part of what makes it the same,
            # though a first sync never waits. A timeout of this attempt's own keeps a fresh start
            # right after another (a state file set aside, or removed) from taking the earlier
            # answer's token: everything said since would come as new work.
            timeout_ms = random.randint(1, FIRST_SYNC_TIMEOUT_MS)
        params = {"filter": SYNC_FILTER, "timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        if full_state:
            params["full_state"] = "true"
        try:
            answer = await self._call("sync", "GET", "/sync", params=params, held=timeout_ms / 1000)
        except BadRequest as exc:
            if since is None:
                raise
            raise SinceRefused(str(exc)) from exc
        batch = read_batch(answer, self.user_id, since)
        self._rooms.absorb(answer)
        return batch

    def joined_rooms(self) -> tuple[str, ...]:
        return self._rooms.joined()

    def room_name(self, room_id: str) -> str:
        return self._rooms.room_name(room_id)

    def member_name(self, room_id: str, user_id: str) -> str:
        return self._rooms.member_name(room_id, user_id)

    def is_encrypted(self, room_id: str) -> bool:
        return self._rooms.is_encrypted(room_id)

    async def send(self, room_id: str, event_type: str, content: Mapping[str, Any]) -> str:
        what = f"send {event_type} to {room_id}"
        # A new transaction id per event, unique across restarts: the homeserver answers a repeated
        # one with the earlier event and drops the new one.
        path = f"/rooms/{_part(room_id)}/send/{_part(event_type)}/{uuid.uuid4().hex}"
        return _string(await self._call(what, "PUT", path, body=content), "event_id", what)

    async def join(self, room: str) -> str:
        what = f"join {room}"
        return _string(await self._call(what, "POST", f"/join/{_part(room)}", body={}), "room_id", what)

    async def get_event(self, room_id: str, event_id: str) -> Mapping[str, Any]:
        return await self._call(
            f"get {event_id} in {room_id}", "GET", f"/rooms/{_part(room_id)}/event/{_part(event_id)}"
        )

    async def thread_latest(self, room_id: str, root: str) -> str | None:
        """The newest event in the thread of `root` the homeserver knows; None when it has none yet."""
        answer = await self._call(
            f"thread of {root} in {room_id}",
            "GET",
            # The relations API is only under v1: an absolute URL, past the client's v3 base.
            f"{self.homeserver}/_matrix/client/v1/rooms/{_part(room_id)}/relations/{_part(root)}/m.thread",
            params={"dir": "b", "limit": "1"},
        )
        chunk = answer.get("chunk")
        newest = chunk[0] if isinstance(chunk, list) and chunk and isinstance(chunk[0], Mapping) else {}
        event_id = newest.get("event_id")
        return event_id if isinstance(event_id, str) else None

    async def recent(
        self, room_id: str, limit: int, before: str | None = None
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        """Up to `limit` of the room's messages before the pagination token `before` (the latest when
        None), oldest first, and the token of the page before them: None at the room's beginning.
        From the homeserver, so it covers any gap."""
        params = {"dir": "b", "limit": str(limit), "filter": HISTORY_FILTER}
        if before is not None:
            params["from"] = before
        # Messages only: reactions and state events would take places of the `limit`.
        answer = await self._call(f"history of {room_id}", "GET", f"/rooms/{_part(room_id)}/messages", params=params)
        events, earlier = read_page(answer, before or "")
        return events[::-1], earlier

    async def missed(self, room_id: str, start: str, since: str) -> list[Mapping[str, Any]]:
        """The events a limited sync left out, oldest first: those between the sync token `since` the
        sync was made from and `start`, its timeline's ``prev_batch`` (the spec's way to fill a gap)."""
        events: list[Mapping[str, Any]] = []
        page: str | None = start
        while page is not None:
            answer = await self._call(
                f"missed events of {room_id}",
                "GET",
                f"/rooms/{_part(room_id)}/messages",
                params={"dir": "b", "from": page, "to": since, "limit": str(GAP_PAGE), "filter": GAP_FILTER},
            )
            chunk, page = read_page(answer, page)
            events.extend(chunk)
        return events[::-1]


def _string(answer: Mapping[str, Any], key: str, what: str) -> str:
    value = answer.get(key)
    if not isinstance(value, str):
        raise OperationError(f"{what}: the answer has no {key}")
    return value


async def wait_or_stop(delay: float, stop: asyncio.Event) -> bool:
    """Sleep `delay` seconds unless `stop` is set first; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=delay)
    except TimeoutError:
        return False
    return True
