"""replay: the same envelope twice, and elsewhere.

The victim sends envelopes E1 and E2, and its client, after a timeout,
re-seals E1's signed transaction as R1 (new blind, so a new envelope hash).
The adversary (a Byzantine leader) orders

    block 1   batch A [E1, E2] and batch B [E1]     E1 twice in one block
    block 2   batch C [E1, R1]                      E1 again, and R1

and offers E1 unchanged to nodes of another chain id, of the same chain id
but another genesis, of another key epoch, and with its namespace changed
(the victim's signature kept). Honest nodes run the real pipeline:
`resolve_block_transactions` and `block_envelopes` (node/commit.py) over the
blocks' batches, t real share messages opened by `BlockOpening`,
`revealed_transaction`, then the execution engine's nonce rule
(`nonce_rejection`, `use_nonce`); elsewhere, `open_envelope`.

Success: a (sender, nonce) or an envelope hash executed twice, or E1
accepted anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from consensus.crypto import Address, keccak256
from consensus.encoding import Domain
from sequencer_net.batches.batch import Batch
from sequencer_net.execution.block import FailedReveal
from sequencer_net.execution.nonces import nonce_rejection, use_nonce
from sequencer_net.execution.records import NonceWindow
from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import (
    Envelope,
    InvalidEnvelope,
    encode_envelope,
    label_of,
    open_envelope,
)
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.mempool.encrypted import decode_encrypted, encode_encrypted
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.node.commit import block_envelopes, resolve_block_transactions
from sequencer_net.node.decryption import BlockOpening, revealed_transaction

from .committee import DOMAIN, KEY_EPOCH, Committee, seal_transaction, user_key, user_transaction
from .report import SeedOutcome


def _valid(committee: Committee, height: int) -> Callable[[bytes, bytes], bool]:
    """Whether a block's envelope verifies (`open_envelope`, as batch verification)."""

    def valid(_: bytes, encoded: bytes) -> bool:
        try:
            open_envelope(
                encoded[1:], DOMAIN, committee.threshold_keys.public_key, KEY_EPOCH, height
            )
        except InvalidEnvelope:
            return False
        return True

    return valid


def _open(committee: Committee, envelopes: list[Envelope]) -> list[bytes | tdh2.DecryptionFailed]:
    """What t honest share messages open (BlockOpening, as a validator does)."""
    cts = [e.ciphertext for e in envelopes]
    labels = [label_of(e) for e in envelopes]
    tag = order_seed_tag(DOMAIN.chain_id, 1, bytes(32))
    job = BlockOpening(
        height=1,
        block=bytes(32),
        coin_tag=tag,
        ciphertexts=cts,
        labels=labels,
        keys=committee.threshold_keys,
    )
    for i in committee.honest[: committee.t]:
        key = committee.key_shares[i]
        job.offer(tdh2.block_shares(key, cts, labels), tdh2.coin_share(key, tag))
    return job.open().plaintexts


def _elsewhere(committee: Committee, e1: Envelope) -> dict[str, tuple[bytes, Domain, int]]:
    other_chain = Domain(1, DOMAIN.verifying_contract, DOMAIN.genesis_hash)
    other_genesis = Domain(DOMAIN.chain_id, DOMAIN.verifying_contract, keccak256(b"other"))
    changed = msgspec.structs.replace(e1, namespace=e1.namespace + 1)
    data = encode_envelope(e1)
    return {
        "another chain id": (data, other_chain, KEY_EPOCH),
        "another genesis": (data, other_genesis, KEY_EPOCH),
        "another key epoch": (data, DOMAIN, KEY_EPOCH + 1),
        "another namespace": (encode_envelope(changed), DOMAIN, KEY_EPOCH),
    }


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    rng = committee.rng("replay")
    victim = user_key("victim", committee.seed)
    first = user_transaction(victim, 0, b"buy 1 ETH-PERP")
    e1 = seal_transaction(committee, victim, first, rng.randbytes)
    e2 = seal_transaction(
        committee, victim, user_transaction(victim, 1, b"sell 1 ETH-PERP"), rng.randbytes
    )
    r1 = seal_transaction(committee, victim, first, rng.randbytes)
    w1, w2, wr = (encode_encrypted(e) for e in (e1, e2, r1))
    author = committee.honest[0]
    v = bytes(victim.address)
    blocks = [
        [Batch(author, 0, [w1, w2], [v, v]), Batch(author, 1, [w1], [v])],
        [Batch(author, 2, [w1, wr], [v, v])],
    ]
    committed: set[bytes] = set()
    windows: dict[bytes, NonceWindow] = {}
    executed_hashes: list[bytes] = []
    executed_nonces: list[tuple[bytes, int]] = []
    for height, batches in enumerate(blocks, start=1):
        resolved = resolve_block_transactions(
            batches,
            committed.__contains__,
            lambda _, encoded: Address(decode_encrypted(encoded).sender),
        )
        live = block_envelopes(height, batches, _valid(committee, height))
        opened = dict(
            zip([h for h, _ in live], _open(committee, [e for _, e in live]), strict=True)
        )
        for r in resolved:
            h = tx_hash(r.encoded)
            committed.add(h)
            assert r.envelope is not None
            if h not in opened:
                continue
            revealed = revealed_transaction(h, r.envelope, opened[h], DOMAIN)
            if isinstance(revealed, FailedReveal):
                outcome.note(f"failed_reveal_{revealed.reason}")
                continue
            window = windows.get(revealed.sender)
            if nonce_rejection(window, revealed.nonce) is not None:
                outcome.note("nonce_used")
                continue
            windows[revealed.sender] = use_nonce(window, revealed.nonce)
            executed_hashes.append(h)
            executed_nonces.append((revealed.sender, revealed.nonce))
    outcome.attempts += 3  # E1 twice in block 1, again in block 2, re-sealed as R1
    twice = len(executed_hashes) - len(set(executed_hashes))
    twice += len(executed_nonces) - len(set(executed_nonces))
    for _ in range(min(twice, 3)):
        outcome.succeed("a transaction executed twice")
    if sorted(n for _, n in executed_nonces) != [0, 1]:
        outcome.note("victim_not_executed_once_each")
    for name, (data, domain, epoch) in _elsewhere(committee, e1).items():
        outcome.attempts += 1
        try:
            open_envelope(data, domain, committee.threshold_keys.public_key, epoch, 1)
        except InvalidEnvelope as exc:
            outcome.note(f"refused_{type(exc).__name__}")
            continue
        outcome.succeed(f"the envelope was accepted under {name}")
    return outcome
