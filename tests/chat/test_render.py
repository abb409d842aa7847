"""What the agent sends: markdown → Matrix HTML, relations per the spec, and clean splitting."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.chat.render import (
    BLOCK_SLACK,
    CONTENT_BUDGET,
    WORST_EXPANSION,
    content_size,
    edit_content,
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


def test_edit_and_reaction_contents() -> None:
    edit = edit_content("$mine", "better **text**")
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$mine"}
    assert edit["m.new_content"]["body"] == "better **text**"
    assert "<strong>text</strong>" in edit["m.new_content"]["formatted_body"]
    assert edit["body"].startswith("* ")
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


@settings(max_examples=400, deadline=None)
@given(markdownish)
def test_the_cheap_size_bound_is_an_upper_bound(text: str) -> None:
    overhead = content_size(message_content(""))
    assert content_size(message_content(text)) <= overhead + BLOCK_SLACK + WORST_EXPANSION * len(text.encode())


@settings(max_examples=200, deadline=None)
@given(markdownish, st.integers(200, 3000))
def test_every_part_fits_and_nothing_is_lost(text: str, budget: int) -> None:
    def fits(part: str) -> bool:
        return content_size(message_content(part)) <= budget

    if not fits("x" * 4 + "\n```"):
        return
    parts = split_text(text, fits, budget)
    assert all(fits(p) for p in parts)
    if "`" * 3 not in text and "~" * 3 not in text:
        assert re.sub(r"\s", "", "".join(parts)) == re.sub(r"\s", "", text)
