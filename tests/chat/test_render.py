"""What the agent sends: markdown → Matrix HTML, relations per the spec, and clean splitting."""

from __future__ import annotations

import re
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.chat.render import (
    CONTENT_BUDGET,
    MAX_PARTS,
    TooLong,
    content_size,
    edit_content,
    grapheme_cut,
    later_part,
    message_content,
    message_contents,
    reaction_content,
    split_text,
)


def test_markdown_becomes_html_beside_the_plain_body() -> None:
    content = message_content("All **good**, see `make test`.\n\n- one\n- two")
    assert content["msgtype"] == "m.notice"
    assert content["body"] == "All **good**, see `make test`.\n\n- one\n- two"
    assert content["format"] == "org.matrix.custom.html"
    assert "<strong>good</strong>" in content["formatted_body"]
    assert "<code>make test</code>" in content["formatted_body"]
    assert "<li>one</li>" in content["formatted_body"]
    assert content["m.mentions"] == {"user_ids": []}
    assert "m.relates_to" not in content


def test_raw_html_from_the_agent_is_escaped() -> None:
    html = message_content('<script>alert("x")</script> & <b>hi</b>')["formatted_body"]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "<b>" not in html


def test_a_reply_and_a_thread_follow_the_spec() -> None:
    reply = message_content("ok", reply_to="$q", mention_ids=["@alice:hs"])
    assert reply["m.relates_to"] == {"m.in_reply_to": {"event_id": "$q"}}
    assert reply["m.mentions"] == {"user_ids": ["@alice:hs"]}
    threaded = message_content("ok", thread_id="$root")
    assert threaded["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$root"},
    }
    both = message_content("ok", thread_id="$root", reply_to="$q")
    assert both["m.relates_to"]["is_falling_back"] is False
    assert both["m.relates_to"]["m.in_reply_to"] == {"event_id": "$q"}


def test_a_message_in_a_thread_falls_back_to_the_threads_latest_message() -> None:
    """The spec: a threaded message that is no reply has ``m.in_reply_to`` pointing at the latest
    message of the thread, with ``is_falling_back``; a split one at the part before it."""
    followed = message_content("ok", thread_id="$root", latest="$last")
    assert followed["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": "$root",
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": "$last"},
    }
    assert message_content("ok", thread_id="$root", reply_to="$q", latest="$last")["m.relates_to"]["m.in_reply_to"] == {
        "event_id": "$q"
    }, "a real reply answers what it answers"
    part = later_part(followed, "$first", "$second")
    assert part["m.relates_to"]["m.in_reply_to"] == {"event_id": "$second"}
    assert part["agent_smith.part_of"] == "$first"
    answered = message_content("ok", thread_id="$root", reply_to="$q")
    unthreaded = message_content("ok", reply_to="$q")
    assert later_part(answered, "$first", "$second")["m.relates_to"] == answered["m.relates_to"]
    assert later_part(unthreaded, "$first", "$second")["m.relates_to"] == unthreaded["m.relates_to"]


def test_edit_and_reaction_contents() -> None:
    edit = edit_content("$mine", "better **text**")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$mine"}
    assert edit["m.new_content"]["body"] == "better **text**"
    assert "<strong>text</strong>" in edit["m.new_content"]["formatted_body"]
    assert edit["body"].startswith("* ")
    assert edit["m.mentions"] == edit["m.new_content"]["m.mentions"] == {"user_ids": []}
    renamed = edit_content("$mine", "a and b", mention_ids=["@b:hs", "@a:hs"], mentioned_before=["@a:hs", "@c:hs"])
    assert renamed["m.new_content"]["m.mentions"] == {"user_ids": ["@a:hs", "@b:hs"]}, "all the new text names"
    assert renamed["m.mentions"] == {"user_ids": ["@b:hs"]}, "only the newly named are notified"
    assert reaction_content("$e", "👀") == {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "👀"}}


def test_a_short_message_is_one_event() -> None:
    assert len(message_contents("hello", reply_to="$q")) == 1


