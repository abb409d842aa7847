"""An upstream that hands the agent its real secret back in every way a scrub of plain bodies misses:
a coded body, a header's name, the reason phrase, a trailer, an error quoting the credential, a coded
WebSocket frame, an escaped form of the secret."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
from pathlib import Path
from urllib.parse import quote

import aiohttp
import h11
import pytest

from agent_smith.egress import Firewall, FirewallSettings, FirewallState
from agent_smith.egress.policy import Policy, Secret, secret_forms
from tests.egress.helpers import assert_never_contains, client, files_under, tunnelled_get
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, StartFirewall

AUTH = {"Authorization": f"token {GITHUB_PLACEHOLDER}"}


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_bodies_are_asked_for_uncoded_and_a_coded_one_is_refused(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        echoed = http.get("https://api.github.test/echo", headers={**AUTH, "Accept-Encoding": "gzip, br"})
        coded = http.get("https://api.github.test/gzip-leak", headers={"Accept-Encoding": "gzip"})
    # requests and undici ask for gzip by default: the scrub could not read such a body.
    assert egress_upstream.world.seen[0].headers["Accept-Encoding"] == "identity"
    assert echoed.status_code == 200
    assert coded.status_code == 502
    assert "gzip-coded body, though asked for none" in coded.text
    assert coded.headers.get("content-encoding") is None
    assert [e["status"] for e in fw.audit()] == [200, 502]
    assert_never_contains([coded.content, str(coded.headers), *files_under(fw.state.root)], secret)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_coded_body_framed_by_chunks_beside_a_zero_length_is_refused(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    # The zero length made it pass for an empty body; h11 reads the chunks, which echoed the secret.
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        coded = http.get("https://api.github.test/raw/gzip-chunked-length-0", headers=AUTH)
    assert egress_upstream.world.seen[-1].headers["Authorization"] == f"token {secret}"
    assert coded.status_code == 502
    assert "gzip-coded body, though asked for none" in coded.text
    assert_never_contains([coded.content, str(coded.headers), *files_under(fw.state.root)], secret)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_host_no_secret_goes_to_and_an_empty_body_keep_their_coding(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    with client(fw, http2=http2) as http:
        empty = http.get("https://api.github.test/gzip-leak?empty=1", headers={"Accept-Encoding": "gzip"})
        # other.test never gets a secret, so it has none to hand back: its answers come as they are.
        other = http.get("https://other.test/gzip-leak", headers={"Accept-Encoding": "gzip"})
    assert (empty.status_code, empty.content) == (200, b"")
    assert other.status_code == 200
    assert other.headers["content-encoding"] == "gzip"
    assert egress_upstream.world.seen[-1].headers["Accept-Encoding"] == "gzip"


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_header_s_name_and_the_reason_phrase_are_scrubbed(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    with client(fw, http2=http2) as http:
        response = http.get("https://api.github.test/head-leak")
    assert response.status_code == 200
    assert response.headers[f"x-{GITHUB_PLACEHOLDER}"] == "1"
    if not http2:
        assert response.reason_phrase == f"token {GITHUB_PLACEHOLDER}"
    assert_never_contains([str(response.headers), response.reason_phrase], secret)


@pytest.mark.real
def test_a_trailer_s_name_is_scrubbed(egress_firewall: StartFirewall, egress_upstream: EgressUpstream) -> None:
    events = tunnelled_get(egress_firewall(), "/raw/trailers")
    end = events[-1]
    assert isinstance(end, h11.EndOfMessage)
    assert end.headers == [(f"x-{GITHUB_PLACEHOLDER}".encode(), b"1")]
    assert b"".join(e.data for e in events if isinstance(e, h11.Data)) == b"ok"


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_an_upstream_error_quoting_the_basic_credential_reaches_neither_agent_nor_audit_log(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, http2: bool
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    basic = {"Authorization": "Basic " + base64.b64encode(f"x-access-token:{GITHUB_PLACEHOLDER}".encode()).decode()}
    with client(fw, http2=http2) as http:
        response = http.get("https://api.github.test/raw/bad-head", headers=basic)
    # git sends this form: the upstream got the secret's, and its parser error quoted it back.
    sent = base64.b64encode(f"x-access-token:{secret}".encode()).decode()
    assert egress_upstream.world.seen[-1].headers["Authorization"] == f"Basic {sent}"
    assert response.status_code == 502
    # Said without the bytes h11 quoted: its repr() is a spelling of the secret of its own.
    said = "an answer that is not HTTP/1.1 (illegal header line)"
    assert response.text.endswith(f" {said}\n"), response.text
    [entry] = fw.audit()
    assert entry["reason"] == said
    assert_never_contains([response.text, *files_under(fw.state.root)], secret, sent)


@pytest.mark.real
@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_quote_in_a_secret_quoted_back_in_a_bad_head_is_not_handed_back(
    egress_firewall: StartFirewall, http2: bool
) -> None:
    """A secret may hold a "'" (it need only be visible ASCII: a registry password, say), which
    repr() writes as "\\'" next to a '"': the agent's own '"' in the header the upstream quotes."""
    secret = f"REAL'{secrets.token_hex(16)}"
    fw = egress_firewall(secrets_=[Secret("github", GITHUB_PLACEHOLDER, secret, ("api.github.test", "github.test"))])
    with client(fw, http2=http2) as http:
        response = http.get(
            "https://api.github.test/raw/bad-head", headers={"Authorization": f'token {GITHUB_PLACEHOLDER} "'}
        )
    assert response.status_code == 502
    [entry] = fw.audit()
    shown = [response.text, entry["reason"], *(f.decode("utf-8", "replace") for f in files_under(fw.state.root))]
    # What a reader gets back by undoing repr()'s one escape.
    leaked = sum(secret in text.replace("\\'", "'") for text in shown)
    assert leaked == 0, f"the real secret, repr-escaped, reached {leaked} of the agent's answer and the audit log"


