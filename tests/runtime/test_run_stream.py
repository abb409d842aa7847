"""`run`'s stream of both panes to stdout, with real tmux and the real claude CLI: what
`kubectl logs` shows of a container, through a slow reader, at the container's end and across
its restart on the same volume."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent_smith.listeners import free_port
from agent_smith.runtime.panelog import Follower
from agent_smith.runtime.session import chunk_numbers
from agent_smith.standins import ModelServerThread, RequestKind
from tests.fixtures.model import StartModelServer
from tests.fixtures.processes import spawned
from tests.runtime.conftest import CrewDir, alive
from tests.runtime.test_up import CLI, FIRST_RUN, MakeCrew, agent, wait_until

pytestmark = pytest.mark.real


def pod(
    make_crew: MakeCrew, model_server: StartModelServer, tmp_path: Path
) -> tuple[CrewDir, dict[str, str], int, ModelServerThread]:
    """A one-agent crew and the environment `run` gets in its container; the port of its probes,
    and its model."""
    server = model_server({"agents": {"solo": [{"when": {"contains": FIRST_RUN}, "text": "Solo here."}]}})
    crew = make_crew([agent("solo", server.url, first_run_prompt=FIRST_RUN)])
    port = free_port()
    env = {
        **crew.env,
        "AGENT_NAME": "solo",
        "AGENT_SMITH_CREW": str(crew.root),
        "AGENT_SMITH_RUNTIME__STATE_DIR": str(tmp_path / "pod-state"),
        "AGENT_SMITH_RUNTIME__METRICS_LISTEN": f"127.0.0.1:{port}",
    }
    return crew, env, port, server


def probe(port: int, path: str, timeout: float = 2.0) -> int:
    """The status of GET `path` from `run`'s probe port, as the kubelet asks; 0 for no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as answer:
        return answer.code
    except OSError:  # not listening yet, or no answer in time
        return 0


def shell_log(env: dict[str, str]) -> str:
    """What the agent's shell pane wrote to its captured log so far, as text."""
    follower = Follower(Path(env["AGENT_SMITH_RUNTIME__STATE_DIR"]) / "rt" / "logs" / "solo.shell.log")
    text, data = "", follower.read()
    while data:
        text += data.decode(errors="replace")
        data = follower.read()
    follower.close()
    return text


def type_in_shell(crew: CrewDir, line: str) -> None:
    crew.tmux().command("send-keys", "-t", "=main:0.1", "-l", line)
    crew.tmux().command("send-keys", "-t", "=main:0.1", "Enter")


