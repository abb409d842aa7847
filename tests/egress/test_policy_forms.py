"""Every spelling a secret or a placeholder may take: the scrub finds a secret however it is
percent-encoded or JSON-escaped (any mix of the two), and a placeholder however the URL encodes it,
or in a header name, is refused."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.egress.policy import (
    Denied,
    Forward,
    Policy,
    RequestView,
    Rule,
    Scrubber,
    Secret,
    _compile,
    evaluate,
    visible_ascii,
)
from tests.egress.helpers import assert_never_contains, client, scrub_in_pieces, scrub_table
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, StartFirewall

PH = "agent-smith-placeholder-test-token"
# Every character `visible_ascii` admits, which is what a secret may hold.
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
# Text around the secret that cannot be part of any spelling of it.
AROUND = st.text(" \n\t", max_size=8)


def _table(value: str, placeholder: str = PH) -> dict[bytes, bytes]:
    return scrub_table(value, placeholder)


# How one character may be spelled: as is, %XX or JSON's \u00XX in upper- or lower-case hex, or
# JSON's two-character escape ("\/", '\"', "\\"; the character as is when it has none).
FORMS = ["as is", "upper", "lower", "json upper", "json lower", "json short"]
HOW = st.sampled_from(FORMS)


def _spell_char(char: str, form: str) -> str:
    code = ord(char)
    spelled = {
        "as is": char,
        "upper": f"%{code:02X}",
        "lower": f"%{code:02x}",
        "json upper": f"\\u{code:04X}",
        "json lower": f"\\u{code:04x}",
        "json short": "\\" + char if char in '/"\\' else char,
    }
    return spelled[form]


def _spell(value: str, how: list[str]) -> str:
    """`value` with each character spelled as `how` says (`FORMS`)."""
    return "".join(_spell_char(char, form) for char, form in zip(value, how, strict=True))


# Every escape the scrub knows, decoded in one pass: a reading of text that mixes them.
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})|\\u00([0-7][0-9A-Fa-f])|\\([/\"\\])")


def _read(text: str) -> str:
    return _ESCAPE.sub(lambda m: m.group(3) or chr(int(m.group(1) or m.group(2), 16)), text)


# No deadline: each example compiles the matcher of new secrets (~20 ms, more on a busy machine).
@settings(max_examples=600, deadline=None)
@given(st.text(VISIBLE, min_size=1, max_size=40), AROUND, AROUND, st.data())
def test_every_spelling_of_a_secret_is_scrubbed_however_the_stream_is_cut(
    value: str, before: str, after: str, data: st.DataObject
) -> None:
    how = data.draw(st.lists(HOW, min_size=len(value), max_size=len(value)))
    stream = f"{before}{_spell(value, how)}{after}".encode()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    assert visible_ascii(value)
    # PH needs no escaping: the placeholder comes back the same whether the secret was encoded or not.
    assert scrub_in_pieces(Scrubber(_table(value)), stream, cuts) == f"{before}{PH}{after}".encode()


# No deadline: each example compiles the matcher of new secrets (~20 ms, more on a busy machine).
@settings(max_examples=300, deadline=None)
@given(st.text(VISIBLE, min_size=1, max_size=24), st.text(VISIBLE + " \n", max_size=60), st.data())
def test_text_without_the_secret_passes_unchanged_and_a_spelling_in_it_never_does(
    value: str, noise: str, data: st.DataObject
) -> None:
    how = data.draw(st.lists(HOW, min_size=len(value), max_size=len(value)))
    at = data.draw(st.integers(0, len(noise)))
    stream = f"{noise[:at]}{_spell(value, how)}{noise[at:]}".encode()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    out = scrub_in_pieces(Scrubber(_table(value)), stream, cuts)
    # Whatever the noise around it, no reading of the output holds the secret (placeholders are
    # dropped first: "PH" itself may end in characters that begin the secret).
    assert value not in _read(out.decode()).replace(PH, "\n")
    if not _spelled_in(value, noise):
        assert scrub_in_pieces(Scrubber(_table(value)), noise.encode(), cuts) == noise.encode()


def _spelled_in(value: str, text: str) -> bool:
    """Whether `text` holds a spelling of `value`, each character as itself, %XX or \\u00XX in
    either hex case, or JSON's "\\/", '\\"' or "\\\\" (the definition, written out here
    independently of the scrubber's)."""

    def one(char: str) -> str:
        forms = [re.escape(char), f"%(?i:{ord(char):02x})", rf"\\u(?i:{ord(char):04x})"]
        if char in '/"\\':
            forms.append(re.escape("\\" + char))
        return "(?:" + "|".join(forms) + ")"

    return re.search("".join(one(char) for char in value), text) is not None


