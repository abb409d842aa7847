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
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import SafeRepresenter
from ruamel.yaml.resolver import VersionedResolver

from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic

MARKER = "# Rendered by agent-smith k8s render from crew.yaml; edit the crew, not this file.\n"
KUSTOMIZATION = "kustomization.yaml"


_STR = "tag:yaml.org,2002:str"
# kubectl and Helm read YAML with go-yaml, which keeps YAML 1.1's implicit types: a plain `no`,
# `on` or `y` reaches them as a boolean and `0b11` as a number, so an agent named "no" or an
# env value "on" would be refused by kubectl or the values schema. ruamel writes YAML 1.2 and
# quotes only what 1.2 would misread; this resolver finds what 1.1 would.
_YAML_1_1 = VersionedResolver(version=(1, 1))


class _Representer(SafeRepresenter):
    def ignore_aliases(self, data: Any) -> bool:
        # Objects shared between manifests would otherwise come out as &id001 anchors.
        return True

    def represent_str(self, data: str) -> ScalarNode:
        if _YAML_1_1.resolve(ScalarNode, data, (True, False)) != _STR:
            return self.represent_scalar(_STR, data, style="'")
        node: ScalarNode = super().represent_str(data)
        return node


_Representer.add_representer(str, _Representer.represent_str)


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.width = 4096
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


def _written_here(path: Path) -> bool:
    with path.open(encoding="utf-8", errors="replace") as fh:
        return fh.readline() == MARKER


def write_manifests(manifests: Sequence[Any], directory: Path) -> list[Path]:
    """Write one file per manifest and a kustomization.yaml; remove this writer's stale files."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    names = [file_name(obj, i) for i, obj in enumerate(manifests)]
    try:
        # Checked before anything is written: an operator's own kustomization.yaml (their
        # patches, other resources) must not be replaced, nor the render left half-written.
        for name in [*names, KUSTOMIZATION]:
            if (directory / name).exists() and not _written_here(directory / name):
                raise UsageError(
                    f"{directory / name}: exists and was not written by agent-smith k8s render; "
                    "move it, or render into another directory"
                )
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
            if stale.name not in keep and stale.name != KUSTOMIZATION and _written_here(stale):
                stale.unlink()
    except OSError as exc:
        raise OperationError(f"{directory}: cannot write manifests: {exc.strerror}") from exc
    return [*written, directory / KUSTOMIZATION]