@contextmanager
def running(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    with spawned([str(CLI), "run", "--no-proxy", "127.0.0.1"], env=env) as process:
        yield process


def stdout_reader(process: subprocess.Popen[str]) -> list[str]:
    """Read `process`'s stdout into the list returned, line by line, from now on."""
    lines: list[str] = []
    assert process.stdout is not None
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return lines


def test_a_slow_reader_of_stdout_holds_back_neither_the_supervisor_nor_any_line(
    model_server: StartModelServer, make_crew: MakeCrew, tmp_path: Path
) -> None:
    """A burst of output (MBs) while nothing reads stdout: the stream waits, the supervisor does
    not (the kubelet's probes are answered), and once read, every line is there once, in order.
    (Streamed from the supervisor's loop, a full pipe stopped the loop: /healthz unanswered, the
    liveness probe failing, claude unsupervised.)"""
    crew, env, port, _server = pod(make_crew, model_server, tmp_path)
    count = 120_000
    with running(env) as process:
        wait_until("solo ready", lambda: probe(port, "/readyz") == 200, timeout=60)
        # Nothing reads stdout now: its pipe takes 64 KiB, the burst is ~1.5 MB.
        type_in_shell(crew, f"seq 1 {count} | sed 's/^/burst-/'")
        wait_until("the burst in the shell's log", lambda: f"burst-{count}\n" in shell_log(env).replace("\r", ""))
        began = time.monotonic()
        assert probe(port, "/healthz") == 200
        assert probe(port, "/readyz") == 200
        assert time.monotonic() - began < 2.0
        lines = stdout_reader(process)
        wait_until("the burst on stdout", lambda: f"[solo:shell] burst-{count}\n" in lines, timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    burst = [line for line in lines if re.fullmatch(r"\[solo:shell\] burst-\d+\n", line)]
    assert burst == [f"[solo:shell] burst-{n}\n" for n in range(1, count + 1)]


def test_the_last_output_of_a_pane_reaches_stdout_however_long_its_line(
    model_server: StartModelServer, make_crew: MakeCrew, tmp_path: Path
) -> None:
    """A line that never ends (a progress bar, `yes | tr -d '\\n'`) is streamed in pieces as it
    grows rather than held whole in memory, and what a pane wrote last, unended, is on stdout
    when the container stops. (Held until its end, such a line was never streamed at all.)"""
    crew, env, port, _server = pod(make_crew, model_server, tmp_path)
    with running(env) as process:
        lines = stdout_reader(process)
        wait_until("solo ready", lambda: probe(port, "/readyz") == 200, timeout=60)
        # No newline ever: 40 000 y's, then a dot every 20 ms until the container stops.
        type_in_shell(crew, "printf 'long-%s' line; head -c 40000 /dev/zero | tr '\\0' y; "
                      "while :; do printf .; sleep 0.02; done")  # fmt: skip
        wait_until(
            "the long line streamed while it grows", lambda: any("[solo:shell] long-lineyyy" in x for x in lines)
        )
        wait_until("dots written", lambda: shell_log(env).split("y" * 40000, 1)[-1].count(".") >= 20)
        written = shell_log(env).split("y" * 40000, 1)[-1].count(".")
        panes = crew.tmux().pane_pids()
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert wait_until("the pod's processes gone", lambda: not alive(panes), timeout=10)
    shell = "".join(line.removeprefix("[solo:shell] ").removesuffix("\n") for line in lines if "[solo:shell]" in line)
    assert "long-line" + "y" * 40000 in shell
    assert all(len(line) <= 16 * 1024 + 20 for line in lines), "a line too long for a container's log"
    # The dots it wrote until it was stopped, the last ones with no line end after them.
    dots = shell.split("y" * 40000, 1)[1]
    assert dots.strip(".") == "", dots[:200]
    assert len(dots) >= written


def test_a_restarted_container_streams_its_own_output_only(
    model_server: StartModelServer, make_crew: MakeCrew, tmp_path: Path
) -> None:
    """The logs on the volume keep the container's output before: a new container does not show it again."""
    crew, env, port, server = pod(make_crew, model_server, tmp_path)
    with running(env) as process:
        lines = stdout_reader(process)
        wait_until("solo ready", lambda: probe(port, "/readyz") == 200, timeout=60)
        type_in_shell(crew, "echo first-$((40+2))")
        wait_until("the first container's marker", lambda: "[solo:shell] first-42\n" in lines)
        wait_until("the first-run prompt's turn", lambda: server.requests(agent="solo", kind=RequestKind.AGENT_TURN))
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    turns = len(server.requests(agent="solo", kind=RequestKind.AGENT_TURN))
    logs = Path(env["AGENT_SMITH_RUNTIME__STATE_DIR"]) / "rt" / "logs" / "solo.shell.log"
    assert chunk_numbers(logs) == [0]
    with running(env) as process:
        again = stdout_reader(process)
        wait_until("solo ready again", lambda: probe(port, "/readyz") == 200, timeout=60)
        type_in_shell(crew, "echo second-$((40+3))")
        wait_until("the second container's marker", lambda: "[solo:shell] second-43\n" in again)
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    assert chunk_numbers(logs) == [0, 1]
    assert not [line for line in again if "first-42" in line]
    assert [line for line in again if "second-43" in line] == ["[solo:shell] second-43\n"]
    # Its first-run prompt was not sent again: no turn of the model's since. (The pane may show
    # it, in the conversation claude resumed and redraws.)
    assert len(server.requests(agent="solo", kind=RequestKind.AGENT_TURN)) == turns
