"""`agent-smith firewall …` verbs, the state directory, and the firewall as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from typer.testing import CliRunner

from agent_smith.cli.app import app
from agent_smith.crew import Crew, EventLog, load_crew
from agent_smith.egress import ca_cert_for, launch_for, make_ca_ahead, proxy_url_for
from agent_smith.egress.claude import TokenStore
from agent_smith.egress.state import FirewallState, derive_password
from agent_smith.errors import OperationError
from agent_smith.events import EventFilter, connect, query
from agent_smith.listeners import free_port
from tests.egress.helpers import assert_never_contains
from tests.fixtures.egress import GITHUB_PLACEHOLDER, EgressUpstream, real_secret
from tests.fixtures.metrics import samples
from tests.fixtures.nats import NatsServer

runner = CliRunner()


def _crew_dir(root: Path, egress: str, *, events: str = "") -> Path:
    crew = root / "crew"
    (crew / "agents" / "_shared").mkdir(parents=True, exist_ok=True)
    (crew / "agents" / "devbot").mkdir(parents=True, exist_ok=True)
    (crew / "agents" / "devbot" / "CLAUDE.md").write_text("You are devbot.\n")
    (crew / "crew.yaml").write_text(
        f"""version: 1
crew: {{name: fw-test}}
agents:
  - name: devbot
