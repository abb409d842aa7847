"""What keeps agent-smith's per-agent processes cheap to start: deferred imports, the MCP fast path,
and pane environments that never reach a command line."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from agent_smith.cli.servers import parse_options, server_for
from agent_smith.crew import load_crew
from agent_smith.egress import launch_for
from agent_smith.errors import OperationError, UsageError
from agent_smith.runtime import ServeOptions, supervise
from agent_smith.runtime.session import env_script

CLI = Path(sys.executable).parent / "agent-smith"


@pytest.mark.parametrize(
    ("name", "argv", "expected"),
    [
        ("events", [], {}),
        ("events", ["--crew", "/c", "--agent", "bob"], {"--crew": ["/c"], "--agent": ["bob"]}),
        ("events", ["--agent=bob"], {"--agent": ["bob"]}),
        ("events", ["--agent"], None),
        ("events", ["--agent", "a", "--agent", "b"], None),
        ("events", ["--verbose"], None),
        ("events", ["positional"], None),
        ("chat", [], {}),
        ("chat", ["--crew", "/c"], None),
        ("firewall", [], {}),
        ("firewall", ["--crew=/c"], {"--crew": ["/c"]}),
        (
            "firewall",
            ["--crew", "/c", "--listen-fd", "5", "--listen-fd=6"],
            {"--crew": ["/c"], "--listen-fd": ["5", "6"]},
        ),
        ("firewall", ["--crew", "/c", "--crew", "/d"], None),
        ("firewall", ["ca"], None),
        ("firewall", ["--crew", "/c", "import-claude-login", "f"], None),
        ("nosuch", [], None),
    ],
)
def test_fast_path_options(name: str, argv: list[str], expected: dict[str, list[str]] | None) -> None:
    assert parse_options(name, argv) == expected


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["mcp", "events", "--agent", "bob"], ("events", ["--agent", "bob"])),
        (["mcp", "chat"], ("chat", [])),
        (["firewall", "--crew", "/c"], ("firewall", ["--crew", "/c"])),
        (["firewall"], ("firewall", [])),
        (["mcp", "firewall"], None),
        (["mcp"], None),
        (["up"], None),
        ([], None),
    ],
)
def test_which_server_a_command_line_starts(argv: list[str], expected: tuple[str, list[str]] | None) -> None:
    found = server_for(argv)
    assert (None if found is None else (found[0], list(found[1]))) == expected


def _small_crew(tmp_path: Path) -> Path:
    crew = tmp_path / "crew"
    (crew / "agents" / "devbot").mkdir(parents=True)
    (crew / "agents" / "devbot" / "CLAUDE.md").write_text("devbot\n")
    (crew / "crew.yaml").write_text(
        "version: 1\ncrew: {name: fast}\nagents: [{name: devbot}]\n"
        f"runtime: {{state_dir: {tmp_path / 'state'}}}\negress: {{listen: '127.0.0.1:0'}}\n"
    )
    return crew


@pytest.mark.parametrize("handed", [False, True], ids=["loads the crew", "handed its settings"])
def test_the_firewall_starts_without_the_cli_framework_and_stops_cleanly(tmp_path: Path, handed: bool) -> None:
    crew = _small_crew(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    source = ["--settings-fd", "0"] if handed else ["--crew", str(crew)]
    # Made here, the crew's CA exists, as it does for every firewall but a fresh crew's first
    # (which makes it in a child process).
    launch = launch_for(load_crew(crew, env).crew, crew, env)
    settings, write = os.pipe()
    with os.fdopen(write, "wb") as pipe:
        if handed:
            pipe.write(launch.pack())
    with os.fdopen(settings, "rb") as stdin:
        firewall = subprocess.Popen(
            [sys.executable, "-X", "importtime", str(CLI), "firewall", *source],
            env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert firewall.stdout is not None
    listening = firewall.stdout.readline()
    assert listening.startswith("firewall listening on 127.0.0.1:"), listening
    firewall.send_signal(signal.SIGTERM)
    _, imports = firewall.communicate(timeout=30)
    assert firewall.returncode == 0, imports[-2000:]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in imports.splitlines() if "|" in line}
    assert "agent_smith.egress.proxy" in loaded
    assert not {"typer", "rich", "agent_smith.cli.app"} & loaded, sorted({"typer", "rich"} & loaded)
    # Its metrics' library loads at the first scrape, its CA at the first interception: neither here.
    assert "prometheus_client" not in loaded
    assert "cryptography" not in loaded
    # Handed its settings, it loads the crew (and pydantic) only when it has a denial to publish.
    assert bool({"pydantic", "agent_smith.crew"} & loaded) is not handed


@pytest.mark.parametrize("framework", [False, True], ids=["fast path", "full CLI"])
def test_settings_that_are_not_a_launch_are_one_line(tmp_path: Path, framework: bool) -> None:
    before = ["--log-format", "text"] if framework else []
    done = subprocess.run(
        [str(CLI), *before, "firewall", "--settings-fd", "0"], input=b"not the supervisor's settings",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.decode().splitlines()
    assert line.startswith("error: the firewall settings handed down are unreadable: "), line


@pytest.mark.parametrize("framework", [False, True], ids=["fast path", "full CLI"])
def test_the_firewall_serves_a_listening_socket_it_is_handed(tmp_path: Path, framework: bool) -> None:
    crew = _small_crew(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    with socket.create_server(("127.0.0.1", 0)) as handed:
        port = handed.getsockname()[1]
        # A client that connected before the firewall ran is answered once it does.
        early = socket.create_connection(("127.0.0.1", port), timeout=30)
        fd = str(handed.fileno())
        before = ["--log-format", "text"] if framework else []
        firewall = subprocess.Popen(
            [str(CLI), *before, "firewall", "--crew", str(crew), "--listen-fd", fd],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, pass_fds=[handed.fileno()],
        )  # fmt: skip
    try:
        assert firewall.stdout is not None
        assert firewall.stdout.readline().strip() == f"firewall listening on 127.0.0.1:{port}"
        with early:
            early.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            assert early.makefile("rb").readline().startswith(b"HTTP/1.1 407 ")
    finally:
        firewall.send_signal(signal.SIGTERM)
        _, err = firewall.communicate(timeout=30)
    assert firewall.returncode == 0, err


@pytest.mark.parametrize("framework", [False, True], ids=["fast path", "full CLI"])
def test_a_listen_fd_that_is_no_listening_socket_is_one_line(tmp_path: Path, framework: bool) -> None:
    crew = _small_crew(tmp_path)
    before = ["--log-format", "text"] if framework else []
    with (tmp_path / "plain-file").open("w") as plain:
        fd = plain.fileno()
        done = subprocess.run(
            [str(CLI), *before, "firewall", "--crew", str(crew), "--listen-fd", str(fd)],
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, pass_fds=[fd],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    # (after the warning that the tiny crew has no agents/_shared/)
    assert (
        done.stderr.splitlines()[-1] == f"error: --listen-fd {fd}: not an open socket (Socket operation on non-socket)"
    )
    assert "Traceback" not in done.stderr


def test_the_firewall_fast_path_reports_a_bad_crew_like_the_cli(tmp_path: Path) -> None:
    crew = tmp_path / "crew"
    crew.mkdir()
    (crew / "crew.yaml").write_text("version: 1\ncrew: {name: fast}\nagents: [{name: Bad Name}]\n")
    done = subprocess.run(
        [str(CLI), "firewall", "--crew", str(crew)], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {crew / 'crew.yaml'}:3:"), done.stderr
    assert "Traceback" not in done.stderr


def test_env_script_quotes_every_value_for_sh(tmp_path: Path) -> None:
    env = {"PLAIN": "x", "SPACES": "a b", "QUOTE": "it's", "DOLLAR": "$HOME `id` $(id)", "NL": "one\ntwo", "E": ""}
    script = tmp_path / "env"
    script.write_text(env_script(env))
    shown = subprocess.run(
        ["/bin/sh", "-c", 'set -a && . "$0" && set +a && exec env -0', str(script)],
        env={"PATH": "/usr/bin:/bin"}, capture_output=True, check=True,
    ).stdout  # fmt: skip
    got = dict(item.split("=", 1) for item in shown.decode().split("\0") if "=" in item)
    assert {key: got[key] for key in env} == env


def test_env_script_refuses_a_name_sh_cannot_assign() -> None:
    with pytest.raises(OperationError, match="BAD-NAME"):
        env_script({"BAD-NAME": "x"})


def test_nats_does_not_load_aiohttp_until_it_is_used() -> None:
    code = """
