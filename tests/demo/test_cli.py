"""`agent-smith demo` as a user runs it: Ctrl-C and --duration stop everything, nothing is orphaned."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_smith.cli.app import app
from agent_smith.demo.run import forge_address
from tests.demo.kit import demo_env, processes_mentioning

pytestmark = pytest.mark.real
AGENT_SMITH = str(Path(sys.executable).parent / "agent-smith")


def test_help_names_every_option() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"])
    assert result.exit_code == 0
    for option in ("--dir", "--duration", "--keep", "--json", "--step-timeout"):
        assert option in result.output


def wait_gone(needles: list[str], timeout: float = 15.0) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(needles)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def test_ctrl_c_in_the_middle_of_the_story_stops_everything(tmp_path: Path) -> None:
    root = tmp_path / "run"
    # Its own process group, as a terminal's foreground job: Ctrl-C signals the whole group.
    process = subprocess.Popen(
        [AGENT_SMITH, "demo", "--dir", str(root), "--json"],
        env=demo_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert process.stderr is not None
    # A thread reads stderr, so a demo that hangs cannot hang the test past its deadline.
    stderr = process.stderr

    def read() -> None:
        for line in stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(x.startswith("✓ the operator asks") for x in list(lines)):
            assert time.monotonic() < deadline, "".join(lines)
            assert process.poll() is None, "".join(lines)
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=90)
        reader.join(timeout=10)
        out = process.stdout.read() if process.stdout else ""
        err = "".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            # What the killed demo could not stop (the supervisor and firewall have sessions of their own).
            subprocess.run([AGENT_SMITH, "down", "--crew", str(root / "crew")], env=demo_env(tmp_path), check=False)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "• stopping" in err
    assert f"warning: interrupted; the record and the logs are in {root}\n" in err
    record = json.loads((root / "record.json").read_text())
    assert record["outcome"] == "interrupted"
    assert record["steps"]["asked"]["done_at"] is not None
    socket_name = record["attach"][0].split()[2]
    assert wait_gone([str(root), socket_name]) == {}
    assert out == "", "an interrupted demo prints no record on stdout (it is in record.json)"


@pytest.mark.parametrize("keep", [[], ["--keep"]], ids=["", "kept"])
def test_duration_stops_the_demo_and_says_what_was_not_reached(tmp_path: Path, keep: list[str]) -> None:
    """Also with --keep: a story the duration cut short is a failure, kept or not."""
    root = tmp_path / "run"
    done = subprocess.run(
        # One second never covers the bring-up (Synapse alone takes longer), so where it stops does not depend on speed.
        [AGENT_SMITH, "demo", "--dir", str(root), "--duration", "1", "--json", *keep],
        env=demo_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout, done.stderr
    record = json.loads(done.stdout)
    assert record["outcome"] == "duration reached"
    assert record["complete"] is False
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        "error: the demo ended (duration reached) with 6 of its 6 steps not done (1, 2, 3, 4, 5, 6), the first "
        f"being: the operator asks the developer; 👀 and a reply. Logs: {root}"
    )
    assert "story began" not in record["setup"]
    # tmux sockets only exist once the crew is written.
    sockets = [command.split()[2] for command in record["attach"]]
    assert wait_gone([str(root), *sockets]) == {}


def test_a_part_that_cannot_start_fails_the_demo_with_its_record(tmp_path: Path) -> None:
    _name, address = forge_address()
    with socket.socket() as taken:
        # Earlier demos leave connections to this port in TIME_WAIT; a listener still refuses the next one.
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((address, 443))
        taken.listen()
        root = tmp_path / "run"
        done = subprocess.run(
            [AGENT_SMITH, "demo", "--dir", str(root), "--json"],
            env=demo_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: the GitHub stand-in cannot listen on {address}:443: [Errno 98] Address already in use "
        "(is another demo running?)"
    )
    record = json.loads(done.stdout)
    assert record == json.loads((root / "record.json").read_text())
    assert record["outcome"] == "failed"
    assert record["error"] == error.removeprefix("error: ")
    assert "start Synapse" in record["setup"]
    assert "start the event log and the firewall" not in record["setup"]
    assert wait_gone([str(root)]) == {}


def test_a_dir_that_cannot_hold_a_new_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("mine")
    earlier = tmp_path / "earlier"
    (earlier / "crew").mkdir(parents=True)
    for where, message in (
        (tmp_path / "afile", f"error: --dir {tmp_path / 'afile'} is not a directory"),
        (earlier, f"error: --dir {earlier} holds an earlier demo: give an empty or new directory, or remove it"),
    ):
        done = subprocess.run(
            [AGENT_SMITH, "demo", "--dir", str(where)],
            env=demo_env(tmp_path),
            capture_output=True,
            text=True,
            check=False,
        )
        assert (done.returncode, done.stderr.strip()) == (2, message)
    assert (tmp_path / "afile").read_text() == "mine"
