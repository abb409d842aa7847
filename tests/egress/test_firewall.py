"""The firewall against a real HTTPS upstream, driven by httpx: each refusal, each scrub, the audit trail."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import aiohttp
import h2.config
import h2.connection
import h2.errors
import h2.events
import h11
import httpx
import pytest

from agent_smith.certs import mint_ca
from agent_smith.egress import Firewall, FirewallSettings, FirewallState
from agent_smith.egress.audit import _KEPT, AuditEntry, Metrics, utc_now
from agent_smith.egress.policy import Policy, Rule, Secret
from agent_smith.errors import OperationError
from tests.egress.helpers import (
    assert_never_contains,
    client,
    files_under,
    h2_tunnel,
    transparent_get,
    tunnelled_get,
)
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, StartFirewall, standin_policy

AUTH = {"Authorization": f"token {GITHUB_PLACEHOLDER}"}


def _denied(exc: pytest.ExceptionInfo[httpx.ProxyError]) -> str:
    return str(exc.value)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_swaps_the_placeholder_toward_its_host_and_scrubs_the_echo(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        response = http.get("https://api.github.test/echo", headers=AUTH)
        assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert response.status_code == 200
    assert response.json()["headers"]["Authorization"] == f"token {GITHUB_PLACEHOLDER}"
    assert egress_upstream.world.seen[-1].headers["Authorization"] == f"token {secret}"
    [entry] = fw.audit()
    assert entry["decision"] == "allowed"
    assert entry["agent"] == "devbot"
    assert entry["swapped"] == ["github"]
    assert entry["rule"] == "egress.allow[0]"
    assert entry["status"] == 200
    assert entry["bytes_down"] > 0
    assert fw.state.audit_log_path.stat().st_mode & 0o777 == 0o600, "who went where is the operator's to read"
    assert_never_contains([response.text, str(response.headers), *files_under(fw.state.root)], secret)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_the_real_secret_echoed_in_a_header_or_json_body_comes_back_as_the_placeholder(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        response = http.get("https://api.github.test/leak")
    assert response.headers["x-leak"] == GITHUB_PLACEHOLDER
    assert response.json() == {"token": GITHUB_PLACEHOLDER, "note": f"your token is {GITHUB_PLACEHOLDER}"}
    assert_never_contains([response.content, str(response.headers)], secret)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_sse_is_forwarded_event_by_event_and_a_secret_split_across_chunks_is_scrubbed(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http, http.stream("GET", "https://api.github.test/sse?n=3&delay=0.3&leak=1") as r:
        lines = r.iter_lines()
        # The first event arrives while the upstream is still sleeping before the next one.
        first = [next(lines), next(lines)]
        assert first == ["event: tick", "data: 0"]
        rest = list(lines)
    assert "data: 2" in rest
    assert f"data: {GITHUB_PLACEHOLDER}" in rest
    assert_never_contains(rest, secret)


@pytest.mark.real
def test_a_large_body_streams_both_ways_and_never_sits_in_memory(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    size = 200 * 1000 * 1000
    tracemalloc.start()
    try:
        with client(fw) as http, http.stream("GET", f"https://api.github.test/bytes/{size}") as r:
            received = sum(len(chunk) for chunk in r.iter_raw())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == size
    # Everything in this process (client, firewall, upstream) stayed far below the body's size.
    assert peak < 32 * 1024 * 1024
    with client(fw) as http:

        def body() -> Iterator[bytes]:
            for _ in range(256):
                yield b"y" * (64 * 1024)

        answer = http.post("https://api.github.test/upload", content=body())
    assert answer.json()["size"] == 256 * 64 * 1024


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_large_fixed_length_body_is_relayed_scrubbed_and_the_upstream_connection_reused(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    # Above the 1 MiB buffer limit: relayed as it arrives, past h11, and still scrubbed.
    fw = egress_firewall(http2=http2)
    size = 3 * 1024 * 1024
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        first = http.get(f"https://api.github.test/big-leak/{size}")
        second = http.get("https://api.github.test/echo", headers=AUTH)
        closing = http.get(f"https://api.github.test/big-leak/{size}?close=1")
        after_close = http.get("https://api.github.test/echo", headers=AUTH)
    for response in (first, closing):
        assert response.status_code == 200
        assert response.content.count(GITHUB_PLACEHOLDER.encode()) == 2
        assert response.content.endswith(GITHUB_PLACEHOLDER.encode())
        assert_never_contains([response.content], secret)
        assert len(response.content) == size - 2 * (len(secret) - len(GITHUB_PLACEHOLDER))
    assert second.json()["headers"]["Authorization"] == f"token {GITHUB_PLACEHOLDER}"
    assert after_close.status_code == 200
    ports = [seen.peer_port for seen in egress_upstream.world.seen]
    # The relayed body left the connection ready for the next request, unless the upstream closed it.
    assert ports[0] == ports[1] == ports[2]
    assert ports[3] != ports[2]
    assert [entry["bytes_down"] for entry in fw.audit()][::2] == [len(first.content), len(closing.content)]


@pytest.mark.real
def test_no_proxy_credentials_get_407_and_wrong_ones_too(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    with socket.create_connection(("127.0.0.1", fw.port)) as sock:
        sock.sendall(b"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\n\r\n")
        reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 407")
    assert 'proxy-authenticate: Basic realm="agent-smith"\r\n' in reply
    with client(fw, password="0" * 64) as http, pytest.raises(httpx.ProxyError) as exc:
        http.get("https://api.github.test/echo")
    assert "407" in _denied(exc)
    with client(fw, agent="stranger", password="x") as http, pytest.raises(httpx.ProxyError):
        http.get("https://api.github.test/echo")
    # Each line says where the client asked to go, and names no agent.
    assert [(e["decision"], e["agent"], e["host"], e["port"]) for e in fw.audit()] == [
        ("unauthenticated", "-", "api.github.test", 443)
    ] * 3


@pytest.mark.real
def test_a_host_off_the_allowlist_is_refused_at_connect_and_reported(
    egress_firewall: StartFirewall, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()
    with client(fw) as http, pytest.raises(httpx.ProxyError) as exc:
        http.get("https://evil.test/")
    assert "403" in _denied(exc)
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("egress denied")]
    assert logged.startswith("egress denied: devbot to evil.test:443 (")
    assert "not on the allowlist" in logged
    [entry] = fw.audit()
    assert entry["decision"] == "denied"
    assert entry["host"] == "evil.test"
    assert "not on the allowlist" in entry["reason"]
    [event] = fw.denials
    assert event.host == "evil.test"
    assert event.agent == "devbot"
    assert "not on the allowlist" in event.reason


@pytest.mark.real
def test_a_host_header_that_differs_from_the_tunnel_is_refused(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        response = http.get("https://other.test/echo", headers={"Host": "api.github.test", **AUTH})
    assert response.status_code == 403
    assert "differs from the tunnel" in response.text
    assert len(response.text) < 200


@pytest.mark.real
def test_an_http2_authority_that_differs_from_the_tunnel_is_refused(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    # httpx sends :authority from the URL; dial other.test's tunnel but name api.github.test.
    with h2_tunnel(fw, "other.test") as (tls, conn):
        conn.send_headers(
            1,
            [(":method", "GET"), (":path", "/echo"), (":scheme", "https"), (":authority", "api.github.test")],
            end_stream=True,
        )
        tls.sendall(conn.data_to_send())
        status = None
        while status is None:
            for event in conn.receive_data(tls.recv(65536)):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
            tls.sendall(conn.data_to_send())
    assert status == b"403"
    assert fw.audit()[-1]["reason"].startswith("Host 'api.github.test' differs")


@pytest.mark.real
def test_a_placeholder_toward_another_allowed_host_is_refused_and_never_sent(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        in_header = http.get("https://other.test/echo", headers=AUTH)
        in_query = http.get(f"https://other.test/echo?token={GITHUB_PLACEHOLDER}")
        basic = http.get("https://other.test/echo", auth=("x-access-token", GITHUB_PLACEHOLDER))
    assert [in_header.status_code, in_query.status_code, basic.status_code] == [403, 403, 403]
    assert all("placeholder of secret github was sent toward other.test" in r.text for r in (in_header, in_query))
    assert egress_upstream.world.seen == []
    assert next(d.reason for d in fw.denials).startswith("the placeholder of secret github")
    assert all("REDACTED" in e["path"] or e["path"] == "/echo" for e in fw.audit())
    assert_never_contains([json.dumps(e) for e in fw.audit()], GITHUB_PLACEHOLDER)


@pytest.mark.real
def test_loopback_private_and_metadata_destinations_are_refused(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        with pytest.raises(httpx.ProxyError) as private:
            http.get("https://private.test/echo")
        with pytest.raises(httpx.ProxyError) as metadata:
            http.get("https://metadata.test/echo")
    assert "403" in _denied(private)
    assert "403" in _denied(metadata)
    reasons = [e["reason"] for e in fw.audit()]
    assert reasons == [
        "private.test resolves to 127.0.0.1 is a loopback address",
        "metadata.test resolves to 169.254.169.254 is a cloud metadata address",
    ]


@pytest.mark.real
def test_ip_literals_need_an_explicit_rule(egress_firewall: StartFirewall, egress_upstream: EgressUpstream) -> None:
    port = egress_upstream.port
    fw = egress_firewall(standin_policy(extra_rules=[Rule("*.test", frozenset({port}), allow_private=True)]))
    with client(fw) as http, pytest.raises(httpx.ProxyError):
        http.get(f"https://127.0.0.1:{port}/echo")
    fw2 = egress_firewall(standin_policy(extra_rules=[Rule("127.0.0.1", frozenset({port}), allow_private=True)]))
    with client(fw2) as http:
        assert http.get(f"https://127.0.0.1:{port}/echo").status_code == 200


@pytest.mark.real
def test_methods_paths_and_per_agent_rules(egress_firewall: StartFirewall) -> None:
    narrow = Rule("narrow.test", frozenset({443}), frozenset({"GET"}), ("/echo",), True, "egress.allow[9]")
    policy = standin_policy(
        agent_rules={"reviewbot": (Rule("localhost", frozenset({443}), allow_private=True, origin="r"),)},
        extra_rules=[narrow],
    )
    fw = egress_firewall(policy)
    with client(fw, "reviewbot") as http:
        assert http.get("https://localhost/echo").status_code == 200
    with client(fw, "devbot") as http, pytest.raises(httpx.ProxyError):
        http.get("https://localhost/echo")
    assert fw.audit()[-1]["reason"] == "host localhost:443 is not on the allowlist"


@pytest.mark.real
def test_plain_http_and_an_unreachable_upstream_get_clean_errors(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        plain = http.get("http://api.github.test/echo")
    assert plain.status_code == 403
    assert "plain HTTP is refused" in plain.text
    egress_upstream.port = 1  # nothing listens there
    fw_down = egress_firewall()
    with client(fw_down) as http:
        down = http.get("https://api.github.test/echo")
    assert down.status_code == 502
    assert "cannot connect" in down.text


@pytest.mark.real
def test_the_upstream_certificate_is_verified(egress_firewall: StartFirewall, egress_upstream: EgressUpstream) -> None:
    egress_upstream.ca_path.write_bytes(mint_ca("stranger").cert_pem)
    fw = egress_firewall()
    with client(fw) as http:
        response = http.get("https://api.github.test/echo")
    assert response.status_code == 502
    assert "certificate verification failed" in response.text


@pytest.mark.real
def test_websocket_passes_through_and_the_secret_is_scrubbed_from_frames(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()

    async def talk() -> list[str]:
        ctx = ssl.create_default_context(cafile=str(fw.ca_path))
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect("wss://api.github.test/ws", proxy=fw.proxy_url("devbot"), ssl=ctx) as ws,
        ):
            await ws.send_str("hello")
            first = await ws.receive_str()
            await ws.send_str("leak")
            second = await ws.receive_str()
            return [first, second]

    first, second = asyncio.run(talk())
    assert first == "echo hello"
    assert second == f"your token is {GITHUB_PLACEHOLDER}"
    assert egress_upstream.world.github_secret not in second


@pytest.mark.real
def test_metrics_count_requests_by_agent_host_and_decision(egress_firewall: StartFirewall) -> None:
    fw = egress_firewall(metrics=True)
    with client(fw) as http:
        http.get("https://api.github.test/echo")
        with pytest.raises(httpx.ProxyError):
            http.get("https://evil.test/")
    assert fw.firewall.metrics_address is not None
    host, port = fw.firewall.metrics_address
    text = httpx.get(f"http://{host}:{port}/metrics", trust_env=False).text
    assert 'agent_smith_egress_requests_total{agent="devbot",decision="allowed",host="api.github.test"} 1.0' in text
    assert 'agent_smith_egress_requests_total{agent="devbot",decision="denied",host="(refused)"} 1.0' in text
    assert "agent_smith_egress_request_seconds_bucket" in text
    assert "agent_smith_egress_open_connections" in text


def test_a_failed_exchange_with_an_admitted_host_is_counted_under_that_host() -> None:
    metrics = Metrics()
    admitted = AuditEntry(
        utc_now(), "devbot", "GET", "api.github.test", 443, "/", 502, 0, 0, 1.0, "error", "egress.allow[0]"
    )
    # Failed before any rule admitted it (a TLS handshake the client broke): the client chose that name.
    unadmitted = AuditEntry(utc_now(), "devbot", "TLS", "evil.test", 443, "", 0, 0, 0, 1.0, "error", None)
    for entry in (admitted, unadmitted):
        metrics.observe(entry)
    text = metrics.exposition().decode()
    assert 'agent_smith_egress_requests_total{agent="devbot",decision="error",host="api.github.test"} 1.0' in text
    assert 'agent_smith_egress_requests_total{agent="devbot",decision="error",host="(refused)"} 1.0' in text


@pytest.mark.real
def test_a_stream_its_http2_client_resets_is_still_audited(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    # It reached the upstream with the secret swapped in: the audit says so though no answer ended.
    fw = egress_firewall()
    with h2_tunnel(fw, "api.github.test") as (tls, conn):
        head = [(":method", "GET"), (":scheme", "https"), (":authority", "api.github.test")]
        conn.send_headers(1, [*head, (":path", "/sse?n=50&delay=0.1"), *AUTH.items()], end_stream=True)
        tls.sendall(conn.data_to_send())
        data = False
        while not data:
            data = any(isinstance(e, h2.events.DataReceived) for e in conn.receive_data(tls.recv(65536)))
        conn.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        # The connection goes on: only the stream was given up.
        conn.send_headers(3, [*head, (":path", "/echo")], end_stream=True)
        tls.sendall(conn.data_to_send())
        deadline = time.monotonic() + 10
        while len(fw.audit()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    entries = {e["path"]: e for e in fw.audit()}
    reset = entries["/sse?n=50&delay=0.1"]
    assert (reset["status"], reset["decision"], reset["reason"]) == (200, "error", "the client reset the stream")
    assert reset["swapped"] == ["github"]
    assert entries["/echo"]["decision"] == "allowed"


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_request_in_flight_when_the_firewall_stops_is_audited(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    with (
        client(fw, http2=http2) as http,
        http.stream("GET", "https://api.github.test/sse?n=50&delay=0.1", headers=AUTH) as response,
    ):
        chunks = response.iter_bytes()
        next(chunks)
        fw.stop()
        with pytest.raises(httpx.HTTPError):
            for _ in chunks:
                pass
    [entry] = fw.audit()
    assert (entry["status"], entry["decision"], entry["reason"]) == (200, "error", "the firewall stopped")
    assert entry["swapped"] == ["github"]


def test_requests_before_the_first_scrape_are_counted_and_few_are_kept_for_it() -> None:
    """prometheus_client loads at the first scrape: what was observed before is counted then, and a
    firewall nobody scrapes keeps at most _KEPT entries before it counts them itself."""
    metrics = Metrics()
    entry = AuditEntry(utc_now(), "devbot", "CONNECT", "evil.test", 443, "", 403, 0, 0, 0.5, "denied", None)
    for _ in range(3):
        metrics.observe(entry)
    metrics.open_connections = 2
    text = metrics.exposition().decode()
    assert 'agent_smith_egress_requests_total{agent="devbot",decision="denied",host="(refused)"} 3.0' in text
    assert "agent_smith_egress_open_connections 2.0" in text
    unscraped = Metrics()
    for _ in range(_KEPT + 10):
        unscraped.observe(entry)
    assert len(unscraped._kept) == 0
    assert f'host="(refused)"}} {_KEPT + 10}.0' in unscraped.exposition().decode()


def test_a_missing_ca_is_made_as_the_firewall_starts_and_loaded_at_the_first_interception(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Leaf keys live in memory only: a firewall that is killed (never stopped) leaves nothing behind.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    state = FirewallState(tmp_path / "firewall")
    settings = FirewallSettings(Policy(()), (), frozenset({"devbot"}), state.identity_key(), state, ("127.0.0.1", 0))
    firewall = Firewall(settings)
    assert state.ca_cert_path.is_file(), "clients are told to trust it before anything is intercepted"
    leaves = firewall._leaves
    assert "_ca" not in vars(leaves)
    context = leaves.get("api.github.test")
    assert "_ca" in vars(leaves)
    assert leaves.host_of(context) == "api.github.test"
    assert vars(leaves)["_ca"].cert_pem == state.ca_cert_path.read_bytes()
    assert list(scratch.iterdir()) == []


def test_a_ca_spoiled_after_the_start_fails_a_client_with_one_log_line(
    egress_firewall: StartFirewall, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()
    with client(fw) as http:
        fw.state.ca_cert_path.write_text("garbage\n")
        with pytest.raises(httpx.HTTPError):
            http.get("https://api.github.test/echo")
    [record] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert record.getMessage().startswith(
        f"a client could not be served: the firewall CA in {fw.state.root} is unusable"
    )
    assert record.exc_info is None


@pytest.mark.real
def test_transparent_mode_routes_by_sni_and_refuses_other_names(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall(transparent=True)
    assert fw.firewall.transparent_address is not None
    port = fw.firewall.transparent_address[1]
    ctx = ssl.create_default_context(cafile=str(fw.ca_path))
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        ctx.wrap_socket(raw, server_hostname="api.github.test") as tls,
    ):
        conn = h11.Connection(h11.CLIENT)
        tls.sendall(
            conn.send(h11.Request(method="GET", target="/echo", headers=[("Host", "api.github.test"), *AUTH.items()]))
        )
        tls.sendall(conn.send(h11.EndOfMessage()))
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(tls.recv(65536))
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
    assert json.loads(body)["headers"]["Authorization"] == f"token {GITHUB_PLACEHOLDER}"
    assert egress_upstream.world.seen[-1].headers["Authorization"] == f"token {egress_upstream.world.github_secret}"
    with socket.create_connection(("127.0.0.1", port)) as raw, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(raw, server_hostname="evil.test")
    assert fw.audit()[-1]["decision"] == "denied"
    assert fw.audit()[-1]["host"] == "evil.test"
    assert asdict(fw.denials[-1])["host"] == "evil.test"


@pytest.mark.real
def test_a_per_agent_transparent_listener_names_its_agent_with_its_rules_and_secrets(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    world = egress_upstream.world
    policy = standin_policy(
        agent_rules={"devbot": (Rule("localhost", frozenset({443}), allow_private=True, origin="devbot-only"),)}
    )
    secrets = [
        Secret("github", GITHUB_PLACEHOLDER, world.github_secret, ("api.github.test",), agents=frozenset({"devbot"})),
        Secret(
            "github-r",
            GITHUB_PLACEHOLDER,
            "reviewbot-token-0123456789",
            ("api.github.test",),
            agents=frozenset({"reviewbot"}),
        ),
    ]
    fw = egress_firewall(policy, secrets_=secrets, transparent=True, transparent_agents=("devbot", "reviewbot"))
    ca = str(fw.ca_path)
    ports = {agent: address[1] for agent, address in fw.firewall.transparent_agent_addresses.items()}
    assert fw.firewall.transparent_address is not None
    anonymous = fw.firewall.transparent_address[1]
    assert len({anonymous, *ports.values()}) == 3

    # Each listener swaps in its own agent's secret, as the proxy credentials would decide.
    assert transparent_get(ports["devbot"], ca, "api.github.test", AUTH)[0] == 200
    assert world.seen[-1].headers["Authorization"] == f"token {world.github_secret}"
    assert transparent_get(ports["reviewbot"], ca, "api.github.test", AUTH)[0] == 200
    assert world.seen[-1].headers["Authorization"] == "token reviewbot-token-0123456789"
    assert [e["agent"] for e in fw.audit()] == ["devbot", "reviewbot"]
    assert [e["swapped"] for e in fw.audit()] == [["github"], ["github-r"]]

    # Per-agent rules: only devbot's listener reaches devbot's host; the others are refused at the handshake.
    assert transparent_get(ports["devbot"], ca, "localhost", {})[0] == 200
    assert fw.audit()[-1]["rule"] == "devbot-only"
    for port, agent in ((ports["reviewbot"], "reviewbot"), (anonymous, "(transparent)")):
        with pytest.raises(ssl.SSLError):
            transparent_get(port, ca, "localhost", {})
        assert (fw.audit()[-1]["agent"], fw.audit()[-1]["decision"]) == (agent, "denied")
    assert [d.agent for d in fw.denials] == ["reviewbot", "(transparent)"]


@pytest.mark.real
def test_a_transparent_listener_for_an_agent_the_crew_does_not_have_is_refused(
    egress_firewall: StartFirewall,
) -> None:
    with pytest.raises(OperationError, match="an agent the crew does not have: stranger"):
        egress_firewall(transparent_agents=("stranger",))


@pytest.mark.real
def test_a_small_scrubbed_body_keeps_an_exact_content_length(egress_firewall: StartFirewall) -> None:
    events = tunnelled_get(egress_firewall(), "/leak")
    response = events[0]
    assert isinstance(response, h11.Response)
    body = b"".join(e.data for e in events if isinstance(e, h11.Data))
    assert dict(response.headers)[b"content-length"] == str(len(body)).encode()
    assert GITHUB_PLACEHOLDER.encode() in body


@pytest.mark.real
def test_a_request_with_both_transfer_encoding_and_content_length_is_never_forwarded_ambiguously(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()
    with socket.create_connection(("127.0.0.1", fw.port)) as raw:
        auth = httpx.URL(fw.proxy_url("devbot"))
        token = base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()
        raw.sendall(
            f"CONNECT api.github.test:443 HTTP/1.1\r\nHost: api.github.test:443\r\n"
            f"Proxy-Authorization: Basic {token}\r\n\r\n".encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        ctx = ssl.create_default_context(cafile=str(fw.ca_path))
        with ctx.wrap_socket(raw, server_hostname="api.github.test") as tls:
            tls.sendall(
                b"POST /upload HTTP/1.1\r\nHost: api.github.test\r\nContent-Length: 4\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                reply += chunk
    if reply.startswith(b"HTTP/1.1 200"):
        [seen] = [s for s in egress_upstream.world.seen if s.path == "/upload"]
        assert "Content-Length" not in seen.headers
    else:
        assert reply.startswith(b"HTTP/1.1 400")
