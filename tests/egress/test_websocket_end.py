"""How a WebSocket through the firewall ends: a real aiohttp WebSocket server the test starts on
loopback (TLS from the test CA), the real firewall, and a real aiohttp client through it.

When one side's connection ends, the firewall ends the other's after what it relayed: an upstream
that goes away without a close frame must not leave the client waiting on a connection nobody is
at the other end of, and a client that goes must not leave the upstream connection held open.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import WSMsgType, web

from agent_smith.certs import CertificateAuthority
from agent_smith.egress import Firewall, FirewallSettings, FirewallState
from agent_smith.egress.policy import Policy, Rule, Secret
from agent_smith.egress.state import derive_password
from agent_smith.fsutil import write_atomic
from tests.egress.helpers import assert_never_contains, files_under
from tests.fixtures.egress import GITHUB_PLACEHOLDER, real_secret

HOST = "ws.test"
# Long enough for a firewall that waits on the client to show it; a firewall that does not
# closes the client's side within milliseconds.
PATIENCE = 5.0


@dataclass
class Upstream:
    """What the WebSocket server saw: how its connection to the firewall ended."""

    secret: str
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0


def _ws_app(up: Upstream) -> web.Application:
    async def ws(request: web.Request) -> web.WebSocketResponse:
        """Answer one message (quoting the secret), then end as the path says."""
        how = request.match_info["how"]
        sock = web.WebSocketResponse(compress=False)
        await sock.prepare(request)
        transport = request.transport
        assert transport is not None
        try:
            message = await sock.receive()
            if message.type is WSMsgType.TEXT:
                await sock.send_str(f"{message.data}: your token is {up.secret}")
            if how == "close-frame":
                await sock.close(code=1000)
            elif how == "eof":
                # TLS close_notify and FIN, no close frame: the server process went away cleanly.
                transport.close()
            elif how == "reset":
                # A TCP reset, no close frame and no close_notify: the server crashed.
                raw = transport.get_extra_info("socket")
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                # Stay until the firewall ends this side.
                async for _ in sock:
                    pass
        finally:
            up.ended.set()
        return sock

    app = web.Application()
    app.router.add_get("/ws/{how}", ws)
    return app


@contextlib.asynccontextmanager
async def _world(tmp_path: Path, ca: CertificateAuthority) -> AsyncIterator[tuple[Upstream, Firewall, str, Path]]:
    """The WebSocket server and the firewall in front of it; yields them, devbot's proxy URL and the CA to trust."""
    up = Upstream(real_secret("github"))
    cert, key = ca.issue([HOST])
    write_atomic(tmp_path / "ws.pem", cert + key, mode=0o600)
    write_atomic(tmp_path / "ws-ca.pem", ca.cert_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(tmp_path / "ws.pem")
    runner = web.AppRunner(_ws_app(up), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
        await site.start()
        server = site._server  # the bound port is only known from the server's socket
        assert server is not None
        up.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]

        async def resolve(host: str, port: int) -> list[tuple[str, int]]:
            return [("127.0.0.1", up.port)]

        state = FirewallState(tmp_path / "firewall")
        settings = FirewallSettings(
            policy=Policy((Rule(HOST, frozenset({443}), allow_private=True, origin="egress.allow[0]"),)),
            secrets=(Secret("github", GITHUB_PLACEHOLDER, up.secret, (HOST,)),),
            agents=frozenset({"devbot"}),
            identity_key=state.identity_key(),
            ca_store=state,
            listen=("127.0.0.1", 0),
            upstream_ca=tmp_path / "ws-ca.pem",
            audit_path=state.audit_log_path,
            resolver=resolve,
        )
        async with Firewall(settings) as fw:
            assert fw.address is not None
            proxy = f"http://devbot:{derive_password(state.identity_key(), 'devbot')}@127.0.0.1:{fw.address[1]}"
            yield up, fw, proxy, state.ca_cert()
    finally:
        await runner.cleanup()


async def _talk(proxy: str, ca: Path, how: str) -> tuple[list[str], WSMsgType, int | None]:
    """Say hello, then read until the connection ends (or PATIENCE runs out): what came, and how it ended."""
    ctx = ssl.create_default_context(cafile=str(ca))
    received: list[str] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"wss://{HOST}/ws/{how}", proxy=proxy, ssl=ctx, autoclose=False) as ws,
    ):
        await ws.send_str("hello")
        while True:
            try:
                message = await ws.receive(timeout=PATIENCE)
            except TimeoutError:
                return received, WSMsgType.ERROR, None
            if message.type is not WSMsgType.TEXT:
                return received, message.type, ws.close_code
            received.append(str(message.data))


def _audit(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.real
@pytest.mark.parametrize("how", ["eof", "reset"])
def test_an_upstream_gone_without_a_close_frame_ends_the_clients_connection(
    tmp_path: Path, egress_test_ca: CertificateAuthority, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    async def run() -> tuple[list[str], WSMsgType, int | None, str]:
        async with _world(tmp_path, egress_test_ca) as (up, _fw, proxy, ca):
            received, kind, code = await _talk(proxy, ca, how)
            return received, kind, code, up.secret

    received, kind, code, secret = asyncio.run(run())
    # What the server sent before it went is relayed (scrubbed); then the connection ends. CLOSED, not
    # CLOSE: no close frame reached the client (1006 is what the client makes of it, never sent).
    assert received == [f"hello: your token is {GITHUB_PLACEHOLDER}"]
    assert (kind, code) == (WSMsgType.CLOSED, 1006)
    lines = [r.getMessage() for r in caplog.records if "WebSocket" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("a WebSocket was cut off: the upstream ")
    assert "without a close frame (agent devbot, ws.test:443)" in lines[0]
    audit = _audit(FirewallState(tmp_path / "firewall").audit_log_path)
    assert len(audit) == 1
    assert '"status": 101' in audit[0]
    assert_never_contains([*received, caplog.text, *files_under(tmp_path / "firewall")], secret)


@pytest.mark.real
def test_a_close_frame_then_the_upstreams_end_is_a_clean_close(
    tmp_path: Path, egress_test_ca: CertificateAuthority, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> tuple[list[str], WSMsgType, int | None]:
        async with _world(tmp_path, egress_test_ca) as (_up, _fw, proxy, ca):
            return await _talk(proxy, ca, "close-frame")

    received, kind, code = asyncio.run(run())
    assert received == [f"hello: your token is {GITHUB_PLACEHOLDER}"]
    assert (kind, code) == (WSMsgType.CLOSE, 1000)
    assert "WebSocket" not in caplog.text


@pytest.mark.real
def test_a_client_gone_without_a_close_frame_ends_the_upstream_connection(
    tmp_path: Path, egress_test_ca: CertificateAuthority
) -> None:
    async def run() -> bool:
        async with _world(tmp_path, egress_test_ca) as (up, _fw, proxy, ca):
            ctx = ssl.create_default_context(cafile=str(ca))
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"wss://{HOST}/ws/stay", proxy=proxy, ssl=ctx)
                await ws.send_str("hello")
                await ws.receive_str()
                # The client's process dies: its connection ends, no close frame.
                connection = ws._response.connection
                assert connection is not None
                assert connection.transport is not None
                connection.transport.abort()
                try:
                    await asyncio.wait_for(up.ended.wait(), PATIENCE)
                except TimeoutError:
                    return False
                return True

    assert asyncio.run(run()), "the upstream connection was held open after the client had gone"
