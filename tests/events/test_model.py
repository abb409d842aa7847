from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

import pytest
from pydantic import ValidationError

from agent_smith.errors import UsageError
from agent_smith.events import (
    Event,
    PrOpened,
    TaskDone,
    build_event,
    caller_fields,
    check_agent_name,
    check_repo_name,
    decode,
    event_class,
    event_types,
)
from agent_smith.events.model import takes_bool, takes_number
from agent_smith.events.publisher import encode

PR = {"repo": "acme/web", "pr": "12", "title": "Fix the login", "url": "https://github.com/acme/web/pull/12"}


def test_the_issue_lists_every_type() -> None:
    assert set(event_types()) >= {
        "pr_opened",
        "pr_reviewed",
        "pr_comment_addressed",
        "pr_merged",
        "incident",
        "task_done",
        "agent_started",
        "agent_stopped",
        "agent_crashed",
        "egress_denied",
    }


def test_pr_events_keep_the_keys_the_original_dashboards_read() -> None:
    event = build_event("pr_opened", "devbot", PR)
    payload = event.payload()
    assert payload["agent"] == "devbot"
    assert payload["action"] == "pr_opened"
    assert payload["repo"] == "acme/web"
    assert payload["pr"] == 12
    assert payload["title"] == "Fix the login"
    assert payload["url"] == PR["url"]
    assert payload["type"] == "pr_opened"
    assert payload["schema_version"] == 1
    assert payload["time"].endswith("Z")
    assert len(payload["id"]) == 26


def test_the_wire_bytes_are_the_payload() -> None:
    event = build_event("pr_merged", "devbot", PR)
    record = encode(event, "swarm.events")
    assert json.loads(record.data) == event.payload()
    assert record.subject == "swarm.events.pr_merged.devbot"
    assert record.msg_id == event.id


def test_decode_round_trips() -> None:
    event = build_event("pr_reviewed", "reviewbot", {**PR, "state": "approved", "comments": "3"})
    assert decode(event.payload()) == event


def test_a_review_s_inline_comments_are_absent_when_unknown_and_old_reviews_still_read() -> None:
    unknown = build_event("pr_reviewed", "reviewbot", {**PR, "state": "approved"}).payload()
    assert "comments" not in unknown
    assert unknown["schema_version"] == 2
    counted = build_event("pr_reviewed", "reviewbot", {**PR, "comments": "0"}).payload()
    assert counted["comments"] == 0
    # As schema 1 stored it: `comments` always there, 0 unless the publisher set it.
    old = {**unknown, "schema_version": 1, "comments": 0}
    assert decode(old).payload() == old


@pytest.mark.parametrize(
    ("type_name", "fields", "message"),
    [
        ("pr_exploded", {}, "unknown event type 'pr_exploded' (known: agent_crashed"),
        ("pr_opened", {"repo": "acme/web", "pr": "1", "title": "t"}, "pr_opened: missing field 'url'"),
        ("pr_opened", {**PR, "pr": "twelve"}, "pr_opened: field 'pr': Input should be a valid integer"),
        ("pr_opened", {**PR, "repo": "not a repo"}, "pr_opened: field 'repo': Value error, 'not a repo' is not"),
        (
            "pr_opened",
            {**PR, "colour": "red"},
            "pr_opened: unknown field 'colour' (fields: base, head, pr, repo, title, url)",
        ),
        ("task_done", {"summary": "x", "agent": "other"}, "task_done: field 'agent' is set by agent-smith"),
        ("task_done", {"summary": "x", "type": "incident"}, "task_done: field 'type' is set by agent-smith"),
        ("incident", {"summary": "x", "severity": "apocalyptic"}, "incident: field 'severity'"),
    ],
)
def test_bad_input_is_one_line_naming_the_field(type_name: str, fields: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        build_event(type_name, "devbot", fields)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("reserved", ["id", "time"])
def test_a_caller_cannot_set_the_envelope(reserved: str) -> None:
    with pytest.raises(UsageError, match=rf"^task_done: field '{reserved}' is set by agent-smith, not by the caller$"):
        caller_fields("task_done", {"summary": "x", reserved: "01M887H78T3SN6V1A0R3YJ720R"})
    assert caller_fields("task_done", {"summary": "x"}) == {"summary": "x"}


def test_the_agent_must_be_an_agent_name() -> None:
    with pytest.raises(UsageError, match="task_done: field 'agent'"):
        build_event("task_done", "Not An Agent", {"summary": "x"})


def test_adding_an_event_type_is_one_class() -> None:
    class DeployFinished(Event):
        type: Literal["deploy_finished_test"] = "deploy_finished_test"
        environment: str

    try:
        assert event_class("deploy_finished_test") is DeployFinished
        event = build_event("deploy_finished_test", "devbot", {"environment": "staging"})
        assert decode(event.payload()) == event
    finally:
        del Event.registry["deploy_finished_test"]


def test_a_type_defined_twice_is_refused() -> None:
    with pytest.raises(TypeError, match="defined twice"):

        class Again(Event):
            type: Literal["task_done"] = "task_done"


def test_decode_refuses_what_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        decode({"type": "from_the_future", "agent": "devbot"})


def test_times_are_utc() -> None:
    event = TaskDone.model_validate({"agent": "devbot", "summary": "x", "time": "2026-01-01T10:00:00+02:00"})
    assert event.payload()["time"] == "2026-01-01T08:00:00Z"
    assert PrOpened.model_validate({**PR, "agent": "a1", "time": "2026-01-01T10:00:00"}).time.tzinfo is not None


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_agent_name("devbot\n"),
        lambda: check_repo_name("acme/web\n"),
        lambda: build_event("task_done\n", "devbot", {"summary": "x"}),
        lambda: build_event("task_done", "devbot\n", {"summary": "x"}),
    ],
)
def test_a_trailing_newline_makes_no_name(call: Callable[[], object]) -> None:
    # `$` matches before a final newline; a name carried into a NATS subject must not end in one.
    with pytest.raises(UsageError):
        call()


