"""Pure value parsing of the crew model: durations, sizes, credential shapes, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from ruamel.yaml import YAML

from agent_smith.credentials import credential_in
from agent_smith.crew import (
    Crew,
    EventLog,
    credential_kind,
    crew_json_schema,
    find_credentials,
    parse_duration,
    parse_size,
    scaffold_crew,
)

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS)))
def test_durations_scale_by_their_unit(n: int, unit: str) -> None:
    assert parse_duration(f"{n}{unit}") == pytest.approx(n * UNITS[unit])
    assert parse_duration(f" {n} {unit} ") == pytest.approx(n * UNITS[unit])


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_bare_numbers_are_seconds(x: float) -> None:
    assert parse_duration(x) == x


@pytest.mark.parametrize(
    "bad", ["", "soon", "5 minutes", "-3s", True, None, [1], "1y", float("nan"), float("inf"), "1e999s"]
)
def test_bad_durations_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1GiB", 2**30), ("1GB", 10**9), ("512MiB", 512 * 2**20), ("10kb", 10_000), ("7", 7), (42, 42), ("1.5KiB", 1536)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["big", "1PB", "-1", False, 1.5])
def test_bad_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


REAL_SHAPED = {
    "anthropic api key": "sk-ant-api03-" + "a" * 40,
    "anthropic oauth": "sk-ant-oat01-" + "Zz9_-" * 10,
    "github classic": "ghp_" + "x1" * 18,
    "github oauth": "gho_" + "Q" * 36,
    "github app": "ghs_" + "7" * 36,
    "fine grained": "github_pat_" + "11ABCDEFG" * 5,
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "matrix": "syt_ZGV2Ym90_abcdefghijklmnopqrst_1a2b3c",
    "slack": "xoxb-1234567890-abcdefghij",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "openai project": "sk-proj-" + "Ab3_-" * 12,
    "openai legacy": "sk-" + "aB3" * 16,
    "gitlab": "glpat-" + "xY9_" * 5,
    "google": "AIza" + "Sy0_-aB" * 5,
    "embedded": "Bearer ghp_" + "x1" * 18,
}
PLACEHOLDERS = [
    "agent-smith-placeholder-github-token",
    "agent-smith-placeholder-claude-access-token",
    "ghp_short",
    "sk-ant-placeholder",
    "",
    "eyJ-not-a-jwt",
    "sk-agent-smith-placeholder-openai-key",
    "glpat-placeholder",
    "glpat-agent-smith-placeholder",
    "sk-proj-agent-smith-placeholder-openai-api-key-0000",
    "ghp_PLACEHOLDER_for_the_github_token_0000000",
]


@pytest.mark.parametrize("value", REAL_SHAPED.values(), ids=REAL_SHAPED.keys())
def test_real_credential_shapes_are_recognised(value: str) -> None:
    assert credential_kind(value) is not None


@pytest.mark.parametrize("value", PLACEHOLDERS)
def test_placeholders_are_not_mistaken_for_credentials(value: str) -> None:
    assert credential_kind(value) is None


@given(before=st.text(alphabet=" \nabc.", max_size=40), which=st.sampled_from(sorted(REAL_SHAPED)))
def test_the_first_credential_in_a_text_is_found_where_it_starts(before: str, which: str) -> None:
    value = REAL_SHAPED[which]
    start = value.index(value.split()[-1])  # "Bearer ghp_…": the token, not the scheme
    later = " then " + REAL_SHAPED["aws"]
    found = credential_in(before + " " + value + later)
    assert found == (len(before) + 1 + start, credential_kind(value))
    assert credential_in(before + " ".join(PLACEHOLDERS)) is None


def test_find_credentials_reports_paths_never_values() -> None:
    data = {"a": [{"b": REAL_SHAPED["github classic"]}, "fine"], "c": {"d": 3}}
    found = list(find_credentials(data))
    assert found == [(("a", 0, "b"), "a GitHub token (gh?_…)")]
    assert REAL_SHAPED["github classic"] not in repr(found)


def test_the_scaffolded_crew_yaml_satisfies_the_published_schema(tmp_path: Path) -> None:
    scaffold_crew(tmp_path / "c")
    schema = json.loads((tmp_path / "c" / "crew.schema.json").read_text())
    assert schema == crew_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    data = YAML(typ="safe").load((tmp_path / "c" / "crew.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(data)
    assert (tmp_path / "c" / "crew.yaml").read_text().startswith("# yaml-language-server: $schema=./crew.schema.json")


def test_the_schema_refuses_unknown_keys() -> None:
    validator = jsonschema.Draft202012Validator(crew_json_schema())
    errors = list(validator.iter_errors({"crew": {"name": "x"}, "agents": [{"name": "ab", "rol": "x"}]}))
    assert any("rol" in e.message for e in errors)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("crew", "name"), "My Crew"),
        (("crew", "name"), "a/b"),
        (("crew", "name"), "x" * 40),
        (("agents", 0, "name"), ""),
        (("agents", 0, "repos"), ["widgets"]),
        (("agents", 0, "repos"), ["a/b/c"]),
        (("agents", 0, "env"), {"1BAD": "x"}),
        (("egress", "allow", 0, "host"), "exa mple.com"),
        (("egress", "allow", 0, "host"), "https://example.com"),
        (("egress", "allow", 0, "host"), "host:443"),
        (("agents", 0, "matrix"), {"user_id": "devbot"}),
        (("agents", 0, "matrix"), {"user_id": "@devbot:localhost", "rooms": ["crew"]}),
        (("agents", 0, "remote_control"), "yes"),
        (("agents", 0, "remote_control"), 1),
        (("version",), True),
        (("egress", "listen"), "127.0.0.1:99999"),
        (("egress", "allow", 0, "paths"), ["api"]),
        (("egress", "secrets", 0, "source"), {}),
        (("egress", "secrets", 0, "source"), {"env": "A", "file": "/run/a"}),
        (("kubernetes",), {"matrix_peer": {"cidr": "203.0.113.10"}}),
    ],
)
def test_what_validate_refuses_the_published_schema_refuses_too(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    # The editor checks through the schema: a file it shows clean must not fail `validate`.
    # (Where the schema can say it: not the cross-field rules, nor the credential shapes.)
    scaffold_crew(tmp_path / "c")
    data = YAML(typ="safe").load((tmp_path / "c" / "crew.yaml").read_text())
    data.setdefault("egress", {}).setdefault("allow", [{"host": "api.github.com"}])
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert list(jsonschema.Draft202012Validator(crew_json_schema()).iter_errors(data)), "the schema took it"
    with pytest.raises(ValidationError):
        Crew.model_validate(data)


@given(port=st.integers(min_value=0, max_value=99999), zeros=st.integers(min_value=0, max_value=2))
def test_the_schema_and_validate_agree_on_a_listen_port(port: int, zeros: int) -> None:
    text = "0" * zeros + str(port)
    if len(text) > 5:
        return
    schema = jsonschema.Draft202012Validator(crew_json_schema())
    data = {"version": 1, "crew": {"name": "ab"}, "agents": [{"name": "ab"}], "egress": {"listen": f"127.0.0.1:{text}"}}
    by_schema = not list(schema.iter_errors(data))
    try:
        Crew.model_validate(data)
        by_validate = True
    except ValidationError:
        by_validate = False
    assert by_schema == by_validate == (port <= 65535), text


def test_the_credentials_stub_is_written_private(tmp_path: Path) -> None:
    scaffold_crew(tmp_path / "c")
    stub = tmp_path / "c" / "agents" / "_shared" / ".credentials.json"
    assert stub.stat().st_mode & 0o777 == 0o600


@given(st.floats(min_value=0, max_value=1e9), st.floats(min_value=0, max_value=1e9))
def test_the_duplicate_window_fits_in_the_stream_s_age_as_nats_requires(window: float, age: float) -> None:
    if age and window > age:
        with pytest.raises(ValidationError, match="duplicate_window must not be longer than max_age"):
            EventLog(duplicate_window=window, max_age=age)
    else:
        assert EventLog(duplicate_window=window, max_age=age).duplicate_window == window


@given(st.text(min_size=81, max_size=5000))
def test_a_long_bad_value_is_quoted_short(value: str) -> None:
    from agent_smith.crew.models import shown

    quoted = shown(value)
    # However long the value: 80 characters, each quoted in at most 10 (`\U0001f600`).
    assert len(quoted) <= 80 * 10 + 40
    assert quoted.endswith(f"… ({len(value)} characters)")
    assert shown(value[:80]) == repr(value[:80])


def test_a_default_a_factory_makes_is_in_the_schema_too() -> None:
    # Editors complete crew.yaml through the schema: `ports: [443]` showed no default there.
    from pydantic import BaseModel

    from agent_smith.crew import models

    definitions = crew_json_schema()["$defs"]
    checked = 0
    for name, definition in definitions.items():
        model = getattr(models, name, None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for field, info in model.model_fields.items():
            made = info.default_factory() if info.default_factory is not None else None  # type: ignore[call-arg]
            if info.default_factory is None or isinstance(made, BaseModel):
                continue
            assert definition["properties"][info.alias or field]["default"] == made, (name, field)
            checked += 1
    assert checked >= 4


@pytest.mark.parametrize(("value", "fits"), [("5200w", True), ("36524d", True), ("20000w", False), (1e300, False)])
def test_a_duration_of_the_crew_is_at_most_a_century(value: object, fits: bool) -> None:
    # Past that, NATS (int64 nanoseconds) would refuse the event log's max_age at `up`.
    if fits:
        assert EventLog.model_validate({"max_age": value}).max_age == parse_duration(value)
    else:
        with pytest.raises(ValidationError, match="a duration must be at most 100 years"):
            EventLog.model_validate({"max_age": value})
