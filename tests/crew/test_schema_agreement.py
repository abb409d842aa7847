"""The published JSON Schema and the loader agree: what an editor shows clean through the schema
loads, but for the rules a schema cannot state (listed here, each with why)."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agent_smith.crew import Crew, crew_json_schema

SCHEMA = crew_json_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

# What validate refuses and the schema cannot say, as the start of the message of each.
BEYOND_A_SCHEMA = (
    # One field against another.
    "is not one of repos",  # primary_repo
    "cpu_request is larger than cpu_limit",
    "memory_request is larger than memory_limit",
    "backoff_max must not be smaller than backoff_initial",
    "duplicate_window must not be longer than max_age",
    "start and end are both",  # quiet_hours: an empty window
    "give either cidr, or namespace and/or pod_labels",  # a network peer is one kind or the other
    "give exactly one of env or file",  # a secret's source, where either may be given as null
    # What only the machine knows, or arithmetic.
    "unknown time zone",  # the zone database
    "is too large a Kubernetes quantity",  # beyond a float, whatever its spelling
    "a duration must be at most 100 years",  # "99999999w": a number times its unit
    "a volume of no size",  # 1e-999: digits that are not all zeros, a size that rounds to none
    # The grammar of an IPv6 address: the schema takes hex digits, colons and dots in its place.
    "does not appear to be an IPv4 or IPv6 address",  # in a URL's brackets
    "is no IP block",
)


def _from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Documents shaped by the schema: its keys, types, patterns and bounds (not always within
    them: the test asks the schema itself which ones it accepts)."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[1]
        return st.deferred(lambda: _from_schema(SCHEMA["$defs"][name]))
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node:
        return st.one_of([_from_schema(option) for option in node["anyOf"]])
    kind = node.get("type")
    if kind == "object":
        properties = node.get("properties", {})
        required = set(node.get("required", ()))
        present = {k: _from_schema(v) for k, v in properties.items() if k in required}
        optional = {k: _from_schema(v) for k, v in properties.items() if k not in required and k != "$schema"}
        known = st.fixed_dictionaries(present, optional=optional)
        extra = node.get("patternProperties") or {}
        if isinstance(node.get("additionalProperties"), dict):
            extra = {"^[A-Za-z_][A-Za-z0-9_]*$": node["additionalProperties"]}
        if not extra:
            return known
        ((pattern, value),) = extra.items()
        more = st.dictionaries(st.from_regex(pattern, fullmatch=True), _from_schema(value), max_size=2)
        return st.tuples(known, more).map(lambda parts: {**parts[1], **parts[0]})
    if kind == "array":
        least = node.get("minItems", 0)
        return st.lists(_from_schema(node.get("items", {})), min_size=least, max_size=least + 2)
    if kind == "string":
        if "pattern" in node:
            return st.from_regex(node["pattern"], fullmatch=True)
        return st.text(min_size=node.get("minLength", 0), max_size=12)
    if kind == "integer":
        return st.integers(min_value=node.get("minimum"), max_value=node.get("maximum"))
    if kind == "number":
        return st.floats(
            min_value=node.get("minimum"), max_value=node.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    raise AssertionError(f"a schema node this strategy does not know: {node}")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_from_schema(SCHEMA))
def test_what_the_schema_accepts_loads(document: dict[str, Any]) -> None:
    if not VALIDATOR.is_valid(document):
        return
    try:
        Crew.model_validate(document)
    except ValidationError as exc:
        refused = [e for e in exc.errors() if not any(why in e["msg"] for why in BEYOND_A_SCHEMA)]
        assert not refused, [(e["loc"], e["msg"]) for e in refused]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("agents", 0, "git"), {"name": "dev\tbot", "email": "dev@example.org"}),
        (("agents", 0, "git"), {"name": "devbot", "email": "dev\x7f@example.org"}),
        (("agents", 0, "matrix"), {"user_id": "@a:b", "quiet_hours": {"start": "1:00", "end": "2:00", "timezone": ""}}),
        (
            ("agents", 0, "matrix"),
            {"user_id": "@a:b", "quiet_hours": {"start": "1:00", "end": "2:00", "incident_words": [" "]}},
        ),
        (("matrix",), {"homeserver": "https://"}),
        (("matrix",), {"homeserver": "http://matrix.example:99999"}),
        (("events",), {"nats_url": "NATS://nats.example:4222"}),
        (("events",), {"nats_url": "nats://a:4222,,nats://b:4222"}),
        (("kubernetes",), {"nats_storage": "0Gi"}),
        (("kubernetes",), {"nats_storage": 0}),
        (("kubernetes",), {"matrix_peer": {"cidr": "/0"}}),
    ],
)
def test_what_validate_refuses_for_one_field_the_schema_refuses_too(path: tuple[str | int, ...], value: Any) -> None:
    document: dict[str, Any] = {"version": 1, "crew": {"name": "ab"}, "agents": [{"name": "ab"}]}
    node: Any = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if path[0] == "agents" and "matrix" in path:
        document["matrix"] = {"homeserver": "http://127.0.0.1:8008"}
    with pytest.raises(ValidationError):
        Crew.model_validate(document)
    assert not VALIDATOR.is_valid(document), "the schema took it"


def test_the_schema_s_patterns_are_ones_go_reads_too() -> None:
    # The Helm chart's values schema is this one, and Helm checks it with Go's regexp (RE2): a
    # lookaround or a backreference there fails every `helm install`.
    text = json.dumps(SCHEMA)
    patterns = [json.loads(f'"{p}"') for p in re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', text)]
    assert patterns
    for pattern in patterns:
        assert not re.search(r"\(\?<?[=!]|\\[1-9]", pattern), pattern
