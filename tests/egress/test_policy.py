"""The pure policy core: tables for the decisions, properties for the swap and the scrub."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from agent_smith.egress.policy import (
    AnswerRefresh,
    ClaudePolicy,
    Denied,
    Forward,
    Policy,
    RequestView,
    Rule,
    Scrubber,
    Secret,
    TunnelAllowed,
    authorize_tunnel,
    check_address,
    evaluate,
    host_matches,
    redact_target,
    split_authority,
)

GH = Secret("github", "PLACEHOLDER-gh-0001", "real-gh-value-123", ("api.github.com", "github.com"))
RULES = (
    Rule("api.github.com", frozenset({443}), origin="egress.allow[0]"),
    Rule("github.com", frozenset({443}), origin="egress.allow[1]"),
    Rule("*.example.org", frozenset({443, 8443}), origin="egress.allow[2]"),
    Rule("uploads.example.net", frozenset({443}), frozenset({"GET"}), ("/public/",), origin="egress.allow[3]"),
    Rule("10.1.2.3", frozenset({443}), allow_private=True, origin="egress.allow[4]"),
)
CLAUDE = ClaudePolicy(
    "stub-access-0001", "stub-refresh-0001", ("api.anthropic.com",), "platform.claude.com", 443, "/v1/oauth/token"
)
POLICY = Policy(
    RULES, {"reviewbot": (Rule("pypi.org", frozenset({443}), origin="agents.reviewbot.egress.allow[0]"),)}, CLAUDE
)


def view(
    host: str,
    target: str = "/",
    *,
    method: str = "GET",
    authority: str | None = None,
    agent: str = "devbot",
    headers: tuple[tuple[str, str], ...] = (),
    port: int = 443,
) -> RequestView:
    return RequestView(agent, host, port, method, target, authority if authority is not None else host, headers)


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("api.github.com", "api.github.com", True),
        ("api.github.com", "API.GitHub.com.", True),
        ("api.github.com", "github.com", False),
        ("*.example.org", "a.example.org", True),
        ("*.example.org", "a.b.example.org", True),
        ("*.example.org", "example.org", False),
        ("*.example.org", "evilexample.org", False),
        ("*.example.org", "example.org.evil.com", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("::1", "[::1]", True),
        ("*.0.0.1", "127.0.0.1", False),
    ],
)
def test_host_patterns(pattern: str, host: str, expected: bool) -> None:
    assert host_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("agent", "host", "port", "expected"),
    [
        ("devbot", "api.github.com", 443, "egress.allow[0]"),
        ("devbot", "api.github.com", 80, None),
        ("devbot", "x.example.org", 8443, "egress.allow[2]"),
        ("devbot", "pypi.org", 443, None),
        ("reviewbot", "pypi.org", 443, "agents.reviewbot.egress.allow[0]"),
        ("devbot", "10.1.2.3", 443, "egress.allow[4]"),
        ("devbot", "10.1.2.4", 443, None),
        ("devbot", "platform.claude.com", 443, "token endpoint"),
        ("devbot", "", 443, None),
    ],
)
def test_tunnels(agent: str, host: str, port: int, expected: str | None) -> None:
    verdict = authorize_tunnel(POLICY, agent, host, port)
    if expected is None:
        assert isinstance(verdict, Denied)
    elif expected == "token endpoint":
        assert verdict == TunnelAllowed(None)
    else:
        assert isinstance(verdict, TunnelAllowed)
        assert verdict.rule is not None
        assert verdict.rule.origin == expected


@pytest.mark.parametrize(
    ("address", "allow_private", "refused"),
    [
        ("140.82.112.3", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("10.0.0.8", False, "private"),
        ("192.168.1.1", False, "private"),
        ("172.16.0.1", False, "private"),
        ("169.254.10.10", False, "link-local"),
        ("169.254.169.254", True, "metadata"),
        ("100.100.100.200", True, "metadata"),
        ("fd00:ec2::254", True, "metadata"),
        ("::1", False, "loopback"),
        ("::ffff:127.0.0.1", False, "loopback"),
        ("fe80::1", False, "link-local"),
        ("fc00::1", False, "private"),
        ("0.0.0.0", False, "private"),
        ("100.64.0.1", False, "private"),
        ("2606:4700::1111", False, None),
    ],
)
def test_addresses(address: str, allow_private: bool, refused: str | None) -> None:
    reason = check_address(allow_private, address)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None
        assert refused in reason or (refused == "private" and ("carrier-grade" in reason or "reserved" in reason))


@pytest.mark.parametrize(
    ("request_view", "why"),
    [
        (view("api.github.com", authority="evil.com"), "differs from the tunnel"),
        (view("api.github.com", authority="api.github.com:8443"), "differs from the tunnel"),
        (view("api.github.com", authority=""), "differs from the tunnel"),
        (view("x.example.org", authority="x.example.org:8443", port=443), "differs from the tunnel"),
        (view("uploads.example.net", "/private/x"), "is not under an allowed prefix"),
        (view("uploads.example.net", "/public/../private/x"), "not a plain absolute path"),
        (view("uploads.example.net", "/public/%2e%2e/private"), "not a plain absolute path"),
        # Servers that strip path parameters read "..;" as ".." (Tomcat, Jetty).
        (view("uploads.example.net", "/public/..;/private"), "not a plain absolute path"),
        (view("uploads.example.net", "/public/%2e%2e;x/private"), "not a plain absolute path"),
        # An authority to urlsplit, a path to the server: never the "/public/x" it would have compared.
        (view("uploads.example.net", "//private/public/x"), "path '//private/public/x' is not under"),
        # A request's own words go into the log quoted: no line break or escape sequence of theirs.
        (view("uploads.example.net", "/x%0aWARNING%20forged%1b[31m"), "path '/x\\nWARNING forged\\x1b[31m' is"),
        (view("uploads.example.net", "/public/x", method="POST"), "method POST is not allowed"),
        (view("x.example.org", headers=(("authorization", f"token {GH.placeholder}"),)), "sent toward x.example.org"),
        (view("x.example.org", f"/?t={GH.placeholder}"), "sent toward x.example.org"),
        (view("x.example.org", "/?t=PLACEHOLDER%2Dgh-0001"), "sent toward x.example.org"),
        (view("api.github.com", headers=(("x-token", GH.placeholder),)), "in header x-token, not authorization"),
        (view("pypi.org"), "not on the allowlist"),
        (view("api.github.com", "/caf\xe9"), "not printable ASCII"),
        (view("api.github.com", "/a b"), "not printable ASCII"),
        (view("api.github.com", "https://evil.com/x"), "must be a path inside the tunnel"),
        (view("api.github.com", "evil.com:443", method="CONNECT"), "must be a path inside the tunnel"),
    ],
)
def test_refusals(request_view: RequestView, why: str) -> None:
    verdict = evaluate(POLICY, [GH], request_view)
    assert isinstance(verdict, Denied)
    assert why in verdict.reason


def test_a_request_without_host_is_refused() -> None:
    nameless = RequestView("devbot", "api.github.com", 443, "GET", "/", None, ())
    verdict = evaluate(POLICY, [GH], nameless)
    assert isinstance(verdict, Denied)
    assert verdict.reason == "the request names no Host"


@pytest.mark.parametrize(
    ("scheme", "sent", "expected"),
    [
        ("auto", "token {p}", "token {v}"),
        ("auto", "Bearer {p}", "Bearer {v}"),
        ("auto", "basic:{p}", "basic:{v}"),
        ("bearer", "Bearer {p}", "Bearer {v}"),
        ("token", "token {p}", "token {v}"),
        ("raw", "{p}", "{v}"),
        ("bearer", "token {p}", None),
        ("token", "Bearer {p}", None),
        ("raw", "x {p}", None),
        ("basic", "Bearer {p}", None),
    ],
)
def test_swap_schemes(scheme: str, sent: str, expected: str | None) -> None:
    secret = Secret("gh", GH.placeholder, GH.value, ("api.github.com",), "authorization", scheme)  # type: ignore[arg-type]
    verdict = evaluate(
        POLICY, [secret], view("api.github.com", headers=(("authorization", sent.format(p=secret.placeholder)),))
    )
    if expected is None:
        assert isinstance(verdict, Denied)
        assert f"not in {scheme} form" in verdict.reason
    else:
        assert isinstance(verdict, Forward)
        assert dict(verdict.headers)["authorization"] == expected.format(v=secret.value)
        assert verdict.swapped == ("gh",)


@given(user=st.text(st.characters(blacklist_characters=":", blacklist_categories=("Cs",)), max_size=20))
def test_basic_credentials_are_decoded_swapped_and_reencoded(user: str) -> None:
    for scheme in ("auto", "basic"):
        secret = Secret("gh", GH.placeholder, GH.value, ("github.com",), "authorization", scheme)  # type: ignore[arg-type]
        sent = "Basic " + base64.b64encode(f"{user}:{GH.placeholder}".encode()).decode()
        verdict = evaluate(POLICY, [secret], view("github.com", headers=(("authorization", sent),)))
        assert isinstance(verdict, Forward)
        token = dict(verdict.headers)["authorization"].split(" ", 1)[1]
        assert base64.b64decode(token).decode() == f"{user}:{GH.value}"
        assert verdict.echoes == ((token, sent.split(" ", 1)[1]),)


def test_basic_placeholder_toward_another_host_is_refused() -> None:
    sent = "Basic " + base64.b64encode(f"x:{GH.placeholder}".encode()).decode()
    verdict = evaluate(POLICY, [GH], view("x.example.org", headers=(("authorization", sent),)))
    assert isinstance(verdict, Denied)


def test_the_claude_refresh_is_answered_locally_and_nothing_else_on_that_host() -> None:
    assert evaluate(POLICY, [], view("platform.claude.com", "/v1/oauth/token", method="POST")) == AnswerRefresh()
    assert isinstance(evaluate(POLICY, [], view("platform.claude.com", "/v1/oauth/token")), Denied)
    assert isinstance(evaluate(POLICY, [], view("platform.claude.com", "/other", method="POST")), Denied)


@pytest.mark.parametrize(
    "target",
    [
        "/v1/oauth/%74oken",
        "/v1/oauth/./token",
        "/v1/oauth/x/../token",
        "//v1//oauth/token/",
        "/v1\\oauth\\token",
        "/v1/oauth/token;jsessionid=1",
        "/v1/oauth/token?grant=1",
    ],
)
def test_every_spelling_of_the_token_path_a_server_may_read_is_answered_locally(target: str) -> None:
    # Forwarded, the agent's stub refresh token would reach the real endpoint (when its host is allowed).
    allowed = Policy((Rule("platform.claude.com", frozenset({443})),), {}, CLAUDE)
    assert evaluate(allowed, [], view("platform.claude.com", target, method="POST")) == AnswerRefresh()
    assert isinstance(evaluate(allowed, [], view("platform.claude.com", "/v1/oauth/tokens", method="POST")), Forward)


@pytest.mark.parametrize(
    ("authority", "expected"),
    [("a.com:443", ("a.com", 443)), ("[::1]:8443", ("::1", 8443)), ("a.com", ("a.com", None)), ("a:b", ("a", -1))],
)
def test_split_authority(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_authority(authority) == expected


def test_redaction_of_query_values() -> None:
    assert redact_target(f"/x?a=1&t={GH.placeholder}&u={GH.value}", [GH]) == "/x?a=1&t=REDACTED&u=REDACTED"
    assert redact_target(f"/repos/{GH.value}/x", [GH]) == "/repos/REDACTED/x"
    assert redact_target("/plain", [GH]) == "/plain"


# ---- the scrub ------------------------------------------------------------------------------

needles = st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=4, unique=True)


def _reference(table: dict[bytes, bytes], data: bytes) -> bytes:
    ordered = sorted(table, key=len, reverse=True)
    return re.sub(b"|".join(re.escape(n) for n in ordered), lambda m: table[m.group()], data)


# No deadline: each example compiles the matcher of new secrets (~20 ms, more on a busy machine).
@settings(max_examples=800, deadline=None)
@given(needles, st.data())
def test_the_scrub_of_a_stream_equals_the_scrub_of_the_whole(keys: list[bytes], data: st.DataObject) -> None:
    table = {k: b"<" + bytes([65 + i]) + b">" for i, k in enumerate(keys)}
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(keys), st.binary(max_size=10)), max_size=20))
    stream = b"".join(pieces)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    scrubber = Scrubber(table)
    out, last = b"", 0
    for cut in [*cuts, len(stream)]:
        out += scrubber.feed(stream[last:cut])
        last = cut
    out += scrubber.flush()
    assert out == Scrubber(table).scrub(stream)
    if b"%" not in stream and b"\\" not in stream:
        # No escape, so no spelling but the needles as they are.
        assert out == _reference(table, stream)


@given(st.binary(max_size=200), st.integers(1, 20))
def test_a_secret_split_anywhere_never_passes(prefix: bytes, split: int) -> None:
    secret = b"REAL-SECRET-VALUE-XYZ"
    split = min(split, len(secret) - 1)
    scrubber = Scrubber({secret: b"PH"})
    first = scrubber.feed(prefix + secret[:split])
    second = scrubber.feed(secret[split:] + b"\n\n")
    assert secret not in first + second
    assert (first + second + scrubber.flush()).endswith(b"PH\n\n")


tokens = st.binary(min_size=8, max_size=8).filter(lambda b: not any(c <= 0x20 for c in b))


# No deadline: each example compiles the matchers of two new secrets.
@settings(max_examples=300, deadline=None)
@given(tokens, tokens, st.lists(st.binary(max_size=40), max_size=8))
def test_what_is_held_back_never_depends_on_the_secret(one: bytes, other: bytes, chunks: list[bytes]) -> None:
    """Where each piece the firewall relays ends is seen by the agent: for data holding neither
    secret whole, it is the same whatever the secret is (of one length), so the framing answers
    no guess at one (an agent sending a secret's prefixes back to itself through an upstream)."""
    whole = b"".join(chunks)
    assume(not any(needle in whole for needle in (one, other)) and b"%" not in whole and b"\\" not in whole)

    def framing(secret: bytes) -> list[int]:
        scrubber = Scrubber({secret: b"PLACEHOLDER"})
        return [len(scrubber.feed(chunk)) for chunk in chunks] + [len(scrubber.flush())]

    assert framing(one) == framing(other)


def test_a_secret_s_own_prefix_is_held_back_as_any_other_bytes_are() -> None:
    secret = b"ghp_REALSECRET0123456789"
    for guess in (secret[:5], secret[:12], b"ghp_X"):
        for needle in (secret, b"ghp_OTHERVALUE9876543210"):
            assert Scrubber({needle: b"PH"}).feed(b"#\n" + guess) == b"#\n", (guess, needle == secret)


def test_a_longer_needle_starting_before_a_shorter_match_wins_across_chunks() -> None:
    table = {b"\x00" * 12: b"<A>", b"\x00\x00\x00\xf9\x00": b"<B>", b"\xf9": b"<C>"}
    scrubber = Scrubber(table)
    out = scrubber.feed(b"x\x00\x00\x00\xf9") + scrubber.feed(b"\x00y") + scrubber.flush()
    assert out == b"x<B>y"


def test_an_sse_event_is_not_held_back() -> None:
    scrubber = Scrubber({b"REAL-SECRET": b"PH"})
    assert scrubber.feed(b"event: x\ndata: 1\n\n") == b"event: x\ndata: 1\n\n"
    assert scrubber.feed(b"data: REAL-") == b"data: "
    assert scrubber.feed(b"SECRET\n\n") == b"PH\n\n"


def test_rules_for_different_agents_share_one_placeholder_each_with_its_own_secret() -> None:
    """Each agent acts under its own GitHub identity while every agent holds the same placeholder."""
    shared = "agent-smith-placeholder-github-token"
    secrets = [
        Secret("github-dev", shared, "dev-real-token-0001", ("ghe.test",), agents=frozenset({"devbot"})),
        Secret("github-rev", shared, "rev-real-token-0002", ("ghe.test",), agents=frozenset({"reviewbot"})),
    ]
    policy = Policy(rules=(Rule("ghe.test", frozenset({443})),))

    def sent_by(agent: str) -> str:
        request = RequestView(
            agent, "ghe.test", 443, "GET", "/api/v3/user", "ghe.test", (("authorization", f"token {shared}"),)
        )
        verdict = evaluate(policy, secrets, request)
        assert isinstance(verdict, Forward)
        return dict(verdict.headers)["authorization"]

    assert sent_by("devbot") == "token dev-real-token-0001"
    assert sent_by("reviewbot") == "token rev-real-token-0002"
    assert sent_by("opsbot") == f"token {shared}"  # no rule serves it: the placeholder goes as it is


def test_a_secret_s_repr_shows_no_value() -> None:
    # A Secret in a log line, an assertion's message or a traceback's locals.
    assert GH.value not in repr(GH)
    assert "placeholder" in repr(GH)
