"""Loading model scripts: YAML and JSON, and one line per problem with file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_smith.errors import UsageError
from agent_smith.standins import DEFAULT_IDLE_TEXT, ToolCall, Turn, When, load_script


def test_yaml_script(tmp_path: Path) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(
        "idle_text: Waiting.\n"
        "agents:\n"
        "  alice:\n"
        "    - text: hello\n"
        "    - when: {contains: go, tool_result: false}\n"
        "      tool_calls:\n"
        "        - name: Bash\n"
        "          input: {command: echo 1}\n"
    )
    script = load_script(path)
    assert script.idle_text == "Waiting."
    assert script.agents["alice"] == (
        Turn(text="hello"),
        Turn(
            when=When(contains="go", tool_result=False),
            tool_calls=(ToolCall(name="Bash", input={"command": "echo 1"}),),
        ),
    )


def test_json_script_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text('{"agents": {"default": [{"text": "hi"}]}}')
    script = load_script(path)
    assert script.idle_text == DEFAULT_IDLE_TEXT
    assert script.agents["default"][0].when == When()


def test_empty_file_is_an_empty_script(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_script(path).agents == {}


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("agents: {alice: [{}]}", ["agents.alice.0: Value error, a turn needs text, tool_calls, or both"]),
        (
            "agents: {alice: [{txt: hi}], 'bad name!': []}",
            [
                "agents.alice.0.txt: Extra inputs are not permitted",
                "agents.bad name!.[key]: String should match pattern",
            ],
        ),
        ("agents: {alice: [{text: hi, when: {contain: x}}]}", ["agents.alice.0.when.contain: Extra inputs"]),
        ("agents: {alice: [{tool_calls: [{input: {}}]}]}", ["agents.alice.0.tool_calls.0.name: Field required"]),
        ("- a list", ["the model script must be a mapping"]),
        ("agents: [unclosed", ["not valid YAML or JSON"]),
    ],
)
def test_problems_name_the_file_and_field(tmp_path: Path, text: str, messages: list[str]) -> None:
    path = tmp_path / "script.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as caught:
        load_script(path)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(messages)
    for line, message in zip(lines, messages, strict=True):
        assert line.startswith(f"{path}: ")
        assert message in line


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the model script: No such file"):
        load_script(tmp_path / "nope.yaml")
