"""The Helm chart, rendered by Helm's own engine, says exactly what `agent-smith k8s render` says.

The `helm` binary is not in the registries this project installs from; Helm's
official Go SDK (v4) is, compiled into `helm-python-sdk` (PyPI). Charts are
loaded, schema-checked, linted, rendered and packaged by that code — the
same engine `helm template` runs.
"""

from __future__ import annotations

import base64
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError
from ruamel.yaml import YAML
from tests.deploy.crews import (
    IMAGE,
    OWN_LISTENER,
    ROLLOUT_EDITS,
    TRANSPARENT,
    crews,
    edited_example,
    example,
    example_crew,
    files_for,
    rollout_hashes,
    secret_env_of,
)

from agent_smith.crew import Crew
from agent_smith.deploy import VERSIONS, check_manifests, crew_files, render_crew, validate_strict
from agent_smith.deploy.chart import CREW_FILE, chart_files, chart_values, default_values
from agent_smith.deploy.render import CONFIG_HASH
from agent_smith.deploy.writer import to_yaml
from agent_smith.errors import UsageError

CHART = Path(__file__).resolve().parents[2] / "charts" / "agent-smith"


def helm_render(values: dict[str, Any], namespace: str = "agent-smith") -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        out = chart.render(values, name="crew", namespace=namespace)
    yaml = YAML(typ="safe", pure=True)
    return [doc for path, text in sorted(out.items()) if path.endswith(".yaml") for doc in yaml.load_all(text) if doc]


def crew_of(values: dict[str, Any]) -> Crew:
    """The crew whose chart values these are: crew.yaml's keys, without the files."""
    return Crew.model_validate({k: v for k, v in values.items() if k not in ("files", "binary_files")})


def comparable(manifests: Any) -> dict[tuple[str, str], Any]:
    """Objects by (kind, name), minus what legitimately differs: the rollout hash and crew.yaml's text."""
    out = {}
    for obj in json.loads(json.dumps(list(manifests))):
        template = obj.get("spec", {}).get("template", {}).get("metadata", {})
        template.get("annotations", {}).pop(CONFIG_HASH, None)
        if template.get("annotations") == {}:
            del template["annotations"]
        if obj["kind"] == "ConfigMap":
            obj["data"].pop(CREW_FILE)
        out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def assert_same(python: Any, chart: Any) -> None:
    left, right = comparable(python), comparable(chart)
    assert sorted(left) == sorted(right)
    for key, obj in left.items():
        assert right[key] == obj, key


def test_the_generated_chart_files_match_the_crew_model() -> None:
    for name, text in chart_files().items():
        on_disk = (CHART / name).read_text()
        assert on_disk == text, (
            f"charts/agent-smith/{name} is stale: run .venv/bin/python -m agent_smith.deploy.chart charts/agent-smith"
        )


