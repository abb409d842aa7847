"""The deploy package's public surface, pinned so a refactor cannot leak internals."""

from __future__ import annotations

import agent_smith.deploy


def test_the_public_surface() -> None:
    assert sorted(agent_smith.deploy.__all__) == [
        "ExternalSecretRef",
        "Manifest",
        "Rendered",
        "SchemaProblem",
        "VERSIONS",
        "check_manifests",
        "crew_files",
        "render_crew",
        "to_yaml_stream",
        "validate_strict",
        "write_manifests",
    ]
    for name in agent_smith.deploy.__all__:
        assert hasattr(agent_smith.deploy, name)