runtime: {{state_dir: {root / "state"}}}
{events}egress:
{egress}"""
    )
    return crew


def _crew(tmp_path: Path) -> Crew:
    return Crew.model_validate(
        {"crew": {"name": "cc"}, "agents": [{"name": "devbot"}], "runtime": {"state_dir": str(tmp_path)}}
    )


def test_proxy_url_and_ca_are_created_once_private_and_stable(tmp_path: Path) -> None:
    crew = _crew(tmp_path)
    url = proxy_url_for(crew, "devbot")
    state = FirewallState(tmp_path / "cc" / "firewall")
    assert url == f"http://devbot:{derive_password(state.identity_key(), 'devbot')}@127.0.0.1:3128"
    assert proxy_url_for(crew, "devbot") == url
    assert stat.S_IMODE(state.identity_key_path.stat().st_mode) == 0o600
    ca = ca_cert_for(crew)
    assert ca == state.ca_cert_path
    assert stat.S_IMODE(state.ca_key_path.stat().st_mode) == 0o600
    assert ca_cert_for(crew).read_bytes() == ca.read_bytes()
    assert b"BEGIN CERTIFICATE" in ca.read_bytes()
    configured = crew.model_copy(update={"egress": crew.egress.model_copy(update={"ca_cert": "/etc/x/ca.pem"})})
    assert ca_cert_for(configured) == Path("/etc/x/ca.pem")
    with pytest.raises(Exception, match="unknown agent"):
        proxy_url_for(crew, "nobody")


def test_the_ca_is_found_or_made_without_loading_cryptography(tmp_path: Path) -> None:
    """The supervisor asks for the CA while it assembles its agents: it must not keep cryptography."""
    state = FirewallState(tmp_path / "firewall")
    code = (
        "import sys; from pathlib import Path; from agent_smith.egress.state import FirewallState; "
        f"print(FirewallState(Path({str(state.root)!r})).ca_cert(), 'cryptography' in sys.modules)"
    )
    for _ in ("made", "found"):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert done.stdout.split() == [str(state.ca_cert_path), "False"]
    assert b"BEGIN CERTIFICATE" in state.ca_cert_path.read_bytes()
    assert state.ca_key_path.stat().st_mode & 0o777 == 0o600


def test_a_ca_that_cannot_be_made_fails_in_the_caller(tmp_path: Path) -> None:
    """The child that makes the CA cannot say why it failed: the caller tries again and raises."""
    state = FirewallState(tmp_path / "firewall")
    state.ca_key_path.mkdir(parents=True)  # in the way of the key
    with pytest.raises(OperationError, match=rf"^cannot write the firewall state in {state.root}: Is a directory$"):
        state.ca_cert()
    assert not state.ca_cert_path.exists()


def test_state_that_cannot_be_made_is_one_line_naming_where(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    state = FirewallState(tmp_path / "afile" / "firewall")
    for make in (state.identity_key, state.ca_cert):
        with pytest.raises(
            OperationError, match=rf"^cannot write the firewall state in {state.root}: Not a directory$"
        ):
            make()


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        ("garbage", "not a PEM certificate and key"),
        ("another crew's certificate", "the CA certificate and key are not a pair"),
    ],
)
def test_a_ca_that_is_no_pair_is_one_line_saying_what_to_do(tmp_path: Path, spoil: str, why: str) -> None:
    crew = _crew_dir(tmp_path, "  listen: 127.0.0.1:3128\n")
    state = FirewallState(tmp_path / "state" / "fw-test" / "firewall")
    state.ca()
    if spoil == "garbage":
        state.ca_cert_path.write_text("garbage\n")
    else:
        state.ca_cert_path.write_bytes(FirewallState(tmp_path / "other").ca().cert_pem)
    result = runner.invoke(app, ["firewall", "ca", "--crew", str(crew)])
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: the firewall CA in {state.root} is unusable: {why}")
    assert line.endswith(
        "; delete ca.pem and ca-key.pem there to make a new one, then `up` again (agents trust the new one)"
    )
    assert result.stdout == ""
    state.ca_cert_path.unlink()
    state.ca_key_path.unlink()
    fresh = runner.invoke(app, ["firewall", "ca", "--crew", str(crew)])
    assert (fresh.exit_code, fresh.stdout) == (0, f"{state.ca_cert_path}\n")


def _make_ca(root: Path, barrier: Any, found: Any) -> None:
    barrier.wait()
    ca = FirewallState(root).ca()
    found.put((ca.cert.fingerprint(hashes.SHA256()), _public(ca.key.public_key())))


def _public(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def test_processes_racing_to_make_the_ca_end_with_one_key_and_its_cert(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier, found = context.Barrier(6), context.Queue()
    racers = [context.Process(target=_make_ca, args=(tmp_path / "firewall", barrier, found)) for _ in range(6)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    seen = [found.get(timeout=5) for _ in racers]
    assert len({fingerprint for fingerprint, _ in seen}) == 1
    ca = FirewallState(tmp_path / "firewall").ca()
    assert _public(ca.cert.public_key()) == _public(ca.key.public_key()) == seen[0][1]


def test_a_ca_made_ahead_is_the_one_everyone_then_gets(tmp_path: Path) -> None:
    """`up` starts making a first CA while the supervisor starts, and the supervisor asks for it
    at once: it waits for that CA instead of making another one beside it."""
    state = FirewallState(tmp_path / "firewall")
    maker = state.make_ca_ahead()
    assert maker is not None
    try:
        path = state.ca_cert()
    finally:
        _, status = os.waitpid(maker, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    ca = state.ca()
    assert path.read_bytes() == ca.cert_pem
    assert _public(ca.cert.public_key()) == _public(ca.key.public_key())
    assert state.make_ca_ahead() is None


def test_nothing_is_made_ahead_for_a_crew_that_names_its_own_ca(tmp_path: Path) -> None:
    crew = _crew(tmp_path)
    configured = crew.model_copy(update={"egress": crew.egress.model_copy(update={"ca_cert": "/etc/x/ca.pem"})})
    assert make_ca_ahead(configured) is None
    assert not FirewallState(tmp_path / "cc" / "firewall").ca_cert_path.exists()
    maker = make_ca_ahead(crew)
    assert maker is not None
    _, status = os.waitpid(maker, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b"BEGIN CERTIFICATE" in FirewallState(tmp_path / "cc" / "firewall").ca_cert_path.read_bytes()


def test_firewall_ca_prints_the_certificate_path(tmp_path: Path) -> None:
    crew = _crew_dir(tmp_path, "  listen: 127.0.0.1:3128\n")
    result = runner.invoke(app, ["firewall", "ca", "--crew", str(crew)])
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == tmp_path / "state" / "fw-test" / "firewall" / "ca.pem"
    assert path.is_file()


def test_import_claude_login_moves_the_tokens_into_the_store_only(tmp_path: Path) -> None:
    crew = _crew_dir(tmp_path, "  claude_login: {enabled: true}\n")
    access, refresh = real_secret("access"), real_secret("refresh")
    creds = tmp_path / "credentials.json"
    creds.write_text(
        json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": access,
                    "refreshToken": refresh,
                    "expiresAt": 1900000000000,
                    "scopes": ["user:inference"],
                }
            }
        )
    )
    result = runner.invoke(app, ["firewall", "import-claude-login", str(creds), "--crew", str(crew)])
    assert result.exit_code == 0, result.output
    assert_never_contains([result.output], access, refresh)
    assert (
        result.stderr == f"warning: {creds} still holds the real tokens: delete it unless a claude of yours uses it\n"
    )
    assert "(its access token expires 2030-03-17 17:46 UTC)" in result.stdout, "a time a person reads"
    store = TokenStore(tmp_path / "state" / "fw-test" / "firewall" / "secrets" / "claude-login.json")
    tokens = store.load()
    assert tokens is not None
    assert (tokens.access_token, tokens.refresh_token) == (access, refresh)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    holding = [p for p in (tmp_path / "state").rglob("*") if p.is_file() and access.encode() in p.read_bytes()]
    assert holding == [store.path]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        (
            '{"claudeAiOauth": {"accessToken": "agent-smith-placeholder-claude-access-token", "refreshToken": "x", "expiresAt": 1}}',
            "stub tokens",
        ),
        ("[]", "no claudeAiOauth"),
        (
            '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-a b\\r\\nX-Injected: 1", "refreshToken": "sk-ant-ort01-x", '
            '"expiresAt": 1900000000000}}',
            "claudeAiOauth.accessToken has spaces, control or non-ASCII characters",
        ),
        (
            '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-a", "refreshToken": "sk-ant-ort01-x", '
            '"expiresAt": 99999999999999999999999}}',
            "expiresAt must be milliseconds since the epoch",
        ),
    ],
)
def test_import_claude_login_refuses_bad_files_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    crew = _crew_dir(tmp_path, "  claude_login: {enabled: true}\n")
    creds = tmp_path / "credentials.json"
    creds.write_text(content)
    result = runner.invoke(app, ["firewall", "import-claude-login", str(creds), "--crew", str(crew)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_the_firewall_help_says_that_without_a_command_it_runs_the_firewall() -> None:
    result = runner.invoke(app, ["firewall", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Without a command it runs the firewall in the foreground" in result.output


def test_a_bad_policy_is_refused_at_startup_with_file_and_line(tmp_path: Path) -> None:
    crew = _crew_dir(tmp_path, "  allow:\n    - host: api.github.com\n      ports: [0]\n")
    result = runner.invoke(app, ["firewall", "--crew", str(crew)])
    assert result.exit_code == 2
    assert "crew.yaml:9:15: egress.allow[0].ports[0]" in result.output
    assert "ports" in result.output


def test_a_missing_secret_is_refused_at_startup(tmp_path: Path) -> None:
    egress = "  secrets:\n    - name: github\n      placeholder: agent-smith-placeholder-github-token\n      source: {env: NOT_SET_ANYWHERE_X}\n      hosts: [api.github.com]\n"
    crew = _crew_dir(tmp_path, egress)
    result = runner.invoke(app, ["firewall", "--crew", str(crew)], env={"NOT_SET_ANYWHERE_X": ""})
    assert result.exit_code == 2
    assert "egress secret github: environment variable NOT_SET_ANYWHERE_X is not set" in result.output


def test_an_upstream_ca_that_holds_no_certificate_is_refused_at_startup(tmp_path: Path) -> None:
    # Read only at the first upstream connection, it would fail every request as an upstream's TLS failure.
    crew = _crew_dir(tmp_path, "  upstream_ca: not-a-ca.pem\n")
    (crew / "not-a-ca.pem").write_text("just text\n")
    result = runner.invoke(app, ["firewall", "--crew", str(crew)])
    assert result.exit_code == 2
    assert f"egress.upstream_ca: {crew / 'not-a-ca.pem'} holds no usable CA certificate" in result.output
    assert "Traceback" not in result.output


def _maps_pydantic(pid: int) -> bool:
    return "pydantic_core" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.real
@pytest.mark.parametrize("handed", [False, True], ids=["loads-the-crew", "handed-its-settings"])
def test_the_firewall_process_swaps_refuses_publishes_and_never_logs_the_secret(
    tmp_path: Path, egress_upstream: EgressUpstream, nats_server: NatsServer, handed: bool
) -> None:
    port, metrics = free_port(), free_port()
    up = egress_upstream.port
    secret_file = tmp_path / "github-token"
    secret_file.write_text(egress_upstream.world.github_secret + "\n")
    egress = f"""  listen: 127.0.0.1:{port}
  metrics_listen: 127.0.0.1:{metrics}
  upstream_ca: {egress_upstream.ca_path}
  allow:
    - {{host: localhost, ports: [{up}], allow_private: true}}
  secrets:
    - name: github
      placeholder: {GITHUB_PLACEHOLDER}
      source: {{file: {secret_file}}}
      hosts: [localhost]