def test_the_chart_renders_the_example_crew_exactly_as_the_cli_does(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    chart = helm_render(chart_values(loaded.crew, files))
    python = render_crew(loaded.crew, files)
    assert_same(python.manifests, chart)
    assert validate_strict(chart, VERSIONS) == []
    assert check_manifests(chart, python.external, secret_env=secret_env_of(loaded.crew)) == []
    config = next(o for o in chart if o["kind"] == "ConfigMap")
    in_pod = Crew.model_validate(YAML(typ="safe", pure=True).load(config["data"][CREW_FILE]))
    # The same settings (where each was read from is no setting).
    assert in_pod.model_dump() == loaded.crew.model_dump()


def test_the_chart_renders_an_agent_s_own_listener_exactly_as_the_cli_does(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {**TRANSPARENT, **OWN_LISTENER})
    files = crew_files(loaded)
    chart = helm_render(chart_values(loaded.crew, files))
    python = render_crew(loaded.crew, files)
    assert any(o["kind"] == "Service" and o["metadata"]["name"] == "agent-smith-firewall-devbot" for o in chart)
    assert_same(python.manifests, chart)
    assert validate_strict(chart, VERSIONS) == []


def test_the_chart_aliases_host_names_exactly_as_the_cli_does(tmp_path: Path) -> None:
    hosts = {"    - host: pypi.org\n": "    - host: PyPI.org\n    - host: a..b.example\n    - host: 192.0.2.7\n"}
    loaded = example_crew(tmp_path, {**TRANSPARENT, **OWN_LISTENER, **hosts})
    files = crew_files(loaded)
    chart = helm_render(chart_values(loaded.crew, files))
    assert_same(render_crew(loaded.crew, files).manifests, chart)
    assert check_manifests(chart, render_crew(loaded.crew, files).external, secret_env=secret_env_of(loaded.crew)) == []


@pytest.mark.parametrize("host", ["localhost", "[::1]"])
def test_the_chart_opens_no_namespace_to_a_loopback_homeserver_as_the_cli_does(tmp_path: Path, host: str) -> None:
    loaded = example_crew(tmp_path, {"homeserver: http://127.0.0.1:8008": f"homeserver: http://{host}:8008"})
    files = crew_files(loaded)
    chart = helm_render(chart_values(loaded.crew, files))
    assert_same(render_crew(loaded.crew, files).manifests, chart)


def test_the_chart_takes_its_namespace_from_the_release(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    chart = helm_render(chart_values(loaded.crew, files), namespace="team-b")
    assert {o["metadata"]["namespace"] for o in chart} == {"team-b"}
    assert_same(render_crew(loaded.crew, files, namespace="team-b").manifests, chart)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crews(max_agents=3))
def test_the_chart_and_the_cli_agree_on_every_generated_crew(data: dict[str, Any]) -> None:
    crew = Crew.model_validate(data)
    files = files_for(crew)
    python = render_crew(crew, files)
    chart = helm_render(chart_values(crew, files))
    assert_same(python.manifests, chart)
    assert check_manifests(chart, python.external, secret_env=secret_env_of(crew)) == []


def test_the_chart_defaults_render_and_lint_clean_for_every_version() -> None:
    manifests = helm_render(default_values())
    assert validate_strict(manifests, VERSIONS) == []
    for version in ("v1.30.0", "v1.37.0"):
        report = helm.lint(CHART, strict=True, kube_version=version)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_values_with_a_hand_written_agent_get_the_crew_defaults() -> None:
    values = default_values()
    # A quantity may be a YAML number, as in Kubernetes manifests.
    values["agents"] = [{"name": "solo", "resources": {"cpu_limit": 3, "memory_request": "2Gi"}}]
    manifests = helm_render(values)
    crew = crew_of(values)
    assert_same(render_crew(crew, {"crew.yaml": "version: 1\n"}).manifests, manifests)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda v: v["egress"].update(bogus=1), "additional properties 'bogus' not allowed"),
        (lambda v: v["agents"].clear(), "minItems"),
        (lambda v: v["agents"][0].update(name="Bad_Name"), "/agents/0/name"),
        (lambda v: v["files"].update({"../etc/passwd": "x"}), "invalid propertyName '../etc/passwd'"),
        (lambda v: v["files"].update({"agents/../../etc/passwd": "x"}), "invalid propertyName"),
    ],
)
def test_the_values_schema_refuses_what_crew_yaml_refuses(edit: Any, message: str) -> None:
    values = default_values()
    edit(values)
    with pytest.raises(helm.HelmValuesError) as caught:
        helm_render(values)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda v: v["kubernetes"].update(transparent_egress=True),
            "kubernetes.transparent_egress: needs egress.transparent_listen",
        ),
        (lambda v: v["events"].update(nats_url="nats://nats.example.com:4222"), "set kubernetes.nats_peer"),
        (
            lambda v: v["events"].update(nats_url="nats://localhost:4222"),
            "events.nats_url: localhost is not an in-cluster Service",
        ),
        (
            lambda v: (
                v.update(matrix={"homeserver": "https://matrix.example.org"}),
                v["agents"][0].update(matrix={"user_id": "@devbot:example.org"}),
            ),
            "matrix.homeserver: matrix.example.org is outside the cluster; set kubernetes.matrix_peer",
        ),
        (
            lambda v: v["agents"][0].update(kubernetes={"firewall_cluster_ip": "10.96.0.60", "firewall_port": 9443}),
            "agents[0].kubernetes: needs egress.transparent_listen",
        ),
        (
            lambda v: (
                v["egress"].update(transparent_listen="0.0.0.0:8443"),
                v["agents"].append(
                    {"name": "other", "kubernetes": {"firewall_cluster_ip": "10.96.0.61", "firewall_port": 3128}}
                ),
            ),
            "agents[1].kubernetes.firewall_port: port 3128 is already used at egress.listen",
        ),
        (
            lambda v: (
                v["egress"].update(transparent_listen="0.0.0.0:8443"),
                v["agents"][0].update(kubernetes={"firewall_cluster_ip": "10.96.0.60", "firewall_port": 9443}),
                v["agents"].append(
                    {"name": "other", "kubernetes": {"firewall_cluster_ip": "10.96.0.60", "firewall_port": 9444}}
                ),
            ),
            "agents[1].kubernetes.firewall_cluster_ip: cluster IP 10.96.0.60 is already used at "
            "agents[0].kubernetes.firewall_cluster_ip",
        ),
    ],
)
def test_the_chart_fails_with_the_cli_s_message(edit: Any, message: str) -> None:
    values = default_values()
    edit(values)
    with pytest.raises(helm.HelmError) as caught:
        helm_render(values)
    assert message in str(caught.value)
    crew = crew_of(values)
    with pytest.raises(UsageError) as refused:
        render_crew(crew, files_for(crew))
    assert message in str(refused.value)


