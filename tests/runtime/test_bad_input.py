"""Bad input to `up`, `run` and friends: one line, exit 2, and nothing half-started."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from agent_smith.listeners import free_port
from tests.runtime.conftest import CrewDir

CLI = Path(sys.executable).parent / "agent-smith"

MakeCrew = Callable[[list[dict[str, Any]]], CrewDir]


@pytest.fixture
def crew(make_crew: MakeCrew) -> CrewDir:
    return make_crew([{"name": "alice"}, {"name": "bob"}])


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


Up = Callable[..., Any]


@pytest.fixture(params=["fast path", "full CLI"])
def up(request: pytest.FixtureRequest) -> Up:
    """`up` as a plain command line runs it (no Typer), or through the full CLI (as after a global option)."""

    def run(crew: CrewDir, *args: str, env: Mapping[str, str | None] | None = None) -> Any:
        if request.param == "full CLI":
            return crew.invoke("up", *args, env=env)
        merged = {**crew.env, **(env or {})}
        return crew.cli("up", *args, env={k: v for k, v in merged.items() if v is not None})

    return run


def set_in_crew(crew: CrewDir, section: str, key: str, value: object) -> None:
    yaml = YAML()
    path = crew.root / "crew.yaml"
    data = yaml.load(path.read_text())
    data.setdefault(section, {})[key] = value
    with path.open("w") as fh:
        yaml.dump(data, fh)


def assert_refused(crew: CrewDir, result: Any, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert crew.tmux().server_pid() is None, "a tmux server was started"
    assert not (crew.runtime / "supervisor.pid").exists()
    assert not (crew.state / "rt" / "agents").exists(), "an agent home was assembled"


def test_unknown_agent(crew: CrewDir, up: Up) -> None:
    result = up(crew, "--crew", str(crew.root), "alice", "zed")
    assert_refused(crew, result, "unknown agent 'zed' (the crew has: alice, bob)")
    for verb in (["restart", "zed"], ["logs", "zed"], ["attach", "zed"], ["down", "zed"]):
        other = crew.invoke(*verb, "--crew", str(crew.root))
        assert other.returncode == 2, (verb, other.stderr)
        assert "unknown agent 'zed'" in other.stderr


def test_metrics_port_in_use(crew: CrewDir, busy_port: int, up: Up) -> None:
    set_in_crew(crew, "runtime", "metrics_listen", f"127.0.0.1:{busy_port}")
    result = up(crew, "--crew", str(crew.root))
    assert_refused(crew, result, f"runtime.metrics_listen: port {busy_port} on 127.0.0.1 is already in use")


def test_firewall_port_in_use(crew: CrewDir, busy_port: int, up: Up) -> None:
    set_in_crew(crew, "egress", "listen", f"127.0.0.1:{busy_port}")
    result = up(crew, "--crew", str(crew.root))
    assert_refused(crew, result, f"egress.listen: port {busy_port} on 127.0.0.1 is already in use")


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("192.0.2.1", "192.0.2.1 is no address of this machine"),
        ("no-such-host.invalid", "no-such-host.invalid is no host name"),
    ],
)
def test_a_listen_address_that_is_not_this_machine_s_says_so(crew: CrewDir, up: Up, host: str, said: str) -> None:
    # It was called "already in use", which sent people looking for a process that was not there.
    for section, key in (("runtime", "metrics_listen"), ("egress", "listen")):
        set_in_crew(crew, section, key, f"{host}:{free_port()}")
        assert_refused(crew, up(crew, "--crew", str(crew.root)), f"{section}.{key}: {said}")
        set_in_crew(crew, section, key, f"127.0.0.1:{free_port()}")


def test_the_supervisor_s_address_being_the_firewall_s_is_refused_before_anything_starts(crew: CrewDir, up: Up) -> None:
    port = free_port()
    set_in_crew(crew, "egress", "metrics_listen", f"0.0.0.0:{port}")
    set_in_crew(crew, "runtime", "metrics_listen", f"127.0.0.1:{port}")
    result = up(crew, "--crew", str(crew.root))
    assert_refused(crew, result, f"runtime.metrics_listen: 127.0.0.1:{port} is egress.metrics_listen too")


def test_a_firewall_secret_that_cannot_be_read(crew: CrewDir, up: Up) -> None:
    set_in_crew(
        crew,
        "egress",
        "secrets",
        [
            {
                "name": "github",
                "placeholder": "agent-smith-placeholder-gh",
                "source": {"env": "GH_UNSET_X"},
                "hosts": ["api.github.com"],
            }
        ],
    )
    result = up(crew, "--crew", str(crew.root), env={"GH_UNSET_X": None})
    assert_refused(crew, result, "egress secret github: environment variable GH_UNSET_X is not set")


def test_missing_claude_binary(crew: CrewDir, up: Up) -> None:
    env = {"AGENT_SMITH_CLAUDE": "/nonexistent/claude"}
    result = up(crew, "--crew", str(crew.root), env=env)
    assert_refused(crew, result, "AGENT_SMITH_CLAUDE: /nonexistent/claude is not an executable claude CLI")


def test_a_state_dir_that_cannot_hold_the_crew(crew: CrewDir, up: Up, tmp_path_factory: pytest.TempPathFactory) -> None:
    blocker = tmp_path_factory.mktemp("blocked") / "a-file"
    blocker.write_text("")
    set_in_crew(crew, "runtime", "state_dir", str(blocker))
    result = up(crew, "--crew", str(crew.root))
    assert_refused(crew, result, f"runtime.state_dir: cannot keep the crew's state in {blocker}/rt/runtime: ")
    assert f"{blocker} is not a directory" in result.stderr
    assert blocker.read_text() == ""


def test_a_state_dir_that_can_take_no_more_fails_up_in_one_line(crew: CrewDir, up: Up) -> None:
    # A full disk: the supervisor's pid file could not be written, and `up` ended in a traceback.
    # A directory where the pid file goes fails its write the same way, for any user.
    (crew.runtime / "supervisor.pid" / "blocked").mkdir(parents=True)
    result = up(crew, "--crew", str(crew.root))
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"error: cannot keep the crew's state in {crew.runtime}: Is a directory\n"
    assert crew.tmux().server_pid() is None, "a tmux server was started"
    assert not (crew.state / "rt" / "agents").exists(), "an agent home was assembled"


def test_a_supervisor_that_fails_as_it_starts_says_why_and_not_that_a_down_stopped_it(crew: CrewDir) -> None:
    # It failed starting the firewall, whose log could not be opened, and stopped the agents it had
    # started: `up` said "alice was stopped, bob was stopped: the crew was stopped (`agent-smith
    # down`) while it started", or "the supervisor failed" and not why.
    (crew.state / "rt" / "logs" / "firewall.log" / "blocked").mkdir(parents=True)
    result = crew.cli("up", "--crew", str(crew.root))
    assert result.returncode == 1, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: the supervisor failed: IsADirectoryError: [Errno 21] Is a directory: "), last
    assert last.endswith("(the supervisor exited with code 1)"), last
    assert "Traceback" not in result.stderr
    assert crew.tmux().list_sessions() == []


@pytest.mark.parametrize("taken", ["logs", "runtime"])
def test_a_state_volume_whose_log_directory_is_no_directory(crew: CrewDir, up: Up, taken: str) -> None:
    """A file where the panes' logs (or the supervisor's files) go, as a volume restored or
    filled by hand may have: one line before anything starts, not a traceback once claude's
    home was assembled (`run` made its stream of the panes there)."""
    (crew.state / "rt").mkdir(parents=True)
    (crew.state / "rt" / taken).write_text("")
    where = crew.state / "rt" / ("runtime" if taken == "runtime" else "logs")
    message = f"runtime.state_dir: cannot keep the crew's {'state' if taken == 'runtime' else 'logs'} in {where}: "
    assert_refused(crew, up(crew, "--crew", str(crew.root)), message)
    result = crew.invoke("run", env={"AGENT_SMITH_CREW": str(crew.root), "AGENT_NAME": "alice"})
    assert_refused(crew, result, message)
    assert f"{where} is not a directory" in result.stderr


def test_invalid_crew(crew: CrewDir, up: Up) -> None:
    set_in_crew(crew, "runtime", "tmux_sockt", "x")
    result = up(crew, "--crew", str(crew.root))
    assert_refused(crew, result, "crew.yaml")
    assert "tmux_sockt" in result.stderr


@pytest.mark.parametrize("host", ["bad host", "localhost,evil", ""])
def test_a_no_proxy_value_that_is_no_host(crew: CrewDir, up: Up, host: str) -> None:
    result = up(crew, "--crew", str(crew.root), "--no-proxy", host)
    assert_refused(crew, result, f"--no-proxy: {host!r} is not a host name, .domain, IP address or CIDR range")
    for verb in (["run"], ["assemble", "alice", "--no-clone"]):
        other = crew.invoke(*verb, "--no-proxy", host, env={"AGENT_SMITH_CREW": str(crew.root), "AGENT_NAME": "alice"})
        assert other.returncode == 2, (verb, other.stderr)
        assert other.stderr.strip().splitlines() == [
            f"error: --no-proxy: {host!r} is not a host name, .domain, IP address or CIDR range"
        ]


def test_run_without_agent_name(crew: CrewDir) -> None:
    result = crew.invoke("run", env={"AGENT_SMITH_CREW": str(crew.root), "AGENT_NAME": None})
    assert_refused(crew, result, "AGENT_NAME is not set")


def test_run_says_a_crew_with_several_problems_in_one_line(crew: CrewDir) -> None:
    # The container's last words in `kubectl logs`: the first problem, and how many more.
    env = {"AGENT_SMITH_CREW": str(crew.root), "AGENT_NAME": "alice", "AGENT_REPOS": "not a repo"}
    result = crew.invoke("run", env=env)
    assert_refused(
        crew,
        result,
        "error: $AGENT_REPOS:1:1: agents[0].repos[0]: 'not' is not a repository as owner/name "
        "(and 2 more: `agent-smith validate` lists them all)",
    )


def test_restart_and_status_without_a_supervisor(crew: CrewDir) -> None:
    restart = crew.invoke("restart", "alice", "--crew", str(crew.root))
    assert restart.returncode == 1
    assert "the supervisor is not running" in restart.stderr
    status = crew.invoke("status", "--crew", str(crew.root), "--json")
    assert status.returncode == 0
    assert {row["state"] for row in json.loads(status.stdout)["agents"]} == {"stopped"}
    down = crew.invoke("down", "--crew", str(crew.root))
    assert down.returncode == 0
    assert crew.tmux().server_pid() is None


@pytest.mark.parametrize("as_json", [True, False], ids=["json-lines", "tables"])
def test_status_watch_in_a_pipe_shows_each_look_and_ends_quietly_with_its_reader(crew: CrewDir, as_json: bool) -> None:
    args = [str(CLI), "status", "--crew", str(crew.root), "--watch", *(["--json"] if as_json else [])]
    env = {k: v for k, v in crew.env.items() if v is not None}
    watcher = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    assert watcher.stderr is not None
    looks = 0
    while looks < 2:
        line = watcher.stdout.readline()
        if as_json:
            assert {row["state"] for row in json.loads(line)["agents"]} == {"stopped"}
            looks += 1
        else:
            looks += "│ alice" in line
    # As `| head` does: the reader goes; the watcher ends at its next look, without a word (exit 1,
    # as Rich ends any print to a pipe that closed).
    watcher.stdout.close()
    assert watcher.wait(10) == 1
    assert watcher.stderr.read() == ""


def give_bob_chat(crew: CrewDir, homeserver: str) -> None:
    set_in_crew(crew, "matrix", "homeserver", homeserver)
    yaml = YAML()
    data = yaml.load((crew.root / "crew.yaml").read_text())
    data["agents"][1]["matrix"] = {"user_id": "@bob:localhost"}
    with (crew.root / "crew.yaml").open("w") as fh:
        yaml.dump(data, fh)


def test_an_agent_with_chat_but_no_matrix_token(crew: CrewDir, up: Up) -> None:
    give_bob_chat(crew, "http://127.0.0.1:9")
    result = up(crew, "--crew", str(crew.root), env={"MATRIX_ACCESS_TOKEN": None})
    assert_refused(crew, result, "agent bob's Matrix channel: no Matrix access token: MATRIX_ACCESS_TOKEN is not set")


def test_an_agent_with_chat_on_a_homeserver_no_client_can_use(crew: CrewDir, up: Up) -> None:
    give_bob_chat(crew, "http://[::1")
    token = crew.state / "rt" / "agents" / "bob" / "state" / "matrix_access_token"
    token.parent.mkdir(parents=True)
    token.write_text("placeholder-token\n")
    token.chmod(0o600)
    result = up(crew, "--crew", str(crew.root), env={"MATRIX_ACCESS_TOKEN": None})
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "matrix.homeserver: 'http://[::1' is not a usable URL" in line
    assert crew.tmux().server_pid() is None, "a tmux server was started"
    assert not (crew.runtime / "supervisor.pid").exists()
    assert sorted(p.name for p in token.parent.parent.iterdir()) == ["state"], "an agent home was assembled"