def test_dotnet_lowercase_and_go_path_escape_forms_are_scrubbed() -> None:
    value = "REALSECRET/k3y+Zm9v=bar/xxxxxxxxxx"
    scrubber = Scrubber(_table(value))
    dotnet = quote(value, safe="").lower().replace("realsecret", "REALSECRET").replace("zm9v", "Zm9v")
    assert "%2f" in dotnet
    assert "%2b" in dotnet
    go_path = value.replace("/", "%2F")
    location = f"https://x.test/next?t={dotnet}".encode()
    assert scrubber.scrub(location) == f"https://x.test/next?t={PH}".encode()
    assert scrubber.scrub(go_path.encode()) == PH.encode()


def test_a_spelling_of_a_secret_with_a_literal_percent_sign_is_found() -> None:
    value = "a%41/b"
    scrubber = Scrubber(_table(value))
    for spelling in ("a%41/b", "a%2541%2Fb", "a%2541/b", "%61%25%34%31%2f%62"):
        assert scrubber.scrub(f"<{spelling}>".encode()) == f"<{PH}>".encode()


def test_an_event_is_not_held_back_and_a_cut_escape_is() -> None:
    scrubber = Scrubber(_table("REAL/SECRET"))
    assert scrubber.feed(b"event: x\ndata: 100%25 done\n\n") == b"event: x\ndata: 100%25 done\n\n"
    assert scrubber.feed(b"data: REAL%2") == b"data: "
    assert scrubber.feed(b"fSECRET\n\n") == PH.encode() + b"\n\n"


# Few bytes, among them "%", "\\", "u" and hex digits, so that pairs recur and escapes run into
# each other.
FEW = b"ab/%2Ff=\\u0"


def _spell_bytes(value: bytes, how: list[str]) -> bytes:
    return _spell(value.decode(), how).encode()


# Text dense with escapes: each piece a byte of FEW as is or escaped, in either hex case.
DENSE = st.lists(
    st.builds(
        _spell_bytes,
        st.sampled_from([bytes([b]) for b in FEW]),
        st.lists(HOW, min_size=1, max_size=1),
    ),
    max_size=30,
).map(b"".join)


# No deadline: each example compiles the matcher of new secrets (~20 ms, more on a busy machine).
@settings(max_examples=1500, deadline=None)
@given(
    st.lists(
        st.binary(min_size=1, max_size=6).map(lambda n: bytes(FEW[b % len(FEW)] for b in n)), min_size=1, max_size=3
    ),
    DENSE,
    DENSE,
    st.data(),
)
def test_the_prefilter_flags_an_escape_inside_every_spelling_the_full_pattern_finds(
    needles: list[bytes], before: bytes, after: bytes, data: st.DataObject
) -> None:
    needle = data.draw(st.sampled_from(needles))
    how = data.draw(st.lists(HOW, min_size=len(needle), max_size=len(needle)))
    text = before + _spell_bytes(needle, how) + after
    matcher = _compile(frozenset(needles))
    assert matcher.pattern is not None
    found = list(matcher.pattern.finditer(text))
    assert found
    scrubber = Scrubber(dict.fromkeys(needles, b"X"))
    stretches = list(scrubber._stretches(text))
    for spelling in found:
        if spelling.group() not in needles:
            # Not the needle as it is, which the substring check finds: a telltale's stretch holds it.
            assert any(low <= spelling.start() and spelling.end() <= high for low, high in stretches), (spelling, text)
    assert scrubber._may_match(text)


# ---- placeholders the firewall must refuse toward other hosts ---------------------------------

GH = Secret("github", "agent-smith-placeholder-github-token", "REAL-gh-0001", ("api.github.test",))
POLICY = Policy(rules=(Rule("api.github.test", frozenset({443})), Rule("other.test", frozenset({443}))))


