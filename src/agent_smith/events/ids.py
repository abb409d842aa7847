"""Sortable unique event ids (ULID layout, hand-rolled).

26 characters of Crockford base32: 48 bits of milliseconds since the epoch,
then 80 random bits. Ids made by one factory sort in the order they were
made, even within a millisecond (the random part is incremented), so the
event id doubles as a stable sort key and as the JetStream `Nats-Msg-Id`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_PATTERN = re.compile(r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


def encode(millis: int, randomness: int) -> str:
    """The 26-character id for a timestamp and an 80-bit random part."""
    if not 0 <= millis < 1 << 48:
        raise ValueError(f"timestamp {millis} ms does not fit in 48 bits")
    if not 0 <= randomness <= _RANDOM_MAX:
        raise ValueError("the random part must fit in 80 bits")
    value = (millis << _RANDOM_BITS) | randomness
    chars = []
    for _ in range(26):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def timestamp_of(event_id: str) -> datetime:
    """When an id was made (millisecond precision)."""
    millis = 0
    for char in event_id[:10]:
        millis = millis * 32 + ALPHABET.index(char)
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


class IdFactory:
    """Makes monotonic ids; the clock and the random source are injectable for tests."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        random_bits: Callable[[], int] = lambda: int.from_bytes(os.urandom(10), "big"),
    ) -> None:
        self._clock = clock
        self._random_bits = random_bits
        self._last_millis = -1
        self._last_random = 0

    def __call__(self) -> str:
        millis = int(self._clock() * 1000)
        if millis <= self._last_millis:
            # Same (or an earlier, after a clock step back) millisecond: keep order by counting up.
            millis = self._last_millis
            randomness = self._last_random + 1
            if randomness > _RANDOM_MAX:
                millis += 1
                randomness = self._random_bits() & (_RANDOM_MAX >> 1)
        else:
            randomness = self._random_bits() & (_RANDOM_MAX >> 1)
        self._last_millis, self._last_random = millis, randomness
        return encode(millis, randomness)


new_id = IdFactory()
