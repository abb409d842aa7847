"""What `k8s render` and `k8s values` write reads back the same in the YAML reader of kubectl and Helm.

Both read YAML with go-yaml through sigs.k8s.io/yaml, which keeps YAML 1.1's
implicit types: a plain `no`, `on` or `y` is a boolean there, `0b11` a number.
Helm's SDK (helm-python-sdk) parses with that very reader, so each document is
read here as `kubectl apply -f` and `helm install -f` would read it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
from tests.deploy.crews import files_for

from agent_smith.crew import Crew
from agent_smith.deploy import render_crew, to_yaml_stream
from agent_smith.deploy.chart import chart_values
from agent_smith.deploy.writer import to_yaml

# Strings YAML 1.1 reads as something else; each is a valid agent name, env value or file text.
YAML_1_1_WORDS = ["no", "on", "off", "yes", "y", "n", "Off", "NO", "0b11", "1_000", "1:20", "~", "0755"]


def _crew() -> Crew:
    return Crew.model_validate(
        {
            "crew": {"name": "on"},
            "agents": [
                {
                    "name": "no",
                    "repos": ["acme/widgets"],
                    "env": {f"WORD_{i}": word for i, word in enumerate(YAML_1_1_WORDS)},
                },
                {"name": "yes", "repos": ["acme/widgets"]},
            ],
        }
    )


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def test_every_rendered_document_reads_back_the_same_in_go_yaml() -> None:
    crew = _crew()
    files = files_for(crew) | {"agents/no/notes.md": "off"}
    rendered = render_crew(crew, files)
    documents = re.split(r"^---\n", to_yaml_stream(rendered.manifests), flags=re.MULTILINE)[1:]
    assert len(documents) == len(rendered.manifests)
    for text, manifest in zip(documents, rendered.manifests, strict=True):
        assert helm.values_from_yaml(text) == _plain(manifest), text


def test_the_helm_values_read_back_the_same_in_go_yaml() -> None:
    crew = _crew()
    values = chart_values(crew, files_for(crew) | {"agents/no/notes.md": "off"})
    assert helm.values_from_yaml(to_yaml(values)) == _plain(values)
