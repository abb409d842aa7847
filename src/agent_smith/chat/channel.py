"""The channel: homeserver events in, rule decisions, channel notifications out, and the agent's tools.

`ChatChannel` owns the state and applies the pure decisions of `rules`;
`MatrixLink` does the talking; the MCP server (`server.py`) carries the
notifications to Claude Code and the tool calls back. Time is injected so
quiet hours are tested without waiting for the night.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from agent_smith.chat import history, render
from agent_smith.chat.config import ChatConfig
from agent_smith.chat.events import (
    ENCRYPTED,
    ROOM_MESSAGE,
    mentioned_ids,
    parse_message,
    redacted,
    relation,
    replaced_by,
)
from agent_smith.chat.matrix import (
    AgentLog,
    MatrixLink,
    NotFound,
    RateLimited,
    SinceRefused,
    SyncBatch,
    TokenRefused,
    wait_or_stop,
)
from agent_smith.chat.rules import Decision, Held, Message, Verdict, decide, observe, render_digest
from agent_smith.chat.state import BrokenState, ChatState, StateFile
from agent_smith.errors import OperationError

log = logging.getLogger(__name__)

Notify = Callable[[str, Mapping[str, str]], Awaitable[None]]
POLL_MS = 30_000
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
TOKEN_RETRY = 300.0
HISTORY_MAX = 100
# Pages of `limit` events the history tool reads at most to find `limit` messages among edits.
HISTORY_PAGES = 5
JOIN_RETRY_FIRST = 5.0
JOIN_RETRY_MAX = 300.0
JOIN_MISSING_FIRST = 300.0
JOIN_MISSING_MAX = 3600.0


@dataclass
class _JoinTry:
    next_at: float = 0.0
    failures: int = 0
    said: str | None = None


def join_retry_delay(failures: int, *, missing: bool) -> float:
    """Seconds before joining a configured room again after `failures` failed attempts.

    An alias or room the homeserver does not know (404) is a configuration
    mistake a person has to mend: tried rarely. Anything else may pass soon.
    """
    first, most = (JOIN_MISSING_FIRST, JOIN_MISSING_MAX) if missing else (JOIN_RETRY_FIRST, JOIN_RETRY_MAX)
    return float(min(most, first * 2 ** min(failures - 1, 32)))


class Refused(Exception):
    """A tool call the rules refuse, or one the homeserver failed: the model reads the message."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ChatChannel:
    def __init__(
        self,
        config: ChatConfig,
        link: MatrixLink,
        notify: Notify,
        *,
        clock: Callable[[], datetime] = _utcnow,
        poll_ms: int = POLL_MS,
    ) -> None:
        self.config = config
        self.link = link
        self.log = AgentLog(log, {"agent": config.agent})
        # Set when the agent was given a new access token: a refused one is tried again at once.
        self._renewed = asyncio.Event()
        self._notify = notify
        self._clock = clock
        self._poll_ms = poll_ms
        self._store = StateFile(config.state_dir)
        self.state: ChatState = self._load_state()
        # Configured rooms not joined yet: when to try each again, its failures, and the last one said.
        self._pending_joins: dict[str, _JoinTry] = {room: _JoinTry() for room in config.rooms}
        # Rooms with a reply being sent (how many): the echoes of its parts are counted with it.
        self._replying: dict[str, int] = {}
        # One reply at a time per room, from the loop guard's check to its count: Claude Code may
        # run tool calls in parallel, and two replies checked before either was counted would both
        # pass the guard. Other rooms are not held up. Each room's lock, and how many calls hold or
        # await it (a lock nobody needs is dropped: the model may name any room id).
        self._reply_turns: dict[str, tuple[asyncio.Lock, int]] = {}
        self.synced = asyncio.Event()

    @property
    def me(self) -> str:
        return self.config.roster.me.user_id

    def save(self) -> None:
        self._store.save(self.state)

    def _load_state(self) -> ChatState:
        """The saved state; a broken one is set aside and the channel starts from now.

        Refusing to start would leave the agent deaf (and, under `up`, take the crew down
        with it) for a file a person can do nothing better with than move it away. Starting
        without a token, the first sync only sets the starting point: the rooms' past is not
        replayed as new work.
        """
        try:
            return self._store.load()
        except BrokenState as exc:
            aside = self._store.set_aside()
            self.log.error(
                "%s; set aside as %s, starting from now (what was said while the channel was down, and "
                "messages held for quiet hours, are only in the rooms' history)",
                exc,
                aside.name,
            )
            return ChatState()

    # ---- the sync loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Sync until `stop` is set; a failing homeserver means backoff and retry, never a crash."""
        full_state = True
        failures = 0
        refused = False
        said: str | None = None
        while not stop.is_set():
            await self._join_pending()
            try:
                batch = await self.link.sync(
                    self.state.next_batch, timeout_ms=0 if full_state else self._poll_ms, full_state=full_state
                )
                # Fetched before anything is handled: a failure retries the whole batch from the same token.
                missed = await self._missed(batch)
            except TokenRefused as exc:
                # No retry soon mends it: only a valid token, which takes a restart. Said once, plainly.
                if not refused:
                    self.log.error(
                        "%s (the homeserver refused its Matrix access token: give the agent a valid one and "
                        "restart it; trying again every %gs meanwhile)",
                        exc,
                        TOKEN_RETRY,
                    )
                refused = True
                # The digest goes to the agent, not to the homeserver: it is not held up by the sync.
                await self.tick()
                if await self._until_renewed(stop):
                    return
                continue
            except OperationError as exc:
                if isinstance(exc, SinceRefused) and await self._start_afresh(exc):
                    continue
                failures += 1
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (failures - 1)) * random.uniform(0.8, 1.2)
                if isinstance(exc, RateLimited):
                    # Longer than a call waits, but the homeserver's word all the same: no sync before.
                    delay = max(delay, exc.wait)
                # Said once, and again when what fails changes: a homeserver down for a day is one
                # line (and one when it is back), not one per retry.
                if str(exc) != said:
                    said = str(exc)
                    self.log.warning("%s; retrying with backoff (every %gs at most) until it answers", exc, BACKOFF_MAX)
                # Quiet hours may end while the homeserver is away: the digest goes to the agent, not to
                # the homeserver, so it goes out at the next retry, not once a sync succeeds again.
                await self.tick()
                if await wait_or_stop(delay, stop):
                    return
                continue
            if failures:
                self.log.warning(
                    "homeserver %s reachable again after %d failed sync(s)", self.link.homeserver, failures
                )
            if refused:
                self.log.warning("homeserver %s takes its access token again", self.link.homeserver)
            failures, refused, said = 0, False, None
            await self.handle(batch, missed)
            full_state = False
            await self.tick()
            self.synced.set()

    async def _start_afresh(self, refused: SinceRefused) -> bool:
        """Whether the saved sync token was what the homeserver refused, and the channel starts from now.

        A sync without a token is tried: taken, the token was never this homeserver's
        (it was moved, or its database reset), and no retry would ever mend it. What
        was said while the channel was down cannot be told from the past then: it is
        left to the history tool, and the line says so.
        """
        try:
            fresh = await self.link.sync(None, timeout_ms=0, full_state=True)
        except OperationError:
            return False
        self.log.error(
            "%s (the homeserver refuses the saved sync token: starting from now; what was said while the "
            "channel was down is only in the rooms' history)",
            refused,
        )
        self.state.next_batch = None
        await self.handle(fresh)
        return True

    def renew_token(self, access_token: str) -> None:
        """Use `access_token` from now on (the agent is restarted, its token file perhaps mended);
        a sync waiting after a refused token tries it at once."""
        if access_token == self.config.access_token:
            return
        self.config = replace(self.config, access_token=access_token)
        self.link.use_token(access_token)
        self._renewed.set()

    async def _until_renewed(self, stop: asyncio.Event) -> bool:
        """Wait TOKEN_RETRY, or until a new token or `stop`; True when stopped."""
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._renewed.wait())]
        try:
            await asyncio.wait(waits, timeout=TOKEN_RETRY, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        self._renewed.clear()
        return stop.is_set()

    async def _join_pending(self) -> None:
        now = time.monotonic()
        for room, attempt in list(self._pending_joins.items()):
            if now < attempt.next_at:
                continue
            try:
                await self.link.join(room)
            except TokenRefused:
                return  # The sync says it, once.
            except OperationError as exc:
                attempt.failures += 1
                delay = join_retry_delay(attempt.failures, missing=isinstance(exc, NotFound))
                attempt.next_at = now + delay
                # Said once per room, until what goes wrong changes: not on every sync.
                if str(exc) != attempt.said:
                    attempt.said = str(exc)
                    self.log.warning("cannot join %s yet: %s; trying again in %gs", room, exc, delay)
                continue
            if attempt.failures:
                self.log.info("joined %s after %d failed attempt(s)", room, attempt.failures)
            del self._pending_joins[room]

    async def _missed(self, batch: SyncBatch) -> list[tuple[str, Mapping[str, Any]]]:
        """The events of the batch's gaps (rooms whose timeline its limit cut short), oldest first."""
        missed: list[tuple[str, Mapping[str, Any]]] = []
        for room_id, start in batch.gaps:
            if start is None or batch.since is None:
                self.log.warning(
                    "room %s had more than a sync's worth of new events and the homeserver named no way to "
                    "fetch them; older ones are only in history",
                    room_id,
                )
                continue
            events = await self.link.missed(room_id, start, batch.since)
            self.log.info("room %s: fetched %d event(s) the sync left out", room_id, len(events))
            missed.extend((room_id, event) for event in events)
        return missed

    async def handle(self, batch: SyncBatch, missed: Sequence[tuple[str, Mapping[str, Any]]] = ()) -> None:
        """Decide on every new event of one sync answer, then persist the token with the counters.

        `missed`: the events its gaps left out, handled first (rooms are independent, and within one
        room they came before its timeline). The very first sync (no saved token) only sets the
        starting point: what was said before the agent first started is history, not work.
        """
        replay = self.state.next_batch is not None
        seen = set(self.state.seen)
        for room_id, inviter in batch.invites:
            await self._invited(room_id, inviter)
        for room_id, event in (*missed, *batch.events):
            event_id = event.get("event_id")
            if not isinstance(event_id, str) or event_id in seen:
                continue
            seen.add(event_id)
            self.state.remember_seen(event_id)
            if replay:
                await self._event(room_id, event)
        self.state.next_batch = batch.next_batch
        self.save()

    async def _invited(self, room_id: str, inviter: str) -> None:
        if inviter not in self.config.roster.heard:
            self.log.warning("ignored an invite to %s from %s: not on the allowlist", room_id, inviter)
            return
        try:
            await self.link.join(room_id)
        except OperationError as exc:
            self.log.warning("cannot accept the invite to %s from %s: %s", room_id, inviter, exc)

    async def _replaced(self, room_id: str, successor: str, sender: str) -> None:
        """A room upgraded: nothing more is said in it, so the agent follows to the new one, as a
        person's client offers to; when the homeserver does not let it in, a person is told."""
        if sender not in self.config.roster.heard:
            self.log.warning(
                "room %s says %s replaces it, by %s: not on the allowlist, not followed", room_id, successor, sender
            )
            return
        configured = "; crew.yaml names the old room: name the new one" if room_id in self.config.rooms else ""
        try:
            await self.link.join(successor)
        except OperationError as exc:
            self.log.warning(
                "room %s was replaced by %s (upgraded by %s) and the agent cannot join it: %s; invite it there%s",
                room_id,
                successor,
                sender,
                exc,
                configured,
            )
            return
        self.log.warning(
            "room %s was replaced by %s (upgraded by %s): joined it%s", room_id, successor, sender, configured
        )

    async def _event(self, room_id: str, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        if kind == ENCRYPTED:
            await self._encrypted(room_id, str(event.get("sender", "")))
            return
        target = redacted(event)
        if target is not None:
            await self._redacted(room_id, target, event.get("sender"))
            return
        successor = replaced_by(event)
        if successor is not None:
            await self._replaced(room_id, successor, str(event.get("sender", "")))
            return
        if kind != ROOM_MESSAGE:
            return
        message = parse_message(room_id, event)
        if message is None:
            return
        message = await self._resolve(message)
        guard = self.state.guard(room_id)
        decision = decide(
            self.config.roster,
            message,
            guard,
            limit=self.config.max_agent_messages_in_a_row,
            quiet=self.config.quiet_hours,
            now=self._clock(),
        )
        if not message.is_edit and not self._counted_at_send(message):
            part = message.part_of is not None
            self.state.set_guard(room_id, observe(guard, self.config.roster, message.sender, part=part))
        self.log.info(
            "%s %s from %s in %s: %s",
            decision.verdict.value,
            message.event_id,
            message.sender,
            room_id,
            decision.reason.value,
            extra={"room_id": room_id, "event_id": message.event_id, "verdict": decision.verdict.value},
        )
        if decision.verdict is Verdict.WAKE:
            await self._wake(message, decision)
        elif decision.verdict is Verdict.HOLD:
            self.state.hold(
                Held(
                    room_id,
                    self.link.room_name(room_id),
                    message.sender,
                    self.link.member_name(room_id, message.sender),
                    message.event_id,
                    message.body,
                )
            )

    async def _redacted(self, room_id: str, event_id: str, redactor: object) -> None:
        """A held message its sender (or a moderator) removed is not delivered in the digest."""
        held = next((h for h in self.state.held if (h.room_id, h.event_id) == (room_id, event_id)), None)
        if held is None:
            return
        if redactor != held.sender:
            # A homeserver also sends redactions it does not apply (by one without the power to
            # redact): the event, as it is now, says whether this one was.
            try:
                content = (await self.link.get_event(room_id, event_id)).get("content")
            except OperationError as exc:
                self.log.warning("cannot tell whether held %s was removed: %s", event_id, exc)
                return
            if content:
                return
        self.state.drop_held(room_id, event_id)
        self.log.info("held %s was removed: left out of the digest", event_id, extra={"event_id": event_id})

    def _counted_at_send(self, message: Message) -> bool:
        """Whether the loop guard counted this message of the agent's when the channel sent it.

        The agent's messages sent elsewhere (a hook's `post_notice`) are counted by their echo. A
        reply is counted when sent, once however many parts it has; the echo of a part may come
        while the later parts are still being sent, before the reply is remembered as the agent's.
        """
        if message.sender != self.me:
            return False
        return message.event_id in self.state.own or self._replying.get(message.room_id, 0) > 0

    async def _resolve(self, message: Message) -> Message:
        """Fill in who wrote the replied-to and thread-root events, when the rules need it."""
        if message.sender == self.me or message.sender not in self.config.roster.heard:
            return message
        own = set(self.state.own)
        reply_sender = await self._sender_of(message.room_id, message.reply_to, own)
        root_sender = await self._sender_of(message.room_id, message.thread_id, own)
        return replace(message, reply_to_sender=reply_sender, thread_root_sender=root_sender)

    async def _sender_of(self, room_id: str, event_id: str | None, own: set[str]) -> str | None:
        """Who wrote `event_id`, as far as the homeserver can tell (None when it cannot)."""
        if event_id is None:
            return None
        if event_id in own:
            return self.me
        try:
            sender = (await self.link.get_event(room_id, event_id)).get("sender")
        except OperationError as exc:
            self.log.warning("cannot tell who wrote %s: %s", event_id, exc)
            return None
        return sender if isinstance(sender, str) else None

    async def _event_in(self, room_id: str, event_id: str, what: str) -> Mapping[str, Any]:
        """The event a tool call names; refused when the room has no such event."""
        try:
            return await self.link.get_event(room_id, event_id)
        except NotFound as exc:
            raise Refused(f"{what} refused: {event_id} is no event of {room_id} ({exc})") from exc
        except OperationError as exc:
            raise Refused(f"{what} failed: cannot look up {event_id}: {exc}") from exc

    async def _wake(self, message: Message, decision: Decision) -> None:
        quiet = self.config.quiet_hours
        in_window = decision.incident and quiet is not None and quiet.contains(self._clock())
        if in_window and message.room_id not in self.state.incident_rooms:
            self.state.incident_rooms.append(message.room_id)
        meta = {
            "room_id": message.room_id,
            "room_name": self.link.room_name(message.room_id),
            "sender": message.sender,
            "sender_name": self.link.member_name(message.room_id, message.sender),
            "event_id": message.event_id,
        }
        if message.thread_id is not None:
            meta["thread_id"] = message.thread_id
        if decision.incident:
            meta["incident"] = "true"
        # The agent first, the 👀 after: the acknowledgement must not delay the work.
        await self._notify(message.body, meta)
        # Logged before the save below: its time is when the notification was written (the bench reads it).
        self.log.info(
            "notified the agent of %s", message.event_id, extra={"event_id": message.event_id, "notified": True}
        )
        # Saved at once (the event is in `seen`): Claude Code may stop this server at any moment,
        # and a restart must not deliver the message a second time.
        self.save()
        if self.config.ack_reaction:
            try:
                await self.link.send(
                    message.room_id, "m.reaction", render.reaction_content(message.event_id, self.config.ack_reaction)
                )
            except OperationError as exc:
                self.log.warning("cannot acknowledge %s: %s", message.event_id, exc)

    async def _encrypted(self, room_id: str, sender: str) -> None:
        """Tell the operators once per room that the agent cannot read it, instead of staying silent."""
        roster = self.config.roster
        if sender == self.me or sender not in roster.heard or room_id in self.state.encrypted_noticed:
            return
        operators = sorted(roster.operators)
        who = " ".join(operators) if operators else "operators"
        text = (
            f"{who}: {self.config.agent} cannot read this encrypted room (no end-to-end encryption); "
            "write to it in an unencrypted room."
        )
        try:
            event_id = await self.link.send(
                room_id, "m.room.message", render.message_content(text, mention_ids=operators)
            )
        except OperationError as exc:
            # Not recorded: the next encrypted message tries again.
            self.log.warning("cannot tell the operators about encrypted room %s: %s", room_id, exc)
            return
        self.state.encrypted_noticed.append(room_id)
        self._count_sent(room_id, [event_id])
        self.log.warning("room %s is encrypted: told the operators", room_id)

    async def tick(self) -> None:
        """Quiet hours bookkeeping: when the window ends, one digest of what was held."""
        window = self.config.quiet_hours
        quiet = window is not None and window.contains(self._clock())
        if quiet and not self.state.in_quiet_hours:
            self.state.in_quiet_hours = True
            self.save()
        elif not quiet and (self.state.in_quiet_hours or self.state.held):
            # Held with the window not yet noted too: its end passed between their decision and this
            # tick (its first batch came at its last moment). They are due now, not after another night.
            held = self.state.held_now()
            if held:
                # Released only once the agent has them: a notification that fails (or a stop
                # meanwhile) leaves them held for the next tick's digest, never dropped.
                await self._notify(render_digest(held, window), {"kind": "quiet_hours_digest"})
            self.state.release_held(len(held))
            self.state.in_quiet_hours = False
            self.state.incident_rooms = []
            self.save()

    # ---- the agent's tools --------------------------------------------------------------

    def _check_quiet(self, room_id: str, what: str) -> None:
        window = self.config.quiet_hours
        if window is None or not window.contains(self._clock()) or room_id in self.state.incident_rooms:
            return
        raise Refused(
            f"{what} refused: quiet hours ({window.start:%H:%M}-{window.end:%H:%M} {window.timezone}); "
            "only incidents are answered now, and you will get a digest when they end"
        )

    async def reply(
        self, room_id: str, text: str, reply_to: str | None = None, thread_id: str | None = None
    ) -> dict[str, Any]:
        lock, users = self._reply_turns.get(room_id, (asyncio.Lock(), 0))
        self._reply_turns[room_id] = (lock, users + 1)
        try:
            async with lock:
                return await self._reply(room_id, text, reply_to, thread_id)
        finally:
            lock, users = self._reply_turns[room_id]
            if users == 1:
                del self._reply_turns[room_id]
            else:
                self._reply_turns[room_id] = (lock, users - 1)

    async def _reply(self, room_id: str, text: str, reply_to: str | None, thread_id: str | None) -> dict[str, Any]:
        """One reply, its room's turn held: the guard's check and its count see no other reply between."""
        self._check_quiet(room_id, "reply")
        guard = self.state.guard(room_id)
        limit = self.config.max_agent_messages_in_a_row
        if guard.blocks(limit):
            first = not guard.told
            self.state.set_guard(room_id, replace(guard, told=True))
            self.save()
            raise Refused(
                f"reply refused by the loop guard: {guard.run} agent messages in a row in {room_id} without a "
                f"human (the limit is {limit}). Do not retry; wait until a person writes in this room."
                + (" Further agent messages there will not wake you until then." if first else "")
            )
        mention_ids = self._named_in(room_id, text)
        if reply_to is None and thread_id is not None:
            anchor = await self._event_in(room_id, thread_id, "reply")
            if _thread_of(anchor) is not None:
                # No thread root but a message in a thread (the homeserver refuses it as a root):
                # the model named the message it answers, which is answered in its thread below.
                reply_to = thread_id
        if reply_to is not None:
            replied = await self._event_in(room_id, reply_to, "reply")
            target = replied.get("sender")
            if isinstance(target, str) and target != self.me:
                mention_ids.add(target)
            # The spec: a reply to a message in a thread is a reply in that thread, whatever thread_id said.
            thread_id = _thread_of(replied) or thread_id
        latest = await self._thread_latest(room_id, thread_id) if thread_id is not None and reply_to is None else None
        try:
            # Up to ~0.8 s for the longest replies: off the loop, which serves every agent's channel
            # under `up` (and this agent's pings and messages meanwhile).
            contents = await asyncio.to_thread(
                render.message_contents,
                text,
                reply_to=reply_to,
                thread_id=thread_id,
                latest=latest,
                mention_ids=mention_ids,
            )
        except render.TooLong as exc:
            raise Refused(f"reply refused: {exc}") from exc
        event_ids: list[str] = []
        self._replying[room_id] = self._replying.get(room_id, 0) + 1
        try:
            for content in contents:
                try:
                    if event_ids:
                        content = render.later_part(content, event_ids[0], event_ids[-1])
                    event_id = await self.link.send(room_id, "m.room.message", content)
                except OperationError as exc:
                    if event_ids:
                        self._count_sent(room_id, event_ids)
                    raise Refused(f"reply failed after {len(event_ids)} of {len(contents)} part(s): {exc}") from exc
                event_ids.append(event_id)
            self._count_sent(room_id, event_ids)
        finally:
            self._replying[room_id] -= 1
        return {"event_id": event_ids[0], "event_ids": event_ids} if len(event_ids) > 1 else {"event_id": event_ids[0]}

    async def _thread_latest(self, room_id: str, root: str) -> str | None:
        """The thread's latest message, for the fallback of a message in it that answers none in
        particular; None (the root stands in) when the homeserver cannot tell: only clients without
        threads read the fallback, so it is no reason to fail the reply."""
        try:
            return await self.link.thread_latest(room_id, root)
        except OperationError as exc:
            self.log.warning("cannot find the latest message of thread %s: %s; falling back to its root", root, exc)
            return None

    def _named_in(self, room_id: str, text: str) -> set[str]:
        """The crew agents other than this one that `text` names: its message lists them in ``m.mentions``."""
        probe = Message(room_id, "", self.me, "m.notice", text)
        return {m.user_id for m in self.config.roster.named(probe) if m.user_id != self.me}

    def _count_sent(self, room_id: str, event_ids: list[str]) -> None:
        # A reply split in parts is one message for the loop guard.
        self.state.set_guard(room_id, observe(self.state.guard(room_id), self.config.roster, self.me))
        for event_id in event_ids:
            self.state.remember_own(event_id)
        self.save()

    async def react(self, room_id: str, event_id: str, emoji: str) -> dict[str, Any]:
        self._check_quiet(room_id, "react")
        try:
            sent = await self.link.send(room_id, "m.reaction", render.reaction_content(event_id, emoji))
        except OperationError as exc:
            raise Refused(f"react failed: {exc}") from exc
        self.state.remember_own(sent)
        self.save()
        return {"event_id": sent}

    async def edit(self, room_id: str, event_id: str, text: str) -> dict[str, Any]:
        self._check_quiet(room_id, "edit")
        event = await self._event_in(room_id, event_id, "edit")
        original = event.get("content")
        if event.get("sender") != self.me or event.get("type") != ROOM_MESSAGE or not isinstance(original, Mapping):
            raise Refused(f"edit refused: {event_id} is not one of your messages in {room_id}")
        if not original:
            raise Refused(f"edit refused: {event_id} was removed (redacted); reply instead")
        if relation(original)[2]:
            raise Refused(f"edit refused: {event_id} is itself an edit; edit the message it changed")
        _, reply_to, _ = relation(original)
        mention_ids = self._named_in(room_id, text)
        # A reply names whom it answers (`reply`): its new content still does.
        target = await self._sender_of(room_id, reply_to, set())
        if target is not None and target != self.me:
            mention_ids.add(target)
        content = render.edit_content(event_id, text, mention_ids=mention_ids, mentioned_before=mentioned_ids(original))
        if render.content_size(content) > render.CONTENT_BUDGET:
            raise Refused("edit refused: the new text is over Matrix's event size limit; reply with it instead")
        try:
            sent = await self.link.send(room_id, "m.room.message", content)
        except OperationError as exc:
            raise Refused(f"edit failed: {exc}") from exc
        self.state.remember_own(sent)
        self.save()
        return {"event_id": sent}

    async def history(self, room_id: str, limit: int = 20) -> str:
        limit = max(1, min(HISTORY_MAX, limit))
        events: list[Mapping[str, Any]] = []
        before: str | None = None
        try:
            # Edits take places in a page but are no messages of their own: pages further back until
            # `limit` messages are in hand, the room's beginning, or HISTORY_PAGES pages.
            for _ in range(HISTORY_PAGES):
                page, before = await self.link.recent(room_id, limit, before)
                events[:0] = [event for event in page if event.get("type") == ROOM_MESSAGE]
                if before is None or sum(not history.is_edit(event) for event in events) >= limit:
                    break
        except OperationError as exc:
            raise Refused(f"history failed: {exc}") from exc
        heard = self.config.roster.heard | {self.me}
        lines = [_history_line(room_id, message, self.link, heard) for message in history.shown(events)[-limit:]]
        name = self.link.room_name(room_id)
        if not lines:
            return f"No messages in {name} ({room_id})."
        return f"Last {len(lines)} message(s) in {name} ({room_id}), oldest first:\n" + "\n".join(lines)


def _thread_of(event: Mapping[str, Any]) -> str | None:
    """The root of the thread `event` is in, None when it is in none."""
    content = event.get("content")
    return relation(content)[0] if isinstance(content, Mapping) else None


def _history_line(room_id: str, message: history.Shown, link: MatrixLink, heard: frozenset[str]) -> str:
    stamp = message.stamp
    when = datetime.fromtimestamp(stamp / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if stamp is not None else "?"
    # Whoever is in the room is shown, as a person reading it sees them; the model is told whose
    # words the crew does not hear (they never wake it), so it need not take them as a teammate's.
    notes = [] if message.sender in heard else ["not on the crew's allowlist"]
    if message.thread_id:
        notes.append(f"thread {message.thread_id}")
    if message.reply_to:
        notes.append(f"reply to {message.reply_to}")
    if message.notice:
        notes.append("notice")
    extra = f" ({', '.join(notes)})" if notes else ""
    text = "(removed)" if message.body is None else message.body + (" (edited)" if message.edited else "")
    return f"[{when}] {link.member_name(room_id, message.sender)} <{message.sender}> {message.event_id}{extra}: {text}"
