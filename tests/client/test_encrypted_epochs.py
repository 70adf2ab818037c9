"""The SDK seals to the key of the validator-set epoch a transaction will be
ordered in: keys by epoch from a genesis or a GET /v1/validators answer."""

from __future__ import annotations

import random

import pytest

from consensus.crypto import PrivateKey
from sequencer_net.client.encrypted import NetworkKey, NetworkKeys, NoNetworkKey, seal_transaction
from sequencer_net.fairness.group import encode_point
from sequencer_net.home.genesis import LocalEpoch, make_local_genesis
from sequencer_net.home.threshold import deal_epoch_keys
from sequencer_net.mempool.encrypted import EnvelopeRules, LaterKey, open_encrypted
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from tests.node_config.conftest import GENESIS_TIME_MS, secret_for

SEED = 31
SECRETS = [secret_for(i) for i in range(5)]
DEALT = deal_epoch_keys([4, 4], rng=random.Random(SEED).randbytes)
GENESIS = make_local_genesis(
    SECRETS,
    chain_id=31337,
    base_p2p_port=36600,
    base_api_port=36700,
    genesis_time_ms=GENESIS_TIME_MS,
    initial=(0, 1, 2, 3),
    threshold_keys=DEALT[0][0],
    epochs=(LocalEpoch(20, (0, 1, 2, 4), threshold_keys=DEALT[1][0]),),
)


def _threshold(epoch: int) -> dict[str, object]:
    keys = DEALT[epoch][0]
    return {
        "key_epoch": epoch,
        "threshold": keys.threshold,
        "public_key": "0x" + encode_point(keys.public_key).hex(),
    }


def test_keys_by_height_from_the_genesis_and_from_the_api() -> None:
    from_genesis = NetworkKeys.from_genesis(GENESIS)
    document = {
        "threshold": _threshold(0),
        "epochs": [
            {"number": 0, "first_height": 1, "threshold": _threshold(0)},
            {"number": 1, "first_height": 20, "threshold": _threshold(1)},
        ],
    }
    from_api = NetworkKeys.from_validators(document)
    for keys in (from_genesis, from_api):
        assert keys.at(19) == NetworkKey(DEALT[0][0].public_key, 0)
        assert keys.at(20) == NetworkKey(DEALT[1][0].public_key, 1)
        assert keys.last_height(5) == 19 and keys.last_height(20) is None
        assert keys.clamp_expiry(5, 100) == 19 and keys.clamp_expiry(25, 100) == 100
    # A node that reports no epochs: one key for every height.
    single = NetworkKeys.from_validators({"threshold": _threshold(0)})
    assert single.at(10**6) == NetworkKey(DEALT[0][0].public_key, 0)
    with pytest.raises(NoNetworkKey):
        NetworkKeys.from_validators({"threshold": None})


def test_a_transaction_sealed_for_a_height_passes_that_heights_intake() -> None:
    key = PrivateKey(secret_for(9))
    domain = GENESIS.domain()
    inner = encode_transaction(sign_transaction(key, domain, 0, 1, 0, b"order"))
    keys = NetworkKeys.from_genesis(GENESIS)
    rules = EnvelopeRules(
        public_key=DEALT[0][0].public_key,
        key_epoch=0,
        later=(LaterKey(1, 20, DEALT[1][0].public_key),),
    )
    rng = random.Random(SEED).randbytes
    for height in (19, 20):
        wire = seal_transaction(
            key, domain, inner, keys.at(height), expiry_height=height + 50, rng=rng
        )
        assert open_encrypted(wire, domain, rules, height).key_epoch == keys.at(height).key_epoch


def test_the_load_seals_to_the_epoch_of_the_height_it_last_read() -> None:
    """`seqnet load --encrypt`: the signer follows the chain height the load
    keeps current, so it seals to each epoch's key in turn and its envelopes
    expire no later than their epoch's end."""
    from sequencer_net.testnet.load import ChainHeight, encrypting_signer, transaction_signer

    domain = GENESIS.domain()
    height = ChainHeight(10)
    rules = EnvelopeRules(
        public_key=DEALT[0][0].public_key,
        key_epoch=0,
        later=(LaterKey(1, 20, DEALT[1][0].public_key),),
    )
    seal = encrypting_signer(
        transaction_signer(domain), domain, NetworkKeys.from_genesis(GENESIS), height, 1000
    )
    key = PrivateKey(secret_for(9))
    before = open_encrypted(seal(key, 0, 1, b"order"), domain, rules, 11)
    assert (before.key_epoch, before.expiry_height) == (0, 19)
    height.value = 19  # the next block is epoch 1's first
    after = open_encrypted(seal(key, 1, 1, b"order"), domain, rules, 20)
    assert (after.key_epoch, after.expiry_height) == (1, 1020)
