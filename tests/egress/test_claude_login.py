"""The Claude subscription login: the pure refresh rules, the store, and the firewall's own refresh."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from agent_smith.egress.claude import (
    CLIENT_ID,
    ClaudeTokens,
    TokenStore,
    apply_token_response,
    refresh_due,
    refresh_request_body,
    stub_refresh_answer,
    tokens_from_credentials,
)
from agent_smith.errors import OperationError, UsageError
from tests.egress.helpers import assert_never_contains, client
from tests.fixtures.egress import STUB_ACCESS, STUB_REFRESH, EgressUpstream, StartFirewall

TOKENS = ClaudeTokens("real-access-1", "real-refresh-1", 2_000_000_000_000, ("user:inference",), "max")


@pytest.mark.parametrize(
    ("expires_in_s", "margin", "due"),
    [(3600, 600, False), (600, 600, True), (599, 600, True), (-5, 600, True), (601, 600, False)],
)
def test_refresh_is_due_within_the_margin(expires_in_s: float, margin: float, due: bool) -> None:
    now = 1_700_000_000.0
    tokens = ClaudeTokens("a", "r", int((now + expires_in_s) * 1000))
    assert refresh_due(tokens, now, margin) is due


def test_the_refresh_request_and_the_answer() -> None:
    assert refresh_request_body(TOKENS) == {
        "grant_type": "refresh_token",
        "refresh_token": "real-refresh-1",
        "client_id": CLIENT_ID,
        "scope": "user:inference",
    }
    fresh = apply_token_response(TOKENS, {"access_token": "real-access-2", "expires_in": 100}, 1000.0)
    assert fresh == ClaudeTokens("real-access-2", "real-refresh-1", 1_100_000, ("user:inference",), "max")
    rotated = apply_token_response(
        TOKENS, {"access_token": "a3", "refresh_token": "r3", "expires_in": 5, "scope": "x y"}, 0
    )
    assert (rotated.refresh_token, rotated.scopes) == ("r3", ("x", "y"))
    for bad in (
        {},
        {"access_token": "x"},
        {"access_token": "x", "expires_in": 0},
        [],
        {"access_token": "", "expires_in": 3},
    ):
        with pytest.raises(OperationError):
            apply_token_response(TOKENS, bad, 0)


def test_the_stub_answer_holds_only_stubs() -> None:
    answer = stub_refresh_answer("stub-a", "stub-r", ())
    assert answer["access_token"] == "stub-a"
    assert answer["refresh_token"] == "stub-r"
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] > 3600


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "no claudeAiOauth"),
        ({"claudeAiOauth": {}}, "accessToken is missing"),
        ({"claudeAiOauth": {"accessToken": "a"}}, "refreshToken is missing"),
        ({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r", "expiresAt": "soon"}}, "expiresAt"),
        ({"claudeAiOauth": {"accessToken": "a", "refreshToken": "r", "expiresAt": 1, "scopes": "x"}}, "scopes"),
    ],
)
def test_bad_credentials_files_are_named(payload: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        tokens_from_credentials(payload, "creds.json")


def test_the_store_is_private_atomic_and_never_reprs_a_token(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "secrets" / "claude-login.json")
    assert store.load() is None
    store.save(TOKENS)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.load() == TOKENS
    assert "real-" not in repr(TOKENS)
    assert [p.name for p in store.path.parent.iterdir()] == ["claude-login.json"]


@pytest.mark.real
def test_the_firewall_refreshes_the_real_token_before_it_expires_and_uses_the_new_one(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    world = egress_upstream.world
    old_access, old_refresh = world.claude_access, world.claude_refresh
    expiring = ClaudeTokens(old_access, old_refresh, int((time.time() + 60) * 1000), ("user:inference",), "max")
    fw = egress_firewall(claude_tokens=expiring, refresh_before=600)
    store = TokenStore(fw.state.secrets_dir / "claude-login.json")
    deadline = time.monotonic() + 15
    while store.load() == expiring and time.monotonic() < deadline:
        time.sleep(0.05)
    fresh = store.load()
    assert fresh is not None
    assert (fresh.access_token, fresh.refresh_token) == (world.claude_access, world.claude_refresh)
    assert fresh.access_token != old_access
    assert fresh.expires_at_ms > time.time() * 1000 + 3000 * 1000
    [request] = world.token_requests
    assert request["grant_type"] == "refresh_token"
    assert request["refresh_token"] == old_refresh
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    with client(fw) as http:
        response = http.get("https://api.anthropic.com/echo", headers={"Authorization": f"Bearer {STUB_ACCESS}"})
        assert world.seen[-1].headers["Authorization"] == f"Bearer {world.claude_access}"
        # An API host handing back the login it got before the renewal: it still works until it
        # expires, so it is scrubbed as the current one is.
        earlier = http.get(f"https://api.anthropic.com/echo?earlier={old_access}&refresh={old_refresh}")
    assert response.status_code == 200
    assert response.json()["headers"]["Authorization"] == f"Bearer {STUB_ACCESS}"
    assert earlier.json()["path"] == f"/echo?earlier={STUB_ACCESS}&refresh={STUB_REFRESH}"
    assert_never_contains([earlier.text], old_access, old_refresh)
    audit = fw.state.audit_log_path.read_text().splitlines()
    assert_never_contains(
        [response.text, *audit[:-1]],
        old_access,
        old_refresh,
        world.claude_access,
        world.claude_refresh,
    )


@pytest.mark.real
def test_the_clis_refresh_is_answered_with_stubs_and_never_forwarded(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    world = egress_upstream.world
    fw = egress_firewall(
        claude_tokens=ClaudeTokens(world.claude_access, world.claude_refresh, int((time.time() + 7200) * 1000))
    )
    for http2 in (False, True):
        with client(fw, http2=http2) as http:
            answer = http.post(
                "https://platform.claude.com/v1/oauth/token",
                json={"grant_type": "refresh_token", "refresh_token": STUB_REFRESH, "client_id": CLIENT_ID},
            )
            login = http.post("https://platform.claude.com/v1/oauth/token", json={"grant_type": "authorization_code"})
            other = http.get("https://platform.claude.com/v1/oauth/token")
        assert answer.status_code == 200
        assert answer.json()["access_token"] == STUB_ACCESS
        assert answer.json()["refresh_token"] == STUB_REFRESH
        assert login.status_code == 400
        assert other.status_code == 403
    assert world.token_requests == []
    assert [s for s in world.seen if "oauth" in s.path] == []
    assert_never_contains([json.dumps(fw.audit())], world.claude_access, world.claude_refresh)
