"""Encrypted transactions at intake: accepted like a plain one, each refusal named,
and the same checks on the batch verification path."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.api.intake import Accepted, Intake, Refused
from sequencer_net.fairness.envelope import (
    ENVELOPE_VERSION,
    Envelope,
    envelope_digest,
    envelope_label,
    payload_commitment,
    seal,
)
from sequencer_net.fairness.group import Point
from sequencer_net.fairness.tdh2 import deal, encrypt
from sequencer_net.mempool.encrypted import (
    ENCRYPTED_TX_PREFIX,
    EnvelopeRules,
    InvalidEncryptedTransaction,
    encode_encrypted,
    is_encrypted,
    transaction_namespace,
)
from sequencer_net.mempool.limits import MAX_TX_BYTES, MempoolLimits
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.mempool.transaction import (
    OversizedTransaction,
    decode_transaction,
    encode_transaction,
    sign_transaction,
)
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.metrics import Metrics
from sequencer_net.storage.group_commit import GroupCommit
from sequencer_net.storage.node_store import NodeStore
from tests.mempool.factories import DOMAIN, KEYS, OTHER_DOMAIN, signed

SEED = 11
KEYSET, SHARES = deal(4, 2, random.Random(SEED).randbytes)
RULES = EnvelopeRules(public_key=KEYSET.public_key, key_epoch=0)
HEIGHT = 10  # the ordering height intake checks expiry against


def sealed(
    sender: int = 0,
    nonce: int = 0,
    *,
    domain: Domain = DOMAIN,
    key_epoch: int = 0,
    expiry: int = 100,
    max_fee: int = 0,
    public_key: Point = KEYSET.public_key,
    seed: int = SEED,
) -> Envelope:
    tx = sign_transaction(KEYS[sender], domain, nonce, 1, 0, b"secret order %d" % nonce)
    return seal(
        KEYS[sender],
        domain,
        public_key,
        key_epoch,
        expiry,
        max_fee,
        tx,
        random.Random(seed).randbytes,
    )


def resigned(envelope: Envelope, key: PrivateKey, **changes: object) -> Envelope:
    """The envelope with `changes`, signed again by `key` (its ciphertext unchanged)."""
    changed = msgspec.structs.replace(envelope, **changes)
    digest = envelope_digest(
        DOMAIN,
        changed.version,
        changed.namespace,
        changed.key_epoch,
        changed.sender,
        changed.expiry_height,
        changed.max_fee,
        changed.ciphertext,
        changed.payload_hash,
    )
    return msgspec.structs.replace(changed, signature=bytes(key.sign_digest(digest)))


def mauled_label_envelope() -> Envelope:
    """Signed correctly, but its ciphertext was encrypted under another label
    (another expiry), so its proof fails under the envelope's own label."""
    key = KEYS[0]
    tx = encode_transaction(sign_transaction(key, DOMAIN, 0, 1, 0, b"x"))
    blind = bytes(32)
    other_label = envelope_label(DOMAIN.chain_id, 1, 0, key.address, 999)
    ciphertext = encrypt(KEYSET.public_key, blind + tx, other_label, random.Random(1).randbytes)
    payload_hash = payload_commitment(blind, tx, key.address, 0)
    unsigned = Envelope(
        ENVELOPE_VERSION, DOMAIN.chain_id, 1, 0, key.address, 100, 0, ciphertext,
        payload_hash, bytes(65),
    )  # fmt: skip
    return resigned(unsigned, key)


class World:
    def __init__(self, directory: Path, rules: EnvelopeRules | None = RULES, **limits: int):
        self.store = NodeStore(directory / "chain", genesis_digest=keccak256(b"g"), sync=False)
        self.mempool = Mempool(DOMAIN, MempoolLimits(**limits), envelopes=rules)
        self.intake = Intake(
            mempool=self.mempool,
            verifier=VerifierPool(DOMAIN, threads=2, envelopes=rules),
            group=GroupCommit(self.store.write_synced),
            store=self.store,
            metrics=Metrics(),
            accepted_at={},
            client_rate=1e9,
            client_burst=1e9,
            ordering_height=lambda: HEIGHT,
        )

    async def submit(self, *items: bytes) -> list[Accepted | Refused]:
        return await self.intake.submit(list(items), client="test")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.store.close()


def test_the_wire_form_is_distinct_from_plain_transactions() -> None:
    wire = encode_encrypted(sealed())
    assert wire[:1] == ENCRYPTED_TX_PREFIX and is_encrypted(wire)
    assert not is_encrypted(signed())
    assert transaction_namespace(wire) == 1 == transaction_namespace(signed())
    with pytest.raises(Exception, match=r"undecodable|canonical"):
        decode_transaction(wire)


async def test_an_envelope_is_accepted_and_answered_with_its_hash(world: World) -> None:
    wire = encode_encrypted(sealed())
    (outcome,) = await world.submit(wire)
    assert outcome == Accepted(keccak256(wire))
    assert keccak256(wire) in world.mempool
    assert world.store.load_pending_transactions() == [wire]
    (again,) = await world.submit(wire)
    assert isinstance(again, Refused) and again.code == "duplicate"


