"""The scripted model's script: per agent, an ordered list of turns.

A script file (YAML or JSON)::

    idle_text: Standing by.          # optional: the reply when no turn is due
    agents:
      alice:
        - text: Hello, I am Alice.   # answers alice's first agent turn
        - when: {contains: "run the check"}
          tool_calls:
            - name: Bash
              input: {command: "echo hi", description: "Say hi"}
        - when: {tool_result_contains: "hi"}
          text: The check printed hi.

Turns are consumed strictly in order. The next turn answers an agent request
only when its ``when`` holds for that request; until then the request gets
``idle_text`` and the turn keeps waiting, so a script can wait for a channel
message, a hook's feedback or a tool result.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from agent_smith.errors import UsageError

DEFAULT_AGENT = "default"
DEFAULT_IDLE_TEXT = "Standing by."
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


AgentName = Annotated[str, StringConstraints(pattern=AGENT_NAME.pattern)]


class When(BaseModel):
    """Conditions on the request's new input (everything after the last assistant message).

    All given conditions must hold; an empty ``when`` always holds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contains: str | None = Field(default=None, description="Substring of any text or tool result in the new input.")
    tool_result: bool | None = Field(
        default=None, description="True: the new input carries a tool_result; false: it does not."
    )
    tool_result_contains: str | None = Field(
        default=None, description="Substring of a tool_result's content in the new input."
    )


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class Turn(BaseModel):
    """One scripted assistant message: text, tool calls, or both (text first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: When = Field(default_factory=When)
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @model_validator(mode="after")
    def _says_something(self) -> Self:
        if not self.text and not self.tool_calls:
            raise ValueError("a turn needs text, tool_calls, or both")
        return self


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_text: str = Field(default=DEFAULT_IDLE_TEXT, min_length=1)
    agents: dict[AgentName, tuple[Turn, ...]] = Field(default_factory=dict)


def parse_script(data: Mapping[str, Any], source: str) -> Script:
    """A `Script` from already-parsed data; every problem on its own line, prefixed by `source`."""
    try:
        return Script.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "(top)"
            lines.append(f"{source}: {where}: {error['msg']}")
        raise UsageError("\n".join(lines)) from None


def load_script(path: Path) -> Script:
    """Read a YAML or JSON script file (JSON is YAML, so one parser serves both)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the model script: {exc.strerror}") from exc
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise UsageError(f"{path}: not valid YAML or JSON: {_first_line(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the model script must be a mapping with an 'agents' key")
    # Round-trip through JSON so ruamel's own scalar types never reach pydantic.
    return parse_script(json.loads(json.dumps(data, default=str)), str(path))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
