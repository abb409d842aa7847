"""A placeholder base64-encoded in any header, not only in `Authorization: Basic`: refused toward a
host it is not for, or in a header it is not for, as the plain placeholder is; swapped where the
rule allows it (scheme auto: inside any base64 token; basic: inside Basic credentials only)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.egress.policy import Denied, Forward, Policy, RequestView, Rule, Scheme, Secret, evaluate
from tests.egress.helpers import assert_never_contains, client, files_under, tunnelled_get
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, StartFirewall

PH = "agent-smith-placeholder-github-token"
GH = Secret("github", PH, "REAL-gh-0001-value", ("api.github.test",))
POLICY = Policy(rules=(Rule("api.github.test", frozenset({443})), Rule("other.test", frozenset({443}))))


def _b64(text: str, *, urlsafe: bool = False, padded: bool = True) -> str:
    encoded = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def _unb64(token: str) -> str:
    return base64.urlsafe_b64decode(token.replace("+", "-").replace("/", "_") + "=" * (-len(token) % 4)).decode()


def _request(host: str, headers: tuple[tuple[str, str], ...], target: str = "/echo") -> RequestView:
    return RequestView("devbot", host, 443, "GET", target, host, headers)


# What clients send: git and npm (Basic), clients that make a bearer token of "user:token", an API
# key header, Docker's X-Registry-Auth (URL-safe base64 of a JSON document), a cookie.
ENCODED = {
    "basic": ("authorization", f"Basic {_b64(f'x-access-token:{PH}')}"),
    "bearer-user-token": ("authorization", f"Bearer {_b64(f'devbot:{PH}')}"),
    "bearer-unpadded": ("authorization", f"Bearer {_b64(f'u:{PH}', padded=False)}"),
    "api-key": ("x-api-key", _b64(PH)),
    "registry-auth": ("x-registry-auth", _b64(json.dumps({"username": "x", "password": PH}), urlsafe=True)),
    "cookie": ("cookie", f"theme=dark; session={_b64(f'tok={PH}&x=1')}"),
}


@pytest.mark.parametrize(("name", "value"), ENCODED.values(), ids=ENCODED.keys())
def test_a_base64_placeholder_toward_another_host_is_refused(name: str, value: str) -> None:
    verdict = evaluate(POLICY, [GH], _request("other.test", ((name, value),)))
    assert verdict == Denied("the placeholder of secret github was sent toward other.test", "")


def test_a_base64_placeholder_in_the_url_toward_another_host_is_refused() -> None:
    target = f"/echo?auth={_b64(f'x:{PH}', urlsafe=True, padded=False)}"
    verdict = evaluate(POLICY, [GH], _request("other.test", (), target))
    assert verdict == Denied("the placeholder of secret github was sent toward other.test", "")


@pytest.mark.parametrize(("name", "value"), [v for k, v in ENCODED.items() if v[0] != "authorization"])
def test_a_base64_placeholder_in_another_header_toward_its_host_is_refused(name: str, value: str) -> None:
    verdict = evaluate(POLICY, [GH], _request("api.github.test", ((name, value),)))
    assert verdict == Denied(f"the placeholder of secret github was sent in header {name}, not authorization", "")


@pytest.mark.parametrize("key", ["basic", "bearer-user-token", "bearer-unpadded"])
def test_auto_swaps_inside_base64_in_its_header_and_remembers_the_token_it_sent(key: str) -> None:
    name, value = ENCODED[key]
    verdict = evaluate(POLICY, [GH], _request("api.github.test", ((name, value),)))
    assert isinstance(verdict, Forward)
    scheme, _, token = dict(verdict.headers)[name].partition(" ")
    original = value.partition(" ")[2]
    assert scheme == value.partition(" ")[0]
    assert _unb64(token) == _unb64(original).replace(PH, GH.value)
    # Padded as it came: an unpadded token (a JWT-like client) stays unpadded.
    assert token.endswith("=") == original.endswith("=")
    assert verdict.swapped == ("github",)
    # An upstream that echoes the header gets the original token back in its place.
    assert verdict.echoes == ((token, original),)


def test_auto_swaps_inside_url_safe_base64_of_a_document_in_a_custom_header() -> None:
    secret = Secret("registry", PH, GH.value, ("api.github.test",), "x-registry-auth")
    name, value = ENCODED["registry-auth"]
    verdict = evaluate(POLICY, [secret], _request("api.github.test", ((name, value),)))
    assert isinstance(verdict, Forward)
    sent = dict(verdict.headers)[name]
    assert "+" not in sent
    assert "/" not in sent
    assert json.loads(_unb64(sent)) == {"username": "x", "password": GH.value}


@pytest.mark.parametrize(
    ("scheme", "key", "swapped"),
    [
        ("basic", "basic", True),
        ("basic", "bearer-user-token", False),
        ("bearer", "bearer-user-token", False),
        ("token", "bearer-user-token", False),
        ("raw", "bearer-user-token", False),
    ],
)
def test_a_scheme_that_does_not_admit_the_base64_form_refuses_it(scheme: Scheme, key: str, swapped: bool) -> None:
    secret = Secret("github", PH, GH.value, ("api.github.test",), "authorization", scheme)
    verdict = evaluate(POLICY, [secret], _request("api.github.test", (ENCODED[key],)))
    if swapped:
        assert isinstance(verdict, Forward)
    else:
        assert verdict == Denied(f"the placeholder of secret github in authorization is not in {scheme} form", "")


def test_base64_that_cannot_be_swapped_is_refused_rather_than_sent_as_it_is() -> None:
    # The placeholder's base64 inside a token that is no base64 as a whole (a character cut off).
    token = _b64(f"u:{PH}", padded=False)[:-1]
    verdict = evaluate(POLICY, [GH], _request("api.github.test", (("authorization", f"Bearer {token}"),)))
    assert verdict == Denied("the placeholder of secret github in authorization is not in auto form", "")


@settings(max_examples=400)
@given(st.binary(max_size=12), st.binary(max_size=12), st.booleans(), st.booleans(), st.text("; ,:", max_size=3))
def test_the_placeholder_is_found_in_base64_of_any_bytes_around_it(
    before: bytes, after: bytes, urlsafe: bool, padded: bool, around: str
) -> None:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    token = encode(before + PH.encode() + after).decode()
    token = token if padded else token.rstrip("=")
    value = f"{around}{token}{around}"
    refused = evaluate(POLICY, [GH], _request("other.test", (("x-anything", value),)))
    assert refused == Denied("the placeholder of secret github was sent toward other.test", "")
    secret = Secret("github", PH, GH.value, ("api.github.test",), "x-anything")
    verdict = evaluate(POLICY, [secret], _request("api.github.test", (("x-anything", value),)))
    assert isinstance(verdict, Forward)
    [(sent, original)] = verdict.echoes
    assert original == token
    assert dict(verdict.headers)["x-anything"] == f"{around}{sent}{around}"
    decoded = base64.urlsafe_b64decode(sent.replace("+", "-").replace("/", "_") + "=" * (-len(sent) % 4))
    assert decoded == before + GH.value.encode() + after


@pytest.mark.parametrize("value", ["Basic " + _b64("devbot:not-the-placeholder"), _b64(PH[:-1]), PH[::-1]])
def test_base64_without_the_placeholder_is_left_alone(value: str) -> None:
    verdict = evaluate(POLICY, [GH], _request("other.test", (("authorization", value),)))
    assert isinstance(verdict, Forward)
    assert dict(verdict.headers)["authorization"] == value


# ---- through the real firewall ----------------------------------------------------------------


@pytest.mark.real
def test_the_firewall_swaps_a_base64_bearer_toward_its_host_and_refuses_it_elsewhere(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    fw = egress_firewall()
    secret = egress_upstream.world.github_secret
    header = {"Authorization": f"Bearer {_b64(f'devbot:{GITHUB_PLACEHOLDER}')}"}
    with client(fw) as http:
        swapped = http.get("https://api.github.test/echo", headers=header)
        refused = http.get("https://other.test/echo", headers=header)
        custom = http.get("https://api.github.test/echo", headers={"X-Token": _b64(GITHUB_PLACEHOLDER)})
    seen = egress_upstream.world.seen
    assert [s.path for s in seen] == ["/echo"]
    assert _unb64(seen[0].headers["Authorization"].partition(" ")[2]) == f"devbot:{secret}"
    # The echo of the header comes back as the agent sent it.
    assert swapped.json()["headers"]["Authorization"] == header["Authorization"]
    assert [refused.status_code, custom.status_code] == [403, 403]
    assert [d.reason for d in fw.denials] == [
        "the placeholder of secret github was sent toward other.test",
        "the placeholder of secret github was sent in header x-token, not authorization",
    ]
    encoded = _b64(f"devbot:{secret}")
    assert_never_contains([swapped.text, refused.text, custom.text, *files_under(fw.state.root)], secret, encoded)


@pytest.mark.real
def test_proxy_authorization_inside_a_tunnel_never_reaches_the_upstream(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    # A hop-by-hop header, dropped like the plain placeholder in it: nothing to refuse, as nothing
    # of it leaves the firewall, toward any host.
    fw = egress_firewall()
    for value in (f"Basic {_b64(f'devbot:{GITHUB_PLACEHOLDER}')}", GITHUB_PLACEHOLDER):
        events = tunnelled_get(fw, "/echo", [("Proxy-Authorization", value)], host="other.test")
        assert events[0].status_code == 200  # type: ignore[attr-defined]
    assert [s.path for s in egress_upstream.world.seen] == ["/echo", "/echo"]
    assert all("Proxy-Authorization" not in s.headers for s in egress_upstream.world.seen)
