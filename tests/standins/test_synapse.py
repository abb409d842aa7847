"""The real Synapse on loopback: users by shared secret, a room, a message read back by /sync."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent_smith.errors import OperationError
from agent_smith.standins import SynapseServer
from agent_smith.standins.synapse import homeserver_config

pytestmark = pytest.mark.real


def test_two_users_exchange_a_message(synapse: SynapseServer) -> None:
    alice = synapse.register("alice-msg")
    bob = synapse.register("bob-msg")
    assert alice.user_id == "@alice-msg:localhost"
    assert alice.access_token
    assert alice.access_token not in repr(alice)

    room = synapse.create_room(alice, name="crew", invite=[bob.user_id])
    synapse.join(bob, room)
    event_id = synapse.send_text(alice, room, "hello bob", msgtype="m.notice")

    timeline = synapse.sync(bob)["rooms"]["join"][room]["timeline"]["events"]
    messages = [e for e in timeline if e["type"] == "m.room.message"]
    assert [(e["event_id"], e["sender"], e["content"]) for e in messages] == [
        (event_id, alice.user_id, {"msgtype": "m.notice", "body": "hello bob"})
    ]
    assert synapse._secret not in synapse.log_path.read_text()


def test_invite_after_creation_and_errors_are_one_line(synapse: SynapseServer) -> None:
    carol = synapse.register("carol-inv", admin=True)
    dave = synapse.register("dave-inv")
    room = synapse.create_room(carol)
    with pytest.raises(OperationError, match=r"/join/.*: 403 You are not invited"):
        synapse.join(dave, room)
    synapse.invite(carol, room, dave.user_id)
    synapse.join(dave, room)
    with pytest.raises(OperationError, match=r"register: 400 User ID already taken"):
        synapse.register("dave-inv")


def test_config_listens_on_loopback_only_without_federation(tmp_path: Path) -> None:
    config = homeserver_config(
        server_name="hs", port=8448, data_dir=tmp_path, registration_secret="s", macaroon_secret="m"
    )
    (listener,) = config["listeners"]
    assert listener["bind_addresses"] == ["127.0.0.1"]
    assert [r["names"] for r in listener["resources"]] == [["client"]]
    assert config["federation_domain_whitelist"] == []
    assert config["enable_registration"] is False
    assert config["bcrypt_rounds"] == 4


def test_a_port_it_picked_itself_and_lost_before_start_is_picked_again(tmp_path: Path) -> None:
    server = SynapseServer(tmp_path / "hs")
    lost = server.port
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", lost))
        with server:
            assert server.port != lost
            assert server.register("eve-port").user_id == "@eve-port:localhost"
    assert "Address already in use" in server.log_path.read_text()


def test_a_port_the_caller_gave_and_finds_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", 0))
        port = thief.getsockname()[1]
        server = SynapseServer(tmp_path / "hs", port=port)
        with (
            pytest.raises(OperationError, match=rf"Synapse exited during start-up(.|\n)*listen on TCP port \({port}\)"),
            server,
        ):
            pass
