"""A hand-written crew.yaml's mistakes, each told in one line at its place, quoting no value; and
crew.yaml read as an editor's YAML (1.2's core schema) reads it, so the schema and validate agree."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.crew import Crew, load_crew, scaffold_crew
from agent_smith.crew.loader import _parse_yaml, apply_env_overrides, settable_keys, variable_warnings
from agent_smith.errors import CrewError
from tests.crew.test_schema_agreement import VALIDATOR

MINIMAL = "version: 1\ncrew: {name: ab}\nagents:\n  - name: devbot\n"


@pytest.fixture
def crew_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    return directory


def problems(directory: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    (directory / "crew.yaml").write_text(text)
    with pytest.raises(CrewError) as caught:
        load_crew(directory, env=env or {})
    return [str(p) for p in caught.value.problems]


def test_a_key_given_twice_is_one_line_that_quotes_neither_value(crew_dir: Path) -> None:
    [problem] = problems(
        crew_dir,
        MINIMAL
        + "    first_run_prompt: |\n      hunter2-is-my-password\n      and more\n    first_run_prompt: also-secret\n",
    )
    assert problem.endswith(":8:5: invalid YAML: the key 'first_run_prompt' is given twice in one mapping"), problem
    assert "\n" not in problem
    assert "hunter2" not in problem
    assert "also-secret" not in problem


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("version: 1\ncrew:\n\tname: ab\n", ":3:1:"),
        (MINIMAL + "\trole: x\n", ":5:1:"),
        ("version:\t1\n", ":1:9:"),
    ],
)
def test_a_tab_says_so_where_it_is(crew_dir: Path, text: str, where: str) -> None:
    [problem] = problems(crew_dir, text)
    assert f"crew.yaml{where} invalid YAML: a tab here: use spaces" in problem, problem


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n", "---\n"])
def test_an_empty_crew_yaml_is_said_to_be_empty(crew_dir: Path, text: str) -> None:
    [problem] = problems(crew_dir, text)
    assert problem.endswith("crew.yaml:1:1: crew.yaml is empty (`agent-smith init DIR` writes an example)"), problem


def test_a_directory_named_crew_yaml_is_said_to_be_one(crew_dir: Path) -> None:
    (crew_dir / "crew.yaml").unlink()
    (crew_dir / "crew.yaml").mkdir()
    with pytest.raises(CrewError) as caught:
        load_crew(crew_dir, env={})
    [problem] = [str(p) for p in caught.value.problems]
    assert problem.endswith("crew.yaml:1:1: a directory, not a file"), problem


# YAML 1.2's core schema (the spec's example 10.9), and what only YAML 1.1 reads as a
# number, a flag or a date: text in an editor's YAML, so text in validate's too.
CORE: list[tuple[str, Any]] = [
    ("null", None),
    ("~", None),
    ("", None),
    ("true", True),
    ("FALSE", False),
    ("0", 0),
    ("0o7", 7),
    ("0x3A", 58),
    ("-19", -19),
    ("0755", 755),
    ("0.", 0.0),
    ("-0.0", 0.0),
    (".5", 0.5),
    ("+12e03", 12000.0),
    ("-2E+05", -200000.0),
    (".inf", math.inf),
    ("-.Inf", -math.inf),
    ("+.INF", math.inf),
    ("2001-12-14", "2001-12-14"),
    ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
    ("1_000", "1_000"),
    ("0b11", "0b11"),
    ("-0o7", "-0o7"),
    ("0x_1", "0x_1"),
    ("1:20", "1:20"),
    ("yes", "yes"),
    ("off", "off"),
    ("=", "="),
]


@pytest.mark.parametrize(("scalar", "value"), CORE)
def test_a_plain_scalar_is_what_yaml_1_2_s_core_schema_says(scalar: str, value: Any) -> None:
    read = _parse_yaml(f"a: {scalar}\n", "t")["a"]
    assert read == value
    assert isinstance(read, type(value))
    assert isinstance(read, bool) == isinstance(value, bool)


@given(st.from_regex(r"[-+]?[0-9_]{1,6}(\.[0-9_]{0,3})?([eE][-+]?[0-9]{1,2})?", fullmatch=True))
def test_a_number_is_one_where_json_reads_one_and_text_where_it_reads_none(scalar: str) -> None:
    # JSON's numbers are YAML 1.2's (less a leading `+`, `0`, a bare `.`): a plain scalar json
    # cannot read, with an underscore say, is text to an editor.
    read = _parse_yaml(f"a: {scalar}\n", "t")["a"]
    if "_" in scalar:
        assert read == scalar
    else:
        assert not isinstance(read, str)
        assert read == float(scalar)


def test_what_an_editor_reads_as_text_validate_reads_as_text_too(crew_dir: Path) -> None:
    (crew_dir / "crew.yaml").write_text(
        (crew_dir / "crew.yaml")
        .read_text()
        .replace("  description: A developer", "  description: 2024-05-01 A developer")
        .replace("    role: reviewer\n", "    role: reviewer\n    env: {SINCE: 2024-05-01, BITS: 0b11}\n")
    )
    loaded = load_crew(crew_dir, env={})
    assert loaded.crew.agent("reviewbot").env == {"SINCE": "2024-05-01", "BITS": "0b11"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "    restart: {crash_loop_after: 1_0}\n",
            "agents[0].restart.crash_loop_after: Input should be a valid integer",
        ),
        ("    restart: {min_uptime: 0b11}\n", "agents[0].restart.min_uptime: expected a duration"),
    ],
)
def test_what_an_editor_flags_as_text_validate_refuses_too(crew_dir: Path, line: str, message: str) -> None:
    document = _parse_yaml(MINIMAL + line, "t")
    assert not VALIDATOR.is_valid(document)
    [problem] = problems(crew_dir, MINIMAL + line)
    assert "crew.yaml:5:" in problem, problem
    assert message in problem, problem


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("    permission_mode: acceptedits\n", "did you mean 'acceptEdits'?"),
        ("    remote_control: yes\n", "agents[0].remote_control: expected true or false"),
        ("    role: 5\n", 'agents[0].role: expected text, not the number 5: quote it ("5")'),
        ("    env: {DEBUG: true}\n", 'agents[0].env.DEBUG: expected text, not the flag true: quote it ("true")'),
    ],
)
def test_a_value_of_the_wrong_kind_says_what_was_meant(crew_dir: Path, line: str, message: str) -> None:
    [problem] = problems(crew_dir, MINIMAL + line)
    assert problem.endswith(message), problem


def test_a_literal_choice_misspelt_gets_a_suggestion(crew_dir: Path) -> None:
    [problem] = problems(crew_dir, MINIMAL + "forge: {kind: GitHub}\n")
    assert problem.endswith("forge.kind: 'GitHub' is not one of github, github-enterprise; did you mean 'github'?")


def test_an_agent_named_twice_is_one_problem_not_three(crew_dir: Path) -> None:
    text = (
        MINIMAL.replace("devbot", "devbot\n    matrix: {user_id: '@devbot:localhost'}")
        + "  - name: devbot\nmatrix: {homeserver: 'http://127.0.0.1:8008'}\n"
    )
    assert [p.split(": ", 1)[1] for p in problems(crew_dir, text)] == [
        "agents[1].name: agent name 'devbot' is already used at agents[0].name"
    ]


@pytest.mark.parametrize("path", settable_keys(Crew))
def test_a_key_spelt_with_single_underscores_is_warned_of_with_the_variable_that_sets_it(path: tuple[str, ...]) -> None:
    [warning] = variable_warnings({"AGENT_SMITH_" + "_".join(path).upper(): "x"})
    meant = warning.rsplit("(", 1)[1].rstrip(")")
    data: dict[str, Any] = {}
    assert apply_env_overrides(data, {meant: "x"})[path] == meant


@pytest.mark.parametrize(
    "var",
    [
        "AGENT_SMITH_CREW",
        "AGENT_SMITH_EVENTS_OUTBOX",
        "AGENT_SMITH_CA_CERT",
        "AGENT_SMITH_LOG_FORMAT",
        "AGENT_SMITH_SECRET_GITHUB",
        "AGENT_SMITH_VERSION",
        "AGENT_SMITH_AGENTS_ROLE",
        "AGENT_SMITH_EGRESS_ALLOW_HOST",
        "AGENT_SMITH_EVENTS__MAX_AGE",
    ],
)
def test_the_other_variables_are_no_misspelt_override(var: str) -> None:
    assert variable_warnings({var: "x"}) == []


def test_a_variable_a_contract_variable_overrides_is_warned_of() -> None:
    env = {"NATS_URL": "nats://a:4222", "AGENT_SMITH_EVENTS__NATS_URL": "nats://b:4222"}
    assert variable_warnings(env) == [
        "AGENT_SMITH_EVENTS__NATS_URL is overridden by NATS_URL, which sets events.nats_url too"
    ]
    assert variable_warnings({"AGENT_SMITH_EVENTS__NATS_URL": "nats://b:4222"}) == []


def test_validate_s_warnings_name_the_misspelt_variable(crew_dir: Path) -> None:
    loaded = load_crew(crew_dir, env={"AGENT_SMITH_EVENTS_MAX_AGE": "1d"})
    assert loaded.warnings == (
        "AGENT_SMITH_EVENTS_MAX_AGE sets nothing: nested keys are joined by two underscores "
        "(AGENT_SMITH_EVENTS__MAX_AGE)",
    )
    assert loaded.crew.events.max_age == 30 * 86400
