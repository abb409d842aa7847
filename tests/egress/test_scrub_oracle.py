"""What an agent could learn of a real secret from how the firewall frames what it relays.

The scrub holds back a chunk's tail that could still become a secret's spelling. Were that
decided by the secret, the boundaries the agent sees (HTTP/1.1 chunks, HTTP/2 DATA frames)
would answer "is this a prefix of a real secret?", one guess per chunk, through any allowlisted
upstream that returns bytes the agent chose. These tests run the real firewall between a real
client and a real HTTPS upstream on loopback, and guess as such an agent would.
"""

from __future__ import annotations

import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import h2.events
import h11
import pytest
from aiohttp import web

from agent_smith.certs import CertificateAuthority
from agent_smith.egress import Firewall, FirewallSettings, FirewallState
from agent_smith.egress.policy import Policy, Rule, Secret
from tests.egress.helpers import h2_tunnel, tunnelled_get
from tests.fixtures.egress import FirewallHarness, _Loop, https_upstream, real_secret

PLACEHOLDER = "agent-smith-placeholder-github-token"
SECRET_HOST = "api.secret.test"
# A host no secret is ever sent to: its answers are scrubbed all the same.
ECHO_HOST = "echo.test"
# Every character the fake secret may hold ("%" and "\\" left out: a cut-off escape is held back
# whatever the secret is).
ALPHABET = string.ascii_letters + string.digits + "-_"
SEPARATOR = "#"


@dataclass
class World:
    firewall: FirewallHarness
    secret: str = field(repr=False)


