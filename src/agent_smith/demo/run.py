"""The demo's shell: bring every part up, let the crew play the story, watch it, take it all down.

`run_demo` owns every process it starts and stops them in `finally`, in
reverse order, whatever happened (Ctrl-C included). What the story achieved
is decided by `agent_smith.demo.steps` from what the real sources show.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from agent_smith.crew import CONTAINER_CONTRACT, CrewPaths, LoadedCrew, load_crew, scaffold_crew
from agent_smith.demo.crewfile import DEVELOPER, REVIEWER, Facts, demo_crew
from agent_smith.demo.observe import (
    audit_seen,
    chat_events,
    count_in_file,
    pulls_seen,
    room_timeline,
    stream_events,
    stream_payloads,
)
from agent_smith.demo.script import ASK, WIDGETS, Story, build_script
from agent_smith.demo.steps import Cast, Observation, Progress, Step, advance, step_durations
from agent_smith.egress import FirewallState
from agent_smith.errors import AgentSmithError, MissingPartError, OperationError, UsageError
from agent_smith.events import EmbeddedNats
from agent_smith.fsutil import write_atomic
from agent_smith.home import AssembleOptions, assemble, default_agent_smith_command
from agent_smith.listeners import free_port
from agent_smith.runtime import find_claude, pane_log, run_dir, stop_crew
from agent_smith.standins import MatrixUser, ModelServerThread, SynapseServer, parse_script
from agent_smith.standins.github import GitHubStandin, World

REPO_OWNER, REPO_NAME = "example", "widgets"
REFUSED_HOST = "hooks.slack.com"
ROOM_ALIAS = "crew"
NO_PROXY = ("127.0.0.1",)
"""The scripted model server listens here; agents reach it directly, not through the firewall."""
_DROPPED_ENV = frozenset(
    {*CONTAINER_CONTRACT, "AGENT_NAME", "MATRIX_ACCESS_TOKEN", "MATRIX_ACCESS_TOKEN_FILE", "GH_TOKEN", "GH_HOST"}
)
_KEPT_PREFIXED = frozenset({"AGENT_SMITH_CLAUDE", "AGENT_SMITH_LOG_FORMAT", "AGENT_SMITH_LOG_LEVEL"})


@dataclass(frozen=True)
class DemoOptions:
    directory: Path | None = None
    duration: float | None = None
    keep: bool = False
    step_timeout: float = 240.0
    poll: float = 0.5
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)


@dataclass
class Snapshot:
    """One look at the running demo, for the live view and the record."""

    elapsed: float
    phase: str
    progress: Progress
    observation: Observation
    agents: dict[str, str]
    chat: list[tuple[str, str]]
    events: list[dict[str, Any]]
    pull: dict[str, Any] | None
    attach: list[str]


@dataclass
class Demo:
    """The running parts, for the shell, the view and the end-to-end test."""

    root: Path
    crew_dir: Path
    began: float
    synapse: SynapseServer | None = None
    operator: MatrixUser | None = None
    agent_users: dict[str, MatrixUser] = field(default_factory=dict)
    room_id: str | None = None
    github: GitHubStandin | None = None
    real_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    model: ModelServerThread | None = None
    loaded: LoadedCrew | None = None
    nats: EmbeddedNats | None = None
    firewall: subprocess.Popen[bytes] | None = None
    cast: Cast | None = None
    progress: Progress = field(default_factory=Progress)
    story_began: float = 0.0
    phase: str = "starting"
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def paths(self) -> CrewPaths:
        assert self.loaded is not None
        return CrewPaths.of(self.loaded.crew)

    @property
    def world(self) -> World:
        assert self.github is not None
        return self.github.world

    def log_locations(self) -> dict[str, str]:
        out = {"run directory": str(self.root), "crew": str(self.crew_dir)}
        if self.synapse is not None:
            out["synapse"] = str(self.synapse.log_path)
        out["model requests"] = str(self.root / "model-requests.jsonl")
        out["up"] = str(self.root / "up.log")
        if self.loaded is not None:
            paths = self.paths
            out["firewall"] = str(paths.logs / "firewall.log")
            out["firewall audit"] = str(FirewallState(paths.firewall).audit_log_path)
            out["supervisor"] = str(run_dir(self.loaded.crew).log)
            for name in (DEVELOPER, REVIEWER):
                # Its chunks (LOG.000000, …): `agent-smith logs NAME` reads them in order.
                out[f"{name} pane"] = f"{pane_log(paths.logs, name, 0)}.*"
                out[f"{name} hooks"] = str(paths.agent_state(name) / "hooks" / "hooks.log")
        return out

    def attach_commands(self) -> list[str]:
        if self.loaded is None:
            return []
        socket_name = self.loaded.crew.tmux_socket
        return [f"tmux -L {socket_name} attach -t {name}" for name in (DEVELOPER, REVIEWER)]


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without variables that would override the demo crew."""
    return {
        k: v
        for k, v in environ.items()
        if k not in _DROPPED_ENV and (not k.startswith("AGENT_SMITH_") or k in _KEPT_PREFIXED)
    }


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def _forge_token() -> str:
    # Random, and shaped like no real credential: the crew's checks stay quiet and a leak is findable.
    return f"demo-forge-secret-{secrets.token_hex(16)}"


