"""Strict validation of manifests against the Kubernetes API schemas, offline.

The schemas are the ones `kubernetes-validate` ships (one directory per
Kubernetes minor, in a strict flavour that rejects unknown fields). Its own
`validate()` re-reads the 5 MB definitions file on every call; a validator is
built here once per (version, kind) instead, so validating a 50-agent crew
against eight versions takes seconds, not minutes. Same schemas, same
Draft 2020-12 validator, same verdicts.

`kubernetes-validate` is a development dependency: this module imports it on
first use and says how to install it when it is missing.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from agent_smith.errors import MissingPartError

Manifest = dict[str, Any]

VERSIONS = tuple(f"1.{minor}" for minor in range(30, 38))
# Custom resources have no schema in the Kubernetes API; they are checked semantically only.
CUSTOM_KINDS = frozenset({("external-secrets.io/v1", "ExternalSecret")})


@dataclass(frozen=True)
class SchemaProblem:
    version: str
    obj: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"k8s {self.version}: {self.obj}: {self.path or '(top)'}: {self.message}"


def _schema_root() -> Any:
    try:
        import kubernetes_validate
    except ImportError as exc:
        raise MissingPartError(
            "kubernetes-validate is not installed (pip install kubernetes-validate, or scripts/install.sh)"
        ) from exc
    return resources.files(kubernetes_validate).joinpath("kubernetes-json-schema")


@functools.cache
def _schema_dir(version: str) -> Any:
    root = _schema_root()
    matches = [p for p in root.iterdir() if re.fullmatch(rf"v{re.escape(version)}\.\d+-local-strict", p.name)]
    if not matches:
        raise MissingPartError(f"kubernetes-validate has no strict schemas for Kubernetes {version}")
    return sorted(matches, key=lambda p: p.name)[-1]


@functools.cache
def _registry(version: str) -> Any:
    from referencing import Registry, Resource

    definitions = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.cache
def _validator(version: str, api_version: str, kind: str) -> Any:
    import jsonschema  # type: ignore[import-untyped]
    from referencing import Resource

    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    file = _schema_dir(version).joinpath(f"{kind.lower()}-{group}.json")
    schema = json.loads(file.read_text())
    registry = Resource.from_contents(schema) @ _registry(version)
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate_strict(manifests: Sequence[Manifest], versions: Iterable[str] = VERSIONS) -> list[SchemaProblem]:
    """Every schema violation of every manifest in every version (unknown fields included)."""
    problems: list[SchemaProblem] = []
    for version in versions:
        for obj in manifests:
            api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
            if (api_version, kind) in CUSTOM_KINDS:
                continue
            name = f"{kind}/{obj.get('metadata', {}).get('name')}"
            try:
                validator = _validator(version, api_version, kind)
            except FileNotFoundError:
                problems.append(SchemaProblem(version, name, "", f"no schema for {api_version} {kind}"))
                continue
            for error in validator.iter_errors(obj):
                path = ".".join(str(p) for p in error.absolute_path)
                problems.append(SchemaProblem(version, name, path, error.message))
    return problems
