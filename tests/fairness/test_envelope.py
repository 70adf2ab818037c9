"""The encrypted transaction envelope: seal, open, combine, reveal, and hostile input."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.fairness import envelope as env
from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import Envelope, RevealFailed
from sequencer_net.fairness.group import RandomBytes
from sequencer_net.fairness.limits import MAX_CIPHERTEXT_BYTES, MAX_ENVELOPE_BYTES
from sequencer_net.mempool.limits import MAX_NONCE, MAX_TX_PAYLOAD_BYTES
from sequencer_net.mempool.transaction import Transaction, encode_transaction, sign_transaction

SEED = 4242
DOMAIN = Domain(
    chain_id=31337,
    verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"),
    genesis_hash=keccak256(b"test genesis"),
)
OTHER_CHAIN = Domain(1, DOMAIN.verifying_contract, DOMAIN.genesis_hash)
ALICE = PrivateKey(keccak256(b"alice"))
MALLORY = PrivateKey(keccak256(b"mallory"))
EPOCH = 3
EXPIRY = 100
KEYS, SHARES = tdh2.deal(4, 2, random.Random(SEED).randbytes)


def rng(seed: int = SEED) -> RandomBytes:
    return random.Random(seed).randbytes


def inner(
    key: PrivateKey = ALICE, *, namespace: int = 7, fee: int = 50, domain: Domain = DOMAIN
) -> Transaction:
    return sign_transaction(key, domain, 5, namespace, fee, b"buy 1 ETH-PERP at 2000")


def sealed(key: PrivateKey = ALICE, tx: Transaction | None = None, **kw: Any) -> Envelope:
    fields: dict[str, Any] = {"key_epoch": EPOCH, "expiry_height": EXPIRY, "max_fee": 60}
    fields.update(kw)
    return env.seal(
        key,
        DOMAIN,
        KEYS.public_key,
        fields["key_epoch"],
        fields["expiry_height"],
        fields["max_fee"],
        tx if tx is not None else inner(key),
        rng(),
    )


def open_bytes(data: bytes, height: int = 10) -> Envelope:
    return env.open_envelope(data, DOMAIN, KEYS.public_key, EPOCH, height)


def decrypt(envelope: Envelope) -> bytes | tdh2.DecryptionFailed:
    label = env.label_of(envelope)
    shares = [tdh2.decryption_share(k, envelope.ciphertext, label) for k in SHARES[2:]]
    result = tdh2.combine(envelope.ciphertext, label, shares, KEYS)
    assert not isinstance(result, tdh2.NotEnoughShares)
    return result


def resign(key: PrivateKey, envelope: Envelope, domain: Domain = DOMAIN, **changes: Any) -> bytes:
    """`envelope` with `changes`, properly signed by `key` (an attacker re-wrapping
    someone's ciphertext can always do this for its own address)."""
    changed = msgspec.structs.replace(envelope, sender=bytes(key.address), **changes)
    digest = env._digest_of(domain, changed)
    signed = msgspec.structs.replace(changed, signature=bytes(key.sign_digest(digest)))
    return env.encode_envelope(signed)


def test_seal_open_decrypt_reveal() -> None:
    tx = inner()
    envelope = sealed(tx=tx)
    opened = open_bytes(env.encode_envelope(envelope))
    assert opened == envelope
    assert opened.sender == bytes(ALICE.address) and opened.max_fee == 60
    assert env.reveal(opened, decrypt(opened), DOMAIN) == tx


def test_open_checks_each_field() -> None:
    data = env.encode_envelope(sealed())
    with pytest.raises(env.WrongChain):
        env.open_envelope(data, OTHER_CHAIN, KEYS.public_key, EPOCH, 10)
    with pytest.raises(env.WrongKeyEpoch):
        env.open_envelope(data, DOMAIN, KEYS.public_key, EPOCH + 1, 10)
    assert open_bytes(data, height=EXPIRY).expiry_height == EXPIRY
    with pytest.raises(env.ExpiredEnvelope):
        open_bytes(data, height=EXPIRY + 1)
    other_key, _ = tdh2.deal(4, 2, rng(1))
    with pytest.raises(env.InvalidCiphertextProof):
        env.open_envelope(data, DOMAIN, other_key.public_key, EPOCH, 10)
    genesis_twin = Domain(DOMAIN.chain_id, DOMAIN.verifying_contract, keccak256(b"other"))
    with pytest.raises(env.BadEnvelopeSignature):
        env.open_envelope(data, genesis_twin, KEYS.public_key, EPOCH, 10)


def test_signature_covers_every_field() -> None:
    envelope = sealed()
    changes: list[dict[str, Any]] = [
        {"max_fee": 61},
        {"payload_hash": bytes(32)},
        {"expiry_height": EXPIRY + 1},
        {"sender": bytes(MALLORY.address)},
        {"signature": envelope.signature[:-1] + b"\x1d"},
    ]
    for change in changes:
        data = env.encode_envelope(msgspec.structs.replace(envelope, **change))
        with pytest.raises(env.BadEnvelopeSignature):
            open_bytes(data)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # another sender only
        {"namespace": 8},
        {"key_epoch": EPOCH + 1},
        {"expiry_height": EXPIRY + 50},
    ],
)
def test_ciphertext_rewrapped_by_another_sender_fails_its_proof(changes: dict[str, Any]) -> None:
    victim = sealed()
    data = resign(MALLORY, victim, **changes)
    epoch = changes.get("key_epoch", EPOCH)
    with pytest.raises(env.InvalidCiphertextProof):
        env.open_envelope(data, DOMAIN, KEYS.public_key, epoch, 10)