NOT_BOOLEAN = [
    (type_name, name)
    for type_name in event_types()
    for name, info in Event.registry[type_name].model_fields.items()
    if name not in Event.model_fields and not takes_bool(info.annotation)
]


@pytest.mark.parametrize(("type_name", "field"), NOT_BOOLEAN)
@pytest.mark.parametrize("value", [True, False])
def test_true_or_false_is_no_value_for_a_field_that_is_not_boolean(type_name: str, field: str, value: bool) -> None:
    """pydantic would take true as 1 for an int field: an agent's `"pr": true` would be PR 1."""
    with pytest.raises(ValidationError) as caught:
        Event.registry[type_name].model_validate({"agent": "devbot", field: value})
    assert {"loc": (field,), "msg": "Input should not be true or false"} in [
        {"loc": e["loc"], "msg": e["msg"]} for e in caught.value.errors()
    ]


def test_a_boolean_field_still_takes_its_values_and_the_cli_s_text() -> None:
    assert takes_bool(Event.registry["agent_started"].model_fields["resumed"].annotation)
    assert build_event("agent_started", "devbot", {"resumed": True}).payload()["resumed"] is True
    assert build_event("agent_started", "devbot", {"resumed": "true"}).payload()["resumed"] is True
    with pytest.raises(UsageError, match=r"^task_done: field 'pr': Input should not be true or false$"):
        build_event("task_done", "devbot", {"summary": "x", "pr": True})
    # What `-f pr=true` gives: text, which is no number either.
    with pytest.raises(UsageError, match=r"^task_done: field 'pr': Input should be a valid integer"):
        build_event("task_done", "devbot", {"summary": "x", "pr": "true"})
    assert build_event("task_done", "devbot", {"summary": "x", "pr": "7"}).payload()["pr"] == 7


BOOLEAN = [
    (type_name, name)
    for type_name in event_types()
    for name, info in Event.registry[type_name].model_fields.items()
    if name not in Event.model_fields and takes_bool(info.annotation)
]


@pytest.mark.parametrize(("type_name", "field"), BOOLEAN)
@pytest.mark.parametrize("value", [0, 1, 1.0])
def test_a_number_is_no_value_for_a_boolean_field(type_name: str, field: str, value: float) -> None:
    """pydantic would take 1 as true: an agent's `"resumed": 1` was stored as true."""
    with pytest.raises(ValidationError) as caught:
        Event.registry[type_name].model_validate({"agent": "devbot", field: value})
    assert {"loc": (field,), "msg": "Input should be true or false, not a number"} in [
        {"loc": e["loc"], "msg": e["msg"]} for e in caught.value.errors()
    ]


@pytest.mark.parametrize(
    ("annotation", "boolean", "number"),
    [
        (bool, True, False),
        (bool | None, True, False),
        (int, False, True),
        (int | None, False, True),
        (float | bool, True, True),
        (str, False, False),
        (Literal["a"], False, False),
    ],
)
def test_what_a_field_s_type_takes(annotation: object, boolean: bool, number: bool) -> None:
    assert takes_bool(annotation) is boolean
    assert takes_number(annotation) is number