def _request(host: str, target: str, headers: tuple[tuple[str, str], ...] = ()) -> RequestView:
    return RequestView("devbot", host, 443, "GET", target, host, headers)


@pytest.mark.parametrize(
    "target",
    [
        "/echo?x=%2561gent-smith-placeholder-github-token",
        "/echo?x=%252561gent-smith-placeholder-github-token",
        "/echo?x=%u0061gent-smith-placeholder-github-token",
        "/echo?x=%25u0061gent-smith-placeholder-github-token",
        "/echo?x=%U0061gent-smith-placeholder-github-%2574oken",
        "/" + quote(quote("".join(f"%{ord(c):02x}" for c in GH.placeholder), safe=""), safe=""),
    ],
)
def test_a_placeholder_encoded_any_number_of_times_toward_another_host_is_refused(target: str) -> None:
    verdict = evaluate(POLICY, [GH], _request("other.test", target))
    assert verdict == Denied("the placeholder of secret github was sent toward other.test", "")


def test_a_target_encoded_beyond_any_server_is_refused() -> None:
    # "A" percent-encoded 16 times over, then 17.
    assert isinstance(evaluate(POLICY, [GH], _request("other.test", "/x?a=%" + "25" * 15 + "41")), Forward)
    target = "/x?a=%" + "25" * 16 + "41"
    verdict = evaluate(POLICY, [GH], _request("other.test", target))
    assert verdict == Denied("the request target is percent-encoded more than 16 times over", "")


def test_encoded_targets_without_a_placeholder_are_forwarded() -> None:
    for target in ("/search?q=100%25", "/a%2Fb?u=%u00e9&v=%uZZZZ", "/%"):
        assert isinstance(evaluate(POLICY, [GH], _request("other.test", target)), Forward)


@pytest.mark.parametrize("host", ["other.test", "api.github.test"])
def test_a_placeholder_in_a_header_name_is_refused_toward_any_host(host: str) -> None:
    name = f"x-{GH.placeholder}"
    verdict = evaluate(POLICY, [GH], _request(host, "/echo", ((name, "1"),)))
    assert isinstance(verdict, Denied)
    assert verdict.reason.startswith("the placeholder of secret github was sent")
    assert isinstance(evaluate(POLICY, [GH], _request(host, "/echo", (("x-other", "1"),))), Forward)


# ---- through the real firewall ----------------------------------------------------------------


@pytest.mark.real
def test_the_firewall_scrubs_lowercase_and_partial_encodings_and_refuses_encoded_placeholders(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    value = "REALSECRET/k3y+Zm9v=bar/" + egress_upstream.world.github_secret
    # What the stand-in hands back as "the secret" is one spelling of it: .NET's lowercase hex for
    # "/" and "+", Go's PathEscape keeping "=".
    spelled = value.replace("/", "%2f").replace("+", "%2b")
    egress_upstream.world.github_secret = spelled
    fw = egress_firewall(secrets_=[Secret("github", GITHUB_PLACEHOLDER, value, ("api.github.test", "github.test"))])
    with client(fw) as http:
        leak = http.get("https://api.github.test/leak")
        with http.stream("GET", "https://api.github.test/sse?n=2&leak=1") as sse:
            events = list(sse.iter_lines())
        twice = http.get(f"https://other.test/echo?x=%2561{GITHUB_PLACEHOLDER[1:]}")
        named = http.get("https://other.test/echo", headers={GITHUB_PLACEHOLDER: "1"})
    assert leak.headers["x-leak"] == GITHUB_PLACEHOLDER
    assert leak.json() == {"token": GITHUB_PLACEHOLDER, "note": f"your token is {GITHUB_PLACEHOLDER}"}
    assert f"data: {GITHUB_PLACEHOLDER}" in events
    readings = [unquote(text) for text in (leak.text, str(leak.headers), *events)]
    assert_never_contains(readings, value)
    assert [twice.status_code, named.status_code] == [403, 403]
    assert all(seen.path in ("/leak", "/sse?n=2&leak=1") for seen in egress_upstream.world.seen)
    assert [d.reason for d in fw.denials] == ["the placeholder of secret github was sent toward other.test"] * 2
