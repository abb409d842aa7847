"""The firewall's network shell: asyncio sockets, TLS, HTTP/1.1 (h11) and HTTP/2 (h2) framing.

Every decision is made by `policy`; this module only carries verdicts out.
Explicit mode speaks CONNECT; transparent mode reads the host from the TLS
SNI. Either way the tunnel's host is the authority the policy checks
requests against, and the upstream is dialed at the address resolved once
for that tunnel.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import resource
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h11

from agent_smith.egress.audit import AuditEntry, AuditLog, Metrics, utc_now
from agent_smith.egress.claude import (
    ClaudeTokens,
    apply_token_response,
    expired,
    refresh_due,
    refresh_refusal,
    refresh_request_body,
    stub_refresh_answer,
    unusable_login_answer,
)
from agent_smith.egress.policy import (
    AnswerRefresh,
    Denied,
    Forward,
    RequestView,
    Rule,
    Scrubber,
    Secret,
    TunnelAllowed,
    authorize_tunnel,
    check_address,
    evaluate,
    host_matches,
    normalize_host,
    redact_target,
    secret_forms,
    split_authority,
)
from agent_smith.egress.settings import FirewallSettings
from agent_smith.egress.sockstream import SocketStream
from agent_smith.egress.state import derive_password
from agent_smith.egress.websocket import ServerFrameScrubber, upstream_cut
from agent_smith.errors import AgentSmithError, OperationError
from agent_smith.listeners import inherited_sockets, listening_sockets

if TYPE_CHECKING:
    from agent_smith.certs import CertificateAuthority

__all__ = ["Firewall"]

log = logging.getLogger("agent_smith.egress")

_READ = 256 * 1024
_MAX_HEAD = 64 * 1024
_HEAD_TIMEOUT = 30.0
_IDLE_TIMEOUT = 300.0
_UPSTREAM_TIMEOUT = 300.0
_CONNECT_TIMEOUT = 15.0
_MAX_LOCAL_BODY = 1 << 20
# Bodies up to this size are scrubbed whole, so the client still gets a Content-Length.
_BUFFER_LIMIT = 1 << 20
_LEAF_CACHE = 4096
# Connections held at once, overall and by one agent: a client that opens them without end (or a
# slow one, each held until a timeout) would otherwise take every file descriptor, and the
# firewall would accept no one else's. Each intercepted connection holds two descriptors.
_MAX_CONNECTIONS = 4096
_MAX_PER_AGENT = 512
_FD_RESERVE = 64
# Out of descriptors, accepting fails at once: wait a little rather than spin, and say so once a burst.
_ACCEPT_BACKOFF = 0.5
_WARN_EVERY = 10.0
TRANSPARENT_AGENT = "(transparent)"
# A WebSocket close frame from the server's side (unmasked), status 1002: protocol error.
_WS_CLOSE_PROTOCOL_ERROR = b"\x88\x02\x03\xea"

# Renewed logins scrubbed until they expire (one renewal in refresh_before: a few at most).
_RENEWED_KEPT = 8
# The Claude login's renewal: the exchange with the token endpoint is bounded as the CLI bounds
# its own (30 s); a failed one is tried again after _RENEW_RETRY; another process renewing it
# is waited for at most _RENEW_PATIENCE; a stopping firewall lets one whose refresh token may
# already be spent finish for at most _RENEW_GRACE (within `down`'s 10 s before SIGKILL).
_RENEW_TIMEOUT = 30.0
_RENEW_RETRY = 30.0
_RENEW_PATIENCE = 45.0
_RENEW_GRACE = 8.0
_CLAUDE_SECRET = "claude-login"
_CLIENT_GONE = "the client's connection ended before the answer"
# Never forwarded: they describe this hop, or the firewall handles them itself.
_HOP_REQUEST = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "upgrade", "expect", "host"}
)
_HOP_RESPONSE = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-connection", "upgrade", "transfer-encoding"}
)


@dataclass
class _Tunnel:
    agent: str
    host: str
    port: int
    rule: Rule | None
    addresses: list[tuple[str, int]] = field(default_factory=list)
    # Dialed while the client's TLS handshake runs, so the first request finds it ready.
    eager: asyncio.Task[_Upstream] | None = None

    async def take_eager(self) -> _Upstream | None:
        task, self.eager = self.eager, None
        return await task if task is not None else None

    def drop_eager(self) -> None:
        task, self.eager = self.eager, None
        if task is None:
            return
        if not task.done():
            task.cancel()
        elif not task.cancelled() and task.exception() is None:
            task.result().close()


class _LeafCache:
    """One server context per intercepted host, minted by the firewall CA on first use.

    The CA (and cryptography, ~25 ms of imports) loads at the first interception: a
    firewall starts beside the agents' booting CLIs, and may only ever refuse or tunnel.
    """

    def __init__(self, ca: Callable[[], CertificateAuthority], alpn: Sequence[str]) -> None:
        self._load_ca = ca
        self._alpn = list(alpn)
        self._contexts: OrderedDict[str, ssl.SSLContext] = OrderedDict()
        self._hosts: dict[int, str] = {}

    def get(self, host: str) -> ssl.SSLContext:
        ctx = self._contexts.get(host)
        if ctx is not None:
            self._contexts.move_to_end(host)
            return ctx
        ca = self._ca
        cert, key = ca.issue([host])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(self._alpn)
        # OpenSSL reads a key only from a path. An anonymous in-memory file is one: the leaf's key
        # never touches a filesystem, and a firewall that is killed leaves no file behind.
        with os.fdopen(os.memfd_create("agent-smith-leaf", os.MFD_CLOEXEC), "w+b") as fh:
            fh.write(cert + ca.cert_pem + key)
            fh.flush()
            ctx.load_cert_chain(f"/proc/self/fd/{fh.fileno()}")
        self._contexts[host] = ctx
        self._hosts[id(ctx)] = host
        if len(self._contexts) > _LEAF_CACHE:
            _, old = self._contexts.popitem(last=False)
            self._hosts.pop(id(old), None)
        return ctx

    @functools.cached_property
    def _ca(self) -> CertificateAuthority:
        return self._load_ca()

    def host_of(self, ctx: ssl.SSLContext) -> str | None:
        return self._hosts.get(id(ctx))


def _connection_cap(fd_limit: int) -> int:
    """How many client connections to hold at once under a limit of `fd_limit` descriptors."""
    return max(1, min(_MAX_CONNECTIONS, (fd_limit - _FD_RESERVE) // 2))


@dataclass
class _Throttle:
    """One log line per burst of the same trouble: the first at once, then at most one per
    `every` seconds, counting what was held back (a hostile client must not flood the log)."""

    every: float
    last: float = -math.inf
    held: int = 0

    def due(self, now: float) -> int | None:
        """None to stay quiet; otherwise log now, saying how many were held back since the last line."""
        if now - self.last < self.every:
            self.held += 1
            return None
        held, self.held, self.last = self.held, 0, now
        return held


class _Source(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


class _Sink(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> None: ...

    async def drain(self) -> None: ...


async def _next_event(conn: h11.Connection, reader: _Source, idle: float) -> Any:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            async with asyncio.timeout(idle):
                data = await reader.read(_READ)
            conn.receive_data(data)
            continue
        return event


async def _next_head(conn: h11.Connection, reader: _Source, idle: float) -> Any:
    """The client's next request head (or the end of its connection), bounded as a whole.

    A client may wait `idle` seconds before it starts a head; from its first byte the whole head
    has `_HEAD_TIMEOUT`, however it is dribbled (a timeout per read would let a byte every few
    seconds hold the connection for ever). h11 limits only a head still incomplete, so one that
    arrives whole in one read is measured here: what h11 took from its buffer to make the event.
    """
    loop = asyncio.get_running_loop()
    received = len(conn.trailing_data[0])
    deadline = loop.time() + _HEAD_TIMEOUT if received else None
    while (event := conn.next_event()) is h11.NEED_DATA:
        if deadline is None:
            async with asyncio.timeout(idle):
                data = await reader.read(_READ)
            deadline = loop.time() + _HEAD_TIMEOUT
        else:
            async with asyncio.timeout_at(deadline):
                data = await reader.read(_READ)
        received += len(data)
        conn.receive_data(data)
    if isinstance(event, h11.Request) and received - len(conn.trailing_data[0]) > _MAX_HEAD:
        raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
    return event


class _Upstream:
    """One HTTP/1.1 connection to the real server, kept alive across requests of a tunnel."""

    def __init__(self, stream: SocketStream) -> None:
        self.reader = stream
        self.writer = stream
        self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
        self.trailers: list[tuple[bytes, bytes]] = []
        # The last body was relayed past h11 and `conn` already starts the next cycle.
        self.relayed = False
        self._pending: list[bytes] = []

    def queue(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self._pending.append(data)

    async def flush(self) -> None:
        if self._pending:
            self.writer.write(b"".join(self._pending))
            self._pending.clear()
            await self.writer.drain()

    async def send(self, event: Any) -> None:
        self.queue(event)
        await self.flush()

    async def next_event(self) -> Any:
        return await _next_event(self.conn, self.reader, _UPSTREAM_TIMEOUT)

    async def read_body(self) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        """The rest of a response whose declared length is small: (body, trailers)."""
        chunks = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                chunks.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks), list(event.headers)
            else:
                raise OperationError("the upstream closed in the middle of the response")

    async def body(self, response: h11.Response, method: str) -> AsyncIterator[bytes]:
        """The body of `response` as it arrives; its trailers are in `self.trailers` afterwards.

        A body framed by Content-Length alone is relayed straight from the socket once the head
        is parsed: h11 would copy every byte three times (into its buffer, out as a bytearray,
        into bytes) and cut it into events, which decides the throughput of a large download.
        The length is counted here instead, and the connection gets a fresh h11 state machine
        for its next request, exactly as h11 would leave it.
        """
        self.trailers = []
        length = _relay_length(response, method)
        if length is None:
            while True:
                event = await self.next_event()
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self.trailers = list(event.headers)
                    return
                else:
                    raise OperationError("the upstream closed in the middle of the response")
        buffered, _ = self.conn.trailing_data
        # Whatever follows the body was never asked for (requests are not pipelined): the
        # connection cannot be trusted for another request then.
        keep = _keeps_alive(response) and len(buffered) <= length
        left = length
        if buffered:
            first = buffered[:left]
            left -= len(first)
            yield first
        while left:
            async with asyncio.timeout(_UPSTREAM_TIMEOUT):
                data = await self.reader.read(min(left, _READ))
            if not data:
                raise OperationError("the upstream closed in the middle of the response")
            left -= len(data)
            yield data
        if keep:
            self.conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD)
            self.relayed = True
        else:
            self.close()

    @property
    def reusable(self) -> bool:
        return (
            self.conn.our_state is h11.IDLE
            and self.conn.their_state is h11.IDLE
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def finish(self) -> bool:
        if self.relayed:
            self.relayed = False
            return self.reusable
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
            return True
        self.close()
        return False

    def close(self) -> None:
        self.writer.close()


def _text(value: bytes) -> str:
    return value.decode("latin-1")


def _framing_safe(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Never forward both Transfer-Encoding and Content-Length: upstream and firewall could frame differently."""
    if any(n == "transfer-encoding" for n, _ in headers):
        return [(n, v) for n, v in headers if n != "content-length"]
    return list(headers)


