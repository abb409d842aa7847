"""One review-activity check without an HTTP library or an event loop: the Stop hook's path.

A hook is a new process every time, so what it imports is what it costs:
one POST over `ssl` and `socket` rather than httpx and asyncio, and rather
than `http.client` too, whose header parsing imports the `email` package
(~10 ms). No retries: the hook tries again at its next poll. Proxy (with
credentials) and CA come from the environment, as for the async client.

The request is sent by :class:`PendingCheck`'s constructor and its answer read
by :meth:`PendingCheck.result`, so a caller can do its other work while the
server answers. Its `timeout` is the whole check's: every connect, send and
read gets only the time left, so a server that answers a byte at a time
cannot stretch it.
"""

from __future__ import annotations

import io
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from urllib.parse import unquote, urlsplit

from agent_smith.forge.environment import proxy_for, ssl_context
from agent_smith.forge.query import ReviewActivityPages

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from _typeshed import WriteableBuffer

    from agent_smith.forge.activity import ReviewActivity

MAX_HEAD = 64 * 1024  # status line and headers
MAX_BODY = 64 * 1024 * 1024  # a GraphQL answer for 100 PRs is well below this


class HttpAnswer:
    """A parsed HTTP/1.1 response: status, reason, headers (lower-case names), body."""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body


class ProtocolError(Exception):
    """The peer did not speak HTTP/1.1 as expected."""


def review_activity_once(
    graphql_url: str,
    login: str,
    repos: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    timeout: float = 20.0,
    ca_cache: Path | None = None,
) -> ReviewActivity:
    """`ForgeClient.review_activity`'s one round trip, synchronously; OperationError on any failure."""
    return PendingCheck(graphql_url, login, repos, env, timeout=timeout, ca_cache=ca_cache).result()


