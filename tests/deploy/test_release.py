"""The release: the tagging contract, the workflow that applies it, and the image's Dockerfile."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
from ruamel.yaml import YAML

from agent_smith.deploy.render import CA_MOUNT, CREW_MOUNT, STATE_DIR, UID
from agent_smith.deploy.tags import Release, github_output, release_for

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
TAGS_SCRIPT = ROOT / "src" / "agent_smith" / "deploy" / "tags.py"
SHA = "0123456789abcdef0123456789abcdef01234567"


def _bin(name: str) -> str:
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        pytest.fail(f"{name} is not installed: run scripts/install.sh (it comes with the dev dependencies)")
    return found


@pytest.mark.parametrize(
    ("ref", "tags", "chart"),
    [
        ("refs/heads/main", ("main", "sha-0123456"), None),
        ("refs/tags/v1.2.3", ("v1.2.3", "v1.2", "v1", "latest"), "1.2.3"),
        ("refs/tags/v0.10.0", ("v0.10.0", "v0.10", "v0", "latest"), "0.10.0"),
        ("refs/tags/v2.0.0-rc.1", ("v2.0.0-rc.1",), "2.0.0-rc.1"),
        ("refs/tags/v1.2", (), None),
        ("refs/tags/1.2.3", (), None),
        ("refs/tags/v01.2.3", (), None),
        ("refs/tags/latest", (), None),
        ("refs/heads/feature", (), None),
        ("refs/pull/7/merge", (), None),
    ],
)
def test_the_tagging_contract(ref: str, tags: tuple[str, ...], chart: str | None) -> None:
    assert release_for(ref, SHA) == Release(tags, chart)
    assert release_for(ref, SHA).push == bool(tags)


def test_a_short_sha_is_refused() -> None:
    with pytest.raises(ValueError, match="full commit sha"):
        release_for("refs/heads/main", "abc1234")


def test_outputs_are_in_github_s_file_format() -> None:
    text = github_output(release_for("refs/tags/v1.2.3", SHA), "ghcr.io/o/agent-smith")
    assert text == (
        "push=true\nchart_version=1.2.3\ntags<<AGENT_SMITH_TAGS\n"
        "ghcr.io/o/agent-smith:v1.2.3\nghcr.io/o/agent-smith:v1.2\nghcr.io/o/agent-smith:v1\n"
        "ghcr.io/o/agent-smith:latest\nAGENT_SMITH_TAGS\n"
    )


def _workflow() -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe", pure=True).load(WORKFLOW.read_text())
    return data


def _step(job: str, name: str) -> dict[str, Any]:
    return next(s for s in _workflow()["jobs"][job]["steps"] if s.get("name") == name)


def _parse_outputs(text: str) -> dict[str, str]:
    outputs, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            key, delimiter = line.split("<<", 1)
            outputs[key] = "\n".join(iter(lines.__next__, delimiter))
        else:
            key, value = line.split("=", 1)
            outputs[key] = value
    return outputs


@pytest.mark.parametrize(
    ("ref", "push", "tags"),
    [
        ("refs/heads/main", "true", ["ghcr.io/acme/agent-smith:main", "ghcr.io/acme/agent-smith:sha-0123456"]),
        ("refs/tags/v3.1.4", "true", [f"ghcr.io/acme/agent-smith:{t}" for t in ("v3.1.4", "v3.1", "v3", "latest")]),
        ("refs/pull/9/merge", "false", []),
    ],
)
def test_the_workflow_s_tag_step_runs_as_github_runs_it(tmp_path: Path, ref: str, push: str, tags: list[str]) -> None:
    output = tmp_path / "github_output"
    env = {
        "PATH": os.environ["PATH"],
        "GITHUB_REF": ref,
        "GITHUB_SHA": SHA,
        "GITHUB_REPOSITORY": "Acme/Agent-Smith",
        "GITHUB_OUTPUT": str(output),
    }
    command = _step("image", "Compute tags")["run"]
    # GitHub runs `run:` with bash -e from the checkout; python3 is the runner's, nothing installed.
    subprocess.run(["bash", "-e", "-c", command], cwd=ROOT, env=env, check=True, capture_output=True)
    outputs = _parse_outputs(output.read_text())
    assert outputs["push"] == push
    assert [t for t in outputs["tags"].splitlines() if t] == tags


def test_the_workflow_pushes_what_the_tag_step_computed() -> None:
    workflow = _workflow()
    on = workflow.get("on", workflow.get(True))
    assert on["push"] == {"branches": ["main"], "tags": ["v*"]}
    build = _step("image", "Build and push")["with"]
    assert build["tags"] == "${{ steps.tags.outputs.tags }}"
    assert build["push"] == "${{ steps.tags.outputs.push == 'true' }}"
    assert workflow["jobs"]["chart"]["if"] == "needs.image.outputs.chart_version != ''"
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.search(r"@v\d", step["uses"]), f"{step['uses']} is not pinned to a release"
            assert "secrets." not in step.get("run", ""), "a secret is expanded into a shell command"


def test_the_chart_packaging_step_pins_the_released_image(tmp_path: Path) -> None:
    chart = tmp_path / "charts" / "agent-smith"
    shutil.copytree(ROOT / "charts" / "agent-smith", chart)
    run = _step("chart", "Package the chart with the image it deploys")["run"]
    env = {"PATH": os.environ["PATH"], "GITHUB_REPOSITORY": "Acme/Agent-Smith", "VERSION": "1.4.0"}
    sed = next(line for line in run.splitlines() if line.strip().startswith("sed "))
    subprocess.run(["bash", "-e", "-c", sed], cwd=tmp_path, env=env, check=True)
    values = YAML(typ="safe", pure=True).load((chart / "values.yaml").read_text())
    assert values["kubernetes"]["image"] == "ghcr.io/acme/agent-smith:v1.4.0"
    archive = helm.package(chart, destination=tmp_path / "dist", version="1.4.0", app_version="1.4.0")
    assert Path(archive).name == "agent-smith-1.4.0.tgz"


# ---- the Dockerfile ---------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value
    return env


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [_bin("hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_regression(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text((ROOT / "Dockerfile").read_text().replace("USER 10001:10001\n", "") + "RUN apt-get install tmux\n")
    result = subprocess.run([_bin("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3009" in result.stdout or "DL3015" in result.stdout


def test_the_image_is_multi_stage_pinned_and_non_root() -> None:
    steps = _instructions()
    stages = [rest for word, rest in steps if word == "FROM"]
    assert len(stages) == 3
    final = dict((word, rest) for word, rest in _final_stage())
    assert final["USER"] == f"{UID}:{UID}"
    assert json.loads(final["ENTRYPOINT"]) == ["/usr/bin/tini", "--", "agent-smith"]
    assert json.loads(final["CMD"]) == ["run"]
    run_lines = " ".join(rest for word, rest in steps if word == "RUN")
    for package in ("tmux", "git", "gh", "tini"):
        assert re.search(rf"\b{package}\b", run_lines), package
    assert any("package-lock.json" in rest for word, rest in steps if word == "COPY")
    assert "-c requirements.lock" in run_lines


def _image_env() -> dict[str, str]:
    return _stage_env(_final_stage())


def test_the_image_s_python_is_compiled_at_build() -> None:
    """The running image writes no bytecode (and its user cannot write /opt): without it
    compiled at build, every hook and MCP server would compile agent-smith from source."""
    steps = _instructions()
    wheel = next(i for i, (word, rest) in enumerate(steps) if word == "FROM" and rest.endswith(" AS wheel"))
    runtime = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    assert _image_env()["PYTHONDONTWRITEBYTECODE"] == "1"
    assert _stage_env(steps[wheel:runtime])["UV_COMPILE_BYTECODE"] == "1"


def test_the_image_s_paths_are_the_ones_the_render_mounts() -> None:
    env = _image_env()
    assert env["AGENT_SMITH_CREW"] == CREW_MOUNT
    assert env["AGENT_SMITH_RUNTIME__STATE_DIR"] == STATE_DIR
    assert env["HOME"] == STATE_DIR
    assert CA_MOUNT.startswith("/etc/agent-smith/")
    assert "/opt/agent-smith/bin" in env["PATH"]


def test_only_the_build_inputs_reach_the_docker_context() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for word, rest in _instructions():
        if word == "COPY" and "--from" not in rest:
            copied.update(rest.split()[:-1])
    assert copied <= allowed | {"src"}, copied - allowed
    assert ignore[0].startswith("#")
    assert "*" in ignore
