"""The supervisor's MCP endpoint for the chat bench, in a process of its own as under `up`.

devbot's Matrix channel hosted as `up` hosts it (`ChannelHost`, at /mcp/matrix),
and its event tools with the prompt context its UserPromptSubmit hook calls
(at /mcp), on the supervisor's own HTTP endpoint. Logs JSON lines to LOG (the
bench reads the channel's "notified" lines from it); prints the endpoint's
URL and devbot's token as one JSON line once it serves; serves until SIGTERM.

    python bench/chat/endpoint.py CREW LOG HOME   (HOME: devbot's home)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from agent_smith.chat.config import TOKEN_FILE, chat_config, read_token
from agent_smith.chat.server import ChannelHost
from agent_smith.crew import CrewPaths, load_crew
from agent_smith.events import Publisher, event_servers
from agent_smith.hooks import prompt_tool
from agent_smith.logs import LogFormat, configure
from agent_smith.runtime import Supervisor, Tmux
from agent_smith.runtime.endpoint import CHAT_PATH, McpEndpoint, http_socket
from agent_smith.runtime.rundir import RunDir

AGENT = "devbot"


async def serve(crew_dir: Path, home: Path) -> None:
    crew = load_crew(crew_dir, env={}).crew
    paths = CrewPaths.of(crew)
    run_dir = RunDir(paths.root / "runtime")
    run_dir.ensure()
    sock = http_socket("127.0.0.1:0", run_dir)
    endpoint = McpEndpoint.at(sock, paths)
    supervisor = Supervisor([], Tmux(f"chat-bench-unused-{os.getpid()}"), run_dir)
    await supervisor.serve_http(sock)
    token = endpoint.token_for(AGENT)
    channels = ChannelHost({AGENT: chat_config(crew, AGENT, read_token({}, paths.agent_state(AGENT) / TOKEN_FILE))})
    channels.start()
    supervisor.serve_mcp({token: channels.servers[AGENT]}, CHAT_PATH)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    # The environment a prompt hook of devbot's would see: the context is built from it.
    agent_env = {"AGENT_NAME": AGENT, "AGENT_SMITH_CREW": str(crew_dir), "HOME": str(home)}
    # No NATS: a published event would wait in the outbox (the bench publishes none).
    async with Publisher(crew.events, paths.events, None, log_outages=False) as publisher:
        tools = {AGENT: [prompt_tool(agent_env)]}
        supervisor.serve_mcp(event_servers({AGENT: token}, publisher, crew.events, None, tools))
        print(json.dumps({"url": endpoint.url, "token": token}), flush=True)
        await stop.wait()
    await channels.close()
    await supervisor.close_http()


def main() -> None:
    crew_dir, log, home = (Path(a) for a in sys.argv[1:4])
    with log.open("a") as stream:
        configure(LogFormat.json, "info", stream)
        asyncio.run(serve(crew_dir, home))


if __name__ == "__main__":
    main()