def test_ciphertext_moved_to_another_chain_fails_its_proof() -> None:
    victim = sealed()
    data = resign(ALICE, victim, domain=OTHER_CHAIN, chain_id=OTHER_CHAIN.chain_id)
    with pytest.raises(env.InvalidCiphertextProof):
        env.open_envelope(data, OTHER_CHAIN, KEYS.public_key, EPOCH, 10)


def test_mallory_cannot_claim_alices_transaction() -> None:
    """Mallory seals Alice's signed transaction (copied from anywhere) as his own:
    it orders, but reveals as a sender mismatch and never executes."""
    tx = inner(ALICE)
    envelope = env.seal(MALLORY, DOMAIN, KEYS.public_key, EPOCH, EXPIRY, 60, inner(MALLORY), rng())
    label = env.label_of(envelope)
    forged_ct = tdh2.encrypt(KEYS.public_key, bytes(32) + encode_transaction(tx), label, rng(2))
    forged = msgspec.structs.replace(envelope, ciphertext=forged_ct)
    opened = open_bytes(resign(MALLORY, forged))
    assert env.reveal(opened, decrypt(opened), DOMAIN) == RevealFailed(env.REVEAL_WRONG_SENDER)


def _with_plaintext(plaintext: bytes, payload_hash: bytes | None = None, **kw: Any) -> Envelope:
    base = sealed(**kw)
    ct = tdh2.encrypt(KEYS.public_key, plaintext, env.label_of(base), rng(3))
    changes: dict[str, Any] = {"ciphertext": ct}
    if payload_hash is not None:
        changes["payload_hash"] = payload_hash
    return open_bytes(resign(ALICE, base, **changes))


def test_reveal_failures_are_named() -> None:
    blind = bytes(range(32))
    good = encode_transaction(inner())
    matching = env.payload_commitment(blind, good, bytes(ALICE.address), 5)
    assert (
        env.reveal(
            _with_plaintext(blind + good, matching),
            decrypt(_with_plaintext(blind + good, matching)),
            DOMAIN,
        )
        == inner()
    )
    cases = [
        (blind + good, None, env.REVEAL_WRONG_PAYLOAD_HASH),
        (blind, None, env.REVEAL_SHORT_PLAINTEXT),
        (blind + b"not a transaction", None, env.REVEAL_MALFORMED_TX),
        (blind + encode_transaction(inner(fee=61)), None, env.REVEAL_FEE_ABOVE_MAX),
        (blind + encode_transaction(inner(namespace=9)), None, env.REVEAL_WRONG_NAMESPACE),
        (
            blind + encode_transaction(inner(domain=OTHER_CHAIN)),
            None,
            env.REVEAL_WRONG_CHAIN,
        ),
        (
            blind + encode_transaction(msgspec.structs.replace(inner(), fee=40)),
            None,
            env.REVEAL_WRONG_SENDER,  # the changed fee recovers another address
        ),
    ]
    for plaintext, payload_hash, reason in cases:
        envelope = _with_plaintext(plaintext, payload_hash)
        assert env.reveal(envelope, decrypt(envelope), DOMAIN) == RevealFailed(reason), reason
    assert env.reveal(sealed(), tdh2.DecryptionFailed("aead"), DOMAIN) == RevealFailed(
        env.REVEAL_DECRYPTION
    )


def test_seal_refuses_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="max_fee"):
        sealed(max_fee=10)
    with pytest.raises(ValueError, match="not signed by this key"):
        env.seal(MALLORY, DOMAIN, KEYS.public_key, EPOCH, EXPIRY, 60, inner(ALICE), rng())
    with pytest.raises(ValueError, match="another chain"):
        env.seal(
            ALICE, DOMAIN, KEYS.public_key, EPOCH, EXPIRY, 60, inner(domain=OTHER_CHAIN), rng()
        )


def test_decode_limits_and_canonical_form() -> None:
    with pytest.raises(env.OversizedEnvelope):
        env.decode_envelope(b"\x00" * (MAX_ENVELOPE_BYTES + 1))
    data = env.encode_envelope(sealed())
    with pytest.raises(env.MalformedEnvelope, match="canonical"):
        env.decode_envelope(data[:1] + b"\xcc\x01" + data[2:])  # version 1 in two bytes
    with pytest.raises(env.MalformedEnvelope, match="version"):
        env.decode_envelope(data[:1] + b"\x02" + data[2:])


def test_widest_envelope_fits_the_limit() -> None:
    """An envelope around the largest transaction with every field at its maximum
    encodes within MAX_ENVELOPE_BYTES."""
    tx = sign_transaction(
        ALICE, DOMAIN, MAX_NONCE, 2**32 - 1, MAX_NONCE, b"\xff" * MAX_TX_PAYLOAD_BYTES
    )
    envelope = env.seal(ALICE, DOMAIN, KEYS.public_key, MAX_NONCE, MAX_NONCE, MAX_NONCE, tx, rng())
    data = env.encode_envelope(envelope)
    assert len(data) <= MAX_ENVELOPE_BYTES
    assert len(tdh2.encode(envelope.ciphertext)) <= MAX_CIPHERTEXT_BYTES
    assert env.decode_envelope(data) == envelope


VALID = env.encode_envelope(sealed())


def _exercise(data: bytes) -> None:
    with contextlib.suppress(env.InvalidEnvelope):
        open_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_open_on_random_bytes_raises_only_named_errors(data: bytes) -> None:
    _exercise(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(VALID) - 1), st.binary(min_size=1, max_size=4))
def test_open_on_mutated_envelopes_raises_only_named_errors(position: int, patch: bytes) -> None:
    mutated = VALID[:position] + patch + VALID[position + len(patch) :]
    try:
        opened = open_bytes(mutated)
    except env.InvalidEnvelope:
        return
    assert env.encode_envelope(opened) == mutated
