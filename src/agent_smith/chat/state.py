"""The channel's memory across restarts: the sync token and the rules' counters, in one JSON file.

Written atomically after each sync batch is handled, so a restart resumes
exactly where the last handled batch ended: messages sent while the agent
was down arrive once, and nothing from before is replayed.
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import asdict
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from agent_smith.chat.rules import Held, LoopGuard
from agent_smith.errors import UsageError
from agent_smith.fsutil import write_atomic

RECENT_IDS = 2000


class BrokenState(UsageError):
    """The state file is there but holds no chat state (cut short, edited by hand, another program's)."""


class _Guard(BaseModel):
    run: int = 0
    told: bool = False


class _Held(BaseModel):
    room_id: str
    room_name: str
    sender: str
    sender_name: str
    event_id: str
    body: str


class ChatState(BaseModel):
    next_batch: str | None = None
    guards: dict[str, _Guard] = Field(default_factory=dict)
    seen: list[str] = Field(default_factory=list, description="recently handled event ids, oldest first")
    own: list[str] = Field(default_factory=list, description="the agent's recent event ids, oldest first")
    held: list[_Held] = Field(default_factory=list, description="messages held in quiet hours")
    in_quiet_hours: bool = False
    incident_rooms: list[str] = Field(default_factory=list, description="rooms with an incident this quiet window")
    encrypted_noticed: list[str] = Field(default_factory=list, description="rooms the operator was told about")

    def guard(self, room_id: str) -> LoopGuard:
        found = self.guards.get(room_id)
        return LoopGuard(found.run, found.told) if found else LoopGuard()

    def set_guard(self, room_id: str, guard: LoopGuard) -> None:
        self.guards[room_id] = _Guard(run=guard.run, told=guard.told)

    def remember_seen(self, event_id: str) -> None:
        self.seen = _bounded(self.seen, event_id)

    def remember_own(self, event_id: str) -> None:
        self.own = _bounded(self.own, event_id)
        self.remember_seen(event_id)

    def hold(self, item: Held) -> None:
        self.held.append(_Held(**asdict(item)))

    def drop_held(self, room_id: str, event_id: str) -> bool:
        """Forget a held message (it was redacted); whether one was held."""
        kept = [h for h in self.held if (h.room_id, h.event_id) != (room_id, event_id)]
        dropped = len(kept) != len(self.held)
        self.held = kept
        return dropped

    def held_now(self) -> list[Held]:
        """The held messages, oldest first; they stay held until `release_held`."""
        return [Held(**h.model_dump()) for h in self.held]

    def release_held(self, count: int) -> None:
        """Forget the first `count` held messages: the agent got them in a digest."""
        self.held = self.held[count:]


def _bounded(ids: list[str], new: str) -> list[str]:
    recent = deque(ids, maxlen=RECENT_IDS)
    recent.append(new)
    return list(recent)


class StateFile:
    """``state.json`` in the agent's chat state directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "state.json"

    def load(self) -> ChatState:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ChatState()
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read the chat state: {exc.strerror}") from exc
        try:
            return ChatState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise BrokenState(f"{self.path}: not a valid chat state ({first})") from exc

    def set_aside(self) -> Path:
        """Move a broken state file out of the way, kept for a person to look at; where it went."""
        aside = self.path.with_name(self.path.name + ".broken")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot set the broken chat state aside: {exc.strerror}") from exc
        return aside

    def save(self, state: ChatState) -> None:
        write_atomic(self.path, state.model_dump_json(indent=1), mode=0o600)