def test_a_quantity_kubernetes_cannot_read_is_refused_by_the_chart_and_the_crew_model() -> None:
    values = default_values()
    values["agents"][0].update(resources={"cpu_request": "lots"})
    # The values schema says what a quantity is, so helm refuses it before any template runs.
    with pytest.raises(helm.HelmValuesError, match=r"/agents/0/resources/cpu_request': 'lots' does not match pattern"):
        helm_render(values)
    with pytest.raises(ValidationError, match="'lots' is not a Kubernetes quantity"):
        crew_of(values)


def test_the_chart_packages_with_the_release_version(tmp_path: Path) -> None:
    archive = Path(helm.package(CHART, destination=tmp_path, version="1.2.3", app_version="1.2.3"))
    assert archive.name == "agent-smith-1.2.3.tgz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        chart_yaml = tar.extractfile("agent-smith/Chart.yaml")
        assert chart_yaml is not None
        meta = YAML(typ="safe", pure=True).load(chart_yaml.read())
    assert "agent-smith/values.schema.json" in names
    assert (meta["version"], meta["appVersion"]) == ("1.2.3", "1.2.3")


def test_the_values_command_output_renders_the_same_chart(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent_smith.cli.app import app

    loaded = example_crew(tmp_path)
    result = CliRunner().invoke(app, ["k8s", "values", "--crew", str(loaded.root)])
    assert result.exit_code == 0, result.output
    values = YAML(typ="safe", pure=True).load(result.stdout)
    assert set(values["files"]) == set(crew_files(loaded)) - {CREW_FILE}
    assert_same(render_crew(loaded.crew, crew_files(loaded)).manifests, helm_render(values))


@pytest.mark.parametrize(
    ("env", "image"),
    [
        ({}, "ghcr.io/acme/agent-smith:v1.4.0"),
        (
            {"AGENT_SMITH_KUBERNETES__IMAGE": "registry.example/agent-smith:v9.9.9"},
            "registry.example/agent-smith:v9.9.9",
        ),
    ],
)
def test_the_values_command_keeps_a_released_chart_s_image_unless_the_crew_names_one(
    tmp_path: Path, env: dict[str, str], image: str
) -> None:
    from typer.testing import CliRunner

    from agent_smith.cli.app import app

    # A released chart, as the release workflow packages it: its values.yaml names its own image.
    released = tmp_path / "agent-smith"
    shutil.copytree(CHART, released)
    default = "  image: ghcr.io/agent-smith/agent-smith:latest\n"
    text = (released / "values.yaml").read_text()
    assert default in text
    (released / "values.yaml").write_text(text.replace(default, "  image: ghcr.io/acme/agent-smith:v1.4.0\n"))
    loaded = example_crew(tmp_path)
    result = CliRunner().invoke(app, ["k8s", "values", "--crew", str(loaded.root)], env=env)
    assert result.exit_code == 0, result.output
    with helm.Chart.load(released) as chart:
        out = chart.render(helm.values_from_yaml(result.stdout), name="crew", namespace="agent-smith")
    yaml = YAML(typ="safe", pure=True)
    pods = [
        doc["spec"]["template"]["spec"]
        for path, text in out.items()
        if path.endswith(".yaml")
        for doc in yaml.load_all(text)
        if doc and doc["kind"] in ("StatefulSet", "Deployment") and doc["metadata"]["name"] != "agent-smith-nats"
    ]
    images = {c["image"] for pod in pods for c in pod.get("initContainers", []) + pod["containers"]}
    assert images == {image}


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/acme/agent-smith:latest",
        "registry.example:5000/agent-smith",
        "registry.example:5000/agent-smith:v1.4.0",
        "ghcr.io/acme/agent-smith@sha256:" + "ab" * 32,
    ],
)
def test_the_chart_pulls_an_image_as_the_cli_does(image: str) -> None:
    crew = Crew.model_validate({"crew": {"name": "pull"}, "agents": [{"name": "solo"}], "kubernetes": {"image": image}})
    files = files_for(crew)
    assert_same(render_crew(crew, files).manifests, helm_render(chart_values(crew, files)))


