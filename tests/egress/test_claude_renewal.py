"""The firewall's renewal of the real Claude login against a token endpoint that behaves like
Anthropic's: the refresh token is single-use (each renewal rotates it and the old one is refused),
and the model API refuses an expired access token."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import fcntl
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from agent_smith.certs import CertificateAuthority
from agent_smith.crew import Crew
from agent_smith.egress import Firewall
from agent_smith.egress.claude import ClaudeTokens, TokenStore, refresh_refusal
from agent_smith.egress.service import import_claude_login
from agent_smith.egress.settings import claude_store_for
from tests.egress.helpers import assert_never_contains, client
from tests.fixtures.egress import STUB_ACCESS, TEST_HOSTS, EgressUpstream, StartFirewall, https_upstream, real_secret

_IMPORT_HINT = "import a fresh one with `agent-smith firewall import-claude-login FILE`"


class Issuer:
    """Anthropic's token endpoint and model API, as far as the login goes."""

    def __init__(self) -> None:
        self.access = real_secret("claude-access")
        self.refresh = real_secret("claude-refresh")
        self.delay = 0.0
        self.renewals = 0
        self.messages = 0

    def app(self) -> web.Application:
        async def token(request: web.Request) -> web.Response:
            body = await request.json()
            self.renewals += 1
            await asyncio.sleep(self.delay)
            if body.get("grant_type") != "refresh_token" or body.get("refresh_token") != self.refresh:
                return web.json_response(
                    {
                        "error": "invalid_grant",
                        "error_description": f"Refresh token {body.get('refresh_token')} is invalid",
                    },
                    status=400,
                )
            self.access, self.refresh = real_secret("claude-access"), real_secret("claude-refresh")
            answer = {"access_token": self.access, "refresh_token": self.refresh, "expires_in": 3600}
            return web.json_response({**answer, "token_type": "Bearer", "scope": "user:inference"})

        async def messages(request: web.Request) -> web.Response:
            self.messages += 1
            if request.headers.get("Authorization") != f"Bearer {self.access}":
                error = {"type": "authentication_error", "message": "OAuth token has expired."}
                return web.json_response({"type": "error", "error": error}, status=401)
            return web.json_response({"type": "message", "content": []})

        app = web.Application()
        app.router.add_post("/v1/oauth/token", token)
        app.router.add_post("/v1/messages", messages)
        return app


@pytest.fixture
def issuer(tmp_path: Path, egress_test_ca: CertificateAuthority, egress_upstream: EgressUpstream) -> Iterator[Issuer]:
    """The issuer on loopback, in place of the stand-in upstream for every test host."""
    made = Issuer()
    (tmp_path / "issuer").mkdir()
    with https_upstream(made.app(), TEST_HOSTS, egress_test_ca, tmp_path / "issuer") as (_, port):
        egress_upstream.port = port
        yield made


def _expired(refresh: str) -> ClaudeTokens:
    return ClaudeTokens(real_secret("old-access"), refresh, int((time.time() - 60) * 1000), ("user:inference",))


def _ask_model(http: httpx.Client) -> tuple[int, str]:
    response = http.post(
        "https://api.anthropic.com/v1/messages", json={}, headers={"Authorization": f"Bearer {STUB_ACCESS}"}
    )
    return response.status_code, response.text


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            400,
            b'{"error": "invalid_grant", "error_description": "x"}',
            "HTTP 400 (invalid_grant); it refuses this login",
        ),
        (401, b"not json", "HTTP 401; it refuses this login"),
        (503, b'{"error": "temporarily_unavailable"}', "HTTP 503 (temporarily_unavailable)"),
        # A code that is no OAuth code (it could quote anything) is left out.
        (400, b'{"error": "Token sk-ant-ort01-abc is invalid"}', "HTTP 400; it refuses"),
    ],
)
def test_a_refusal_says_the_status_the_oauth_code_and_what_to_do(status: int, body: bytes, said: str) -> None:
    text = refresh_refusal(status, body)
    assert said in text
    assert ("import-claude-login" in text) is (status < 500)
    assert "sk-ant" not in text


@pytest.mark.real
def test_requests_during_the_renewal_of_an_expired_login_wait_for_it_and_cause_one(
    egress_firewall: StartFirewall, issuer: Issuer
) -> None:
    # The firewall was down when the login was due: it starts with an expired one.
    issuer.delay = 0.5
    fw = egress_firewall(claude_tokens=_expired(issuer.refresh))

    def one(http2: bool) -> tuple[int, str]:
        with client(fw, http2=http2) as http:
            return _ask_model(http)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(one, [False, True] * 3))
    assert [status for status, _ in answers] == [200] * 6, answers
    assert issuer.renewals == 1
    assert issuer.messages == 6