import sys
from agent_smith.deferred import defer
defer()
import nats
assert "aiohttp.client" not in sys.modules, "aiohttp ran at import"
from aiohttp import web
assert web.Application and "aiohttp.client" in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr


@pytest.mark.parametrize("package", ["chat", "egress", "events", "forge", "hooks"])
def test_a_package_loads_each_part_when_one_of_its_names_is_first_used(package: str) -> None:
    code = f"""
import sys
import agent_smith.{package} as package
where = package._WHERE
assert not any(f"agent_smith.{package}.{{part}}" in sys.modules for part in where.values())
name, part = next(iter(where.items()))
assert getattr(package, name) is getattr(sys.modules[f"agent_smith.{package}.{{part}}"], name)
assert set(where) <= set(package.__all__)
try:
    package.no_such_name
except AttributeError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == f"module 'agent_smith.{package}' has no attribute 'no_such_name'", done.stderr


def test_models_are_built_without_looking_for_pydantic_plugins(tmp_path: Path) -> None:
    crew = _small_crew(tmp_path)
    bad = tmp_path / "bad"
    (bad / "agents" / "devbot").mkdir(parents=True)
    (bad / "crew.yaml").write_text("version: 1\ncrew: {name: fast}\nagents: [{name: devbot, rol: x}]\n")
    code = f"""
