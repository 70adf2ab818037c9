"""reorder: a Byzantine leader executes its own transaction before a victim's.

In each view a victim user sends a transaction to an honest validator and
the adversary's user sends one to a Byzantine validator; both batches are
certified in that view (the real `certify` path) and the view's leader puts
both in its block. An honest leader orders batches oldest certificate first
(`CertificateBook.oldest_first`, certificates reaching it zero or one view
after they form); a Byzantine leader puts the adversary's batch first. The
committed block's transactions come out of the real
`resolve_block_transactions`, the threshold coin for the block is combined
from t real coin shares (`coin_share`, `combine_coin`), and the order
execution applies is `execution_order(seed, forced, transactions)`.

Success rate: the share of Byzantine leaders' blocks in which the adversary's
transaction executes first, minus that share for honest leaders' blocks.
With execution in block order the Byzantine leader wins every time (an
advantage of about one half); with a content-blind order drawn from the coin
both shares are about one half and the advantage is noise around zero.
"""

from __future__ import annotations

from consensus.crypto import Address, keccak256
from consensus.types import View
from sequencer_net.batches.batch import Batch, batch_digest, encode_batch
from sequencer_net.batches.certificate import CertificateBook
from sequencer_net.execution.engine import SequencedTransaction
from sequencer_net.fairness import tdh2
from sequencer_net.mempool.transaction import (
    InvalidTransaction,
    decode_transaction,
    encode_transaction,
    recover_sender,
)
from sequencer_net.node.commit import resolve_block_transactions

from . import ordering
from .committee import DOMAIN, Committee, certify, user_key, user_transaction
from .report import SeedOutcome

BLOCKS = 24


def _sender_of(_: bytes, encoded: bytes) -> Address | None:
    try:
        return recover_sender(decode_transaction(encoded), DOMAIN)
    except InvalidTransaction:
        return None


def _coin_seed(committee: Committee, tag: bytes) -> bytes:
    """The block's seed: the threshold coin on its digest, from t honest shares."""
    shares = [
        tdh2.coin_share(committee.key_shares[i], tag) for i in committee.honest[: committee.t]
    ]
    seed = tdh2.combine_coin(tag, shares, committee.threshold_keys)
    assert isinstance(seed, bytes)
    return seed


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    rng = committee.rng("reorder")
    victim, adversary = user_key("victim", committee.seed), user_key("adversary", committee.seed)
    byzantine = sorted(committee.byzantine)
    attack_first = attack_blocks = honest_first = honest_blocks = 0
    for view in range(BLOCKS):
        victim_tx = encode_transaction(user_transaction(victim, view, b"buy 1 ETH-PERP"))
        adversary_tx = encode_transaction(user_transaction(adversary, view, b"buy 1 ETH-PERP"))
        batches = {
            "victim": Batch(rng.choice(committee.honest), view, [victim_tx], [victim.address]),
            "adversary": Batch(rng.choice(byzantine), view, [adversary_tx], [adversary.address]),
        }
        digests = {name: batch_digest(encode_batch(b)) for name, b in batches.items()}
        leader = committee.validators.leader(View(view))
        if leader in committee.byzantine:
            chosen = [batches["adversary"], batches["victim"]]
        else:
            book = CertificateBook()
            for name, batch in batches.items():
                cert = certify(committee, digests[name], batch.author, batch.sequence)
                book.add(cert, view + rng.randint(0, 1))
            by_digest = {digests[name]: batch for name, batch in batches.items()}
            chosen = [by_digest[h.certificate.batch] for h in book.oldest_first()]
        resolved = resolve_block_transactions(chosen, lambda _: False, _sender_of)
        transactions = [r.sequenced for r in resolved]
        assert all(isinstance(t, SequencedTransaction) for t in transactions)
        block = keccak256(b"".join(batch_digest(encode_batch(b)) for b in chosen))
        executed = ordering.execution_order(_coin_seed(committee, block), [], transactions)
        hashes = [t.tx_hash for t in executed]
        adversary_first = hashes.index(keccak256(adversary_tx)) < hashes.index(keccak256(victim_tx))
        if leader in committee.byzantine:
            attack_blocks += 1
            attack_first += adversary_first
        else:
            honest_blocks += 1
            honest_first += adversary_first
    outcome.attempts = attack_blocks
    outcome.successes = attack_first
    outcome.baseline_attempts = honest_blocks
    outcome.baseline_successes = honest_first
    return outcome