def test_a_long_message_splits_into_events_under_the_limit() -> None:
    paragraphs = [f"Paragraph {i}: " + "words & <more> words " * 40 for i in range(400)]
    text = "\n\n".join(paragraphs)
    parts = message_contents(text, reply_to="$q", thread_id="$root")
    assert len(parts) > 1
    assert all(content_size(p) <= CONTENT_BUDGET for p in parts)
    assert parts[0]["m.relates_to"]["m.in_reply_to"] == {"event_id": "$q"}
    assert all(p["m.relates_to"]["rel_type"] == "m.thread" for p in parts)
    assert all(p["m.relates_to"]["m.in_reply_to"] == {"event_id": "$root"} for p in parts[1:])
    # Cut at paragraph boundaries: every part starts with a whole paragraph.
    assert all(p["body"].startswith("Paragraph ") for p in parts)
    assert "".join(p["body"] for p in parts) == text


def test_a_code_fence_cut_in_two_is_closed_and_reopened() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = {i}  # <{i}>" for i in range(6000)) + "\n```\nAfter the code.\n"
    parts = message_contents(code)
    assert len(parts) > 1
    for part in parts:
        body = part["body"]
        assert len(re.findall(r"^```", body, re.M)) % 2 == 0, "each part's fences are balanced"
        assert content_size(part) <= CONTENT_BUDGET
    assert all(p["body"].startswith("```python\n") for p in parts)
    assert '<pre><code class="language-python">' in parts[-1]["formatted_body"]


def test_one_enormous_line_is_cut_by_characters() -> None:
    parts = message_contents("x" * 200_000)
    assert len(parts) >= 4
    assert "".join(p["body"] for p in parts) == "x" * 200_000


def test_a_code_fence_too_long_to_reopen_is_refused() -> None:
    text = "```" + "x" * 35_000 + "\n" + "code line\n" * 20_000 + "```\n"
    with pytest.raises(TooLong, match="code fence"):
        message_contents(text)


markdownish = st.lists(
    st.sampled_from(
        [
            *("word", "**bold**", "`code`", "<tag>", "&", '"', "|", "- item", "# head", "\n", "\n\n", "ünï", "🙂"),
            *("\t", ">", "> ", "1. ", "- ", "* ", "|-|", "\x01", "[a](b)", "<http://x>", "***", "\\"),
        ]
    )
    | st.text(max_size=20),
    max_size=120,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(markdownish, st.integers(200, 3000))
def test_every_part_fits_and_nothing_is_lost(text: str, budget: int) -> None:
    def size(part: str) -> int:
        return content_size(message_content(part))

    if size("x" * 4 + "\n```") > budget:
        return
    try:
        parts = list(split_text(text, size, budget))
    except TooLong:
        # Only a code fence whose opening line is too long to reopen in a part cannot be split.
        assert "`" * 3 in text or "~" * 3 in text
        return
    assert all(size(p) <= budget for p in parts)
    if "`" * 3 not in text and "~" * 3 not in text:
        assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)


@pytest.mark.parametrize("unit", ['&<>"', "> a quoted line of some text\n", "> > > > x\n"])
def test_a_megabyte_of_costly_markup_splits_into_full_parts(unit: str) -> None:
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    parts = message_contents(text, reply_to="$q", thread_id="$root", max_parts=1_000)
    sizes = [content_size(p) for p in parts]
    assert max(sizes) <= CONTENT_BUDGET
    assert sum(sizes) / len(sizes) > 0.8 * CONTENT_BUDGET, "parts are nearly full, not needlessly many"
    assert "".join(p["body"] for p in parts) == text
    assert parts[0]["m.relates_to"]["m.in_reply_to"] == {"event_id": "$q"}
    assert all(p["m.relates_to"]["rel_type"] == "m.thread" for p in parts)
    assert all(p["m.relates_to"]["m.in_reply_to"] == {"event_id": "$root"} for p in parts[1:])


