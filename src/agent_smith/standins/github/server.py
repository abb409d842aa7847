"""The HTTPS front of the GitHub stand-in: REST, GraphQL and git smart HTTP.

Laid out like GitHub Enterprise on one host: ``/api/v3/…`` (REST),
``/api/graphql`` and ``/OWNER/REPO.git/…`` (git over ``git http-backend``).
One thread per connection; TLS is negotiated in that thread so a slow client
never holds up the accept loop. Faults queued by tests are applied before a
request reaches the API, and every exchange is recorded for tests to inspect.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agent_smith.certs import CertificateAuthority, mint_ca
from agent_smith.errors import MissingPartError, OperationError
from agent_smith.standins.github.graphql_api import GraphQLContext, execute_query, load_schema
from agent_smith.standins.github.rest import Links, RestRequest, RestResponse, route
from agent_smith.standins.github.state import RATE_LIMIT, RATE_RESET, User, World

__all__ = ["Exchange", "Fault", "FaultKind", "Faults", "GitHubStandin", "find_schema"]

_SCHEMA = Path("@octokit") / "graphql-schema" / "schema.graphql"
_DOCS = "https://docs.github.com/rest"
_SECONDARY = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
_RATE_LIMITS_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
# GitHub's error page ("Unicorn!"), shortened: what its front answers a 5xx with, REST and GraphQL alike.
_UNICORN = (
    b"<!DOCTYPE html>\r\n<html>\r\n  <head>\r\n    <title>Unicorn! &middot; GitHub</title>\r\n  </head>\r\n"
    b"  <body>\r\n    <p><strong>No server is currently available to service your request.</strong></p>\r\n"
    b"    <p>Sorry about that. Please try refreshing and contact us if the problem persists.</p>\r\n"
    b"  </body>\r\n</html>\r\n"
)


def find_schema() -> Path:
    """GitHub's ``schema.graphql`` from the project's ``node_modules``."""
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    if env := os.environ.get("AGENT_SMITH_NODE_MODULES"):
        candidates = [Path(env) / _SCHEMA]
    else:
        candidates = [base / "node_modules" / _SCHEMA for start in starts for base in (start, *start.parents)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise MissingPartError(
        "GitHub's GraphQL schema (npm @octokit/graphql-schema) is not installed: "
        "run scripts/install.sh, or point AGENT_SMITH_NODE_MODULES at a node_modules that has it"
    )


class FaultKind(StrEnum):
    STATUS = "status"  # answer with this status instead
    SECONDARY_RATE_LIMIT = "secondary_rate_limit"  # GitHub's 403 with Retry-After
    PRIMARY_RATE_LIMIT = "primary_rate_limit"  # the token's hourly limit spent: REST 403, GraphQL 200
    SLOW = "slow"  # wait, then answer normally
    DISCONNECT = "disconnect"  # close the connection without an answer


@dataclass
class Fault:
    """One queued misbehaviour, applied to the next ``times`` matching requests."""

    kind: FaultKind
    path_prefix: str = "/"
    times: int = 1
    status: int = 502
    retry_after: int | None = None
    seconds: float = 0.0
    # Carry the request out first, then misbehave: GitHub's front can fail to answer a request its
    # back end already acted on (a comment posted, then a 502).
    applied: bool = False
    # Answer GitHub's HTML error page ("Unicorn!") instead of JSON, as its front does on a 5xx.
    html: bool = False
    # Of a disconnect: end the connection with a TCP reset (a dropped load balancer), not a close.
    reset: bool = False


class Faults:
    """Faults tests inject: server errors, secondary rate limits, slow answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Fault] = []

    def fail(
        self,
        status: int = 502,
        *,
        times: int = 1,
        path: str = "/",
        retry_after: int | None = None,
        applied: bool = False,
        html: bool = False,
    ) -> None:
        fault = Fault(FaultKind.STATUS, path, times, status=status, retry_after=retry_after, applied=applied, html=html)
        self._add(fault)

    def disconnect(self, *, times: int = 1, path: str = "/", applied: bool = False, reset: bool = False) -> None:
        self._add(Fault(FaultKind.DISCONNECT, path, times, applied=applied, reset=reset))

    def primary_rate_limit(self, reset_in: int = 60, *, times: int = 1, path: str = "/") -> None:
        """The token's limit spent until ``reset_in`` seconds from the answer: REST says 403 with
        ``X-RateLimit-Remaining: 0``; GraphQL says 200 with a ``RATE_LIMITED`` error."""
        self._add(Fault(FaultKind.PRIMARY_RATE_LIMIT, path, times, status=403, seconds=float(reset_in)))

    def secondary_rate_limit(self, retry_after: int = 1, *, times: int = 1, path: str = "/") -> None:
        self._add(Fault(FaultKind.SECONDARY_RATE_LIMIT, path, times, status=403, retry_after=retry_after))

    def slow(self, seconds: float, *, times: int = 1, path: str = "/") -> None:
        self._add(Fault(FaultKind.SLOW, path, times, seconds=seconds))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def _add(self, fault: Fault) -> None:
        with self._lock:
            self._queue.append(fault)

    def take(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._queue:
                if path.startswith(fault.path_prefix):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._queue.remove(fault)
                    return fault
        return None


@dataclass(frozen=True)
class Exchange:
    """One request the stand-in answered: what tests count and validate."""

    kind: str  # "rest" | "graphql" | "git" | "fault"
    method: str
    path: str
    status: int
    template: str = ""
    body: Any = None
    login: str | None = None
    request: Any = None


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=utf-8"


class GitHubStandin:
    """A GitHub Enterprise look-alike on ``https://HOST[:PORT]``, in this process.

    ``host`` is the address to bind (any 127.x.y.z works on Linux, so parallel
    stand-ins can each own port 443 on their own address); ``hostname`` is the
    name clients use (it goes into the certificate too).
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str | None = None,
        ca: CertificateAuthority | None = None,
        schema_path: Path | None = None,
    ) -> None:
        self.world = World(root / "repos")
        self.faults = Faults()
        self.exchanges: list[Exchange] = []
        self.ca = ca or mint_ca("agent-smith GitHub stand-in CA")
        self._root = root
        self._bind = (host, port)
        self.hostname = hostname or host
        self._schema = load_schema(schema_path or find_schema())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._backend = _git_http_backend()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> GitHubStandin:
        cert, key = self.ca.issue([self.hostname, self._bind[0], "localhost"])
        tls_dir = self._root / "tls"
        tls_dir.mkdir(parents=True, exist_ok=True)
        (tls_dir / "cert.pem").write_bytes(cert)
        (tls_dir / "key.pem").write_bytes(key)
        os.chmod(tls_dir / "key.pem", 0o600)
        self.ca_path.write_bytes(self.ca.cert_pem)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        context.set_alpn_protocols(["http/1.1"])
        try:
            server = _Server(self._bind, _Handler, standin=self, tls=context)
        except OSError as exc:
            raise OperationError(
                f"the GitHub stand-in cannot listen on {self._bind[0]}:{self._bind[1]}: {exc}"
            ) from exc
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="github-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> GitHubStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- where clients go ------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            return self._bind[1]
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``https://HOST`` (no port on 443): the web and git base, as on GHE."""
        return f"https://{self.hostname}" + ("" if self.port == 443 else f":{self.port}")

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v3"

    @property
    def graphql_url(self) -> str:
        return f"{self.url}/api/graphql"

    @property
    def ca_path(self) -> Path:
        return self._root / "tls" / "ca.pem"

    def record(self, exchange: Exchange) -> None:
        with self.world.lock:
            self.exchanges.append(exchange)

    # -- answering -------------------------------------------------------------

    def viewer(self, authorization: str | None) -> tuple[User | None, bool]:
        """(user, whether credentials were given) for an Authorization header."""
        token = _token(authorization)
        if token is None:
            return None, False
        with self.world.lock:
            return self.world.user_by_token(token), True

    def _count(self, login: str, bucket: str) -> int:
        key = (login, bucket)
        self.world.rate_used[key] = self.world.rate_used.get(key, 0) + 1
        return self.world.rate_used[key]

    def rest(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path.removeprefix("/api/v3") or "/"
        viewer, tried = self.viewer(headers.get("authorization"))
        if tried and viewer is None:
            return self._unauthorised("rest", method, split.path)
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            said = {"message": "Problems parsing JSON", "documentation_url": _DOCS, "status": "400"}
            reply = _json_reply(400, said)
            self.record(Exchange("rest", method, split.path, 400, login=_login(viewer)))
            return reply
        # GitHub answers HEAD as GET, without the body (which `_send` leaves out).
        routed = "GET" if method == "HEAD" else method
        req = RestRequest(routed, path, dict(parse_qsl(split.query)), body, headers.get("accept", ""), viewer)
        with self.world.lock:
            response = route(self.world, Links(self.url, self.api_url), req)
            reply = self._rest_reply(response, headers, viewer)
            self.exchanges.append(
                Exchange(
                    "rest",
                    method,
                    split.path,
                    reply.status,
                    # GitHub's description has no HEAD operations to check a HEAD answer against.
                    response.template if method == routed else "",
                    response.body if reply.status != 304 else None,
                    _login(viewer),
                    body,
                )
            )
        return reply

    def _rest_reply(self, response: RestResponse, headers: dict[str, str], viewer: User | None) -> _Reply:
        body = response.body
        if response.status == 204:
            payload = b""
        else:
            payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        tag = 'W/"' + hashlib.sha256(_login(viewer).encode() + b"\0" + payload).hexdigest() + '"'
        who = _login(viewer) or "anonymous"
        if response.status == 200 and headers.get("if-none-match") == tag:
            # GitHub does not count a 304 against the rate limit.
            used = self.world.rate_used.get((who, "core"), 0)
            return _Reply(304, b"", {"ETag": tag, **_rate_headers(used, "core")})
        used = self._count(who, "core")
        extra = {**_rate_headers(used, "core"), "Vary": "Accept, Authorization, Cookie", **response.headers}
        if response.status == 200:
            extra["ETag"] = tag
            extra["Cache-Control"] = "private, max-age=60, s-maxage=60"
        if response.status == 401:
            extra["WWW-Authenticate"] = 'Basic realm="GitHub"'
        return _Reply(response.status, payload, extra, response.content_type)

    def graphql(self, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        viewer, tried = self.viewer(headers.get("authorization"))
        if viewer is None:
            return self._unauthorised("graphql", "POST", "/api/graphql", anonymous=not tried)
        try:
            request = json.loads(raw)
            query = request["query"]
            if not isinstance(query, str):
                raise TypeError("query is not a string")
        except (ValueError, KeyError, TypeError):
            reply = _json_reply(400, {"message": "Problems parsing JSON", "documentation_url": _DOCS})
            self.record(Exchange("graphql", "POST", "/api/graphql", 400, login=viewer.login))
            return reply
        with self.world.lock:
            used = self._count(viewer.login, "graphql")
            ctx = GraphQLContext(self.world, viewer, self.url)
            body = execute_query(self._schema, ctx, query, request.get("variables"), request.get("operationName"))
            name = request.get("operationName") or (ctx.operations[0] if ctx.operations else "")
            self.exchanges.append(Exchange("graphql", "POST", "/api/graphql", 200, name, body, viewer.login, request))
        return _Reply(200, json.dumps(body).encode(), _rate_headers(used, "graphql"))

    def _unauthorised(self, kind: str, method: str, path: str, *, anonymous: bool = False) -> _Reply:
        """GitHub's 401: a token it does not know is "Bad credentials" on both APIs;
        GraphQL, unlike REST, also turns away requests that carry no token."""
        body: dict[str, str] = {"message": "Bad credentials", "documentation_url": _DOCS, "status": "401"}
        if kind == "graphql":
            body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/graphql"}
        if anonymous:
            body = {
                "message": "This endpoint requires you to be authenticated.",
                "documentation_url": "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
            }
        self.record(Exchange(kind, method, path, 401, "", body))
        return _json_reply(401, body, {"WWW-Authenticate": 'Basic realm="GitHub"'})

    def git(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        split = urlsplit(target)
        parts = split.path.lstrip("/").split("/", 2)
        owner, name, rest = parts[0], parts[1].removesuffix(".git"), parts[2]
        viewer, tried = self.viewer(headers.get("authorization"))
        if tried and viewer is None:
            return self._git_denied(method, split.path, 401)
        pushing = rest == "git-receive-pack" or "service=git-receive-pack" in split.query
        with self.world.lock:
            repo = self.world.repos.get(f"{owner}/{name}".lower())
            readable = repo is not None and repo.can_read(viewer)
            writable = repo is not None and viewer is not None and repo.can_push(viewer)
        if repo is None or not readable or (pushing and not writable):
            # As GitHub: ask anonymous clients to authenticate before saying more.
            status = 401 if viewer is None else (403 if readable else 404)
            return self._git_denied(method, split.path, status)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.world.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.world.root),
            "PATH_INFO": f"/{repo.owner.login}/{repo.name}.git/{rest}",
            "REQUEST_METHOD": method,
            "QUERY_STRING": split.query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(raw)),
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if viewer is not None:
            env["REMOTE_USER"] = viewer.login
        if encoding := headers.get("content-encoding"):
            env["HTTP_CONTENT_ENCODING"] = encoding
        if protocol := headers.get("git-protocol"):
            env["GIT_PROTOCOL"] = protocol
        proc = subprocess.run([self._backend], input=raw, env=env, capture_output=True, check=False)
        status, reply_headers, body = _parse_cgi(proc.stdout)
        content_type = reply_headers.pop("content-type", "application/octet-stream")
        self.record(Exchange("git", method, split.path, status, rest, login=_login(viewer)))
        return _Reply(status, body, reply_headers, content_type)

    def _git_denied(self, method: str, path: str, status: int) -> _Reply:
        self.record(Exchange("git", method, path, status))
        headers = {"WWW-Authenticate": 'Basic realm="GitHub"'} if status == 401 else {}
        text = {401: "Invalid username or token.", 403: "Permission denied.", 404: "Repository not found."}[status]
        return _Reply(status, f"remote: {text}\n".encode(), headers, "text/plain")


def _git_http_backend() -> str:
    """The path of git's CGI program, from ``git --exec-path``."""
    try:
        exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise MissingPartError("git is not installed: apt-get install git") from exc
    backend = Path(exec_path.stdout.strip()) / "git-http-backend"
    if not backend.is_file():
        raise MissingPartError(f"{backend} is missing: apt-get install --reinstall git")
    return str(backend)


def _parse_cgi(out: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = out.partition(b"\n\n")
    status = 200
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split(" ", 1)[0])
        elif name:
            headers[name.strip().lower()] = value.strip()
    return status, headers, body


def _token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    scheme = scheme.lower()
    if scheme in ("token", "bearer"):
        return value.strip() or None
    if scheme == "basic":
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        # git sends the token as the password (GitHub also takes it as the user name).
        if password and password != "x-oauth-basic":
            return password
        return user
    return ""


def _login(user: User | None) -> str:
    return user.login if user else ""


def _rate_headers(used: int, resource: str) -> dict[str, str]:
    reset = int(dt.datetime.fromisoformat(RATE_RESET.replace("Z", "+00:00")).timestamp())
    return {
        "X-RateLimit-Limit": str(RATE_LIMIT),
        "X-RateLimit-Remaining": str(max(RATE_LIMIT - used, 0)),
        "X-RateLimit-Used": str(used),
        "X-RateLimit-Reset": str(reset),
        "X-RateLimit-Resource": resource,
    }


def _json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(body).encode(), headers or {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        standin: GitHubStandin,
        tls: ssl.SSLContext,
    ) -> None:
        self.standin = standin
        self.tls = tls
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a timeout in a test, say) is not the stand-in's error.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | ssl.SSLError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        sock.settimeout(30)
        try:
            wrapped = self.tls.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with contextlib.closing(wrapped):
            _Handler(wrapped, client_address, self)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: with Nagle on, the body waits for the
    # client's delayed ACK of the head (~40 ms on a kept-alive connection), which GitHub never does.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        # Silent on purpose: request lines are all a log could say, and the test
        # suite reads the recorded exchanges instead.
        return

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        continue
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        standin = self.server.standin
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urlsplit(self.path).path
        fault = standin.faults.take(path)
        if fault is not None and fault.kind is FaultKind.SLOW:
            time.sleep(fault.seconds)
            fault = None
        if fault is None:
            self._send(self._answer(path, headers, raw))
            return
        if fault.applied:
            self._answer(path, headers, raw)  # carried out; its answer is lost, as the fault says
        dropped = fault.kind is FaultKind.DISCONNECT
        standin.record(Exchange("fault", self.command, path, 0 if dropped else fault.status))  # 0: no answer
        if dropped:
            if fault.reset:
                # Linger 0: closing sends RST, so the client reads ECONNRESET, not an end of stream.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True  # the handler closes the socket: no answer at all
            return
        self._send(self._fault_reply(fault, path, standin.viewer(headers.get("authorization"))[0]))

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        standin = self.server.standin
        if path.startswith("/api/v3"):
            return standin.rest(self.command, self.path, headers, raw)
        if path == "/api/graphql" and self.command == "POST":
            return standin.graphql(self.path, headers, raw)
        if path.count("/") >= 3 and self.command in ("GET", "POST"):
            return standin.git(self.command, self.path, headers, raw)
        standin.record(Exchange("rest", self.command, path, 404))
        return _json_reply(404, {"message": "Not Found", "documentation_url": _DOCS})

    @staticmethod
    def _fault_reply(fault: Fault, path: str, viewer: User | None) -> _Reply:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.kind is FaultKind.PRIMARY_RATE_LIMIT:
            headers = _rate_headers(RATE_LIMIT, "graphql" if path == "/api/graphql" else "core")
            headers["X-RateLimit-Reset"] = str(int(time.time() + fault.seconds))
            message = f"API rate limit exceeded for user ID {viewer.id if viewer else 0}."
            if path == "/api/graphql":
                # GitHub's GraphQL API says so with a 200 and an error, not with a 403.
                return _json_reply(200, {"errors": [{"type": "RATE_LIMITED", "message": message}]}, headers)
            return _json_reply(403, {"message": message, "documentation_url": _RATE_LIMITS_DOCS}, headers)
        if fault.kind is FaultKind.SECONDARY_RATE_LIMIT:
            body = {
                "message": _SECONDARY,
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            }
            return _json_reply(403, body, headers)
        if fault.html:
            return _Reply(fault.status, _UNICORN, headers, "text/html; charset=utf-8")
        return _json_reply(fault.status, {"message": "Server Error"}, headers)

    def _send(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("X-GitHub-Request-Id", hashlib.sha1(os.urandom(8)).hexdigest()[:16])
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and reply.status != 304:
            self.wfile.write(reply.body)
