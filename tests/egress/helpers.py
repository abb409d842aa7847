"""Small helpers shared by the egress tests."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h2.config
import h2.connection
import h11
import httpx

from agent_smith.egress.policy import Scrubber, secret_forms
from tests.fixtures.egress import FirewallHarness


def client(
    fw: FirewallHarness, agent: str = "devbot", *, http2: bool = False, password: str | None = None
) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=str(fw.ca_path))
    return httpx.Client(proxy=fw.proxy_url(agent, password), verify=ctx, http2=http2, timeout=20, trust_env=False)


def assert_never_contains(texts: Iterable[str | bytes], *secrets: str) -> None:
    """No secret appears in any of `texts` (logs, panes, responses, events)."""
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret not in blob, "a real secret leaked"


def files_under(root: Path) -> list[bytes]:
    """Every regular file's bytes below `root` (symlinks are not followed)."""
    return [p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def transparent_get(port: int, ca: str, host: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """One GET through a transparent listener, as a client whose DNS points `host` at the firewall."""
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname=host) as tls:
        conn = h11.Connection(h11.CLIENT)
        tls.sendall(conn.send(h11.Request(method="GET", target="/echo", headers=[("Host", host), *headers.items()])))
        tls.sendall(conn.send(h11.EndOfMessage()))
        status, body = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(tls.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body


@contextlib.contextmanager
def _tunnel(fw: FirewallHarness, host: str, alpn: Sequence[str] = ()) -> Iterator[ssl.SSLSocket]:
    """A CONNECT tunnel to `host`:443 through the proxy as devbot, TLS on it (offering `alpn`)."""
    ctx = ssl.create_default_context(cafile=str(fw.ca_path))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    auth = httpx.URL(fw.proxy_url("devbot"))
    token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
    with socket.create_connection(("127.0.0.1", fw.port)) as raw:
        raw.sendall(
            f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nProxy-Authorization: Basic {token}\r\n\r\n".encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        with ctx.wrap_socket(raw, server_hostname=host) as tls:
            yield tls


def tunnelled_get(
    fw: FirewallHarness, target: str, headers: Sequence[tuple[str, str]] = (), host: str = "api.github.test"
) -> list[h11.Event]:
    """One GET through the proxy, spoken by hand (CONNECT, TLS, h11): every event of the answer,
    trailers included, as the client got them."""
    with _tunnel(fw, host) as tls:
        conn = h11.Connection(h11.CLIENT)
        tls.sendall(conn.send(h11.Request(method="GET", target=target, headers=[("Host", host), *headers])))
        tls.sendall(conn.send(h11.EndOfMessage()))
        events: list[h11.Event] = []
        while not events or not isinstance(events[-1], h11.EndOfMessage | h11.ConnectionClosed):
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(tls.recv(65536))
            elif not isinstance(event, type):
                events.append(event)
    return events


@contextlib.contextmanager
def h2_tunnel(fw: FirewallHarness, host: str) -> Iterator[tuple[ssl.SSLSocket, h2.connection.H2Connection]]:
    """A CONNECT tunnel to `host` through the proxy, TLS with h2 negotiated, and an HTTP/2 client
    connection on it, initiated: for what no HTTP library sends (a reset, a lying :authority)."""
    with _tunnel(fw, host, ["h2"]) as tls:
        assert tls.selected_alpn_protocol() == "h2"
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        yield tls, conn


def scrub_table(value: str, placeholder: str) -> dict[bytes, bytes]:
    """What the firewall scrubs for one secret (as `Firewall.scrubber_for` builds it)."""
    return {found.encode(): shown.encode() for found, shown in secret_forms(value, placeholder).items()}


def scrub_in_pieces(scrubber: Scrubber, stream: bytes, cuts: list[int]) -> bytes:
    """What `scrubber` lets out of `stream` fed in pieces cut at `cuts`, then flushed."""
    out, last = b"", 0
    for cut in [*sorted(cuts), len(stream)]:
        out += scrubber.feed(stream[last:cut])
        last = cut
    return out + scrubber.flush()
