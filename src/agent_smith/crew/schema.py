"""The published JSON Schema of crew.yaml, generated from the models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from agent_smith.crew.models import Crew

SCHEMA_ID = "https://agent-smith.dev/schema/crew-v1.json"


class _FactoryDefaults(GenerateJsonSchema):
    """pydantic leaves out a default made by a factory; an editor completing crew.yaml through the
    schema then shows none for `ports: [443]` and the like. A plain value (not a section, whose
    defaults are its own fields') is made and shown."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if not isinstance(value, BaseModel):
                return super().default_schema({**schema, "default": value, "default_factory": None})  # type: ignore[typeddict-item]
        return super().default_schema(schema)


def crew_json_schema() -> dict[str, Any]:
    schema = Crew.model_json_schema(by_alias=True, mode="validation", schema_generator=_FactoryDefaults)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
