"""Manifests out: YAML text, and a directory of files that a re-render keeps in step.

`write_manifests` writes one file per object plus a kustomization.yaml listing
them, each atomically, and deletes the files an earlier render wrote that
this one no longer has (a removed agent must not linger on `kubectl apply
-k`). Files it did not write are never touched.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic

MARKER = "# Rendered by agent-smith k8s render from crew.yaml; edit the crew, not this file.\n"
KUSTOMIZATION = "kustomization.yaml"


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
    # Objects shared between manifests would otherwise come out as &id001 anchors.
    yaml.representer.ignore_aliases = lambda data: True
    return yaml


def to_yaml(obj: Any) -> str:
    out = io.StringIO()
    _yaml().dump(obj, out)
    return out.getvalue()


def to_yaml_stream(manifests: Iterable[Any], marker: str = MARKER) -> str:
    """A multi-document YAML stream, what `kubectl apply -f -` reads."""
    return marker + "".join(f"---\n{to_yaml(obj)}" for obj in manifests)


def file_name(obj: Any, index: int) -> str:
    kind = str(obj["kind"]).lower()
    return f"{index:03d}-{kind}-{obj['metadata']['name']}.yaml"


def write_manifests(manifests: Sequence[Any], directory: Path) -> list[Path]:
    """Write one file per manifest and a kustomization.yaml; remove this writer's stale files."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    names = [file_name(obj, i) for i, obj in enumerate(manifests)]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, obj in zip(names, manifests, strict=True):
            path = directory / name
            write_atomic(path, MARKER + to_yaml(obj))
            written.append(path)
        kustomization = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": names}
        write_atomic(directory / KUSTOMIZATION, MARKER + to_yaml(kustomization))
        keep = set(names)
        for stale in sorted(directory.glob("*.yaml")):
            if stale.name in keep or stale.name == KUSTOMIZATION:
                continue
            with stale.open(encoding="utf-8", errors="replace") as fh:
                if fh.readline() == MARKER:
                    stale.unlink()
    except OSError as exc:
        raise OperationError(f"{directory}: cannot write manifests: {exc.strerror}") from exc
    return [*written, directory / KUSTOMIZATION]
