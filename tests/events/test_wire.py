"""Pure parsing of what the server sends back: publish acks and delivery reply subjects."""

from __future__ import annotations

import pytest
from nats.js.errors import APIError

from agent_smith.events.publisher import parse_ack
from agent_smith.events.reading import ack_position


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"stream":"SWARM_EVENTS","seq":12}', (12, False)),
        (b'{"stream":"SWARM_EVENTS","seq":12,"duplicate":true}', (12, True)),
        (b'{"stream":"S","domain":"hub","seq":3}', (3, False)),
        (b'{"seq": 7, "stream": "S"}', (7, False)),
        (b'{"seq": 7, "stream": "S", "duplicate": true}', (7, True)),
    ],
)
def test_acks(data: bytes, expected: tuple[int, bool]) -> None:
    assert parse_ack(data) == expected


def test_an_error_ack_is_the_api_error() -> None:
    outcome = parse_ack(b'{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled"}}')
    assert isinstance(outcome, APIError)
    assert outcome.code == 503


@pytest.mark.parametrize("data", [b"", b"nope", b"[]", b'{"stream":"S"}', b'{"seq":"1"}'])
def test_anything_else_is_an_error_not_a_success(data: bytes) -> None:
    assert isinstance(parse_ack(data), Exception)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("$JS.ACK.SWARM_EVENTS.abc.1.42.7.1700000000000000000.5", (42, 5)),
        ("$JS.ACK.hub.ACCHASH.SWARM_EVENTS.abc.1.42.7.1700000000000000000.0.token", (42, 0)),
    ],
)
def test_reply_subjects(reply: str, expected: tuple[int, int]) -> None:
    assert ack_position(reply) == expected
