"""Peer ids are bound to validator keys; the configured set is checked."""

from __future__ import annotations

import coincurve
import pytest

from sequencer_net.p2p import P2PNetwork, PeerSpec
from sequencer_net.p2p.host import key_pair_from_secret, peer_id_from_public_key
from tests.p2p.harness import peer_specs, validator_keys


def test_peer_id_from_public_key_matches_the_host_identity() -> None:
    (key,) = validator_keys(1)
    expected = peer_id_from_public_key(key.public_key)
    compressed = coincurve.PublicKey(key.public_key).format(compressed=True)
    assert peer_id_from_public_key(compressed) == expected
    pair = key_pair_from_secret(key.secret)
    assert peer_id_from_public_key(pair.public_key.to_bytes()) == expected
    net = P2PNetwork(secret=key.secret, me=0, listen_host="127.0.0.1", listen_port=1, peers=[])
    assert net.peer_id == expected.to_base58()


def test_network_refuses_a_set_that_does_not_match_its_key() -> None:
    keys = validator_keys(3)
    specs = peer_specs(keys)
    with pytest.raises(ValueError, match="does not match"):
        P2PNetwork(secret=keys[1].secret, me=0, listen_host="127.0.0.1", listen_port=1, peers=specs)
    duplicate = [*specs, PeerSpec(3, keys[2].public_key, "127.0.0.1", 1)]
    with pytest.raises(ValueError, match="twice"):
        P2PNetwork(
            secret=keys[0].secret, me=0, listen_host="127.0.0.1", listen_port=1, peers=duplicate
        )
