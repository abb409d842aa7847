"""The channel's sync loop is kept running: a failure that escapes it is logged and it starts again."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any, cast

import pytest

from agent_smith.chat import server
from agent_smith.chat.channel import ChatChannel


class FailsOnce:
    def __init__(self) -> None:
        self.config = SimpleNamespace(agent="devbot")
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise TypeError("a bug in the loop")
        stop.set()


def test_a_sync_loop_that_fails_is_logged_and_started_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server, "RESTART_DELAY", 0.01)
    channel = FailsOnce()

    async def scenario() -> None:
        await asyncio.wait_for(server.keep_syncing(cast(ChatChannel, channel), asyncio.Event()), timeout=5)

    with caplog.at_level(logging.ERROR, logger=server.__name__):
        asyncio.run(scenario())
    assert channel.runs == 2
    [record] = caplog.records
    assert record.getMessage() == "agent devbot: the Matrix channel failed; starting it again in 0.01s"
    assert isinstance(cast(Any, record.exc_info)[1], TypeError)
