"""`agent-smith k8s render|values|secrets`: argv in, exit code and output out."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from ruamel.yaml import YAML
from tests.deploy.crews import example_crew
from typer.testing import CliRunner

from agent_smith.cli.app import app
from agent_smith.crew import scaffold_crew
from agent_smith.deploy import ExternalSecretRef, check_manifests, render_crew, validate_strict, write_manifests
from agent_smith.deploy.writer import MARKER
from agent_smith.egress import proxy_url_for

_YAML = YAML(typ="safe", pure=True)


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env=env or {})


def test_render_prints_a_yaml_stream_kubectl_reads(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    result = invoke(["k8s", "render", "--crew", str(loaded.root)])
    assert result.exit_code == 0, result.output
    docs = [d for d in _YAML.load_all(result.stdout) if d]
    assert validate_strict(docs, ("1.30", "1.37")) == []
    assert (docs[0]["kind"], docs[0]["metadata"]["name"]) == ("ConfigMap", "agent-smith-crew")
    assert "agent-smith-proxy-devbot [password]" in result.stderr
    assert "warning: matrix.homeserver points at loopback" in result.stderr


def test_render_json_summarises_without_manifests(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    result = invoke(["k8s", "render", "--crew", str(loaded.root), "--namespace", "ops", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["namespace"] == "ops"
    assert {"kind": "StatefulSet", "name": "agent-smith-agent-reviewbot"} in summary["objects"]
    assert {r["name"] for r in summary["external_secrets"]} >= {"agent-smith-firewall-ca", "agent-smith-proxy-devbot"}
    assert summary["files"] == []


def test_render_into_a_directory_writes_a_kustomization(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    out = tmp_path / "k8s"
    result = invoke(["k8s", "render", "--crew", str(loaded.root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    kustomization = _YAML.load((out / "kustomization.yaml").read_text())
    docs = [_YAML.load((out / name).read_text()) for name in kustomization["resources"]]
    rendered = render_crew(loaded.crew, {})
    assert len(docs) == len(rendered.manifests)
    assert sorted(p.name for p in out.iterdir()) == sorted([*kustomization["resources"], "kustomization.yaml"])


def test_a_rerender_removes_its_stale_files_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    mine = out / "099-statefulset-agent-smith-agent-gone.yaml"
    mine.write_text(MARKER + "kind: StatefulSet\n")
    theirs = out / "extra-patch.yaml"
    theirs.write_text("# my own patch\n")
    write_manifests([{"kind": "ConfigMap", "metadata": {"name": "c"}}], out)
    assert not mine.exists()
    assert theirs.read_text() == "# my own patch\n"
    assert (out / "000-configmap-c.yaml").read_text().startswith(MARKER)


def test_a_render_refuses_to_replace_the_operator_s_own_kustomization(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    out = tmp_path / "deploy"
    out.mkdir()
    theirs = "resources: [ingress.yaml]\npatches: [{path: limits.yaml}]\n"
    (out / "kustomization.yaml").write_text(theirs)
    result = invoke(["k8s", "render", "--crew", str(loaded.root), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "kustomization.yaml: exists and was not written by agent-smith k8s render" in result.stderr
    assert (out / "kustomization.yaml").read_text() == theirs
    assert sorted(p.name for p in out.iterdir()) == ["kustomization.yaml"]
    # The render's own kustomization.yaml is its to replace.
    again = tmp_path / "k8s"
    assert invoke(["k8s", "render", "--crew", str(loaded.root), "-o", str(again)]).exit_code == 0
    assert invoke(["k8s", "render", "--crew", str(loaded.root), "-o", str(again)]).exit_code == 0


def test_the_operator_s_contract_variables_do_not_leak_into_the_render(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    env = {
        "AGENT_NAME": "intruder",
        "NATS_URL": "nats://127.0.0.1:4222",
        "AGENT_SMITH_KUBERNETES__IMAGE": "registry.example/agent-smith:v9.9.9",
    }
    result = invoke(["k8s", "render", "--crew", str(loaded.root), "--json"], env)
    assert result.exit_code == 0, result.output
    names = {o["name"] for o in json.loads(result.stdout)["objects"]}
    assert "agent-smith-agent-intruder" not in names
    stream = invoke(["k8s", "render", "--crew", str(loaded.root)], env).stdout
    assert "registry.example/agent-smith:v9.9.9" in stream
    assert "nats://127.0.0.1:4222" not in stream


def test_a_bad_crew_is_one_line_and_exit_2(tmp_path: Path) -> None:
    root = tmp_path / "crew"
    scaffold_crew(root)
    crew_yaml = root / "crew.yaml"
    crew_yaml.write_text(
        crew_yaml.read_text().replace(
            "    role: developer\n", "    role: developer\n    resources: {cpu_limit: 1x}\n", 1
        )
    )
    result = invoke(["k8s", "render", "--crew", str(root)])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "agents[0].resources.cpu_limit: '1x' is not a Kubernetes quantity" in result.stderr
    assert "Traceback" not in result.output


def test_secrets_writes_private_manifests_and_prints_no_value(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    state = tmp_path / "state"
    out = tmp_path / "bootstrap"
    result = invoke(["k8s", "secrets", "--crew", str(loaded.root), "--state-dir", str(state), "-o", str(out)])
    assert result.exit_code == 0, result.output
    target = out / "bootstrap-secrets.yaml"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    secrets = [d for d in _YAML.load_all(target.read_text()) if d]
    assert validate_strict(secrets, ("1.30", "1.37")) == []
    values = {
        (s["metadata"]["name"], key): base64.b64decode(value).decode(errors="replace")
        for s in secrets
        for key, value in s["data"].items()
    }
    crew = loaded.crew.model_copy(update={"runtime": loaded.crew.runtime.model_copy(update={"state_dir": str(state)})})
    for agent in ("devbot", "reviewbot"):
        assert values[(f"agent-smith-proxy-{agent}", "password")] == urlsplit(proxy_url_for(crew, agent)).password
    key_file = state / "example-crew" / "firewall" / "identity.key"
    assert (
        base64.b64decode(
            next(s for s in secrets if s["metadata"]["name"] == "agent-smith-firewall-identity")["data"]["identity.key"]
        )
        == key_file.read_bytes()
    )
    for (name, key), value in values.items():
        if key != "tls.crt":
            assert value not in result.output, f"{name}/{key} was printed"
    # With the bootstrap Secrets applied, only the operator's own secrets are still missing.
    rendered = render_crew(loaded.crew, {})
    remaining = [r for r in rendered.external if r.name not in {s["metadata"]["name"] for s in secrets}]
    assert {r.name for r in remaining} == {
        "agent-smith-firewall-secrets",
        "agent-smith-matrix-devbot",
        "agent-smith-matrix-reviewbot",
    }
    applied = [ExternalSecretRef(s["metadata"]["name"], tuple(s["data"]), "applied") for s in secrets]
    problems = check_manifests(list(rendered.manifests), [*remaining, *applied])
    assert problems == []


def test_secrets_twice_gives_the_same_passwords(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    args = ["k8s", "secrets", "--crew", str(loaded.root), "--state-dir", str(tmp_path / "state"), "-o"]
    assert invoke([*args, str(tmp_path / "a")]).exit_code == 0
    assert invoke([*args, str(tmp_path / "b")]).exit_code == 0
    first = (tmp_path / "a" / "bootstrap-secrets.yaml").read_text()
    assert first == (tmp_path / "b" / "bootstrap-secrets.yaml").read_text()


def test_secrets_refuses_a_file_as_its_output_directory(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(
        ["k8s", "secrets", "--crew", str(loaded.root), "--state-dir", str(tmp_path / "s"), "-o", str(blocker)]
    )
    assert result.exit_code == 2
    assert "exists and is not a directory" in result.stderr


def test_values_writes_a_file(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    target = tmp_path / "values.yaml"
    result = invoke(["k8s", "values", "--crew", str(loaded.root), "-o", str(target)])
    assert result.exit_code == 0, result.output
    values = _YAML.load(target.read_text())
    assert values["crew"]["name"] == "example-crew"
    assert "agents/devbot/CLAUDE.md" in values["files"]


def test_a_token_pasted_into_a_persona_stops_the_render(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    persona = loaded.root / "agents" / "devbot" / "CLAUDE.md"
    token = "ghp_" + "Z9" * 18
    persona.write_text(persona.read_text() + f"\nUse {token} for the API.\n")
    result = invoke(["k8s", "render", "--crew", str(loaded.root)])
    assert result.exit_code == 2
    assert "looks like" in result.stderr
    assert token not in result.output


@pytest.mark.parametrize("verb", [["render"], ["secrets", "-o", "bootstrap"]])
@pytest.mark.parametrize("namespace", ["ns with space", "UPPER", "", "a" * 64, "-lead"])
def test_a_namespace_that_is_no_dns_label_is_bad_usage(tmp_path: Path, verb: list[str], namespace: str) -> None:
    loaded = example_crew(tmp_path)
    result = invoke(["k8s", *verb, "--crew", str(loaded.root), "-n", namespace])
    assert result.exit_code == 2
    # Typer's usage panel wraps the line between box borders.
    assert "is no namespace (a DNS label" in " ".join(result.output.replace("│", " ").split())
    assert not (tmp_path / "bootstrap").exists()


@pytest.mark.parametrize("verb", [["render"], ["values", "-o", "values.yaml"]])
def test_files_too_big_for_a_configmap_are_refused_by_render_and_values_alike(tmp_path: Path, verb: list[str]) -> None:
    loaded = example_crew(tmp_path)
    (loaded.root / "agents" / "devbot" / "CLAUDE.md").write_text("lorem ipsum " * 100_000)
    result = invoke(["k8s", *verb, "--crew", str(loaded.root)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: the crew's files take ")
    assert result.stderr.strip().endswith("a ConfigMap holds at most 1048576")
    assert not (tmp_path / "values.yaml").exists()