def test_a_reply_over_the_parts_limit_is_refused_with_what_to_do() -> None:
    assert issubclass(TooLong, ValueError)
    with pytest.raises(TooLong, match=rf"10,000,000 characters, more than {MAX_PARTS} messages.* in a file"):
        message_contents("word " * 2_000_000)
    # Over the limit only once rendered (the markup takes more room than the text).
    with pytest.raises(TooLong, match=rf"more than {MAX_PARTS} messages"):
        message_contents("> a quoted line of some text\n" * 30_000)
    text = "\n\n".join(f"Paragraph {i}: " + "words & <more> words " * 40 for i in range(400))
    count = len(message_contents(text))
    assert len(message_contents(text, max_parts=count)) == count
    with pytest.raises(TooLong, match=f"more than {count - 1} messages"):
        message_contents(text, max_parts=count - 1)


FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
# Each a whole user-perceived character, built with what must never be cut off its base.
CLUSTERS = [
    FAMILY,
    "\U0001f469\U0001f3fd\u200d\U0001f4bb",  # woman + skin tone + ZWJ + laptop
    "\U0001f44d\U0001f3fd",  # thumbs up + skin tone
    "\U0001f1eb\U0001f1f7",  # flag: two regional indicators
    "\U0001f1fa\U0001f1f8",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # flag of Scotland: tags
    "\u2764\ufe0f",  # variation selector
    "\u845b\U000e0100",  # ideographic variation selector
    "1\ufe0f\u20e3",  # keycap: selector + enclosing mark (Me)
    "e\u0301\u0323",  # combining marks (Mn)
    "\u0915\u093f",  # Devanagari vowel sign (Mc)
    "a",
    "\u5b57",
    "\U0001f642",
    "&",
    "*",
]
SPACES: list[list[str]] = [[], [], [], [" "], ["\n"], ["\n", "\n"]]
# Ends with a visible character: a part of only trailing whitespace is not sent.
clustered = st.tuples(
    st.lists(st.tuples(st.sampled_from(CLUSTERS), st.sampled_from(SPACES)), max_size=200), st.sampled_from(CLUSTERS)
).map(lambda drawn: [c for cluster, spaces in drawn[0] for c in (cluster, *spaces)] + [drawn[1]])


def _boundaries(clusters: list[str]) -> set[int]:
    return {0, *accumulate(len(c) for c in clusters)}


@settings(max_examples=300, deadline=None)
@given(clustered, st.data())
def test_a_grapheme_cut_is_the_last_boundary_between_clusters(clusters: list[str], data: st.DataObject) -> None:
    text = "".join(clusters)
    if len(text) < 2:
        return
    end = data.draw(st.integers(1, len(text) - 1))
    before = [b for b in _boundaries(clusters) if 0 < b <= end]
    assert grapheme_cut(text, 0, end) == (max(before) if before else end)


@settings(max_examples=200, deadline=None)
@given(clustered, st.integers(300, 3000))
def test_parts_never_cut_a_user_perceived_character(clusters: list[str], budget: int) -> None:
    def size(part: str) -> int:
        return content_size(message_content(part))

    text = "".join(clusters)
    parts = list(split_text(text, size, budget))
    assert "".join(parts) == text
    assert all(size(p) <= budget for p in parts)
    cuts = set(accumulate(len(p) for p in parts))
    assert cuts <= _boundaries(clusters)
    joiners = re.compile("[\u200d\u0301\u0323\u093f\u20e3\ufe0f\U000e0100\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f]")
    assert not any(joiners.match(p) or p.endswith("\u200d") for p in parts)


@pytest.mark.parametrize("cluster", CLUSTERS[:11])
def test_a_long_run_of_one_character_is_cut_between_them(cluster: str) -> None:
    text = cluster * (250_000 // len(cluster.encode()))
    parts = message_contents(text)
    assert len(parts) > 1
    for part in parts:
        body = part["body"]
        assert body == cluster * (len(body) // len(cluster))
    assert "".join(p["body"] for p in parts) == text