class PendingCheck:
    """A `review_activity` request already sent; :meth:`result` waits for and reads its answer.

    The constructor never raises: a failure to connect or send is raised by
    :meth:`result`, where the answer's failures are raised too.
    """

    def __init__(
        self,
        graphql_url: str,
        login: str,
        repos: Sequence[str] | None,
        env: Mapping[str, str] | None = None,
        *,
        timeout: float = 20.0,
        ca_cache: Path | None = None,
    ) -> None:
        self.login = login
        self.what = f"review activity of {login}"
        target = urlsplit(graphql_url)
        self.host = target.hostname or ""
        self._url = graphql_url
        self._env = os.environ if env is None else env
        self._deadline = time.monotonic() + timeout
        self._ca_cache = ca_cache
        self._context: ssl.SSLContext | None = None
        self._stream: io.BufferedReader | None = None
        self._failure: Exception | None = None
        try:
            self._pages = ReviewActivityPages(login, repos)
            first = self._pages.request()
            assert first is not None  # the first request always is
            self._stream = self._send(*first)
        except Exception as exc:  # raised by result(), so the caller meets every failure in one place
            self._failure = exc

    def _send(self, query: str, variables: Mapping[str, str]) -> io.BufferedReader:
        env, deadline = self._env, self._deadline
        token = env.get("GITHUB_TOKEN") or env.get("GH_TOKEN") or ""
        if not token:
            from agent_smith.errors import UsageError

            raise UsageError("no GitHub token: set GITHUB_TOKEN")
        target = urlsplit(self._url)
        port = target.port or 443
        body = json.dumps({"query": query, "variables": variables})
        head = (
            f"POST {target.path or '/graphql'} HTTP/1.1\r\n"
            f"Host: {_authority(self.host, port, 443)}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json\r\n"
            "User-Agent: agent-smith\r\n"
            f"Content-Length: {len(body.encode())}\r\n"
            "Connection: close\r\n\r\n"
        )
        if self._context is None:
            self._context = ssl_context(env, self._ca_cache)
        context = self._context
        try:
            raw = _connect(self.host, port, proxy_for(self._url, env), deadline)
            try:
                raw.settimeout(time_left(deadline))
                tls = context.wrap_socket(raw, server_hostname=_hostname(self.host))
            except BaseException:
                raw.close()
                raise
            try:
                tls.settimeout(time_left(deadline))
                tls.sendall(head.encode() + body.encode())
            except BaseException:
                tls.close()
                raise
            return io.BufferedReader(DeadlineReader(tls, deadline))  # closing it closes the connection
        except ssl.SSLCertVerificationError as exc:
            raise self._failed(
                f"the certificate of {self.host} is not trusted (set SSL_CERT_FILE to the CA that signs it)"
            ) from exc
        except (OSError, ProtocolError) as exc:
            raise self._failed(f"cannot reach {self.host}: {type(exc).__name__}: {exc}") from exc

    def result(self) -> ReviewActivity:
        """The activity; OperationError (UsageError without a token) on any failure."""
        if self._failure is not None:
            raise self._failure
        assert self._stream is not None
        self._pages.add(self._data(self._stream))
        # Further pages (only where one came back full), each in the time left of the whole check.
        while (request := self._pages.request()) is not None:
            self._pages.add(self._data(self._send(*request)))
        return self._pages.activity(None)

    def _data(self, stream: io.BufferedReader) -> Any:
        """The ``data`` of the GraphQL answer on `stream` (closed once read); OperationError when the
        answer is a failure."""
        try:
            answer = read_response(stream)
        except TimeoutError as exc:
            # Connected and sent: the server is there but slow, not out of reach.
            raise self._failed(f"{self.host} did not answer in time: {type(exc).__name__}: {exc}") from exc
        except (OSError, ProtocolError) as exc:
            raise self._failed(f"cannot reach {self.host}: {type(exc).__name__}: {exc}") from exc
        finally:
            stream.close()
        if answer.status == 401:
            raise self._failed(f"{self.host} rejected the token (401); check GITHUB_TOKEN")
        if answer.status >= 400:
            self._check_rate_limit(answer)
            raise self._failed(f"{self.host} answered {answer.status} {answer.reason}".rstrip())
        try:
            data = json.loads(answer.body)
        except ValueError as exc:
            raise self._failed(f"{self.host} sent a non-JSON GraphQL answer") from exc
        if not isinstance(data, dict):
            raise self._failed(f"{self.host} sent a GraphQL answer that is not an object")
        if data.get("errors"):
            from agent_smith.forge.retry import graphql_rate_limited  # here: only a failure pays for it

            # GraphQL's rate limit comes as a 200 whose error says so, not as a 403 or 429.
            self._check_rate_limit(answer, limited=graphql_rate_limited(data))
            first = data["errors"][0]
            said = first.get("message", first) if isinstance(first, dict) else first
            raise self._failed(f"GitHub says: {(str(said).strip().splitlines() or [''])[0]}")
        return data["data"]

    def _check_rate_limit(self, answer: HttpAnswer, *, limited: bool = False) -> None:
        """RateLimited when GitHub limits the token (``limited``: the body said so): asking again
        before it says would prolong it (and GitHub may ban an integration that keeps asking)."""
        from agent_smith.errors import RateLimited
        from agent_smith.forge.retry import rate_limited_for

        message = answer.body[:2048].decode("utf-8", "replace")
        seconds = rate_limited_for(answer.status, answer.headers, message, now=time.time(), limited=limited)
        if seconds is not None:
            # GraphQL's limit is a 200: then the error's type says what happened.
            how = "RATE_LIMITED" if answer.status == 200 else str(answer.status)
            raise RateLimited(
                f"{self.what}: {self.host} rate limited the token ({how}); it asks to wait {seconds:.0f} s", seconds
            )

    def _failed(self, message: str) -> Exception:
        from agent_smith.errors import OperationError

        return OperationError(f"{self.what}: {message}")


def _hostname(host: str) -> str | bytes:
    # ssl and getaddrinfo encode a str name with the idna codec, whose import costs
    # ~1 ms; an ASCII name passed as bytes is used as it is.
    return host.encode("ascii") if host.isascii() else host