"""
    crew_dir = _crew_dir(tmp_path, egress, events=f"events: {{nats_url: '{nats_server.url}'}}\n")
    crew = load_crew(crew_dir).crew
    cli = Path(sys.executable).parent / "agent-smith"
    log = tmp_path / "firewall.log"
    with log.open("w") as out:
        # As the supervisor starts it: the fast path (no CLI framework), logging set by the environment,
        # and (as `up` does) its settings down a pipe, or (as a person does) from the crew directory.
        process = subprocess.Popen(
            [str(cli), "firewall", "--crew", str(crew_dir), *(["--settings-fd", "0"] if handed else [])],
            stdin=subprocess.PIPE if handed else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "LANG": "C.UTF-8",
                "AGENT_SMITH_LOG_LEVEL": "info",
                "AGENT_SMITH_LOG_FORMAT": "json",
            },
        )
    if process.stdin is not None:
        with process.stdin:
            process.stdin.write(launch_for(crew, crew_dir, {}).pack())
    try:
        deadline = time.monotonic() + 20
        while "firewall listening" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "HTTPS_PROXY": proxy_url_for(crew, "devbot")}
        curl = ["curl", "-sS", "--cacert", str(ca_cert_for(crew))]
        ok = subprocess.run(
            [*curl, "-H", f"Authorization: Bearer {GITHUB_PLACEHOLDER}", f"https://localhost:{up}/echo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["headers"]["Authorization"] == f"Bearer {GITHUB_PLACEHOLDER}"
        assert (
            egress_upstream.world.seen[-1].headers["Authorization"] == f"Bearer {egress_upstream.world.github_secret}"
        )
        # Handed its settings, it loads the crew (and pydantic) only to publish its first denial.
        assert _maps_pydantic(process.pid) is not handed
        if handed:
            # ... the crew as it was started: crew.yaml edited meanwhile does not move its events.
            (crew_dir / "crew.yaml").write_text("version: [\n")
        refused = subprocess.run(
            [*curl, "https://example.com/"], env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert "403" in refused.stderr
        scraped = subprocess.run(
            ["curl", "-sS", f"http://127.0.0.1:{metrics}/metrics"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert 'decision="denied"' in scraped.stdout

        async def denied_events() -> list[dict[str, object]]:
            nc = await connect(nats_server.url)
            try:
                for _ in range(100):
                    # Until the first event is published, the stream does not exist.
                    with contextlib.suppress(OperationError):
                        found = await query(nc, EventLog(), EventFilter(types=("egress_denied",)))
                        if found:
                            return [e.payload for e in found]
                    await asyncio.sleep(0.05)
                return []
            finally:
                await nc.close()

        [event] = asyncio.run(denied_events())
        assert event["agent"] == "devbot"
        assert event["host"] == "example.com"
        assert "not on the allowlist" in str(event["reason"])
        # Its denials' publisher is the firewall process's: scraped there, as a Prometheus server reads it.
        scrape = samples(httpx.get(f"http://127.0.0.1:{metrics}/metrics", trust_env=False).text)
        assert scrape[("agent_smith_events_published_total", (("type", "egress_denied"), ("via", "stream")))] == 1
        assert scrape[("agent_smith_events_outbox_depth", ())] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert process.returncode == 0, log.read_text()
    state = tmp_path / "state" / "fw-test"
    assert_never_contains(
        [
            log.read_bytes(),
            ok.stdout,
            ok.stderr,
            refused.stderr,
            scraped.stdout,
            json.dumps(event),
            *(p.read_bytes() for p in state.rglob("*") if p.is_file()),
        ],
        egress_upstream.world.github_secret,
    )
