"""The published JSON Schema of crew.yaml, generated from the models."""

from __future__ import annotations

from typing import Any

from agent_smith.crew.models import Crew

SCHEMA_ID = "https://agent-smith.dev/schema/crew-v1.json"


def crew_json_schema() -> dict[str, Any]:
    schema = Crew.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