def _declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return None


def _relay_length(response: h11.Response, method: str) -> int | None:
    """The body length when Content-Length alone frames it (what h11 would decide), else None."""
    if method == "HEAD" or response.status_code in (204, 304):
        return None
    names = {name.lower() for name, _ in response.headers}
    if b"transfer-encoding" in names:
        return None
    return _declared_length(response.headers)


def _keeps_alive(response: h11.Response) -> bool:
    """h11's rule: HTTP/1.1 without `Connection: close` (the firewall never asks for close itself)."""
    if response.http_version < b"1.1":
        return False
    tokens = b",".join(v for n, v in response.headers if n.lower() == b"connection").lower()
    return b"close" not in (t.strip() for t in tokens.split(b","))


def _wire(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header text back to the bytes it came from (latin-1 round-trips every byte)."""
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


def _is_websocket_upgrade(headers: Sequence[tuple[str, str]]) -> bool:
    connection = ",".join(v for n, v in headers if n == "connection").lower()
    upgrade = ",".join(v for n, v in headers if n == "upgrade").lower()
    return "upgrade" in connection and "websocket" in upgrade


def _response_headers(
    headers: Sequence[tuple[bytes, bytes]], scrubber: Scrubber, has_body: bool
) -> list[tuple[str, str]]:
    out = []
    # h11 gives names lowercased: a secret in one is found lowercased too.
    names = Scrubber({k.lower(): v.lower() for k, v in scrubber.replacements.items()})
    for raw_name, raw_value in headers:
        name = _text(names.scrub(raw_name.lower()))
        if name in _HOP_RESPONSE:
            continue
        if name == "content-length" and has_body and scrubber.active:
            # The scrub may change the body's length: the framing is redone toward the client.
            continue
        out.append((name, _text(scrubber.scrub(raw_value))))
    return out


# Toward a guarded host, never forwarded: a coded body hides a secret from the scrub, and two byte
# ranges that cut one in two are each scrubbed alone, so neither holds it whole for the agent to join.
_WHOLE_BODY_ONLY = frozenset({"accept-encoding", "range", "if-range"})


def _plain_bodies(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """A request's headers asking for whole bodies without content coding: the scrub reads plain bytes
    and can only find a secret it sees whole."""
    return [*((n, v) for n, v in headers if n not in _WHOLE_BODY_ONLY), ("accept-encoding", "identity")]


def _guarded(secrets: Sequence[Secret], host: str) -> bool:
    """Whether an answer from `host` may carry a real secret: one is sent there. Its bodies are then
    asked for, and taken, uncoded only (the scrub reads plain bytes); other hosts' stay as they come."""
    return any(host_matches(pattern, host) for secret in secrets for pattern in secret.hosts)


def _unscrubbable(status: int, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """Why a response body cannot be scrubbed (a part of a body or a content coding, sent though
    not asked for), or None."""
    # A part may begin or end inside a secret: the scrub never sees it whole, and the agent joins parts.
    if status == 206 or any(n.lower() == b"content-range" for n, _ in headers):
        return "the upstream sent a part of a body, though asked for the whole"
    # Only a body Content-Length alone frames can be known empty: with Transfer-Encoding beside
    # it, h11 reads the chunks and ignores the length, so a "0" would let a coded body through.
    framed_by_length = not any(n.lower() == b"transfer-encoding" for n, _ in headers)
    if framed_by_length and _declared_length(headers) == 0:
        return None
    codings = [_text(v).strip().lower() for n, v in headers if n.lower() == b"content-encoding"]
    coded = [c for c in ",".join(codings).split(",") if c.strip() not in ("", "identity")]
    if not coded:
        return None
    return f"the upstream sent a {','.join(c.strip() for c in coded)}-coded body, though asked for none"


@dataclass
class _Exchange:
    """What the audit line of one request needs, filled in as the request goes."""

    tunnel: _Tunnel
    method: str
    target: str
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    decision: str = "allowed"
    rule: str | None = None
    reason: str | None = None
    swapped: tuple[str, ...] = ()
    # The encoded forms of the secrets this request carried (an upstream's error may quote them).
    echoes: tuple[tuple[str, str], ...] = ()
    recorded: bool = False


class Firewall:
    """``async with Firewall(settings) as fw: fw.address`` — the running firewall."""

    def __init__(self, settings: FirewallSettings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.audit = AuditLog(settings.audit_path, self.metrics, settings.on_denied)
        alpn = ["h2", "http/1.1"] if settings.http2 else ["http/1.1"]
        # The CA exists once the firewall has started (clients are told to trust it), but it is
        # loaded only to intercept.
        settings.ca_store.ca_cert()
        self._leaves = _LeafCache(settings.ca_store.ca, alpn)
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[asyncio.Task[Any]] = set()
        self._connection_cap = _connection_cap(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self._per_agent: dict[str, int] = {}
        self._accept_failed = _Throttle(_WARN_EVERY)
        self._over_cap = _Throttle(_WARN_EVERY)
        self._claude: ClaudeTokens | None = None
        # Logins renewed away, until they expire: an API host may hand back one it got earlier,
        # and it still works (renewal comes refresh_before its expiry).
        self._claude_before: list[ClaudeTokens] = []
        self._claude_mtime: float | None = None
        # One renewal at a time, whoever asks (the schedule, requests waiting for an expired login).
        self._renewal: asyncio.Task[None] | None = None
        # Why the last renewal failed, until one succeeds: what requests are told while the login is expired.
        self._renewal_failed: str | None = None
        self._sni_contexts = {
            agent: self._transparent_context(agent) for agent in (TRANSPARENT_AGENT, *settings.transparent_agents)
        }
        self.address: tuple[str, int] | None = None
        self.transparent_address: tuple[str, int] | None = None
        self.transparent_agent_addresses: dict[str, tuple[str, int]] = {}
        self.metrics_address: tuple[str, int] | None = None

    @functools.cached_property
    def _upstream_ssl(self) -> ssl.SSLContext:
        # Made at the first intercepted request: reading the system's CA bundle takes ~25 ms.
        ctx = ssl.create_default_context(cafile=str(self.settings.upstream_ca) if self.settings.upstream_ca else None)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    async def start(self) -> None:
        s = self.settings
        unknown = sorted(set(s.transparent_agents) - s.agents)
        if unknown:
            raise OperationError(f"a transparent listener for an agent the crew does not have: {', '.join(unknown)}")
        self._load_claude()
        if s.listen_fds:
            self.address = self._serve(self._explicit, inherited_sockets(s.listen_fds))
        else:
            self.address = self._listen(self._explicit, s.listen, "the firewall")
        if s.transparent_listen is not None:
            handler = functools.partial(self._transparent, TRANSPARENT_AGENT)
            self.transparent_address = self._listen(handler, s.transparent_listen, "the transparent listener")
        for agent, address in s.transparent_agents.items():
            handler = functools.partial(self._transparent, agent)
            self.transparent_agent_addresses[agent] = self._listen(
                handler, address, f"the transparent listener of {agent}"
            )
        if s.metrics_listen is not None:
            self.metrics_address = self._listen(self._metrics, s.metrics_listen, "the metrics endpoint")
        if s.claude_store is not None and s.policy.claude is not None:
            if self._claude is None:
                log.warning(
                    "egress.claude_login is enabled but no login was imported "
                    "(agent-smith firewall import-claude-login FILE): model requests go out with the stub token"
                )
            self._spawn(self._refresh_loop())

    def _listen(
        self, handler: Callable[[SocketStream], Coroutine[Any, Any, None]], address: tuple[str, int], what: str
    ) -> tuple[str, int]:
        try:
            sockets = listening_sockets(address[0], address[1])
        except OSError as exc:
            raise OperationError(f"{what} cannot listen on {address[0]}:{address[1]}: {exc.strerror}") from exc
        return self._serve(handler, sockets)

    def _serve(
        self, handler: Callable[[SocketStream], Coroutine[Any, Any, None]], sockets: list[socket.socket]
    ) -> tuple[str, int]:
        self._listeners += sockets
        for sock in sockets:
            self._spawn(self._accept(sock, handler))
        host, port = sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _accept(
        self, listener: socket.socket, handler: Callable[[SocketStream], Coroutine[Any, Any, None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(listener)
            except OSError as exc:
                # Out of file descriptors, say: the connections already open go on; try again shortly.
                if (held := self._accept_failed.due(loop.time())) is not None:
                    log.warning("accepting a connection failed: %s%s", exc.strerror, _held_back(held))
                await asyncio.sleep(_ACCEPT_BACKOFF)
                continue
            if len(self._connections) >= self._connection_cap:
                sock.close()
                if (held := self._over_cap.due(loop.time())) is not None:
                    log.warning(
                        "refused a connection: %d are open, the most the firewall holds at once%s",
                        self._connection_cap,
                        _held_back(held),
                    )
                continue
            try:
                stream = SocketStream(sock)
            except OSError:
                # Reset before it was set up.
                sock.close()
                continue
            task = loop.create_task(handler(stream))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    async def stop(self) -> None:
        if self._renewal is not None:
            # Its refresh token may be spent already: cut short, the new one would be lost with the login.
            await asyncio.wait([self._renewal], timeout=_RENEW_GRACE)
        pending = [*self._tasks, *self._connections, *([self._renewal] if self._renewal is not None else [])]
        for task in pending:
            task.cancel("the firewall stopped")
        await asyncio.gather(*pending, return_exceptions=True)
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        self.audit.close()

    async def __aenter__(self) -> Firewall:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, work: Awaitable[None]) -> None:
        async def run() -> None:
            await work

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- secrets of the moment ------------------------------------------------------------

    def _load_claude(self) -> None:
        store = self.settings.claude_store
        if store is None:
            return
        try:
            mtime = store.path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime != self._claude_mtime:
            loaded = store.load()
            now_ms = time.time() * 1000
            before = [*self._claude_before, *([self._claude] if self._claude is not None else [])]
            self._claude_before = [t for t in before if t.expires_at_ms > now_ms and t != loaded][-_RENEWED_KEPT:]
            self._claude = loaded
            self._claude_mtime = mtime

    def secrets_now(self) -> list[Secret]:
        secrets = list(self.settings.secrets)
        claude = self.settings.policy.claude
        if claude is not None and self._claude is not None:
            secrets.append(
                Secret(
                    name=_CLAUDE_SECRET,
                    placeholder=claude.stub_access_token,
                    value=self._claude.access_token,
                    hosts=claude.api_hosts,
                    header="authorization",
                    scheme="bearer",
                )
            )
        return secrets

    def without_secrets(self, text: str, secrets: Sequence[Secret], echoes: Sequence[tuple[str, str]] = ()) -> str:
        """Text from a library (an error message) with any secret value replaced, before it goes anywhere."""
        scrubber = self.scrubber_for(secrets, echoes)
        return scrubber.scrub(text.encode("utf-8", "replace")).decode("utf-8", "replace")

    def scrubber_for(self, secrets: Sequence[Secret], echoes: Sequence[tuple[str, str]] = ()) -> Scrubber:
        pairs = [(s.value, s.placeholder) for s in secrets]
        claude = self.settings.policy.claude
        if claude is not None and self._claude is not None:
            pairs.append((self._claude.refresh_token, claude.stub_refresh_token))
            for renewed in self._claude_before:
                pairs += [
                    (renewed.access_token, claude.stub_access_token),
                    (renewed.refresh_token, claude.stub_refresh_token),
                ]
        table = {
            found.encode(): shown.encode()
            for value, placeholder in pairs
            for found, shown in secret_forms(value, placeholder).items()
        }
        for sent, original in echoes:
            table[sent.encode()] = original.encode()
        return Scrubber(table)

    # ---- audit ----------------------------------------------------------------------------

    def record(self, ex: _Exchange, secrets: Sequence[Secret]) -> None:
        """Write the audit line once, before the client sees the end of the answer."""
        if ex.recorded:
            return
        ex.recorded = True
        self.audit.record(
            AuditEntry(
                time=utc_now(),
                agent=ex.tunnel.agent,
                method=ex.method,
                host=ex.tunnel.host,
                port=ex.tunnel.port,
                path=redact_target(ex.target, secrets),
                status=ex.status,
                bytes_up=ex.bytes_up,
                bytes_down=ex.bytes_down,
                duration_ms=round((time.perf_counter() - ex.started) * 1000, 3),
                decision=ex.decision,
                rule=ex.rule,
                reason=self.without_secrets(ex.reason, secrets, ex.echoes) if ex.reason else None,
                swapped=ex.swapped,
            )
        )

    @contextlib.contextmanager
    def audited_if_cut(self, ex: _Exchange, secrets: Sequence[Secret]) -> Iterator[None]:
        """Record an exchange whose task was cancelled (its client reset it, its connection ended,
        the firewall stopped): it may have reached the upstream with a secret swapped in."""
        try:
            yield
        except asyncio.CancelledError as exc:
            ex.decision, ex.reason = "error", str(exc.args[0]) if exc.args else "cancelled"
            self.record(ex, secrets)
            raise

    def _refuse_tunnel(self, tunnel: _Tunnel, method: str, denied: Denied, status: int = 403) -> None:
        ex = _Exchange(tunnel, method, "", status=status, decision="denied", rule=denied.rule, reason=denied.reason)
        self.record(ex, self.settings.secrets)

    # ---- explicit mode --------------------------------------------------------------------

    async def _explicit(self, stream: SocketStream) -> None:
        await self._guard(self._explicit_session(stream, stream), stream)

    async def _guard(self, work: Awaitable[None], stream: SocketStream) -> None:
        self.metrics.open_connections += 1
        try:
            await work
        except asyncio.CancelledError:
            # `stop()` ends every open connection; nothing to report.
            pass
        except (ConnectionError, TimeoutError, ssl.SSLError, h11.ProtocolError, h2.exceptions.ProtocolError) as exc:
            log.debug("client connection ended: %s", type(exc).__name__)
        except OSError as exc:
            log.debug("client connection ended: %s", exc.strerror)
        except AgentSmithError as exc:
            # Said on purpose (an unusable CA, say): one line, no traceback.
            log.error("a client could not be served: %s", exc)
        except Exception:
            log.exception("unexpected failure serving a client; the firewall keeps serving others")
        finally:
            self.metrics.open_connections -= 1
            stream.close()

    def _authenticate(self, value: str | None) -> str | None:
        if value is None:
            return None
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            agent, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if not sep or agent not in self.settings.agents:
            return None
        expected = derive_password(self.settings.identity_key, agent)
        return agent if hmac.compare_digest(expected.encode(), password.encode()) else None

    async def _explicit_session(self, reader: SocketStream, writer: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        try:
            event = await _next_head(conn, reader, _HEAD_TIMEOUT)
        except h11.RemoteProtocolError as exc:
            self.record(
                _Exchange(
                    _Tunnel("-", "-", 0, None),
                    "-",
                    "",
                    status=exc.error_status_hint,
                    decision="malformed",
                    reason=str(exc),
                ),
                (),
            )
            await _simple_h1(conn, writer, exc.error_status_hint, "malformed request")
            return
        if not isinstance(event, h11.Request):
            return
        headers = [(_text(n).lower(), _text(v)) for n, v in event.headers]
        method = _text(event.method)
        agent = self._authenticate(next((v for n, v in headers if n == "proxy-authorization"), None))
        if agent is None:
            # Where it asked to go, for the audit line (git asks once without credentials, then with them).
            host, port = split_authority(_text(event.target)) if method == "CONNECT" else ("-", None)
            self.record(
                _Exchange(
                    _Tunnel("-", host or "-", port if port is not None and 0 < port < 65536 else 0, None),
                    method,
                    "",
                    status=407,
                    decision="unauthenticated",
                    reason="no valid proxy credentials",
                ),
                (),
            )
            await _simple_h1(
                conn,
                writer,
                407,
                "proxy authentication required",
                [("proxy-authenticate", 'Basic realm="agent-smith"')],
            )
            return
        if method != "CONNECT":
            denied = Denied("only HTTPS through CONNECT is proxied; plain HTTP is refused")
            self._refuse_tunnel(_Tunnel(agent, "-", 0, None), method, denied)
            await _simple_h1(conn, writer, 403, denied.reason)
            return
        host, port = split_authority(_text(event.target))
        if port is None or not 0 < port < 65536:
            reason = "CONNECT needs host:port"
            self.record(
                _Exchange(
                    _Tunnel(agent, host or "-", 0, None), method, "", status=400, decision="malformed", reason=reason
                ),
                (),
            )
            await _simple_h1(conn, writer, 400, reason)
            return
        tunnel = _Tunnel(agent, host, port, None)
        with self._held_by(agent) as held:
            if not held:
                denied = _over_agent_cap(agent)
                self._refuse_tunnel(tunnel, method, denied, 429)
                await _simple_h1(conn, writer, 429, denied.reason)
                return
            await self._open_tunnel(conn, reader, writer, tunnel, method)

    @contextlib.contextmanager
    def _held_by(self, agent: str) -> Iterator[bool]:
        """Count a connection against its agent's cap while it lasts; False when the agent is at the cap."""
        if self._per_agent.get(agent, 0) >= _MAX_PER_AGENT:
            yield False
            return
        self._per_agent[agent] = self._per_agent.get(agent, 0) + 1
        try:
            yield True
        finally:
            self._per_agent[agent] -= 1
            if not self._per_agent[agent]:
                del self._per_agent[agent]

    async def _open_tunnel(
        self, conn: h11.Connection, reader: SocketStream, writer: SocketStream, tunnel: _Tunnel, method: str
    ) -> None:
        agent, host, port = tunnel.agent, tunnel.host, tunnel.port
        verdict = authorize_tunnel(self.settings.policy, agent, host, port)
        if isinstance(verdict, Denied):
            self._refuse_tunnel(tunnel, method, verdict)
            await _simple_h1(conn, writer, 403, verdict.reason)
            return
        tunnel.rule = verdict.rule
        refusal = await self._resolve(tunnel, verdict)
        if refusal is not None:
            self._refuse_tunnel(tunnel, method, refusal[0], refusal[1])
            await _simple_h1(conn, writer, refusal[1], refusal[0].reason)
            return
        if conn.trailing_data[0]:
            # The client spoke before being answered; the TLS layer cannot take those bytes back.
            return
        if tunnel.rule is not None:
            tunnel.eager = asyncio.get_running_loop().create_task(self.connect(tunnel))
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(_HEAD_TIMEOUT):
                await writer.start_tls(self._leaves.get(tunnel.host), server_side=True)
            await self._serve_tls(tunnel, reader, writer)
        finally:
            tunnel.drop_eager()

    async def _resolve(self, tunnel: _Tunnel, verdict: TunnelAllowed) -> tuple[Denied, int] | None:
        rule = verdict.rule
        if rule is None:
            return None
        try:
            ipaddress.ip_address(tunnel.host)
            found = [(tunnel.host, tunnel.port)]
        except ValueError:
            try:
                found = await self.settings.resolver(tunnel.host, tunnel.port)
            except OSError:
                return Denied(f"cannot resolve {tunnel.host}", rule.origin), 502
        good, reasons = [], []
        for address, port in found:
            reason = check_address(rule.allow_private, address)
            if reason is None:
                good.append((address, port))
            else:
                reasons.append(reason)
        if not good:
            why = reasons[0] if reasons else "nothing"
            return Denied(f"{tunnel.host} resolves to {why}", rule.origin), 403
        tunnel.addresses = good
        return None

    async def _serve_tls(self, tunnel: _Tunnel, reader: SocketStream, writer: SocketStream) -> None:
        ssl_object = writer.ssl_object
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            await _H2Session(self, tunnel, reader, writer).run()
        else:
            await self._h1_session(tunnel, reader, writer)

    # ---- transparent mode -----------------------------------------------------------------

    def _transparent_context(self, agent: str) -> ssl.SSLContext:
        """The listener's TLS context; its SNI callback decides for `agent` (the listener's own)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2", "http/1.1"] if self.settings.http2 else ["http/1.1"])
        ctx.sni_callback = functools.partial(self._sni, agent)
        return ctx

    def _sni(self, agent: str, ssl_object: ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext) -> int | None:
        if not server_name:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        host = normalize_host(server_name)
        port = self.settings.transparent_port
        verdict = authorize_tunnel(self.settings.policy, agent, host, port)
        if isinstance(verdict, Denied):
            self._refuse_tunnel(_Tunnel(agent, host, port, None), "TLS", verdict)
            return ssl.ALERT_DESCRIPTION_ACCESS_DENIED
        ssl_object.context = self._leaves.get(host)
        return None

    async def _transparent(self, agent: str, stream: SocketStream) -> None:
        await self._guard(self._transparent_session(agent, stream, stream), stream)

    async def _transparent_session(self, agent: str, reader: SocketStream, writer: SocketStream) -> None:
        async with asyncio.timeout(_HEAD_TIMEOUT):
            await writer.start_tls(self._sni_contexts[agent], server_side=True)
        ssl_object = writer.ssl_object
        host = self._leaves.host_of(ssl_object.context) if ssl_object is not None else None
        if host is None:
            return
        port = self.settings.transparent_port
        tunnel = _Tunnel(agent, host, port, None)
        verdict = authorize_tunnel(self.settings.policy, agent, host, port)
        if isinstance(verdict, Denied):
            return
        with self._held_by(agent) as held:
            if not held:
                denied = _over_agent_cap(agent)
                self._refuse_tunnel(tunnel, "TLS", denied, 429)
                return
            await self._intercept_transparent(tunnel, verdict, reader, writer)

    async def _intercept_transparent(
        self, tunnel: _Tunnel, verdict: TunnelAllowed, reader: SocketStream, writer: SocketStream
    ) -> None:
        tunnel.rule = verdict.rule
        refusal = await self._resolve(tunnel, verdict)
        if refusal is not None:
            self._refuse_tunnel(tunnel, "TLS", refusal[0], refusal[1])
            return
        try:
            await self._serve_tls(tunnel, reader, writer)
        finally:
            tunnel.drop_eager()

    # ---- HTTP/1.1 inside a tunnel ---------------------------------------------------------

    async def _h1_session(self, tunnel: _Tunnel, reader: SocketStream, writer: SocketStream) -> None:
        client = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        upstream: _Upstream | None = None
        try:
            while True:
                try:
                    event = await _next_head(client, reader, _IDLE_TIMEOUT)
                except h11.RemoteProtocolError as exc:
                    ex = _Exchange(tunnel, "-", "", status=exc.error_status_hint, decision="malformed", reason=str(exc))
                    self.record(ex, ())
                    await _simple_h1(client, writer, exc.error_status_hint, "malformed request")
                    return
                if not isinstance(event, h11.Request):
                    return
                upstream, keep = await self._h1_exchange(tunnel, client, reader, writer, event, upstream)
                if not keep or client.our_state is not h11.DONE or client.their_state is not h11.DONE:
                    return
                client.start_next_cycle()
        finally:
            if upstream is not None:
                upstream.close()

    async def _h1_exchange(
        self,
        tunnel: _Tunnel,
        client: h11.Connection,
        reader: SocketStream,
        writer: SocketStream,
        request: h11.Request,
        upstream: _Upstream | None,
    ) -> tuple[_Upstream | None, bool]:
        ex = _Exchange(tunnel, _text(request.method), _text(request.target))
        await self.claude_ready(tunnel.host)
        secrets = self.secrets_now()
        with self.audited_if_cut(ex, secrets):
            return await self._h1_answer(ex, secrets, client, reader, writer, request, upstream)

    async def _h1_answer(
        self,
        ex: _Exchange,
        secrets: Sequence[Secret],
        client: h11.Connection,
        reader: SocketStream,
        writer: SocketStream,
        request: h11.Request,
        upstream: _Upstream | None,
    ) -> tuple[_Upstream | None, bool]:
        tunnel = ex.tunnel
        headers = [(_text(n).lower(), _text(v)) for n, v in request.headers]
        authority = next((v for n, v in headers if n == "host"), None)
        forwarded = tuple((n, v) for n, v in headers if n not in _HOP_REQUEST)
        view = RequestView(tunnel.agent, tunnel.host, tunnel.port, ex.method, ex.target, authority, forwarded)
        verdict = evaluate(self.settings.policy, secrets, view)
        if isinstance(verdict, Denied):
            ex.status, ex.decision, ex.rule, ex.reason = 403, "denied", verdict.rule, verdict.reason
            self.record(ex, secrets)
            await _simple_h1(client, writer, 403, verdict.reason)
            return upstream, False
        if isinstance(verdict, AnswerRefresh):
            body = await _h1_body(client, reader, _MAX_LOCAL_BODY)
            status, answer = self.answer_refresh(body)
            ex.status, ex.decision, ex.rule, ex.bytes_up = status, "answered", "egress.claude_login", len(body)
            payload = json.dumps(answer).encode()
            ex.bytes_down = len(payload)
            self.record(ex, secrets)
            await _simple_h1(client, writer, status, payload, [("content-type", "application/json")], close=False)
            return upstream, True
        if (unusable := self.claude_unusable(verdict)) is not None:
            ex.status, ex.decision, ex.rule, ex.reason = 401, "error", "egress.claude_login", unusable
            self.record(ex, secrets)
            payload = json.dumps(unusable_login_answer(unusable)).encode()
            await _simple_h1(client, writer, 401, payload, [("content-type", "application/json")])
            return upstream, False
        ex.rule, ex.swapped, ex.echoes = verdict.rule.origin, verdict.swapped, verdict.echoes
        scrubber = self.scrubber_for(secrets, verdict.echoes)
        guarded = _guarded(secrets, tunnel.host)
        websocket = _is_websocket_upgrade(headers)
        up_headers = [("host", authority or tunnel.host), *_framing_safe(verdict.headers)]
        if guarded:
            up_headers = _plain_bodies(up_headers)
        if websocket:
            up_headers = [(n, v) for n, v in up_headers if n != "sec-websocket-extensions"]
            up_headers += [("connection", "Upgrade"), ("upgrade", "websocket")]
        try:
            if upstream is None or not upstream.reusable:
                if upstream is not None:
                    upstream.close()
                upstream = await tunnel.take_eager() or await self.connect(tunnel)
            # Queued, not written: a request without a body goes out in one write with its end.
            upstream.queue(h11.Request(method=request.method, target=request.target, headers=_wire(up_headers)))
            if client.they_are_waiting_for_100_continue:
                writer.write(client.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            while True:
                event = await _next_event(client, reader, _IDLE_TIMEOUT)
                if isinstance(event, h11.Data):
                    ex.bytes_up += len(event.data)
                    await upstream.send(event)
                elif isinstance(event, h11.EndOfMessage):
                    await upstream.send(h11.EndOfMessage())
                    break
                else:
                    upstream.close()
                    return None, False
            while True:
                response = await upstream.next_event()
                if isinstance(response, h11.InformationalResponse):
                    if response.status_code == 101 and websocket:
                        ex.status = 101
                        self.record(ex, secrets)
                        await self._websocket(tunnel, client, writer, reader, upstream, response, scrubber)
                        return None, False
                    if response.status_code != 100:
                        headers_out = _response_headers(response.headers, scrubber, False)
                        writer.write(
                            client.send(
                                h11.InformationalResponse(status_code=response.status_code, headers=_wire(headers_out))
                            )
                            or b""
                        )
                    continue
                break
            if not isinstance(response, h11.Response):
                raise OperationError("the upstream closed without answering")
            has_body = ex.method != "HEAD" and response.status_code not in (204, 304)
            if has_body and guarded and (why := _unscrubbable(response.status_code, response.headers)):
                raise OperationError(why)
            ex.status = response.status_code
            out_headers = _response_headers(response.headers, scrubber, has_body)
            declared = _declared_length(response.headers)
            whole: bytes | None = None
            if has_body and scrubber.active and declared is not None and declared <= _BUFFER_LIMIT:
                raw, _ = await upstream.read_body()
                whole = scrubber.feed(raw) + scrubber.flush()
                out_headers.append(("content-length", str(len(whole))))
        except (OSError, TimeoutError, ssl.SSLError, h11.ProtocolError, OperationError) as exc:
            if upstream is not None:
                upstream.close()
            reason = self.without_secrets(_upstream_failure(exc), secrets, ex.echoes)
            ex.status, ex.decision, ex.reason = 502, "error", reason
            self.record(ex, secrets)
            if client.our_state is h11.SEND_RESPONSE:
                await _simple_h1(client, writer, 502, f"upstream {tunnel.host}:{tunnel.port}: {reason}")
            return None, False
        try:
            head = client.send(
                h11.Response(status_code=ex.status, headers=_wire(out_headers), reason=scrubber.scrub(response.reason))
            )
            if whole is not None:
                # One write for the whole answer: one TLS record, one syscall.
                ex.bytes_down = len(whole)
                parts = [head or b"", (client.send(h11.Data(data=whole)) or b"") if whole else b""]
                self.record(ex, secrets)
                parts.append(client.send(h11.EndOfMessage()) or b"")
                writer.write(b"".join(parts))
                await writer.drain()
                return (upstream if upstream.finish() else None), True
            writer.write(head or b"")
            async for chunk in upstream.body(response, ex.method):
                data = scrubber.feed(chunk)
                if data:
                    ex.bytes_down += len(data)
                    # The chunk framing around the data, not a joined copy of it.
                    writer.writelines(client.send_with_data_passthrough(h11.Data(data=data)) or ())
                    await writer.drain()
            tail = scrubber.flush()
            if tail:
                ex.bytes_down += len(tail)
                writer.write(client.send(h11.Data(data=tail)) or b"")
            trailers = _response_headers(upstream.trailers, scrubber, False)
            self.record(ex, secrets)
            writer.write(client.send(h11.EndOfMessage(headers=trailers)) or b"")
            await writer.drain()
        except (OSError, TimeoutError, ssl.SSLError, h11.ProtocolError, OperationError) as exc:
            upstream.close()
            # Writing to a client that left fails too, and is no fault of the upstream's.
            ex.decision, ex.reason = "error", _CLIENT_GONE if writer.is_closing() else _upstream_failure(exc)
            self.record(ex, secrets)
            return None, False
        self.record(ex, secrets)
        return (upstream if upstream.finish() else None), True

    async def connect(self, tunnel: _Tunnel) -> _Upstream:
        last: BaseException | None = None
        for address, port in tunnel.addresses:
            try:
                async with asyncio.timeout(_CONNECT_TIMEOUT):
                    stream = await SocketStream.connect(address, port)
                    try:
                        await stream.start_tls(self._upstream_ssl, server_side=False, server_hostname=tunnel.host)
                    except BaseException:
                        stream.abort()
                        raise
                return _Upstream(stream)
            except (OSError, TimeoutError) as exc:
                last = exc
        raise OperationError(f"cannot connect: {_upstream_failure(last) if last else 'no address'}")

    async def _websocket(
        self,
        tunnel: _Tunnel,
        client: h11.Connection,
        writer: SocketStream,
        reader: SocketStream,
        upstream: _Upstream,
        response: h11.InformationalResponse,
        scrubber: Scrubber,
    ) -> None:
        # An extension the server chose anyway (the firewall offered none) would code frames past the scrub.
        headers = [
            h for h in _response_headers(response.headers, scrubber, False) if h[0] != "sec-websocket-extensions"
        ]
        headers += [("connection", "Upgrade"), ("upgrade", "websocket")]
        writer.write(client.send(h11.InformationalResponse(status_code=101, headers=_wire(headers))) or b"")
        frames = ServerFrameScrubber(scrubber.replacements)
        where = f"agent {tunnel.agent}, {tunnel.host}:{tunnel.port}"
        try:
            # What either side sent right behind the handshake came with it.
            upstream.writer.write(client.trailing_data[0])
            writer.write(frames.feed(upstream.conn.trailing_data[0]))
            to_upstream = asyncio.create_task(_pump(reader, upstream.writer, bytes))
            to_client = asyncio.create_task(_pump(upstream.reader, writer, frames.feed))
            try:
                # Whichever side ends first ends the WebSocket: what one side sends after the
                # other is gone can reach no one, and the side left must not wait for it.
                done, _ = await asyncio.wait((to_upstream, to_client), return_when=asyncio.FIRST_COMPLETED)
            finally:
                to_upstream.cancel()
                to_client.cancel()
                await asyncio.wait((to_upstream, to_client))
            # The server's side first: a coded or masked frame raises here.
            ended = (to_client if to_client in done else to_upstream).result()
            if ended.stream is not upstream.reader:
                log.debug("a WebSocket ended at its client's side (%s)", where)
                return
            why = upstream_cut(frames.closed, ended.error)
            if why is not None:
                log.warning("a WebSocket was cut off: %s (%s); its client's connection is closed too", why, where)
        except ValueError as exc:
            log.warning("a WebSocket was cut off: %s (%s)", exc, where)
            # The client learns why (1002, protocol error) rather than wait on a connection gone quiet.
            with contextlib.suppress(OSError):
                writer.write(_WS_CLOSE_PROTOCOL_ERROR)
                await writer.drain()
        finally:
            upstream.close()

    # ---- the Claude login -----------------------------------------------------------------

    def answer_refresh(self, body: bytes) -> tuple[int, dict[str, Any]]:
        claude = self.settings.policy.claude
        if claude is None:
            return 404, {"error": "not_found"}
        try:
            grant = json.loads(body or b"{}").get("grant_type")
        except (ValueError, AttributeError):
            grant = None
        if grant != "refresh_token":
            return 400, {
                "error": "invalid_grant",
                "error_description": "agent-smith: the firewall owns this login; only token refreshes are answered",
            }
        scopes = self._claude.scopes if self._claude is not None else ()
        return 200, stub_refresh_answer(claude.stub_access_token, claude.stub_refresh_token, scopes)

    async def claude_ready(self, host: str) -> None:
        """Toward a model API host while the real login is expired (the firewall was down when it
        was due, say): wait for its renewal, started now unless the last one failed (the schedule
        tries again), so that requests never carry an expired token and cause one renewal, not one each."""
        claude, tokens = self.settings.policy.claude, self._claude
        if claude is None or tokens is None or not expired(tokens, time.time()):
            return
        if not any(host_matches(h, host) for h in claude.api_hosts):
            return
        if (self._renewal is None or self._renewal.done()) and self._renewal_failed is not None:
            return
        # Shielded: a request its client gives up on must not cut the renewal short.
        await asyncio.shield(self._renew_soon())

    def claude_unusable(self, verdict: object) -> str | None:
        """Why a request that would carry the real login is answered here instead: it expired and
        could not be renewed (the API would answer 401 for an expired token, pointing at a `/login`
        the firewall refuses). None when it may go."""
        if not isinstance(verdict, Forward) or _CLAUDE_SECRET not in verdict.swapped or self._claude is None:
            return None
        if not expired(self._claude, time.time()):
            return None
        return f"the Claude login expired and renewing it failed: {self._renewal_failed or 'it is still being renewed'}"

    def _renew_soon(self) -> asyncio.Task[None]:
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.get_running_loop().create_task(self._renew())
        return self._renewal

    async def _refresh_loop(self) -> None:
        while True:
            # Shielded: stopping the schedule must not cut a renewal short (stop() gives it time).
            await asyncio.shield(self._renew_soon())
            delay = _RENEW_RETRY
            if self._claude is not None and self._renewal_failed is None:
                until = self._claude.expires_at_ms / 1000 - self.settings.claude_refresh_before - time.time()
                delay = min(_RENEW_RETRY, max(1.0, until))
            await asyncio.sleep(delay)

    async def _renew(self) -> None:
        """Renew the real login if it is due, under the store's lock, and keep the outcome; never raises."""
        store = self.settings.claude_store
        claude = self.settings.policy.claude
        if store is None or claude is None:
            return
        margin = self.settings.claude_refresh_before
        try:
            self._load_claude()
            if self._claude is not None and refresh_due(self._claude, time.time(), margin):
                async with store.renewing(_RENEW_PATIENCE):
                    # Another firewall, or an import, may have replaced it while this one waited.
                    self._load_claude()
                    tokens = self._claude
                    if tokens is not None and refresh_due(tokens, time.time(), margin):
                        async with asyncio.timeout(_RENEW_TIMEOUT):
                            answer = await self._post_token(
                                claude.token_host, claude.token_port, claude.token_path, tokens
                            )
                        fresh = apply_token_response(tokens, answer, time.time())
                        store.save(fresh)
                        self._load_claude()
                        log.info("refreshed the Claude login", extra={"expires_at_ms": fresh.expires_at_ms})
            self._renewal_failed = None
        except (OperationError, OSError, TimeoutError, ssl.SSLError, h11.ProtocolError) as exc:
            why = self.without_secrets(_upstream_failure(exc), self.secrets_now())
            self._renewal_failed = why
            log.warning("refreshing the Claude login failed; retrying in %d s: %s", _RENEW_RETRY, why)

    async def _post_token(self, host: str, port: int, path: str, tokens: ClaudeTokens) -> Any:
        found = await self.settings.resolver(host, port)
        tunnel = _Tunnel("(firewall)", host, port, None, [a for a in found if check_address(True, a[0]) is None])
        upstream = await self.connect(tunnel)
        try:
            body = json.dumps(refresh_request_body(tokens)).encode()
            await upstream.send(
                h11.Request(
                    method="POST",
                    target=path,
                    headers=[
                        ("host", host if port == 443 else f"{host}:{port}"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                        ("user-agent", "agent-smith-firewall"),
                    ],
                )
            )
            await upstream.send(h11.Data(data=body))
            await upstream.send(h11.EndOfMessage())
            response = await upstream.next_event()
            while isinstance(response, h11.InformationalResponse):
                response = await upstream.next_event()
            if not isinstance(response, h11.Response):
                raise OperationError("the token endpoint closed without answering")
            chunks = []
            size = 0
            while not isinstance(event := await upstream.next_event(), h11.EndOfMessage):
                if not isinstance(event, h11.Data):
                    raise OperationError("the token endpoint closed in the middle of its answer")
                size += len(event.data)
                if size > _MAX_LOCAL_BODY:
                    raise OperationError("the token endpoint's answer is too large")
                chunks.append(event.data)
            if response.status_code != 200:
                raise OperationError(refresh_refusal(response.status_code, b"".join(chunks)))
            try:
                return json.loads(b"".join(chunks))
            except ValueError as exc:
                raise OperationError("the token endpoint's answer is not JSON") from exc
        finally:
            upstream.close()

    # ---- metrics --------------------------------------------------------------------------

    async def _metrics(self, stream: SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        try:
            event = await _next_head(conn, stream, _HEAD_TIMEOUT)
            if isinstance(event, h11.Request) and _text(event.target).split("?")[0] in ("/metrics", "/"):
                await _simple_h1(
                    conn,
                    stream,
                    200,
                    self.metrics.exposition(),
                    [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                )
            elif isinstance(event, h11.Request):
                await _simple_h1(conn, stream, 404, "only /metrics here")
        except (h11.ProtocolError, OSError, TimeoutError):
            pass
        finally:
            stream.close()


def _over_agent_cap(agent: str) -> Denied:
    return Denied(f"{agent} holds {_MAX_PER_AGENT} connections already, the most one agent may")


def _held_back(count: int) -> str:
    return f" ({count} more like it since the last warning)" if count else ""


def _upstream_failure(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, h11.ProtocolError):
        # h11 quotes the offending bytes with repr(), which escapes a "'" as "\\'" (next to a '"'):
        # a spelling of a secret the scrub cannot know. Said without them.
        said = str(exc)
        cut = min((i for quoted in _QUOTED_BYTES if (i := said.find(quoted)) >= 0), default=len(said))
        return f"an answer that is not HTTP/1.1 ({said[:cut].rstrip(' :')})"
    return str(exc)


# How h11 begins quoting bytes in an error: "illegal header line: bytearray(b'…')".
_QUOTED_BYTES = ("bytearray(", "b'", 'b"')


@dataclass(frozen=True)
class _Ended:
    """Where a relay stopped: the stream that ended (read to its end, or failed), and its error."""

    stream: object
    error: OSError | None


async def _pump(src: _Source, dst: _Sink, rewrite: Callable[[bytes], bytes]) -> _Ended:
    """Relay `src` to `dst` until either ends: `src` at its end of stream or when reading it fails
    (a reset), `dst` when writing to it fails."""
    while True:
        try:
            data = await src.read(_READ)
        except OSError as exc:
            return _Ended(src, exc)
        if not data:
            return _Ended(src, None)
        out = rewrite(data)
        if out:
            dst.write(out)
            try:
                await dst.drain()
            except OSError as exc:
                return _Ended(dst, exc)


async def _h1_body(conn: h11.Connection, reader: SocketStream, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, reader, _IDLE_TIMEOUT)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > limit:
                raise h11.RemoteProtocolError("request body too large", error_status_hint=413)
            chunks.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        else:
            raise h11.RemoteProtocolError("the client closed in the middle of its request")


async def _simple_h1(
    conn: h11.Connection,
    writer: SocketStream,
    status: int,
    body: str | bytes,
    headers: Sequence[tuple[str, str]] = (),
    *,
    close: bool = True,
) -> None:
    """A complete small response; with `close`, the connection ends after it."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    payload = body if isinstance(body, bytes) else f"agent-smith firewall: {body}\n".encode()
    all_headers = [
        *headers,
        ("content-length", str(len(payload))),
        *([("content-type", "text/plain; charset=utf-8")] if isinstance(body, str) else []),
        *([("connection", "close")] if close else []),
    ]
    try:
        writer.write(conn.send(h11.Response(status_code=status, headers=all_headers)) or b"")
        writer.write(conn.send(h11.Data(data=payload)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
    except h11.LocalProtocolError:
        return


# ---- HTTP/2 toward the client ---------------------------------------------------------------

_H2_DROP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"})


class _H2Session:
    """An HTTP/2 client connection: each stream is one request forwarded over a pooled HTTP/1.1 upstream."""

    def __init__(self, fw: Firewall, tunnel: _Tunnel, reader: SocketStream, writer: SocketStream) -> None:
        self.fw = fw
        self.tunnel = tunnel
        self.reader = reader
        self.writer = writer
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=config)
        self.bodies: dict[int, asyncio.Queue[tuple[bytes, int] | None]] = {}
        self.ended_with_headers: set[int] = set()
        self.windows: dict[int, asyncio.Event] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.pool: list[_Upstream] = []

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)

    async def run(self) -> None:
        self.conn.initiate_connection()
        self.flush()
        ended = _CLIENT_GONE
        try:
            while True:
                async with asyncio.timeout(_IDLE_TIMEOUT):
                    data = await self.reader.read(_READ)
                if not data:
                    return
                try:
                    events = self.conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    self.flush()
                    return
                for event in events:
                    if not self.handle(event):
                        self.flush()
                        return
                self.flush()
                await self.writer.drain()
        except asyncio.CancelledError as exc:
            ended = str(exc.args[0]) if exc.args else ended
            raise
        finally:
            for task in self.tasks.values():
                task.cancel(ended)
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            for upstream in self.pool:
                upstream.close()

    def handle(self, event: h2.events.Event) -> bool:
        if isinstance(event, h2.events.RequestReceived):
            sid = event.stream_id
            self.bodies[sid] = asyncio.Queue()
            if event.stream_ended is not None:
                self.bodies[sid].put_nowait(None)
                self.ended_with_headers.add(sid)
            task = asyncio.get_running_loop().create_task(self.stream(sid, event.headers or []))
            self.tasks[sid] = task
            task.add_done_callback(functools.partial(self._forget, sid))
        elif isinstance(event, h2.events.DataReceived):
            queue = self.bodies.get(event.stream_id)
            if queue is not None:
                # Credit goes back only once the bytes were forwarded: a slow upstream slows the client.
                queue.put_nowait((event.data or b"", event.flow_controlled_length or 0))
            elif event.flow_controlled_length:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            ended = self.bodies.get(event.stream_id)
            if ended is not None:
                ended.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset):
            reset = self.tasks.get(event.stream_id)
            if reset is not None:
                reset.cancel("the client reset the stream")
        elif isinstance(event, h2.events.WindowUpdated):
            if event.stream_id == 0:
                for waiter in self.windows.values():
                    waiter.set()
            elif (stream_waiter := self.windows.get(event.stream_id)) is not None:
                stream_waiter.set()
        elif isinstance(event, h2.events.ConnectionTerminated):
            return False
        return True

    def _forget(self, sid: int, _task: object = None) -> None:
        self.tasks.pop(sid, None)
        self.bodies.pop(sid, None)
        self.ended_with_headers.discard(sid)
        self.windows.pop(sid, None)

    async def send_data(self, sid: int, data: bytes, end: bool) -> None:
        view = memoryview(data)
        while view:
            window = self.conn.local_flow_control_window(sid)
            if window <= 0:
                waiter = self.windows.setdefault(sid, asyncio.Event())
                waiter.clear()
                await waiter.wait()
                continue
            # As many frames as the window allows, then one write: one TLS record train, one syscall.
            frame = self.conn.max_outbound_frame_size
            sendable, view = view[:window], view[window:]
            while sendable:
                self.conn.send_data(sid, bytes(sendable[:frame]))
                sendable = sendable[frame:]
            self.flush()
            await self.writer.drain()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    async def respond(self, sid: int, status: int, body: bytes, content_type: str) -> None:
        self.conn.send_headers(
            sid, [(":status", str(status)), ("content-type", content_type), ("content-length", str(len(body)))]
        )
        await self.send_data(sid, body, True)

    async def read_body(self, sid: int, limit: int) -> bytes:
        chunks, size = [], 0
        while (item := await self.bodies[sid].get()) is not None:
            chunk, credit = item
            self.credit(sid, credit)
            size += len(chunk)
            if size > limit:
                raise OperationError("request body too large")
            chunks.append(chunk)
        return b"".join(chunks)

    def credit(self, sid: int, size: int) -> None:
        if size:
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self.conn.acknowledge_received_data(size, sid)
            self.flush()

    async def stream(self, sid: int, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        fw, tunnel = self.fw, self.tunnel
        pseudo: dict[str, str] = {}
        headers: list[tuple[str, str]] = []
        for raw_name, raw_value in raw_headers:
            name, value = _text(raw_name).lower(), _text(raw_value)
            if name.startswith(":"):
                pseudo[name] = value
            else:
                headers.append((name, value))
        ex = _Exchange(tunnel, pseudo.get(":method", "-"), pseudo.get(":path", ""))
        authority = pseudo.get(":authority") or next((v for n, v in headers if n == "host"), None)
        forwarded = tuple((n, v) for n, v in headers if n not in _HOP_REQUEST)
        await fw.claude_ready(tunnel.host)
        secrets = fw.secrets_now()
        if ex.method == "CONNECT":
            verdict: Any = Denied("CONNECT inside an intercepted HTTP/2 connection is refused")
        else:
            view = RequestView(tunnel.agent, tunnel.host, tunnel.port, ex.method, ex.target, authority, forwarded)
            verdict = evaluate(fw.settings.policy, secrets, view)
        with fw.audited_if_cut(ex, secrets):
            await self._answer(sid, ex, verdict, authority, secrets)

    async def _answer(
        self, sid: int, ex: _Exchange, verdict: Any, authority: str | None, secrets: Sequence[Secret]
    ) -> None:
        fw, tunnel = self.fw, self.tunnel
        try:
            if isinstance(verdict, Denied):
                ex.status, ex.decision, ex.rule, ex.reason = 403, "denied", verdict.rule, verdict.reason
                fw.record(ex, secrets)
                await self.respond(sid, 403, f"agent-smith firewall: {verdict.reason}\n".encode(), "text/plain")
                return
            if isinstance(verdict, AnswerRefresh):
                body = await self.read_body(sid, _MAX_LOCAL_BODY)
                status, answer = fw.answer_refresh(body)
                payload = json.dumps(answer).encode()
                ex.status, ex.decision, ex.rule = status, "answered", "egress.claude_login"
                ex.bytes_up, ex.bytes_down = len(body), len(payload)
                fw.record(ex, secrets)
                await self.respond(sid, status, payload, "application/json")
                return
            if (unusable := fw.claude_unusable(verdict)) is not None:
                ex.status, ex.decision, ex.rule, ex.reason = 401, "error", "egress.claude_login", unusable
                fw.record(ex, secrets)
                await self.respond(sid, 401, json.dumps(unusable_login_answer(unusable)).encode(), "application/json")
                return
            ex.rule, ex.swapped, ex.echoes = verdict.rule.origin, verdict.swapped, verdict.echoes
            await self.forward(sid, ex, authority or tunnel.host, verdict.headers, secrets)
        except (OSError, TimeoutError, ssl.SSLError, h11.ProtocolError, OperationError) as exc:
            # Writing to a client that left fails too (before its connection's end is read), and is
            # no fault of the upstream's.
            ex.decision, ex.reason = "error", _CLIENT_GONE if self.writer.is_closing() else _upstream_failure(exc)
            answered = ex.status != 0
            ex.status = ex.status or 502
            # Recorded before the client sees the end of the answer, as every exchange is.
            fw.record(ex, secrets)
            with contextlib.suppress(h2.exceptions.ProtocolError):
                if answered:
                    self.conn.reset_stream(sid, h2.errors.ErrorCodes.INTERNAL_ERROR)
                    self.flush()
                else:
                    safe = fw.without_secrets(ex.reason, secrets, ex.echoes)
                    await self.respond(sid, 502, f"agent-smith firewall: {safe}\n".encode(), "text/plain")
        except h2.exceptions.ProtocolError:
            ex.decision, ex.reason = "error", "the client's stream closed"
            fw.record(ex, secrets)

    async def forward(
        self,
        sid: int,
        ex: _Exchange,
        authority: str,
        headers: Sequence[tuple[str, str]],
        secrets: Sequence[Secret],
    ) -> None:
        queue = self.bodies[sid]
        scrubber = self.fw.scrubber_for(secrets, ex.echoes)
        guarded = _guarded(secrets, self.tunnel.host)
        up_headers = [("host", authority), *_framing_safe(headers)]
        if guarded:
            up_headers = _plain_bodies(up_headers)
        if sid not in self.ended_with_headers and not any(n == "content-length" for n, _ in headers):
            up_headers.append(("transfer-encoding", "chunked"))
        upstream = None
        while self.pool:
            candidate = self.pool.pop()
            if candidate.reusable:
                upstream = candidate
                break
            candidate.close()
        if upstream is None:
            upstream = await self.tunnel.take_eager() or await self.fw.connect(self.tunnel)
        finished = False
        try:
            upstream.queue(h11.Request(method=ex.method, target=ex.target, headers=_wire(up_headers)))
            while (item := await queue.get()) is not None:
                chunk, credit = item
                ex.bytes_up += len(chunk)
                if chunk:
                    await upstream.send(h11.Data(data=chunk))
                self.credit(sid, credit)
            await upstream.send(h11.EndOfMessage())
            response = await upstream.next_event()
            while isinstance(response, h11.InformationalResponse):
                response = await upstream.next_event()
            if not isinstance(response, h11.Response):
                raise OperationError("the upstream closed without answering")
            has_body = ex.method != "HEAD" and response.status_code not in (204, 304)
            if has_body and guarded and (why := _unscrubbable(response.status_code, response.headers)):
                raise OperationError(why)
            out = [(":status", str(response.status_code))]
            out += [(n, v) for n, v in _response_headers(response.headers, scrubber, has_body) if n not in _H2_DROP]
            ex.status = response.status_code
            self.conn.send_headers(sid, _wire(out))
            self.flush()
            async for chunk in upstream.body(response, ex.method):
                data = scrubber.feed(chunk)
                if data:
                    ex.bytes_down += len(data)
                    await self.send_data(sid, data, False)
            tail = scrubber.flush()
            ex.bytes_down += len(tail)
            await self.send_data(sid, tail, False)
            self.fw.record(ex, secrets)
            self.conn.end_stream(sid)
            self.flush()
            finished = True
        finally:
            if finished and upstream.finish():
                self.pool.append(upstream)
            elif not finished:
                upstream.close()
        self.fw.record(ex, secrets)