def _wait_for_a_renewal(issuer: Issuer) -> None:
    deadline = time.monotonic() + 5
    while issuer.renewals == 0 and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.real
def test_a_renewal_under_way_when_the_firewall_stops_is_saved(egress_firewall: StartFirewall, issuer: Issuer) -> None:
    # Its answer holds the only refresh token the endpoint still takes: cut short, the login is lost.
    issuer.delay = 1.0
    fw = egress_firewall(claude_tokens=_expired(issuer.refresh))
    _wait_for_a_renewal(issuer)
    fw.stop()
    stored = TokenStore(fw.state.secrets_dir / "claude-login.json").load()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == (issuer.access, issuer.refresh)


@pytest.mark.real
def test_two_firewalls_on_one_login_renew_it_once(egress_firewall: StartFirewall, issuer: Issuer) -> None:
    # An old firewall and its replacement (`up` again), both finding the login due.
    issuer.delay = 1.0
    fw = egress_firewall(claude_tokens=_expired(issuer.refresh))
    _wait_for_a_renewal(issuer)
    second = Firewall(dataclasses.replace(fw.firewall.settings, listen=("127.0.0.1", 0)))
    fw.loop.call(second.start())
    try:
        assert second.address is not None
        with client(fw) as http:
            # Through the second firewall: it waits for the first one's renewal and takes it up.
            proxy = str(httpx.URL(fw.proxy_url("devbot")).copy_with(port=second.address[1]))
            trust = ssl.create_default_context(cafile=str(fw.ca_path))
            with httpx.Client(proxy=proxy, verify=trust, timeout=20, trust_env=False) as via_second:
                assert _ask_model(via_second)[0] == 200
            assert _ask_model(http)[0] == 200
        assert issuer.renewals == 1
    finally:
        fw.loop.call(second.stop())


@pytest.mark.real
def test_a_refused_renewal_is_one_clear_line_and_a_clear_answer_and_the_stored_login_stays(
    egress_firewall: StartFirewall, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent_smith.egress")
    revoked = _expired(real_secret("revoked-refresh"))
    fw = egress_firewall(claude_tokens=revoked)
    store_path = fw.state.secrets_dir / "claude-login.json"
    deadline = time.monotonic() + 5
    while not any("refreshing the Claude login failed" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the refused renewal was never logged"
        time.sleep(0.02)
    before = store_path.read_bytes()
    for http2 in (False, True):
        with client(fw, http2=http2) as http:
            status, text = _ask_model(http)
            assert status == 401
            message = json.loads(text)["error"]["message"]
            assert message.startswith("agent-smith firewall: the Claude login expired and renewing it failed: ")
            assert "HTTP 400 (invalid_grant)" in message
            assert _IMPORT_HINT in message
    # Answered here: an expired token never went to the API, and the agent was not sent to /login.
    assert issuer.messages == 0
    assert issuer.renewals == 1
    [line] = [r.getMessage() for r in caplog.records if "refreshing the Claude login failed" in r.getMessage()]
    assert "HTTP 400 (invalid_grant)" in line
    assert _IMPORT_HINT in line
    assert store_path.read_bytes() == before
    audit = fw.audit()
    assert [(a["status"], a["decision"], a["rule"]) for a in audit[-2:]] == [(401, "error", "egress.claude_login")] * 2
    assert_never_contains(
        [line, json.dumps(audit), text], revoked.access_token, revoked.refresh_token, issuer.access, issuer.refresh
    )


def test_an_import_waits_for_a_renewal_under_way(tmp_path: Path) -> None:
    crew = Crew.model_validate(
        {
            "crew": {"name": "cc"},
            "agents": [{"name": "devbot"}],
            "runtime": {"state_dir": str(tmp_path / "state")},
            "egress": {"claude_login": {"enabled": True}},
        }
    )
    store = claude_store_for(crew)
    imported = ClaudeTokens(real_secret("access"), real_secret("refresh"), 1_900_000_000_000, ("user:inference",))
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"claudeAiOauth": imported.to_json()}))
    store.path.parent.mkdir(parents=True)
    fd = os.open(store.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # A firewall renewing the login holds this lock until it has saved the renewed one, which
        # an import written meanwhile would lose to.
        fcntl.flock(fd, fcntl.LOCK_EX)
        importing = threading.Thread(target=import_claude_login, args=(crew, creds))
        importing.start()
        importing.join(0.5)
        assert importing.is_alive()
        assert not store.path.exists()
    finally:
        os.close(fd)
    importing.join(5)
    assert store.load() == imported
