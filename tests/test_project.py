"""Project-wide checks: lint, format, types, the README's generated blocks, the two commands."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)


def test_ruff_lint_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "src", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", "src", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_on_src() -> None:
    result = run(str(BIN / "mypy"), "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_generated_blocks_are_current() -> None:
    result = run(sys.executable, "scripts/update_readme.py", "--check")
    assert result.returncode == 0, "README.md is out of date: run .venv/bin/python scripts/update_readme.py"


def test_readme_lists_every_verb() -> None:
    from agent_smith.cli.app import VERBS

    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- verbs:start -->", 1)[1].split("<!-- verbs:end -->", 1)[0]
    listed = {line.split("`")[1].split()[0] for line in table.splitlines() if line.startswith("| `")}
    assert listed == set(VERBS)


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line for line in blocks.splitlines() if line and not line.startswith("#")]
    assert commands == [
        "bash scripts/install.sh && .venv/bin/agent-smith demo",
        "bash scripts/install.sh && .venv/bin/python -m pytest",
    ]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_no_unfinished_markers_in_src() -> None:
    markers = ("TO" + "DO", "FIX" + "ME", "XX" + "X", "NotImplemented" + "Error")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "src").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(marker in line for marker in markers)
    ]
    assert offenders == []


def test_tests_never_skip() -> None:
    patterns = ("pytest.sk" + "ip(", "mark.sk" + "ip", "importor" + "skip(")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "tests").rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if any(p in line for p in patterns)
    ]
    assert offenders == []


def test_the_installed_modules_load_from_bytecode() -> None:
    """scripts/install.sh compiles the environment and src: with PYTHONDONTWRITEBYTECODE set, a
    module without bytecode is compiled from source at every start of every hook and MCP server."""
    modules = "agent_smith.cli.up, agent_smith.cli.servers, agent_smith.hooks.entry, agent_smith.runtime"
    result = subprocess.run(
        [sys.executable, "-v", "-c", f"import {modules}"],
        env={"PATH": str(BIN), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    ours = (str(ROOT / "src"), sys.prefix)
    from_bytecode = [line for line in result.stderr.splitlines() if line.startswith("# code object from '")]
    from_source = [
        line.removeprefix("# code object from ")
        for line in result.stderr.splitlines()
        if line.startswith("# code object from /")
    ]
    assert len(from_bytecode) > 100
    stale = [path for path in from_source if path.startswith(ours)]
    assert stale == [], "compiled from source: run `bash scripts/install.sh`, which compiles the bytecode"
    # Made by the install, not by this test run's own imports (which write bytecode wherever
    # PYTHONDONTWRITEBYTECODE is unset, and would hide an install that compiles nothing).
    started = _process_start()
    cached = [line.split("'")[1] for line in from_bytecode]
    written_now = [path for path in cached if path.startswith(ours) and Path(path).stat().st_mtime >= started]
    assert written_now == [], "bytecode written by the tests, not the install: run `bash scripts/install.sh`"


def _process_start() -> float:
    """When this process started (epoch seconds), from /proc: its start tick after the boot time."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[19])  # field 22, counting from the pid, is the 20th after the name
    boot = next(
        int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def _install_step(*, tty: bool, env: dict[str, str]) -> bytes:
    """What install.sh's `step` prints, its definition run alone (the script itself installs)."""
    script = (ROOT / "scripts" / "install.sh").read_text()
    definition = script[script.index("\nif [ -t 1 ]") : script.index("\nfi\n") + 4]
    argv = ["bash", "-c", f"{definition}\nstep hello"]
    if not tty:
        return subprocess.run(argv, env=env, capture_output=True, check=True).stdout
    main, child = pty.openpty()
    try:
        subprocess.run(argv, env=env, stdout=child, check=True)
        return os.read(main, 4096)
    finally:
        os.close(main)
        os.close(child)


def test_install_writes_bold_only_to_a_terminal_without_no_color() -> None:
    plain = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert b"\x1b[1m==> hello" in _install_step(tty=True, env=plain)
    assert _install_step(tty=False, env=plain) == b"==> hello\n"
    assert b"\x1b" not in _install_step(tty=True, env={**plain, "NO_COLOR": "1"})
