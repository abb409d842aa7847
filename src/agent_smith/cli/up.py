"""`agent-smith up`: what it does, for the Typer verb and for the plain-argv fast path.

With one agent, everything `up` does before it forks the supervisor is time
the agent's claude has not started yet. The CLI framework (Typer, Rich) is
~0.09 s of imports there, so a plain `up` command line (`parse_up`) is served
without it (`agent_smith.__main__`), and Rich loads only once the supervisor
is forked, while it starts the agents. `--help`, global options before `up`
and anything unusual take the full CLI, which runs the same `bring_up`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agent_smith.crew import LoadedCrew, load_crew
from agent_smith.egress import make_ca_ahead
from agent_smith.errors import AgentSmithError, OperationError
from agent_smith.logs import LogFormat, stderr_progress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agent_smith.cli.output import AppContext
    from agent_smith.runtime import HeldLock, ServeOptions

__all__ = ["UpRequest", "bring_up", "parse_up", "run_up"]


@dataclass(frozen=True)
class UpRequest:
    crew: Path | None = None
    agents: tuple[str, ...] = ()
    foreground: bool = False
    firewall: bool = True
    no_proxy: tuple[str, ...] = ()
    timeout: float = 180.0


def parse_up(argv: Sequence[str]) -> UpRequest | None:
    """The request of `up`'s arguments (after `up`); None for anything the full CLI should read:
    help, an option it does not know, a value that is missing or not a number (pure)."""
    request = UpRequest()
    agents: list[str] = []
    no_proxy: list[str] = []
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--foreground":
            request = replace(request, foreground=True)
        elif arg in ("--firewall", "--no-firewall"):
            request = replace(request, firewall=arg == "--firewall")
        elif not arg.startswith("-"):
            agents.append(arg)
        else:
            key, sep, value = arg.partition("=")
            if key not in ("--crew", "--no-proxy", "--timeout") or not (sep or rest):
                return None
            value = value if sep else rest.pop(0)
            if key == "--crew":
                request = replace(request, crew=Path(value))
            elif key == "--no-proxy":
                no_proxy.append(value)
            else:
                try:
                    timeout = float(value)
                except ValueError:
                    return None
                if not timeout > 0:
                    return None
                request = replace(request, timeout=timeout)
    return replace(request, agents=tuple(agents), no_proxy=tuple(no_proxy))


def progress(out: AppContext) -> Callable[[str, str], None]:
    """Each agent's state as `up` and `restart` wait for it, one line on stderr per change."""
    from rich.markup import escape

    def show(name: str, state: str) -> None:
        if out.log_format is LogFormat.json:
            out.log(logging.INFO, f"{name}: {state}", agent=name, state=state)
            return
        colour = {"ready": "green", "idle": "green", "working": "green", "crash-looping": "red"}.get(state, "yellow")
        out.err.print(f"{escape(name)}: [{colour}]{escape(state)}[/]", highlight=False)

    return show


def bring_up(request: UpRequest, console: Callable[[], AppContext]) -> int | None:
    """Start the crew (or the named agents) and wait until they are ready.

    `console` makes the output's consoles; it is first called once the
    supervisor runs (or something failed). Returns the supervisor's pid when
    it was forked (this process may then leave at once), else None.
    """
    loaded = load_crew(request.crew)
    # A first `up` makes the firewall's CA (~45 ms, cryptography's import mostly) in a child
    # forked before this process imports the runtime (~40 ms), so the supervisor it forks,
    # assembling its agents, finds it made instead of waiting for it.
    ca_maker = make_ca_ahead(loaded.crew) if request.firewall and not request.foreground else None
    try:
        return _bring_up(request, loaded, console)
    finally:
        if ca_maker is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(ca_maker, 0)