async def test_the_same_ciphertext_twice_is_refused(world: World) -> None:
    first = sealed()
    copy = resigned(first, KEYS[0], max_fee=1)  # other bytes, same ciphertext (U)
    (a, b) = await world.submit(encode_encrypted(first), encode_encrypted(copy))
    assert isinstance(a, Accepted)
    assert isinstance(b, Refused) and b.code == "duplicate"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (mauled_label_envelope, "InvalidCiphertextProof"),
        (lambda: sealed(domain=OTHER_DOMAIN), "WrongChain"),
        (lambda: sealed(key_epoch=1), "WrongKeyEpoch"),
        (lambda: sealed(expiry=HEIGHT - 1), "ExpiredEnvelope"),
        (lambda: resigned(sealed(), KEYS[1]), "BadEnvelopeSignature"),
    ],
)
async def test_each_refusal_is_named(world: World, make: object, reason: str) -> None:
    envelope = make()  # type: ignore[operator]
    (outcome,) = await world.submit(encode_encrypted(envelope))
    assert isinstance(outcome, Refused)
    assert (outcome.status, outcome.code) == (400, "invalid_envelope")
    assert outcome.message.startswith(reason + ":")
    assert len(world.mempool) == 0 and world.store.load_pending_transactions() == []


async def test_an_oversized_one_is_refused_before_decoding(world: World) -> None:
    wire = ENCRYPTED_TX_PREFIX + b"\x00" * MAX_TX_BYTES
    (outcome,) = await world.submit(wire)
    assert isinstance(outcome, Refused) and outcome.code == "invalid_transaction"
    assert "exceeds" in outcome.message


async def test_encryption_off_refuses_envelopes(tmp_path: Path) -> None:
    world = World(tmp_path, rules=None)
    try:
        (outcome,) = await world.submit(encode_encrypted(sealed()))
        assert isinstance(outcome, Refused) and outcome.message.startswith("encryption is off")
    finally:
        world.store.close()


async def test_the_per_sender_cap_applies_without_nonces(tmp_path: Path) -> None:
    world = World(tmp_path, max_per_sender=2)
    try:
        wires = [encode_encrypted(sealed(nonce=n, seed=n)) for n in range(3)]
        outcomes = await world.submit(*wires)
        assert [type(o).__name__ for o in outcomes] == ["Accepted", "Accepted", "Refused"]
        assert outcomes[2].code == "sender_limit"  # type: ignore[union-attr]
        # Plain transactions of the sender are counted apart.
        (plain,) = await world.submit(signed(sender=0, nonce=0))
        assert isinstance(plain, Accepted)
        taken = world.mempool.take_batch(10, 10**6)
        assert [c.encoded for c in taken] == [*wires[:2], signed(sender=0, nonce=0)]
    finally:
        world.store.close()


async def test_batch_verification_checks_envelopes_but_not_expiry() -> None:
    pool = VerifierPool(DOMAIN, threads=2, envelopes=RULES)
    good = encode_encrypted(sealed(expiry=1))  # expired at HEIGHT, but batches skip expiry
    bad = encode_encrypted(mauled_label_envelope())
    results = await pool.check_many([good, bad, signed()])
    assert results[0].envelope is not None  # type: ignore[union-attr]
    assert isinstance(results[1], InvalidEncryptedTransaction)
    assert results[1].reason == "InvalidCiphertextProof"
    assert results[2].tx is not None  # type: ignore[union-attr]
    with pytest.raises(OversizedTransaction):
        await pool.check(ENCRYPTED_TX_PREFIX + bytes(MAX_TX_BYTES))


def test_the_fee_floor_passes_an_honest_max_fee_and_refuses_a_free_one() -> None:
    from sequencer_net.mempool.mempool import Accounts, AddResult, check_transaction

    def required(length: int) -> int:
        return 1_000 + 10 * length

    pool = Mempool(
        DOMAIN,
        accounts=Accounts(lambda s: None, lambda s: 10**30, required),
        envelopes=RULES,
    )
    payload = b"x" * 300
    tx = sign_transaction(KEYS[2], DOMAIN, 0, 1, required(len(payload)), payload)
    rng = random.Random(SEED).randbytes
    honest = seal(KEYS[2], DOMAIN, KEYSET.public_key, 0, 100, tx.fee, tx, rng)
    result, _ = pool.add(check_transaction(encode_encrypted(honest), DOMAIN, RULES))
    assert result is AddResult.ACCEPTED
    free_tx = sign_transaction(KEYS[3], DOMAIN, 0, 1, 0, payload)
    free = seal(KEYS[3], DOMAIN, KEYSET.public_key, 0, 100, 0, free_tx, rng)
    result, _ = pool.add(check_transaction(encode_encrypted(free), DOMAIN, RULES))
    assert result is AddResult.FEE_TOO_LOW
    assert pool.pending_fees(KEYS[2].address) == tx.fee
