"""A publisher process for the kill test: publishes until killed, one line per acknowledged event.

    python -m tests.events.burst_child NATS_URL OUTBOX_DIR

Each line is ``stored <id>`` or ``queued <id>``, written only after `publish` returned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agent_smith.crew import EventLog
from agent_smith.events import Publisher, TaskDone


async def main(url: str, outbox: Path) -> None:
    async with Publisher(EventLog(), outbox, url, ack_timeout=0.5, reconnect_wait=0.05) as publisher:
        await publisher.wait_connected(10)
        print("ready", flush=True)

        async def caller(k: int) -> None:
            n = 0
            while True:
                n += 1
                receipt = await publisher.publish(TaskDone(agent=f"burst-{k}", summary=f"event {n}"))
                sys.stdout.write(f"{'stored' if receipt.stored else 'queued'} {receipt.event_id}\n")
                sys.stdout.flush()

        await asyncio.gather(*(caller(k) for k in range(20)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