def _upstream_app() -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/chunks")
    async def chunks(request: web.Request) -> web.StreamResponse:
        """Each `c` written as a chunk of its own, as any server streaming what it was given does."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in request.query.getall("c", []):
            await response.write(part.encode())
        await response.write_eof()
        return response

    @routes.get("/file")
    async def file(request: web.Request) -> web.Response:
        """A file of `size` bytes framed by Content-Length that ends in `tail` (one the agent uploaded)."""
        tail = request.query["tail"].encode()
        body = b"x" * (int(request.query["size"]) - len(tail)) + tail
        return web.Response(body=body, content_type="application/octet-stream")

    app = web.Application()
    app.add_routes(routes)
    return app


@pytest.fixture
def world(tmp_path: Path, egress_test_ca: CertificateAuthority) -> Iterator[World]:
    secret = real_secret("github")
    with https_upstream(_upstream_app(), [SECRET_HOST, ECHO_HOST], egress_test_ca, tmp_path) as (upstream_ca, port):

        async def resolve(host: str, _port: int) -> list[tuple[str, int]]:
            if host not in (SECRET_HOST, ECHO_HOST):
                raise OSError(f"no such test host {host}")
            return [("127.0.0.1", port)]

        state = FirewallState(tmp_path / "firewall")
        settings = FirewallSettings(
            policy=Policy(
                (
                    Rule(SECRET_HOST, frozenset({443}), allow_private=True, origin="egress.allow[0]"),
                    Rule(ECHO_HOST, frozenset({443}), allow_private=True, origin="egress.allow[1]"),
                )
            ),
            secrets=(Secret("github", PLACEHOLDER, secret, (SECRET_HOST,)),),
            agents=frozenset({"devbot"}),
            identity_key=state.identity_key(),
            ca_store=state,
            listen=("127.0.0.1", 0),
            upstream_ca=upstream_ca,
            audit_path=state.audit_log_path,
            resolver=resolve,
        )
        fw_loop = _Loop()
        firewall = Firewall(settings)
        fw_loop.call(firewall.start())
        try:
            yield World(FirewallHarness(firewall, state, state.ca_cert(), [], ("devbot",), fw_loop), secret)
        finally:
            try:
                fw_loop.call(firewall.stop())
            finally:
                fw_loop.close()


def _chunks_seen(fw: FirewallHarness, host: str, parts: list[str]) -> list[bytes]:
    """The body's chunks as the agent's client got them from the firewall, one list item per chunk."""
    events = tunnelled_get(fw, "/chunks?" + urlencode([("c", p) for p in parts]), host=host)
    seen: list[bytes] = []
    current = b""
    for event in events:
        if isinstance(event, h11.Data):
            current += bytes(event.data)
            if event.chunk_end:
                seen.append(current)
                current = b""
    return seen


def _held_back(fw: FirewallHarness, host: str, candidates: list[str]) -> list[str]:
    """The candidates the firewall held back, each sent as the end of a chunk of its own."""
    parts = [p for candidate in candidates for p in (SEPARATOR, candidate)] + [SEPARATOR]
    # A candidate it let through comes as a chunk of its own, then the separator's; one held back
    # comes only with the next separator, in one chunk.
    whole = {f"{candidate}{SEPARATOR}".encode() for candidate in candidates}
    return [c.decode()[: -len(SEPARATOR)] for c in _chunks_seen(fw, host, parts) if c in whole]


@pytest.mark.real
@pytest.mark.parametrize("host", [ECHO_HOST, SECRET_HOST], ids=["host-without-secret", "secret-host"])
def test_the_scrub_s_hold_back_does_not_tell_an_agent_the_secret(world: World, host: str) -> None:
    fw, secret = world.firewall, world.secret
    known = ""
    # One request per character: every candidate for the next character, each ending a chunk.
    for _ in range(len(secret) + 1):
        held = _held_back(fw, host, [known + c for c in ALPHABET])
        if len(held) != 1:
            break
        known = held[0]
    # The last character: the whole secret comes back as the placeholder, the others as they are.
    for c in ALPHABET:
        if PLACEHOLDER.encode() in b"".join(_chunks_seen(fw, host, [SEPARATOR, known + c, SEPARATOR])):
            known += c
            break
    # The agent never sent the placeholder, and the secret never went to `host` in this test
    # (ECHO_HOST gets no secret at all), yet the framing of the answers spelled it out.
    recovered = known == secret
    # Not `known != secret`: a failing assertion would print both.
    assert not recovered, f"an agent recovered the real secret ({len(secret)} characters) from the chunk framing"


def _last_chunk(fw: FirewallHarness, host: str, size: int, tail: str) -> bytes:
    events = tunnelled_get(fw, "/file?" + urlencode({"size": size, "tail": tail}), host=host)
    body = b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))
    assert len(body) == size
    ends = [i for i, e in enumerate(events) if isinstance(e, h11.Data) and e.chunk_end]
    last = events[ends[-1]]
    assert isinstance(last, h11.Data)
    return bytes(last.data)


@pytest.mark.real
def test_how_a_large_download_ends_does_not_depend_on_the_secret(world: World) -> None:
    """A file over the 1 MiB the firewall scrubs whole is relayed in reads and re-framed as chunks;
    its end is always the end of a read, so a file that ends in bytes the agent chose (one it pushed,
    fetched back from a raw-content host) is one guess. Only the framing may differ, never the bytes."""
    fw, secret = world.firewall, world.secret
    size = (1 << 20) + 4096
    guess_right, guess_wrong = secret[:20], secret[:19] + ("0" if secret[19] != "0" else "1")
    right = _last_chunk(fw, ECHO_HOST, size, guess_right)
    wrong = _last_chunk(fw, ECHO_HOST, size, guess_wrong)
    # Held back only when it is a prefix of the secret: the last chunk is then the guess alone.
    tells = (right == guess_right.encode()) != (wrong == guess_wrong.encode())
    assert not tells, "the last chunk of a download says whether the file ended in a prefix of a real secret"


def _h2_frames(fw: FirewallHarness, host: str, target: str) -> list[bytes]:
    """The DATA frames of one HTTP/2 GET as the agent's client got them."""
    frames: list[bytes] = []
    with h2_tunnel(fw, host) as (tls, conn):
        head = [(":method", "GET"), (":path", target), (":scheme", "https"), (":authority", host)]
        conn.send_headers(1, head, end_stream=True)
        tls.sendall(conn.data_to_send())
        ended = False
        while not ended:
            for event in conn.receive_data(tls.recv(65536)):
                if isinstance(event, h2.events.DataReceived):
                    frames.append(event.data)
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                ended = ended or isinstance(event, h2.events.StreamEnded)
            tls.sendall(conn.data_to_send())
    return [f for f in frames if f]


@pytest.mark.real
def test_how_a_small_file_ends_over_http2_does_not_depend_on_the_secret(world: World) -> None:
    """Over HTTP/2 even a small body framed by Content-Length is relayed in reads (never scrubbed
    whole), so any short answer that ends in bytes the agent chose is a guess: a file it pushed and
    fetched back from a raw-content host, say."""
    fw, secret = world.firewall, world.secret
    guess_right, guess_wrong = secret[:20], secret[:19] + ("0" if secret[19] != "0" else "1")
    right = _h2_frames(fw, ECHO_HOST, "/file?" + urlencode({"size": 100, "tail": guess_right}))
    wrong = _h2_frames(fw, ECHO_HOST, "/file?" + urlencode({"size": 100, "tail": guess_wrong}))
    assert b"".join(right).endswith(guess_right.encode())
    assert b"".join(wrong).endswith(guess_wrong.encode())
    tells = len(right) != len(wrong)
    assert not tells, "the DATA frames of a 100-byte file say whether it ended in a prefix of a real secret"
