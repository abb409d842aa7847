"""`assemble`: turn the crew into one agent's home and workspace, idempotently and atomically.

The shell around `plan.py`: it reads what is on disk, asks the plan what
should be there, and writes only the difference — each file atomically.
The manifest of agent-smith's contributions is written twice around the
files: first naming both the old and the new contributions, last the new
alone. So at any point a run is killed, every contribution that may be in a
file is on record, and the next run can withdraw what the crew no longer
contributes. Repositories are synced after the files, and the setup command
runs last.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi

from agent_smith.credentials import without_credentials
from agent_smith.crew import CrewPaths, LoadedCrew, PermissionMode, find_credentials
from agent_smith.egress import FirewallState, ca_cert_for, proxy_url_for
from agent_smith.errors import MissingPartError, OperationError, UsageError
from agent_smith.forge.environment import proxy_for
from agent_smith.fsutil import write_atomic
from agent_smith.home import plan
from agent_smith.home.claude_json import seed_claude_json
from agent_smith.home.merge import MISSING, merge3, merge_named
from agent_smith.home.repos import FirewallRecords, Progress, RepoOutcome, head_of, sync_repo

log = logging.getLogger(__name__)

_PROXY_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


class FileAction(StrEnum):
    create = "create"
    update = "update"
    delete = "delete"


@dataclass(frozen=True)
class FileChange:
    path: Path
    action: FileAction
    diff: str


@dataclass(frozen=True)
class SetupOutcome:
    ran: bool
    seconds: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class AssemblyReport:
    agent: str
    home: Path
    workspace: Path
    dry_run: bool
    files: tuple[FileChange, ...]
    repos: tuple[RepoOutcome, ...]
    setup: SetupOutcome | None
    warnings: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.files) or any(r.changed for r in self.repos) or bool(self.setup and self.setup.ran)


@dataclass(frozen=True)
class AssembleOptions:
    """How to assemble. `env` is the assembling process's environment (default: `os.environ`).

    `path` is the PATH git and the setup command run with (default: `env`'s PATH).
    """

    home: Path | None = None
    workspace: Path | None = None
    agent_smith_command: str | None = None
    dry_run: bool = False
    clone: bool = True
    no_proxy: Sequence[str] = ()
    env: Mapping[str, str] | None = None
    progress: Progress | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if (problem := plan.no_proxy_problem(self.no_proxy)) is not None:
            raise UsageError(problem)


def default_agent_smith_command() -> str:
    """The installed `agent-smith` entry point beside this Python, else the one on PATH, absolute."""
    beside = Path(sys.executable).parent / "agent-smith"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "agent-smith"
        if directory and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate.resolve())
    raise MissingPartError("the agent-smith command is not installed (pip install -e . in the checkout)")


@dataclass(frozen=True)
class _Planned:
    path: Path
    content: bytes | None
    mode: int
    secret: bool = False
    summary: bool = False


@dataclass(frozen=True)
class _Plan:
    """The files to write, and the manifest: `manifest` as it ends, `interim` while the files change."""

    files: list[_Planned]
    manifest: _Planned
    interim: bytes


@dataclass
class _Context:
    loaded: LoadedCrew
    name: str
    layout: plan.HomeLayout
    command: str
    env: dict[str, str]
    warnings: list[str] = field(default_factory=list)


# ---- the agent's environment --------------------------------------------------------------


def _layout(loaded: LoadedCrew, name: str, home: Path | None, workspace: Path | None) -> plan.HomeLayout:
    paths = CrewPaths.of(loaded.crew)
    return plan.HomeLayout(
        home=(home or paths.agent_home(name)).expanduser().absolute(),
        workspace=(workspace or paths.agent_workspace(name)).expanduser().absolute(),
        state=paths.agent_state(name).expanduser().absolute(),
    )


def _proxy_url(loaded: LoadedCrew, name: str, create: bool, env: Mapping[str, str]) -> str:
    # In a pod the firewall is another host and the agent's proxy password comes from a Secret:
    # the pod's HTTPS_PROXY is then the agent's proxy as it is. Elsewhere an ambient HTTPS_PROXY
    # (a person's corporate proxy, say) is never taken: it would route the agent around the firewall.
    given = env.get("HTTPS_PROXY")
    if env.get("AGENT_SMITH_PROXY_PASSWORD") and given:
        return given
    if create or FirewallState(CrewPaths.of(loaded.crew).firewall).identity_key_path.exists():
        return proxy_url_for(loaded.crew, name)
    return f"http://{name}:<created-on-first-run>@{loaded.crew.egress.listen}"


def _firewall_down(url: str, env: Mapping[str, str]) -> str | None:
    """The firewall's host:port when `url` goes through the proxy `env` names (as git would) and
    nothing accepts a connection there; None otherwise."""
    proxy = proxy_for(url, env) if urlsplit(url).scheme in ("http", "https") else None
    parts = urlsplit(proxy or "")
    if parts.hostname is None or parts.port is None:
        return None
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError:
        return f"{parts.hostname}:{parts.port}"
    return None


def agent_environment(
    loaded: LoadedCrew,
    agent: str,
    home: Path | None = None,
    workspace: Path | None = None,
    *,
    no_proxy: Sequence[str] = (),
) -> dict[str, str]:
    """The agent's full environment: identity, trust, proxy, forge placeholder, event log.

    The runtime starts `claude` with this (plus PATH, TERM and the model
    endpoint); settings.json `env` carries the same values to the tools,
    hooks and MCP servers Claude Code starts. Contains no real secret.
    """
    loaded.crew.agent(agent)
    layout = _layout(loaded, agent, home, workspace)
    return _environment(loaded, agent, layout, _proxy_url(loaded, agent, True, os.environ), no_proxy)


def _environment(
    loaded: LoadedCrew, name: str, layout: plan.HomeLayout, proxy_url: str, no_proxy: Sequence[str]
) -> dict[str, str]:
    return plan.agent_env(
        loaded.crew,
        loaded.crew.agent(name),
        layout,
        crew_dir=loaded.root.absolute(),
        proxy_url=proxy_url,
        no_proxy=no_proxy,
    )


# ---- reading what is there ----------------------------------------------------------------


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise OperationError(f"{path} is a directory where a file belongs") from exc
    except OSError as exc:
        raise OperationError(f"cannot read {path}: {exc.strerror}") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is beyond the range of a number")
    return number


def _read_json(path: Path) -> Any:
    raw = _read(path)
    if raw is None:
        return MISSING
    try:
        # Python takes NaN and Infinity, and 1e999 as infinite, and would write them back as
        # `NaN`/`Infinity`: Claude Code's JSON.parse refuses those, and with them the whole file.
        return json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OperationError(f"{path}: not valid JSON ({exc}); fix or remove it and assemble again") from exc


def _read_json_object(path: Path) -> Any:
    """A JSON file Claude Code reads as an object (settings.json, ~/.claude.json): other JSON
    there is corrupt, and is left as it is rather than replaced by what agent-smith writes."""
    data = _read_json(path)
    if data is not MISSING and not isinstance(data, dict):
        raise OperationError(f"{path}: holds JSON that is no object; fix or remove it and assemble again")
    return data


def _system_bundle() -> bytes:
    for candidate in plan.SYSTEM_BUNDLES:
        if candidate.is_file():
            return candidate.read_bytes()
    return Path(certifi.where()).read_bytes()


def _firewall_ca(loaded: LoadedCrew, create: bool) -> bytes:
    crew = loaded.crew
    if not create and crew.egress.ca_cert is None:
        pending = FirewallState(CrewPaths.of(crew).firewall).ca_cert_path
        if not pending.exists():
            return b"(the firewall CA, created on the first real run)\n"
    path = ca_cert_for(crew)
    raw = _read(path)
    if raw is None:
        raise UsageError(f"the firewall CA certificate {path} does not exist (egress.ca_cert / AGENT_SMITH_CA_CERT)")
    if b"-----BEGIN CERTIFICATE-----" not in raw:
        raise UsageError(f"{path} is not a PEM certificate (egress.ca_cert / AGENT_SMITH_CA_CERT)")
    return raw


# ---- planning -----------------------------------------------------------------------------


def _credentials(ctx: _Context, stub_before: bool) -> _Planned | None:
    stub = ctx.loaded.shared.credentials_stub
    path = ctx.layout.credentials
    raw = _read(path)
    if raw is None:
        return None if stub is None else _Planned(path, plan.dump_json(stub).encode(), 0o600, secret=True)
    try:
        found = list(find_credentials(json.loads(raw)))
    except (ValueError, UnicodeDecodeError):
        ctx.warnings.append(f"{path} is not JSON; left as it is (it is never overwritten blindly)")
        return None
    if found:
        kinds = sorted({kind for _, kind in found})
        ctx.warnings.append(
            f"{path} holds what looks like {' and '.join(kinds)}; left as it is (value not shown). "
            "Agents should hold only the stub: remove it and let the firewall hold the real login"
        )
        return None
    if stub is None:
        # A crew that drops its stub takes it away (the CLI would go on sending its placeholders);
        # a file it never put there is someone else's.
        return _Planned(path, None, 0o600, secret=True) if stub_before else None
    return _Planned(path, plan.dump_json(stub).encode(), 0o600, secret=True)


# The parts of the manifest that name contributions; the rest (`version`, `unsettled`) is about it.
_CONTRIBUTED = ("settings", "mcpServers", "subagents", "credentials")


def _on_record(manifest: Any) -> list[dict[str, Any]]:
    """Every set of contributions the manifest says may be in the files: the last run's, and those
    of earlier runs that were killed before their files were all written."""
    if not isinstance(manifest, dict):
        return []
    unsettled = manifest.get("unsettled")
    earlier = [r for r in unsettled if isinstance(r, dict)] if isinstance(unsettled, list) else []
    return [{k: r[k] for k in _CONTRIBUTED if k in r} for r in [manifest, *earlier]]


def _plan(ctx: _Context, proxy_url: str, firewall_ca: bytes, no_proxy: Sequence[str]) -> _Plan:
    loaded, layout, name = ctx.loaded, ctx.layout, ctx.name
    crew = loaded.crew
    agent = crew.agent(name)
    persona = loaded.personas.get(name)
    if persona is None:
        raise UsageError(f"agent {name!r} has no persona directory in {loaded.root / 'agents'}")
    # Withdrawing against each record in turn withdraws whatever any of them contributed and the
    # crew no longer does; with no record, the file is merged with nothing to withdraw.
    records = _on_record(_read_json(layout.manifest)) or [{}]
    planned: list[_Planned] = []

    text = plan.claude_md(loaded.shared.claude_md, persona.claude_md, plan.team_section(crew, name))
    planned.append(_Planned(layout.claude_md, text.encode(), 0o644))

    chat = crew.matrix is not None and agent.matrix is not None
    env = _environment(loaded, name, layout, proxy_url, no_proxy)
    contributed_settings = plan.settings_contribution(
        loaded.shared.settings,
        plan.agent_hooks(ctx.command),
        plan.settings_env(env),
        plan.own_tool_rules(chat),
        bypass_permissions=agent.permission_mode is PermissionMode.bypass_permissions,
    )
    settings = _read_json_object(layout.settings)
    for record in records:
        settings = merge3(settings, record.get("settings", MISSING), contributed_settings)
    planned.append(_Planned(layout.settings, plan.dump_json(settings).encode(), 0o600))

    stub_before = any(record.get("credentials") is True for record in records)
    if (credentials := _credentials(ctx, stub_before)) is not None:
        planned.append(credentials)

    installed: list[str] = []
    for source in persona.subagents:
        planned.append(_Planned(layout.subagents / source.name, source.read_bytes(), 0o644))
        installed.append(source.name)
    stale = {n for record in records for n in record.get("subagents", []) if isinstance(n, str)} - set(installed)
    for subagent in sorted(stale):
        if (layout.subagents / subagent).is_file():
            planned.append(_Planned(layout.subagents / subagent, None, 0o644))

    token = ctx.env.get("MATRIX_ACCESS_TOKEN")
    if chat and token:
        planned.append(_Planned(layout.matrix_token, token.encode(), 0o600, secret=True))
    elif chat and not layout.matrix_token.exists():
        ctx.warnings.append(
            f"MATRIX_ACCESS_TOKEN is not set and {layout.matrix_token} does not exist: "
            "the Matrix channel cannot log in until one of them is there"
        )
    elif not chat:
        # A live secret for a channel the agent no longer has: nothing reads it, nothing should hold it.
        planned.append(_Planned(layout.matrix_token, None, 0o600, secret=True))
    if agent.setup is None:
        # The record would skip a setup command the crew adds back later; the log is its output.
        planned.append(_Planned(layout.setup_record, None, 0o600))
        planned.append(_Planned(layout.setup_log, None, 0o644, summary=True))
    servers, shadowed = plan.mcp_servers(persona.mcp_servers, chat=chat)
    ctx.warnings.extend(shadowed)
    existing_json = _read_json_object(layout.claude_json)
    trusted = [str(layout.workspace)] + [str(layout.repo_dir(r)) for r in agent.repos]
    seeded = seed_claude_json(
        existing_json if isinstance(existing_json, dict) else {},
        version=plan.CLAUDE_VERSION,
        trusted_dirs=trusted,
    )
    mcp = seeded.get("mcpServers")
    for record in records:
        mcp = merge_named(mcp, record.get("mcpServers"), servers)
    seeded["mcpServers"] = mcp
    if plan.claude_json_settled(existing_json, seeded):
        raw = _read(layout.claude_json)
        assert raw is not None
        planned.append(_Planned(layout.claude_json, raw, 0o600))
    else:
        planned.append(_Planned(layout.claude_json, plan.dump_json(seeded).encode(), 0o600))

    planned.append(_Planned(layout.gitconfig, plan.gitconfig(agent, crew.forge).encode(), 0o644))
    bundle = plan.ca_bundle(_system_bundle(), firewall_ca)
    planned.append(_Planned(layout.ca_bundle, bundle, 0o644, summary=True))
    planned.append(_Planned(layout.firewall_ca, firewall_ca, 0o644))

    contributed = {
        "settings": contributed_settings,
        "mcpServers": servers,
        "subagents": installed,
        "credentials": loaded.shared.credentials_stub is not None,
    }
    # Round-tripped through JSON so that it compares equal to the same contributions read back.
    contributed = json.loads(json.dumps(contributed))
    unsettled: list[dict[str, Any]] = []
    for record in records:
        if record and record != contributed and record not in unsettled:
            unsettled.append(record)
    final = {"version": 1, **contributed}
    return _Plan(
        planned,
        _Planned(layout.manifest, plan.dump_json(final).encode(), 0o600),
        plan.dump_json({**final, "unsettled": unsettled} if unsettled else final).encode(),
    )


def _mode(path: Path) -> int | None:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None


def _redact(text: str) -> str:
    """A diff as it may be shown: the files also hold what agent-smith never wrote (an API key the
    CLI kept in ~/.claude.json, a token someone put in settings.json `env`), and their lines show
    up as context or as changed."""
    return without_credentials(_PROXY_PASSWORD.sub(r"\1***@", text))


def _diff(item: _Planned, before: bytes | None) -> str:
    shown = str(item.path)
    if item.secret:
        return f"{shown}: contents not shown (secret)\n"
    if item.summary:
        return f"{shown}: {len(before or b'')} → {len(item.content or b'')} bytes\n"
    old = (before or b"").decode(errors="replace").splitlines(keepends=True)
    new = (item.content or b"").decode(errors="replace").splitlines(keepends=True)
    lines = difflib.unified_diff(old, new, f"a{shown}" if before is not None else "/dev/null", f"b{shown}")
    return _redact("".join(line if line.endswith("\n") else line + "\n" for line in lines))


def _changes(planned: list[_Planned]) -> list[tuple[_Planned, FileChange]]:
    out: list[tuple[_Planned, FileChange]] = []
    for item in planned:
        before = _read(item.path)
        if item.content is None:
            if before is not None:
                out.append((item, FileChange(item.path, FileAction.delete, _diff(item, before))))
            continue
        if before == item.content and _mode(item.path) == item.mode:
            continue
        action = FileAction.create if before is None else FileAction.update
        diff = _diff(item, before) if before != item.content else f"{item.path}: mode → {item.mode:o}\n"
        out.append((item, FileChange(item.path, action, diff)))
    return out


# ---- writing ------------------------------------------------------------------------------


def _check_writable(directory: Path) -> None:
    """Fail before anything is written when a directory cannot be created or written.

    The directory is made private (0700; one made before, with the umask's 0755, is narrowed):
    an agent's home holds its conversations (~/.claude/projects), its state the hooks' findings,
    its workspace the code of private repositories, none of them for the machine's other users.
    One owned by another user (a volume's root) is left as it is.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = directory.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            directory.chmod(0o700)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except FileExistsError:
        raise OperationError(f"cannot write to {directory}: it is not a directory") from None
    except OSError as exc:
        raise OperationError(f"cannot write to {directory}: {exc.strerror or exc}") from exc


def _write(item: _Planned, content: bytes | None) -> None:
    try:
        if content is None:
            item.path.unlink(missing_ok=True)
        else:
            write_atomic(item.path, content, mode=item.mode)
    except OSError as exc:
        raise OperationError(f"cannot write {item.path}: {exc.strerror or exc}") from exc


def _apply(changes: list[tuple[_Planned, FileChange]], planned: _Plan) -> None:
    """Write `changes`, which end with the manifest's when the contributions changed.

    Then the manifest first names the old and the new contributions together:
    a run killed between two files leaves some of each in them, and the next
    run, reading both, withdraws whichever the crew no longer contributes.
    """
    if any(item is planned.manifest for item, _ in changes) and len(changes) > 1:
        _write(planned.manifest, planned.interim)
    for item, _ in changes:
        _write(item, item.content)


# ---- the setup command --------------------------------------------------------------------


def _setup_key(command: str, heads: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps([command, sorted(heads.items())]).encode()).hexdigest()


def _heads(layout: plan.HomeLayout, repos: Sequence[str], env: Mapping[str, str]) -> dict[str, str]:
    return {repo: head for repo in repos if (head := head_of(layout.repo_dir(repo), env)) is not None}


def _run_setup(ctx: _Context, run_env: Mapping[str, str], dry_run: bool) -> SetupOutcome | None:
    agent = ctx.loaded.crew.agent(ctx.name)
    if agent.setup is None:
        return None
    layout = ctx.layout
    key = _setup_key(agent.setup.command, _heads(layout, agent.repos, run_env))
    record = _read_json(layout.setup_record)
    if isinstance(record, dict) and record.get("succeeded") == key:
        return SetupOutcome(False, reason="already done for this command and these checkouts")
    if dry_run:
        return SetupOutcome(False, reason="would run")
    cwd = layout.repo_dir(agent.primary) if agent.primary else layout.workspace
    cwd = cwd if cwd.is_dir() else layout.workspace
    layout.state.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("running the setup command of %s in %s", ctx.name, cwd)
    with layout.setup_log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", agent.setup.command],
            cwd=cwd,
            env=dict(run_env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=agent.setup.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise OperationError(
                f"the setup command of {ctx.name} did not finish within {agent.setup.timeout:g}s "
                f"(output in {layout.setup_log}); the home is assembled, setup runs again next time"
            ) from None
    seconds = time.monotonic() - started
    for line in layout.setup_log.read_text(errors="replace").splitlines()[-200:]:
        log.info("setup %s: %s", ctx.name, line)
    if code != 0:
        raise OperationError(
            f"the setup command of {ctx.name} failed with exit {code} (output in {layout.setup_log}); "
            "the home is assembled, setup runs again next time"
        )
    write_atomic(layout.setup_record, plan.dump_json({"succeeded": key}), mode=0o600)
    return SetupOutcome(True, seconds)


# ---- the whole assembly -------------------------------------------------------------------


def assemble(loaded: LoadedCrew, name: str, options: AssembleOptions | None = None) -> AssemblyReport:
    """Assemble `name`'s home and workspace from `loaded`; with `dry_run`, only report what would change."""
    opts = options or AssembleOptions()
    agent = loaded.crew.agent(name)
    layout = _layout(loaded, name, opts.home, opts.workspace)
    command = opts.agent_smith_command or default_agent_smith_command()
    if not Path(command).is_absolute():
        raise UsageError(f"the agent-smith command must be an absolute path, not {command!r}")
    ctx = _Context(loaded, name, layout, command, dict(os.environ if opts.env is None else opts.env))
    create = not opts.dry_run
    if create:
        for directory in (layout.home, layout.workspace, layout.state):
            _check_writable(directory)
    proxy_url = _proxy_url(loaded, name, create, ctx.env)
    planned = _plan(ctx, proxy_url, _firewall_ca(loaded, create), opts.no_proxy)
    changes = _changes([*planned.files, planned.manifest])
    if create:
        _apply(changes, planned)
        layout.subagents.mkdir(parents=True, exist_ok=True)
    run_env = {
        **_environment(loaded, name, layout, proxy_url, opts.no_proxy),
        "PATH": opts.path or ctx.env.get("PATH") or _DEFAULT_PATH,
    }
    repos: list[RepoOutcome] = []
    if opts.clone:
        paths = CrewPaths.of(loaded.crew)
        # Where `up`'s firewall (the one the clones go through) writes its reasons.
        firewall = FirewallRecords(name, FirewallState(paths.firewall).audit_log_path, paths.logs / "firewall.log")
        for repo in agent.repos:
            url = plan.clone_url(loaded.crew.forge, repo)
            try:
                outcome = sync_repo(
                    repo,
                    url,
                    layout.repo_dir(repo),
                    run_env,
                    progress=opts.progress,
                    dry_run=opts.dry_run,
                    firewall=firewall,
                )
            except OperationError as exc:
                if (down := _firewall_down(url, run_env)) is None:
                    raise
                raise OperationError(
                    f"{exc}; it goes through the egress firewall, and nothing listens on {down}: "
                    "`agent-smith up` starts it (and clones), `assemble --no-clone` leaves the repositories for then"
                ) from exc
            repos.append(outcome)
            if outcome.warning:
                ctx.warnings.append(outcome.warning)
    setup = _run_setup(ctx, run_env, opts.dry_run)
    return AssemblyReport(
        agent=name,
        home=layout.home,
        workspace=layout.workspace,
        dry_run=opts.dry_run,
        files=tuple(change for _, change in changes),
        repos=tuple(repos),
        setup=setup,
        warnings=tuple(ctx.warnings),
    )


def describe(report: AssemblyReport) -> list[str]:
    """One line per change, for people."""
    verb = {
        FileAction.create: "would create" if report.dry_run else "created",
        FileAction.update: "would update" if report.dry_run else "updated",
        FileAction.delete: "would delete" if report.dry_run else "deleted",
    }
    # Whole paths: a `~` there was read as the user's own home, not the agent's.
    lines = [f"{verb[c.action]} {c.path}" for c in report.files]
    lines += [f"{r.repo}: {r.action.value}" + (f" ({r.reason})" if r.reason else "") for r in report.repos]
    if report.setup is not None:
        if report.setup.ran:
            lines.append(f"setup command ran ({report.setup.seconds:.1f}s)")
        else:
            lines.append(f"setup command: {report.setup.reason}")
    return lines
