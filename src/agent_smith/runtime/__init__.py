"""Agents in tmux: the private tmux server, and how the real `claude` CLI is launched."""

from agent_smith.runtime.claude import (
    PINNED_VERSION,
    PROMPT_READY,
    ClaudeLaunch,
    PermissionMode,
    claude_launch,
    claude_version,
    find_claude,
    start_in_tmux,
)
from agent_smith.runtime.launch import AgentSpec, pane_log
from agent_smith.runtime.local import (
    CONTAINER_SESSION,
    Background,
    CrewStopped,
    ServeOptions,
    captured_log,
    check_not_running_elsewhere,
    check_startable,
    check_state_dir,
    check_state_is_its_own,
    is_running,
    options_kept,
    report_states,
    run_dir,
    selected_agents,
    start_background,
    started_with,
    stop_crew,
    supervise,
    wait_ready,
    wait_taken,
)
from agent_smith.runtime.panelog import readable
from agent_smith.runtime.policy import AgentState, Restart
from agent_smith.runtime.rundir import HeldLock, SupervisorRunning
from agent_smith.runtime.started import started_crew, where_it_runs
from agent_smith.runtime.supervisor import Supervisor
from agent_smith.runtime.tmux import Tmux, TmuxSession

__all__ = [
    "CONTAINER_SESSION",
    "PINNED_VERSION",
    "PROMPT_READY",
    "AgentSpec",
    "AgentState",
    "Background",
    "ClaudeLaunch",
    "CrewStopped",
    "HeldLock",
    "PermissionMode",
    "Restart",
    "ServeOptions",
    "Supervisor",
    "SupervisorRunning",
    "Tmux",
    "TmuxSession",
    "captured_log",
    "check_not_running_elsewhere",
    "check_startable",
    "check_state_dir",
    "check_state_is_its_own",
    "claude_launch",
    "claude_version",
    "find_claude",
    "is_running",
    "options_kept",
    "pane_log",
    "readable",
    "report_states",
    "run_dir",
    "selected_agents",
    "start_background",
    "start_in_tmux",
    "started_crew",
    "started_with",
    "stop_crew",
    "supervise",
    "wait_ready",
    "wait_taken",
    "where_it_runs",
]