import sys
from agent_smith.deferred import without_pydantic_plugins
without_pydantic_plugins()
from agent_smith.crew import load_crew
from agent_smith.errors import CrewError
assert load_crew({str(crew)!r}).crew.agents[0].name == "devbot"
try:
    load_crew({str(bad)!r})
except CrewError as exc:
    print(" ".join(str(exc).split()))
print("importlib.metadata" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    refused, looked = done.stdout.splitlines()
    assert "agents[0].rol" in refused, refused
    assert "role" in refused, refused
    assert looked == "False"


def test_up_imports_without_a_plugin_lookup(tmp_path: Path) -> None:
    """`up` refusing a crew: what it imported on its way is what it imports before its agents start."""
    crew = _small_crew(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-X", "importtime", str(CLI), "up", "--crew", str(crew)],
            env={**os.environ, "AGENT_SMITH_RUNTIME__METRICS_LISTEN": f"127.0.0.1:{port}"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert said[-1] == f"error: runtime.metrics_listen: port {port} on 127.0.0.1 is already in use", said
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "agent_smith.crew.models" in loaded
    assert "importlib.metadata" not in loaded


@pytest.mark.parametrize(
    ("module", "function", "argv", "collector"),
    [
        ("agent_smith.cli.up", "run_up", ["up", "--crew", "/nowhere"], False),
        ("agent_smith.hooks.entry", "run", ["hook", "prompt"], True),
        ("agent_smith.cli.servers", "run", ["firewall", "--crew", "/nowhere"], True),
    ],
)
def test_only_up_imports_with_the_collector_off(module: str, function: str, argv: list[str], collector: bool) -> None:
    """`up` imports with the cyclic collector off until the supervisor runs. A server runs for as
    long as the agents and the Stop hook may wait for mail for an hour: both keep it."""
    code = f"""
import gc, sys
import {module} as entry
original = entry.{function}
def watched(*args):
    print("collector:", gc.isenabled())
    return original(*args)
entry.{function} = watched
sys.argv = ["agent-smith", *{argv!r}]
from agent_smith.__main__ import main
main()
"""
    done = subprocess.run(
        [sys.executable, "-c", code], input="{}", capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines()[0] == f"collector: {collector}", done.stderr


def test_the_supervisor_collects_though_up_imported_without_the_collector(tmp_path: Path) -> None:
    crew = _small_crew(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        loaded = load_crew(crew, {"AGENT_SMITH_RUNTIME__METRICS_LISTEN": f"127.0.0.1:{busy.getsockname()[1]}"})
        gc.disable()
        try:
            with pytest.raises(UsageError, match="already in use"):
                asyncio.run(supervise(loaded, ServeOptions(env={}), binary=Path("/bin/true"), services=False))
            assert gc.isenabled()
        finally:
            gc.enable()


def test_an_event_id_loads_neither_the_client_nor_the_model() -> None:
    code = """
import sys
from agent_smith.events.ids import new_id
new_id()
print(sorted(m for m in sys.modules if m.startswith(("nats", "pydantic", "agent_smith.crew", "agent_smith.events."))))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "['agent_smith.events.ids']", done.stderr


def test_the_events_mcp_server_starts_without_the_cli_framework(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AGENT_NAME": "bob", "NATS_URL": "nats://127.0.0.1:9"}
    server = subprocess.Popen(
        [sys.executable, "-X", "importtime", str(CLI), "mcp", "events"],
        env=env, cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert server.stdin is not None
    assert server.stdout is not None
    assert server.stderr is not None
    hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    for message in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
    ):
        server.stdin.write(json.dumps(message).encode() + b"\n")
    server.stdin.flush()
    replies = [json.loads(server.stdout.readline()) for _ in range(2)]
    server.stdin.close()
    imports = server.stderr.read()
    server.wait(30)
    server.stdout.close()
    server.stderr.close()
    assert server.returncode == 0, imports.decode()[-2000:]
    assert [tool["name"] for tool in replies[1]["result"]["tools"]] == ["publish_event", "query_events"]
    loaded = {line.rsplit("|", 1)[-1].strip() for line in imports.decode().splitlines() if "|" in line}
    assert not {"typer", "rich", "aiohttp.client"} & loaded, sorted({"typer", "rich", "aiohttp.client"} & loaded)


def test_the_mcp_fast_path_reports_errors_like_the_cli(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(CLI), "mcp", "events"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr == "error: AGENT_NAME is not set: the events MCP server publishes as that agent\n"