def test_the_chart_passes_an_agent_s_env_literally_as_the_cli_does() -> None:
    env = {"PRICE": "5$$ each", "REF": "$(AGENT_NAME)"}
    crew = Crew.model_validate({"crew": {"name": "dollars"}, "agents": [{"name": "solo", "env": env}]})
    files = files_for(crew)
    assert_same(render_crew(crew, files).manifests, helm_render(chart_values(crew, files)))


@pytest.mark.parametrize(("what", "replace", "files", "rolled"), ROLLOUT_EDITS, ids=[e[0] for e in ROLLOUT_EDITS])
def test_the_chart_restarts_exactly_the_agents_whose_pods_read_an_edit(
    tmp_path: Path, what: str, replace: dict[str, str], files: dict[str, str | bytes], rolled: set[str]
) -> None:
    before = rollout_hashes(helm_render(chart_values(*edited_example(tmp_path / "before", {}, {}))))
    after = rollout_hashes(helm_render(chart_values(*edited_example(tmp_path / "after", replace, files))))
    assert set(before) == {"devbot", "reviewbot"}
    assert {agent for agent in before if before[agent] != after[agent]} == rolled


def test_the_chart_carries_a_binary_file_exactly_as_the_cli_does(tmp_path: Path) -> None:
    crew, files = edited_example(tmp_path, {}, {"agents/reviewbot/avatar.png": IMAGE})
    values = chart_values(crew, files)
    assert values["binary_files"] == {"agents/reviewbot/avatar.png": base64.b64encode(IMAGE).decode()}
    assert "agents/reviewbot/avatar.png" not in values["files"]
    # Through a values file, as `helm install -f` reads it.
    chart = helm_render(helm.values_from_yaml(to_yaml(values)))
    python = render_crew(crew, files)
    assert_same(python.manifests, chart)
    assert check_manifests(chart, python.external, secret_env=secret_env_of(crew)) == []
    config = next(o for o in chart if o["kind"] == "ConfigMap")
    assert base64.b64decode(config["binaryData"]["agents__reviewbot__avatar.png"]) == IMAGE


def test_the_chart_refuses_a_config_map_kubernetes_would_refuse() -> None:
    values = default_values()
    # Counted as the API server counts: decoded. Its base64 alone would be over the limit.
    values["binary_files"] = {"agents/devbot/big.bin": base64.b64encode(b"\xff" * 900_000).decode()}
    helm_render(values)
    values["binary_files"] = {"agents/devbot/big.bin": base64.b64encode(b"\xff" * (1 << 20)).decode()}
    with pytest.raises(helm.HelmError, match="a ConfigMap holds at most 1048576"):
        helm_render(values)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda v: v["binary_files"].update({"agents/devbot/a.png": "not base64!"}),
            "/binary_files/agents~1devbot~1a.png",
        ),
        (lambda v: v["binary_files"].update({"../a.png": "AAAA"}), "invalid propertyName '../a.png'"),
        (
            lambda v: (
                v["files"].update({"agents/devbot/a.md": "x"}),
                v["binary_files"].update({"agents/devbot/a.md": "AAAA"}),
            ),
            'agents/devbot/a.md: its ConfigMap key "agents__devbot__a.md" collides with another file\'s',
        ),
    ],
)
def test_the_chart_refuses_binary_files_it_cannot_mount(edit: Any, message: str) -> None:
    values = default_values()
    edit(values)
    with pytest.raises(helm.HelmError) as caught:
        helm_render(values)
    assert message in str(caught.value)
