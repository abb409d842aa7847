"""Stand-ins for the outside world the tests and the demo cannot reach (the model provider),
and the loopback Synapse they share.

Each stand-in speaks the real wire format. `SynapseServer` is no stand-in:
it runs the real Synapse homeserver on loopback.
"""

from agent_smith.standins.model_core import RequestKind
from agent_smith.standins.model_script import (
    DEFAULT_AGENT,
    DEFAULT_IDLE_TEXT,
    Script,
    ToolCall,
    Turn,
    When,
    load_script,
    parse_script,
)
from agent_smith.standins.model_server import (
    LoggedRequest,
    ModelServer,
    ModelServerThread,
    read_request_log,
    serve,
)
from agent_smith.standins.synapse import MatrixUser, SynapseServer

__all__ = [
    "DEFAULT_AGENT",
    "DEFAULT_IDLE_TEXT",
    "LoggedRequest",
    "MatrixUser",
    "ModelServer",
    "ModelServerThread",
    "RequestKind",
    "Script",
    "SynapseServer",
    "ToolCall",
    "Turn",
    "When",
    "load_script",
    "parse_script",
    "read_request_log",
    "serve",
]