def _bring_up(request: UpRequest, loaded: LoadedCrew, console: Callable[[], AppContext]) -> int | None:
    from agent_smith.runtime import (
        ServeOptions,
        check_not_running_elsewhere,
        check_startable,
        check_state_dir,
        check_state_is_its_own,
        run_dir,
        selected_agents,
        start_background,
        wait_ready,
    )

    made: list[AppContext] = []

    def output() -> AppContext:
        if not made:
            made.append(console())
            for warning in loaded.warnings:
                made[0].warn(warning)
        return made[0]

    try:
        names = tuple(a.name for a in selected_agents(loaded.crew, request.agents))
        options = ServeOptions(
            agents=names if request.agents else (), firewall=request.firewall, no_proxy=request.no_proxy
        )
        rd = run_dir(loaded.crew)
        check_state_dir(loaded.crew)
        check_not_running_elsewhere(loaded.crew)
        check_state_is_its_own(loaded.crew)
        lock = _lock_or_join(request, loaded, options, names, output)
        if lock is None:
            return None
        handed = False
        try:
            binary = check_startable(loaded, options, services=True)
            if request.firewall and loaded.crew.egress.claude_login.enabled:
                from agent_smith.egress import claude_store_for

                if not claude_store_for(loaded.crew).path.is_file():
                    # Said where it is seen: the firewall logs it too, in a file nobody reads at first.
                    output().warn(
                        "egress.claude_login is enabled but no login was imported: the agents' model requests go "
                        "out with the stub token (`agent-smith firewall import-claude-login FILE`, or enabled: false)"
                    )
            # The lock is the supervisor's from here: a Ctrl-C just after the fork must not take its
            # pid file. Should the fork fail, the lock ends with this process.
            handed = True
            if request.foreground:
                _serve_here(loaded, options, names, binary, output, lock)
                return None
            child = start_background(loaded, options, binary, lock)
        finally:
            if not handed:
                rd.release(lock)
    except BaseException:
        output()
        raise
    out = output()
    try:
        status = wait_ready(loaded.crew, names, timeout=request.timeout, child=child, progress=progress(out))
    finally:
        child.close()
    metrics = status.get("supervisor", {}).get("metrics")
    out.console.print(f"[green]up[/]: {len(names)} agent(s) ready; supervisor pid {child.pid}, metrics {metrics}")
    for service, listening in status.get("services", {}).items():
        if not listening:
            out.console.print(f"{service}: starting (see `agent-smith status`)")
    return child.pid


def _lock_or_join(
    request: UpRequest,
    loaded: LoadedCrew,
    options: ServeOptions,
    names: Sequence[str],
    output: Callable[[], AppContext],
) -> HeldLock | None:
    """The supervisor lock, for this `up` to start the crew; or None once the agents `names`
    serve under the supervisor that holds it (this `up` joined it, as one run later would)."""
    from agent_smith.runtime import SupervisorRunning, options_kept, run_dir, started_with, wait_ready, wait_taken

    rd = run_dir(loaded.crew)
    deadline = time.monotonic() + request.timeout
    while True:
        try:
            return rd.acquire()
        except SupervisorRunning:
            pass
        # Another `up` may have taken the lock a moment ago: what it runs is known once it said so.
        status = rd.supervisor_status(timeout=max(0.0, deadline - time.monotonic()))
        if status is not None:
            break
        if time.monotonic() >= deadline:
            raise OperationError(
                f"the crew's lock ({rd.lock}) stayed taken, by no supervisor, for {request.timeout:g}s"
            )
    rd.check_managed(names, status)
    running = status["supervisor"].get("options")
    kept = options_kept(running, started_with(options)) if isinstance(running, dict) else None
    if kept is not None:
        output().warn(kept)
    asked = [rd.request("start", name) for name in names]
    # Until it takes them, what status.json says is from before: ready there may be a
    # supervisor on its way out (a `down` meanwhile), which never will take them.
    wait_taken(rd, asked, timeout=max(0.0, deadline - time.monotonic()))
    wait_ready(
        loaded.crew,
        names,
        timeout=max(0.0, deadline - time.monotonic()),
        child=None,
        progress=progress(output()),
        asked=[path.stem for path in asked],
    )
    output().console.print(f"[green]up[/]: {', '.join(names)} (supervisor already running)")
    return None


def _serve_here(
    loaded: LoadedCrew,
    options: ServeOptions,
    names: Sequence[str],
    binary: Path,
    output: Callable[[], AppContext],
    lock: HeldLock,
) -> None:
    """`up --foreground`: supervise in this process, showing each agent's state as it changes."""
    from agent_smith.runtime import report_states, run_dir, supervise

    rd = run_dir(loaded.crew)
    show, shown = progress(output()), dict[str, str]()

    def on_status() -> None:
        report_states(rd.read_status() or {}, names, shown, show)

    asyncio.run(
        supervise(
            loaded,
            options,
            binary=binary,
            services=True,
            progress=stderr_progress(output().log_format),
            on_status=on_status,
            lock=lock,
        )
    )


def run_up(request: UpRequest, env: Mapping[str, str]) -> int | None:
    """`up` without the CLI framework; its exit code, or None when the full CLI should run it
    (a log format or level in the environment it would refuse)."""
    from agent_smith.logs import LEVELS, configure

    log_format = env.get("AGENT_SMITH_LOG_FORMAT", LogFormat.text.value)
    log_level = env.get("AGENT_SMITH_LOG_LEVEL", "warning")
    if log_format not in {f.value for f in LogFormat} or log_level.lower() not in LEVELS:
        return None
    configure(LogFormat(log_format), log_level)

    def console() -> AppContext:
        from agent_smith.cli.output import AppContext

        return AppContext(log_format=LogFormat(log_format))

    try:
        bring_up(request, console)
    except AgentSmithError as exc:
        console().error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