def forge_address() -> tuple[str, str]:
    """(host name, address) the GitHub stand-in serves on: this machine's own name.

    Not a loopback IP literal nor ``localhost``: Go clients (gh) never send
    those through a proxy, so they would bypass the firewall. The machine's
    name resolves (usually through /etc/hosts) without any change to the system.
    """
    name = socket.gethostname()
    try:
        infos = socket.getaddrinfo(name, 443, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise MissingPartError(
            f"this machine's name {name!r} does not resolve; the GitHub stand-in is served under it"
        ) from exc
    if name == "localhost" or name.endswith(".localhost") or not infos:
        raise MissingPartError(
            f"this machine's name {name!r} cannot name the GitHub stand-in (gh would skip the proxy)"
        )
    return name, str(infos[0][4][0])


def _start_github(root: Path) -> GitHubStandin:
    if os.geteuid() != 0:
        raise MissingPartError("the GitHub stand-in listens on port 443 (gh then needs no port): run the demo as root")
    name, address = forge_address()
    try:
        return GitHubStandin(root, host=address, port=443, hostname=name).start()
    except OperationError as exc:
        # Its address is the same for every demo on the machine.
        raise OperationError(f"{exc} (is another demo running?)") from None


def _set_room_alias(synapse: SynapseServer, owner: MatrixUser, alias: str, room_id: str) -> None:
    with httpx.Client(base_url=synapse.url, trust_env=False, timeout=10) as client:
        response = client.put(
            f"/_matrix/client/v3/directory/room/{alias.replace('#', '%23')}",
            json={"room_id": room_id},
            headers={"Authorization": f"Bearer {owner.access_token}"},
        )
    if response.status_code != 200:
        raise OperationError(f"Synapse: could not name the room {alias} ({response.status_code})")


def _seed_channel_flag(home: Path) -> None:
    """Turn on the CLI's channel feature in the agent's ~/.claude.json.

    The CLI normally fetches this flag from Anthropic; offline it reads only
    its cache, and without it the Matrix channel's messages never reach the
    model (measured: ../shared/notes/claude-code.md).
    """
    path = home / ".claude.json"
    data = json.loads(path.read_text())
    cached = dict(data.get("cachedGrowthBookFeatures") or {})
    cached["tengu_harbor"] = True
    data["cachedGrowthBookFeatures"] = cached
    write_atomic(path, json.dumps(data, indent=2), mode=0o600)


class _OutOfTime(Exception):
    """--duration ran out while the demo was still coming up."""


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not cut the teardown short and orphan what is left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Runner:
    """Brings the demo up and down; `run` is the whole life of one demo."""

    def __init__(
        self,
        options: DemoOptions,
        *,
        on_phase: Callable[[str], None] | None = None,
        on_snapshot: Callable[[Snapshot], None] | None = None,
        before_teardown: Callable[[Demo], None] | None = None,
    ) -> None:
        self.options = options
        self._on_phase = on_phase or (lambda _: None)
        self._on_snapshot = on_snapshot or (lambda _: None)
        self._before_teardown = before_teardown
        self.env = clean_env(options.env)
        self._scaffolded = ""

    @contextmanager
    def _step(self, demo: Demo, name: str) -> Iterator[None]:
        if self._out_of_time(demo):
            raise _OutOfTime(name)
        demo.phase = name
        self._on_phase(name)
        began = time.monotonic()
        yield
        demo.timings[name] = round(time.monotonic() - began, 2)

    def run(self) -> dict[str, Any]:
        """The whole demo; its record (also written to ``<run dir>/record.json``)."""
        root = _run_directory(self.options.directory)
        demo = Demo(root=root, crew_dir=root / "crew", began=time.monotonic())
        outcome = "stopped"
        failure: AgentSmithError | None = None
        interrupted = False
        try:
            try:
                self._bring_up(demo)
                outcome = self._play(demo)
                if self.options.keep:
                    # Ctrl-C is how a kept demo is ended: the story's outcome stands.
                    with suppress(KeyboardInterrupt):
                        self._keep(demo)
                if self._before_teardown is not None:
                    self._before_teardown(demo)
            finally:
                with _signals_ignored():
                    self._teardown(demo)
        except _OutOfTime:
            outcome = "duration reached"
        except KeyboardInterrupt:
            outcome, interrupted = "interrupted", True
        except AgentSmithError as exc:
            outcome, failure = "failed", exc
        finally:
            record = self._record(demo, outcome)
            if failure is not None:
                record["error"] = str(failure)
            write_atomic(root / "record.json", json.dumps(record, indent=2))
        if failure is not None:
            raise DemoFailed(failure, record) from failure
        if interrupted:
            raise DemoInterrupted(record)
        return record

    # ---- bringing it up ------------------------------------------------------------------

    def _bring_up(self, demo: Demo) -> None:
        root = demo.root
        with self._step(demo, "scaffold the crew"):
            scaffold_crew(demo.crew_dir)
            self._scaffolded = (demo.crew_dir / "crew.yaml").read_text()
        with self._step(demo, "start Synapse"):
            synapse = SynapseServer(root / "synapse", server_name="localhost")
            demo.synapse = synapse
            synapse.start()
            demo.operator = synapse.register("operator")
            for name in (DEVELOPER, REVIEWER):
                demo.agent_users[name] = synapse.register(name)
            room = synapse.create_room(
                demo.operator, name="crew", invite=[u.user_id for u in demo.agent_users.values()]
            )
            _set_room_alias(synapse, demo.operator, f"#{ROOM_ALIAS}:localhost", room)
            for user in demo.agent_users.values():
                synapse.join(user, room)
            demo.room_id = room
        with self._step(demo, "start the GitHub stand-in"):
            github = _start_github(root / "github")
            demo.github = github
            world = github.world
            demo.real_tokens = {name: _forge_token() for name in (DEVELOPER, REVIEWER)}
            world.add_user(REPO_OWNER, _forge_token(), "Example Org")
            for name in (DEVELOPER, REVIEWER):
                world.add_user(name, demo.real_tokens[name], name)
            world.add_repo(
                REPO_OWNER,
                REPO_NAME,
                files={"README.md": "# widgets\n\nSmall widgets.\n", "src/widgets.py": WIDGETS},
                collaborators=(DEVELOPER, REVIEWER),
            )
            secrets_dir = root / "secrets"
            secrets_dir.mkdir(mode=0o700, exist_ok=True)
            for name, token in demo.real_tokens.items():
                write_atomic(secrets_dir / f"github-{name}", token, mode=0o600)
        with self._step(demo, "start the scripted model"):
            story = Story(
                room_id=room,
                repo=f"{REPO_OWNER}/{REPO_NAME}",
                developer=DEVELOPER,
                reviewer=REVIEWER,
                developer_user=demo.agent_users[DEVELOPER].user_id,
                reviewer_user=demo.agent_users[REVIEWER].user_id,
                refused_host=REFUSED_HOST,
            )
            model = ModelServerThread(
                parse_script(build_script(story), "the demo script"), root / "model-requests.jsonl"
            )
            demo.model = model
            model.start()
        with self._step(demo, "write the crew"):
            facts = self._facts(demo, github, model)
            self._write_crew(demo, facts)
        with self._step(demo, "start the event log and the firewall"):
            nats = EmbeddedNats(demo.paths.nats)
            demo.nats = nats
            nats.start()
            self._write_crew(demo, replace(facts, nats_url=nats.url))
            self._start_firewall(demo)
        loaded = demo.loaded
        assert loaded is not None
        demo.cast = Cast(
            operator=demo.operator.user_id,
            developer=DEVELOPER,
            developer_user=demo.agent_users[DEVELOPER].user_id,
            developer_login=loaded.crew.agent(DEVELOPER).login,
            reviewer=REVIEWER,
            reviewer_user=demo.agent_users[REVIEWER].user_id,
            reviewer_login=loaded.crew.agent(REVIEWER).login,
            refused_host=REFUSED_HOST,
        )
        with self._step(demo, "assemble the agents"):
            for name, user in demo.agent_users.items():
                report = assemble(
                    loaded,
                    name,
                    AssembleOptions(
                        no_proxy=NO_PROXY,
                        env={**self.env, "MATRIX_ACCESS_TOKEN": user.access_token},
                        agent_smith_command=default_agent_smith_command(),
                    ),
                )
                _seed_channel_flag(report.home)
        with self._step(demo, "start the agents"):
            self._up(demo)
        with self._step(demo, "wait for the chat channels"):
            self._wait_for_channels(demo)

    def _facts(self, demo: Demo, github: GitHubStandin, model: ModelServerThread) -> Facts:
        assert demo.synapse is not None
        return Facts(
            crew_name="demo",
            homeserver=demo.synapse.url,
            forge_host=github.hostname,
            forge_ca=str(github.ca_path),
            model_urls={name: model.agent_url(name) for name in (DEVELOPER, REVIEWER)},
            egress_listen=f"127.0.0.1:{free_port()}",
            developer_secret_file=str(demo.root / "secrets" / f"github-{DEVELOPER}"),
            reviewer_secret_file=str(demo.root / "secrets" / f"github-{REVIEWER}"),
            state_dir=str(demo.root / "state"),
            tmux_socket=f"agent-smith-demo-{os.getpid()}-{secrets.token_hex(4)}",
        )

    def _write_crew(self, demo: Demo, facts: Facts) -> None:
        """The scaffolded crew adapted to this run (from the scaffold each time), then loaded."""
        yaml = YAML()
        crew_file = demo.crew_dir / "crew.yaml"
        data = yaml.load(self._scaffolded)
        demo_crew(data, facts)
        text = StringIO()
        yaml.dump(data, text)
        write_atomic(crew_file, text.getvalue())
        demo.loaded = load_crew(demo.crew_dir, self.env)

    def _start_firewall(self, demo: Demo) -> None:
        """Started here, before assembly clones through it; the supervisor adopts it by its pid file."""
        assert demo.loaded is not None
        paths = demo.paths
        paths.logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        rd = run_dir(demo.loaded.crew)
        rd.ensure()
        with (paths.logs / "firewall.log").open("ab") as log:
            process = subprocess.Popen(
                [default_agent_smith_command(), "firewall", "--crew", str(demo.crew_dir)],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        demo.firewall = process
        write_atomic(rd.firewall_pid, f"{process.pid}\n")
        host, _, port = demo.loaded.crew.egress.listen.rpartition(":")
        deadline = time.monotonic() + 30
        while not _listening(host, int(port)):
            if process.poll() is not None:
                raise OperationError(
                    f"the firewall exited at start (code {process.returncode}); see {paths.logs / 'firewall.log'}"
                )
            if time.monotonic() > deadline:
                raise OperationError(f"the firewall did not listen on {host}:{port} within 30s")
            time.sleep(0.05)

    def _up(self, demo: Demo) -> None:
        with (demo.root / "up.log").open("ab") as log:
            done = subprocess.run(
                [
                    default_agent_smith_command(),
                    "up",
                    "--crew",
                    str(demo.crew_dir),
                    *(arg for host in NO_PROXY for arg in ("--no-proxy", host)),
                    "--timeout",
                    "120",
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if done.returncode != 0:
            raise OperationError(f"`agent-smith up` failed (exit {done.returncode}); see {demo.root / 'up.log'}")

    def _wait_for_channels(self, demo: Demo, timeout: float = 120.0) -> None:
        """Until each agent's Matrix channel has synced once: what is sent before that is history to it."""
        assert demo.loaded is not None
        marks = {name: demo.paths.agent_state(name) / "chat" / "state.json" for name in (DEVELOPER, REVIEWER)}
        deadline = time.monotonic() + timeout
        while waiting := [name for name, mark in marks.items() if not mark.exists()]:
            if time.monotonic() > deadline:
                raise OperationError(
                    f"the Matrix channel of {', '.join(waiting)} did not sync within {timeout:g}s; "
                    f"see the supervisor's log {run_dir(demo.loaded.crew).log}"
                )
            time.sleep(0.2)

    # ---- the story -----------------------------------------------------------------------

    def _play(self, demo: Demo) -> str:
        assert demo.synapse is not None
        assert demo.operator is not None
        assert demo.room_id is not None
        demo.phase = "the crew at work"
        self._on_phase(demo.phase)
        demo.timings["story began"] = round(time.monotonic() - demo.began, 2)
        demo.story_began = time.monotonic()
        demo.synapse.send_text(demo.operator, demo.room_id, f"@{DEVELOPER} {ASK}")
        last_step = time.monotonic()
        while True:
            done_before = len(demo.progress.steps)
            self._look(demo)
            if demo.progress.complete:
                return "complete"
            if len(demo.progress.steps) > done_before:
                last_step = time.monotonic()
            if self._out_of_time(demo):
                return "duration reached"
            if time.monotonic() - last_step > self.options.step_timeout:
                return "stalled"
            time.sleep(self.options.poll)

    def _keep(self, demo: Demo) -> None:
        demo.phase = "kept running (Ctrl-C stops everything)"
        self._on_phase(demo.phase)
        while not self._out_of_time(demo):
            self._look(demo)
            time.sleep(max(self.options.poll, 1.0))

    def _out_of_time(self, demo: Demo) -> bool:
        duration = self.options.duration
        return duration is not None and time.monotonic() - demo.began >= duration

    def _look(self, demo: Demo) -> Snapshot:
        assert demo.loaded is not None
        assert demo.cast is not None
        timeline = self._timeline(demo)
        payloads = stream_payloads(demo.nats.url if demo.nats else None, demo.loaded.crew.events)
        obs = Observation(
            chat=chat_events(timeline),
            events=stream_events(payloads),
            pulls=pulls_seen(demo.world),
            audit=audit_seen(FirewallState(demo.paths.firewall).audit_log_path),
            rewakes=count_in_file(demo.paths.agent_state(DEVELOPER) / "hooks" / "hooks.log", "woke the agent"),
        )
        demo.progress = advance(demo.progress, obs, demo.cast, round(time.monotonic() - demo.story_began, 2))
        snapshot = Snapshot(
            elapsed=time.monotonic() - demo.began,
            phase=demo.phase,
            progress=demo.progress,
            observation=obs,
            agents=self._agent_states(demo),
            chat=[(e.get("sender", ""), _chat_line(e)) for e in timeline if _chat_line(e)],
            events=[
                {k: p.get(k) for k in ("type", "agent", "pr", "state", "host") if p.get(k) is not None}
                for p in payloads
            ],
            pull=_pull_summary(obs),
            attach=demo.attach_commands(),
        )
        self._on_snapshot(snapshot)
        return snapshot

    def _timeline(self, demo: Demo) -> list[dict[str, Any]]:
        assert demo.synapse is not None
        assert demo.operator is not None
        assert demo.room_id is not None
        try:
            return room_timeline(demo.synapse.url, demo.operator.access_token, demo.room_id)
        except OperationError:
            return []

    def _agent_states(self, demo: Demo) -> dict[str, str]:
        assert demo.loaded is not None
        status = run_dir(demo.loaded.crew).read_status() or {}
        agents = status.get("agents") if isinstance(status.get("agents"), dict) else {}
        out = {}
        for name in (DEVELOPER, REVIEWER):
            entry = agents.get(name) if isinstance(agents, dict) else None
            out[name] = str(entry.get("state", "starting")) if isinstance(entry, dict) else "starting"
        return out

    # ---- taking it down ------------------------------------------------------------------

    def _teardown(self, demo: Demo) -> None:
        demo.phase = "stopping"
        self._on_phase(demo.phase)
        began = time.monotonic()
        if demo.loaded is not None:
            stop_crew(demo.loaded.crew, [], timeout=30)
        if demo.firewall is not None and demo.firewall.poll() is None:
            demo.firewall.terminate()
            try:
                demo.firewall.wait(10)
            except subprocess.TimeoutExpired:
                demo.firewall.kill()
                demo.firewall.wait()
        if demo.nats is not None:
            demo.nats.stop()
        if demo.model is not None:
            demo.model.stop()
        if demo.github is not None:
            demo.github.stop()
        if demo.synapse is not None:
            demo.synapse.stop()
        demo.timings["stop"] = round(time.monotonic() - began, 2)

    def _record(self, demo: Demo, outcome: str) -> dict[str, Any]:
        durations = step_durations(demo.progress)
        steps = {
            step.value: {
                "done_at": demo.progress.steps.get(step),
                "took": round(durations[step], 2) if step in durations else None,
            }
            for step in Step
        }
        return {
            "outcome": outcome,
            "complete": demo.progress.complete,
            "wall_time": round(time.monotonic() - demo.began, 2),
            "setup": demo.timings,
            "steps": steps,
            "checks": dict(demo.progress.checks),
            "room": demo.room_id,
            "repo": f"{REPO_OWNER}/{REPO_NAME}",
            "forge": demo.github.url if demo.github is not None else None,
            "kept": self.options.keep,
            "logs": demo.log_locations(),
            "attach": demo.attach_commands(),
        }


class DemoInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) ended the demo; `record` says how far it got and where its logs are."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__()
        self.record = record


def _run_directory(chosen: Path | None) -> Path:
    """The demo's own directory: a new one under $TMPDIR, or `--dir` when it holds no earlier run."""
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix="agent-smith-demo-")).absolute()
    root = chosen.absolute()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--dir {chosen} is not a directory")
    if (root / "crew").exists() or (root / "record.json").exists():
        raise UsageError(f"--dir {chosen} holds an earlier demo: give an empty or new directory, or remove it")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--dir {chosen}: {exc.strerror or exc}") from None
    return root


class DemoFailed(AgentSmithError):
    """The demo could not go on; `record` says how far it got (`record["error"]` why)."""

    def __init__(self, cause: AgentSmithError, record: dict[str, Any]) -> None:
        super().__init__(str(cause))
        self.exit_code = cause.exit_code
        self.record = record


def _chat_line(event: Mapping[str, Any]) -> str:
    content = event.get("content") or {}
    if event.get("type") == "m.room.message":
        return str(content.get("body", ""))
    if event.get("type") == "m.reaction":
        key = (content.get("m.relates_to") or {}).get("key", "")
        return f"reacted {key}"
    return ""


def _pull_summary(obs: Observation) -> dict[str, Any] | None:
    if not obs.pulls:
        return None
    pull = obs.pulls[0]
    return {
        "number": pull.number,
        "author": pull.author,
        "state": pull.state,
        "head": pull.head_sha[:8],
        "reviews": [
            f"{r.author}: {r.state}" + (f" ({r.inline_comments} inline)" if r.inline_comments else "")
            for r in pull.reviews
        ],
    }


def run_demo(
    options: DemoOptions,
    *,
    on_phase: Callable[[str], None] | None = None,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    before_teardown: Callable[[Demo], None] | None = None,
) -> dict[str, Any]:
    """Run the demo to the end of the story (or `duration`, or Ctrl-C); the run's record."""
    for binary, fix in (("tmux", "apt-get install tmux"), ("git", "apt-get install git"), ("gh", "apt-get install gh")):
        if shutil.which(binary) is None:
            raise MissingPartError(f"{binary} is not installed: {fix}")
    find_claude()
    return Runner(options, on_phase=on_phase, on_snapshot=on_snapshot, before_teardown=before_teardown).run()
