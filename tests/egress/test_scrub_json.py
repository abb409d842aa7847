"""A secret in JSON: the scrub finds it however a JSON writer escaped it (any character as
``\\u00XX`` in either hex case, "/" as ``\\/``, mixed with literal characters and with percent
escapes), in JSON inside a JSON string too, however the answer is cut into chunks; and what comes
out still reads as the same JSON, the placeholder where the secret was."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.egress.policy import Scrubber
from tests.egress.helpers import assert_never_contains, client, scrub_in_pieces, scrub_table
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, StartFirewall

PH = "agent-smith-placeholder-test-token"
VISIBLE = "".join(chr(c) for c in range(0x21, 0x7F))
# How a JSON writer may put one character of a string: as is ('"' and "\" must be escaped),
# \u00XX in either hex case, its two-character escape ("\/", '\"', "\\"), or (a URL in the
# string) %XX.
JSON_FORMS = ["as is", "json upper", "json lower", "json short", "percent"]


def _json_char(char: str, form: str) -> str:
    code = ord(char)
    if form == "json upper" or (form == "as is" and char in '"\\'):
        return f"\\u{code:04X}"
    if form == "json lower":
        return f"\\u{code:04x}"
    if form == "json short" and char in '/"\\':
        return "\\" + char
    if form == "percent":
        return f"%{code:02X}"
    return char


def _json_spelling(value: str, how: list[str]) -> str:
    """`value` as it may stand between the quotes of a JSON string, each character as `how` says."""
    return "".join(_json_char(char, form) for char, form in zip(value, how, strict=True))


def _table(value: str) -> dict[bytes, bytes]:
    return scrub_table(value, PH)


# Every escape the scrub knows, decoded in one pass: a reading of text that mixes them.
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})|\\u00([0-7][0-9A-Fa-f])|\\([/\"\\])")


def _readings(text: str) -> list[str]:
    """`text` and what decoding its escapes (once, twice) makes of it."""
    once = _ESCAPE.sub(lambda m: m.group(3) or chr(int(m.group(1) or m.group(2), 16)), text)
    return [text, once, _ESCAPE.sub(lambda m: m.group(3) or chr(int(m.group(1) or m.group(2), 16)), once)]


# At least 8 characters, as the crew loader asks of a secret: a shorter one may be a piece of the
# JSON around it ('"', ": ").
SPELLED = st.text(VISIBLE, min_size=8, max_size=32).flatmap(
    lambda value: st.tuples(
        st.just(value), st.lists(st.sampled_from(JSON_FORMS), min_size=len(value), max_size=len(value))
    )
)
NOTE = st.text(VISIBLE + " é東", max_size=12)


# No deadline: each example compiles the matcher of a new secret (~20 ms, more on a busy machine).
@settings(max_examples=600, deadline=None)
@given(SPELLED, NOTE, NOTE, st.booleans(), st.data())
def test_every_json_spelling_of_a_secret_is_scrubbed_and_the_json_still_reads(
    spelled: tuple[str, list[str]], before: str, after: str, ascii_only: bool, data: st.DataObject
) -> None:
    value, how = spelled
    # The secret between other text in one string, and alone in another.
    inner = _json_spelling(value, how)
    prefix, suffix = json.dumps(before, ensure_ascii=ascii_only)[1:-1], json.dumps(after, ensure_ascii=ascii_only)[1:-1]
    stream = f'{{"note": "{prefix}{inner}{suffix}", "token": "{inner}"}}'.encode()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    out = scrub_in_pieces(Scrubber(_table(value)), stream, cuts)
    answer = json.loads(out)
    assert answer["token"] == PH
    # The text around the secret may join with its edges into another spelling of it: what
    # matters is that none is left, in any reading.
    for reading in _readings(answer["note"]):
        assert value not in reading.replace(PH, "\n")


@settings(max_examples=400, deadline=None)
@given(SPELLED, st.data())
def test_json_inside_a_json_string_still_reads_at_both_levels_whatever_is_scrubbed(
    spelled: tuple[str, list[str]], data: st.DataObject
) -> None:
    # An answer quoting a JSON document (a log line, a file's text): each "\\" of the inner JSON is
    # "\\\\" in the outer string. A spelling found there may begin at the second "\\" of such a pair.
    value, how = spelled
    inner = f'{{"token": "{_json_spelling(value, how)}"}}'
    stream = json.dumps({"content": inner}).encode()
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    out = scrub_in_pieces(Scrubber(_table(value)), stream, cuts)
    assert set(json.loads(json.loads(out)["content"])) == {"token"}


@pytest.mark.parametrize("cut", range(0, 40))
def test_a_secret_whose_first_character_is_escaped_in_json_inside_json_is_scrubbed(cut: int) -> None:
    # The inner "\\u0067hp_…" is "\\\\u0067hp_…" in the outer string: the spelling begins at the
    # second "\\", and the first goes with it, or it would escape the placeholder's first byte.
    value = "ghp_REALTOKEN/abc+def"
    inner = '{"token": "\\u0067' + value[1:] + '"}'
    stream = json.dumps({"content": inner}).encode()
    out = scrub_in_pieces(Scrubber(_table(value)), stream, [cut])
    assert json.loads(json.loads(out)["content"]) == {"token": PH}


@pytest.mark.parametrize(
    "spelling",
    [
        "\\u0067hp_REALTOKEN/abc+def",
        "\\u0067\\u0068\\u0070\\u005F\\u0052EALTOKEN\\u002Fabc\\u002bdef",
        "ghp_REALTOKEN\\/abc\\u002Bdef",
        "ghp_REALTOKEN%2Fabc\\u002bdef",
        "\\u0067hp_REALTOKEN%2fabc%2Bdef",
    ],
    ids=["first-escaped", "mixed-case", "slash-and-plus", "percent-and-json", "json-and-percent"],
)
def test_the_spellings_json_writers_produce_are_scrubbed(spelling: str) -> None:
    # .NET's System.Text.Json writes "+" as "\u002B", PHP "/" as "\/", Python non-ASCII as \uXXXX.
    value = "ghp_REALTOKEN/abc+def"
    body = f'{{"token": "{spelling}", "n": 1}}'.encode()
    assert json.loads(Scrubber(_table(value)).scrub(body)) == {"token": PH, "n": 1}


def test_text_without_a_secret_passes_unchanged() -> None:
    scrubber = Scrubber(_table("ghp_REALTOKEN/abc+def"))
    body = json.dumps({"a": "caf\u00e9 \\u0067hp_ <\\/> %2F", "b": ["\\u0067", "\\\\"]}).encode()
    assert scrubber.feed(body) + scrubber.flush() == body


@pytest.mark.real
def test_the_firewall_scrubs_a_json_escaped_secret_from_an_answer(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream
) -> None:
    secret = egress_upstream.world.github_secret
    # What the stand-in hands back as "the secret" is its JSON spelling, its first letter escaped:
    # as is in a header, and escaped once more by its JSON writer in the body (JSON in a string).
    egress_upstream.world.github_secret = f"\\u{ord(secret[0]):04X}{secret[1:]}"
    fw = egress_firewall()
    with client(fw) as http:
        leak = http.get("https://api.github.test/leak")
    assert leak.headers["x-leak"] == GITHUB_PLACEHOLDER
    assert leak.json() == {"token": GITHUB_PLACEHOLDER, "note": f"your token is {GITHUB_PLACEHOLDER}"}
    assert_never_contains([*_readings(leak.text), *_readings(str(leak.headers))], secret)