def _authority(host: str, port: int, default_port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host  # an IPv6 address
    return name if port == default_port else f"{name}:{port}"


def time_left(deadline: float) -> float:
    """Seconds until `deadline` (a `time.monotonic` time); TimeoutError once it passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the check ran out of time")
    return left


class DeadlineReader(io.RawIOBase):
    """A connection's bytes, each read given only the time left until `deadline`: a socket
    timeout alone bounds one read, and a server sending a byte at a time would restart it."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        self._sock.settimeout(time_left(self._deadline))
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._sock.close()
        super().close()


def _tcp(host: str, port: int, deadline: float) -> socket.socket:
    """`socket.create_connection`, with the name passed as bytes when ASCII (see `_hostname`)."""
    failure: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(_hostname(host), port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(time_left(deadline))
            sock.connect(address)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        return sock
    raise failure or OSError(f"no address for {host}")


def _connect(host: str, port: int, proxy: str | None, deadline: float) -> socket.socket:
    """A TCP connection to host:port, through an HTTP CONNECT tunnel when `proxy` is set."""
    if proxy is None:
        return _tcp(host, port, deadline)
    via = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    sock = _tcp(via.hostname or "", via.port or 80, deadline)
    try:
        authority = _authority(host, port, None)
        lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if via.username is not None:
            import base64

            credentials = f"{unquote(via.username)}:{unquote(via.password or '')}"
            lines.append("Proxy-Authorization: Basic " + base64.b64encode(credentials.encode()).decode())
        sock.settimeout(time_left(deadline))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, reason = _tunnel_answer(sock, deadline)
        if status != 200:
            raise ProtocolError(f"the proxy {via.hostname}:{via.port or 80} answered {status} {reason}".rstrip())
    except BaseException:
        sock.close()
        raise
    return sock


def _tunnel_answer(sock: socket.socket, deadline: float) -> tuple[int, str]:
    """The proxy's answer to CONNECT, read byte by byte: what follows it is the server's TLS."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        sock.settimeout(time_left(deadline))
        byte = sock.recv(1)
        if not byte:
            raise ProtocolError("the proxy closed the connection")
        head += byte
        if len(head) > MAX_HEAD:
            raise ProtocolError("the proxy's answer is too long")
    status, reason = _status_line(bytes(head).split(b"\r\n", 1)[0])
    return status, reason


def _status_line(line: bytes) -> tuple[int, str]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ProtocolError(f"not an HTTP/1.1 status line: {line[:80]!r}")
    return int(parts[1]), parts[2] if len(parts) == 3 else ""


def read_response(stream: io.BufferedIOBase) -> HttpAnswer:
    """One HTTP/1.1 response from `stream`: status line, headers, then a body framed by
    ``Transfer-Encoding: chunked``, ``Content-Length`` or the end of the connection."""
    while True:
        status, reason = _status_line(_line(stream))
        headers = _headers(stream)
        if not 100 <= status < 200:
            break  # an interim 1xx answer is followed by the real one
    if status in (204, 304):
        return HttpAnswer(status, reason, headers, b"")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _chunked(stream)
    elif (length := headers.get("content-length")) is not None:
        if not length.strip().isdigit() or int(length) > MAX_BODY:
            raise ProtocolError(f"bad Content-Length {length!r}")
        body = _exactly(stream, int(length))
    else:
        body = stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise ProtocolError("the answer is too long")
    return HttpAnswer(status, reason, headers, body)


def _line(stream: io.BufferedIOBase) -> bytes:
    line = stream.readline(MAX_HEAD + 1)
    if not line:
        raise ProtocolError("the server closed the connection before answering")
    if len(line) > MAX_HEAD or not line.endswith(b"\n"):
        raise ProtocolError("a header line is too long or cut off")
    return line


def _headers(stream: io.BufferedIOBase) -> dict[str, str]:
    headers: dict[str, str] = {}
    size = 0
    while (line := _line(stream)) not in (b"\r\n", b"\n"):
        size += len(line)
        if size > MAX_HEAD:
            raise ProtocolError("the headers are too long")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise ProtocolError(f"not a header: {line[:80]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return headers


def _exactly(stream: io.BufferedIOBase, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ProtocolError(f"the answer was cut off ({len(data)} of {size} bytes)")
    return data


def _chunked(stream: io.BufferedIOBase) -> bytes:
    body = bytearray()
    while True:
        size_text = _line(stream).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            _headers(stream)  # trailers, then the blank line that ends the body
            return bytes(body)
        if len(body) + size > MAX_BODY:
            raise ProtocolError("the answer is too long")
        body += _exactly(stream, size)
        if _line(stream) not in (b"\r\n", b"\n"):
            raise ProtocolError("a chunk does not end with CRLF")
