"""crew.yaml's reference as Markdown, generated from the models so the README cannot drift."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agent_smith.crew.loader import CONTAINER_CONTRACT, model_inside
from agent_smith.crew.models import Crew


def crew_reference_markdown() -> str:
    """A table row per key of crew.yaml: the key path, its default, what it means."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    _walk(Crew, "", rows, frozenset())
    return "\n".join(rows)


def contract_table_rows() -> str:
    return "\n".join(f"| `{var}` | {meaning} |" for var, meaning in CONTAINER_CONTRACT.items())


def _walk(model: type[BaseModel], prefix: str, rows: list[str], seen: frozenset[type]) -> None:
    for name, info in model.model_fields.items():
        key = info.alias or name
        inner, is_list = model_inside(info.annotation)
        path = f"{prefix}{key}"
        if inner is not None and inner not in seen:
            doc = (inner.__doc__ or "").strip().split("\n")[0]
            meaning = info.description or doc
            rows.append(f"| `{path}` | {'list' if is_list else 'section'} | {_cell(meaning)} |")
            _walk(inner, f"{path}[]." if is_list else f"{path}.", rows, seen | {inner})
        else:
            rows.append(f"| `{path}` | {_cell(_default(info))} | {_cell(info.description or '')} |")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return ""
    else:
        value = info.default
    if value is None:
        return "—"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, list | dict) and not value:
        return "empty"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