@pytest.mark.real
def test_a_websocket_server_that_codes_its_frames_anyway_is_cut_off(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fw = egress_firewall()

    async def talk() -> tuple[str | None, list[str]]:
        ctx = ssl.create_default_context(cafile=str(fw.ca_path))
        received: list[str] = []
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect("wss://api.github.test/raw/ws", proxy=fw.proxy_url("devbot"), ssl=ctx) as ws,
        ):
            async for message in ws:
                received.append(str(message.data))
            return ws.protocol, received

    protocol, received = asyncio.run(talk())
    assert egress_upstream.world.seen[-1].headers.get("Sec-WebSocket-Extensions") is None
    assert protocol is None
    assert received == []
    assert "a WebSocket was cut off: the server set a frame's extension bits" in caplog.text


def test_escaped_forms_of_a_secret_are_scrubbed_in_the_same_form_of_the_placeholder(tmp_path: Path) -> None:
    value = "REALSECRET/fake+token=abc123"
    assert secret_forms(value, "PH-1") == {
        value: "PH-1",
        "REALSECRET%2Ffake%2Btoken%3Dabc123": "PH-1",
        "REALSECRET/fake%2Btoken%3Dabc123": "PH-1",
        "REALSECRET\\/fake+token=abc123": "PH-1",
    }
    state = FirewallState(tmp_path / "firewall")
    secret = Secret("api", "PH-1", value, ("api.test",))
    settings = FirewallSettings(Policy(()), (secret,), frozenset({"devbot"}), state.identity_key(), state, ("::1", 0))
    scrubber = Firewall(settings).scrubber_for([secret])
    body = json.dumps({"url": f"https://x/?key={quote(value, safe='')}", "key": value}).replace("/", "\\/")
    scrubbed = scrubber.scrub(body.encode()).decode()
    assert "REALSECRET" not in scrubbed
    assert json.loads(scrubbed) == {"url": "https://x/?key=PH-1", "key": "PH-1"}
