"""Encrypted intake on a chain with a key per validator-set epoch.

Epoch 0 (heights 1..9) encrypts to K0 under key epoch 0, epoch 1 (from height
10) to K1 under key epoch 1. Intake accepts only the key epoch of the height a
block built now would have; a peer's batch may carry any scheduled epoch's
envelopes (each checked under its own key), which commit then sorts out."""

from __future__ import annotations

import random

import pytest

from sequencer_net.fairness.envelope import WrongKeyEpoch, open_envelope_of_any_epoch, seal
from sequencer_net.fairness.group import Point
from sequencer_net.fairness.tdh2 import deal
from sequencer_net.mempool.encrypted import (
    EnvelopeRules,
    InvalidEncryptedTransaction,
    LaterKey,
    encode_encrypted,
    open_encrypted,
)
from sequencer_net.mempool.mempool import check_transaction
from sequencer_net.mempool.transaction import sign_transaction
from tests.mempool.factories import DOMAIN, KEYS

SEED = 23
KEYSET0, _ = deal(4, 2, random.Random(SEED).randbytes)
KEYSET1, _ = deal(4, 2, random.Random(SEED + 1).randbytes)
SWITCH = 10
RULES = EnvelopeRules(
    public_key=KEYSET0.public_key,
    key_epoch=0,
    later=(LaterKey(1, SWITCH, KEYSET1.public_key),),
)


def sealed(key_epoch: int, public_key: Point | None = None, nonce: int = 0) -> bytes:
    tx = sign_transaction(KEYS[0], DOMAIN, nonce, 1, 0, b"payload")
    if public_key is None:
        public_key = (KEYSET0, KEYSET1)[key_epoch].public_key
    rng = random.Random(SEED + key_epoch * 10 + nonce).randbytes
    envelope = seal(KEYS[0], DOMAIN, public_key, key_epoch, 100, 10, tx, rng)
    return encode_encrypted(envelope)


def refusal(encoded: bytes, height: int) -> str:
    with pytest.raises(InvalidEncryptedTransaction) as caught:
        open_encrypted(encoded, DOMAIN, RULES, height)
    return str(caught.value)


def test_the_key_of_a_height() -> None:
    assert RULES.key_at(1) == (0, KEYSET0.public_key)
    assert RULES.key_at(SWITCH - 1) == (0, KEYSET0.public_key)
    assert RULES.key_at(SWITCH) == (1, KEYSET1.public_key)
    assert RULES.keys() == {0: KEYSET0.public_key, 1: KEYSET1.public_key}
    single = EnvelopeRules(public_key=KEYSET0.public_key, key_epoch=3)
    assert single.key_at(10**9) == (3, KEYSET0.public_key)


def test_intake_accepts_only_the_key_epoch_of_the_next_block() -> None:
    old, new = sealed(0), sealed(1)
    assert open_encrypted(old, DOMAIN, RULES, SWITCH - 1).key_epoch == 0
    assert open_encrypted(new, DOMAIN, RULES, SWITCH).key_epoch == 1
    # A stale epoch's envelope after the switch, and the next epoch's before it.
    assert refusal(old, SWITCH) == "WrongKeyEpoch: envelope is for key epoch 0, not 1"
    assert refusal(new, SWITCH - 1) == "WrongKeyEpoch: envelope is for key epoch 1, not 0"
    with pytest.raises(InvalidEncryptedTransaction) as caught:
        check_transaction(old, DOMAIN, RULES, ordering_height=SWITCH + 5)
    assert caught.value.reason == "WrongKeyEpoch"


def test_a_label_naming_one_epoch_with_the_other_epochs_key_fails_its_proof() -> None:
    """Key epoch 1 in the label but sealed to K0: the proof is checked under K1."""
    mixed = sealed(1, KEYSET0.public_key)
    assert refusal(mixed, SWITCH).startswith("InvalidCiphertextProof")
    assert refusal(mixed, 0).startswith("InvalidCiphertextProof")


def test_a_peers_batch_may_carry_any_scheduled_epoch() -> None:
    """Height 0 (a batch): envelopes of either epoch pass under their own key;
    one naming an epoch without a key does not."""
    assert open_encrypted(sealed(0), DOMAIN, RULES, 0).key_epoch == 0
    assert open_encrypted(sealed(1), DOMAIN, RULES, 0).key_epoch == 1
    unknown = sealed(7, KEYSET1.public_key)
    assert refusal(unknown, 0) == ("WrongKeyEpoch: envelope is for key epoch 7, which has no key")
    with pytest.raises(WrongKeyEpoch, match="which has no key"):
        open_envelope_of_any_epoch(unknown[1:], DOMAIN, {0: KEYSET0.public_key}, 0)


def test_a_single_epoch_chain_checks_batches_as_before() -> None:
    """Without later epochs a batch's envelope must name the one key epoch."""
    single = EnvelopeRules(public_key=KEYSET0.public_key, key_epoch=0)
    assert open_encrypted(sealed(0), DOMAIN, single, 0).key_epoch == 0
    with pytest.raises(InvalidEncryptedTransaction, match="key epoch 1, not 0"):
        open_encrypted(sealed(1), DOMAIN, single, 0)
