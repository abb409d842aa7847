"""agent-smith: a crew of long-lived Claude Code agents working as peers."""

__version__ = "0.1.0"
