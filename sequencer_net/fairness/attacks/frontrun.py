"""frontrun: the adversary tries to read a victim's encrypted order before it commits.

The f Byzantine validators hold f key shares and see every envelope in the
mempool. Before the victim's block commits no honest validator releases a
share for it (shares are made only for committed blocks), so for each victim
envelope the adversary tries:

    own shares      its f real shares (`decryption_share`) through `combine`
    borrowed        its f shares plus the honest validators' released shares
                    of other, committed ciphertexts, interpolated offline
                    (`combine_verified`, no proof checks: the adversary
                    computes what it likes)
    rewrap          the victim's ciphertext in an envelope of its own (its
                    sender, signed by it), ordered in an earlier block by a
                    Byzantine leader: honest validators check it with
                    `open_envelope` and release shares only if it passes
                    (and `decryption_share` refuses a ciphertext whose proof
                    fails under the label); with t shares of the same U the
                    adversary would interpolate the victim's key offline

Success: the adversary learns the victim's plaintext before commit.
"""

from __future__ import annotations

import msgspec

from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import (
    Envelope,
    InvalidEnvelope,
    _digest_of,
    encode_envelope,
    label_of,
    open_envelope,
    reveal,
)
from sequencer_net.fairness.group import decode_point
from sequencer_net.mempool.transaction import Transaction

from .committee import DOMAIN, KEY_EPOCH, Committee, user_key
from .exchange import encrypted_block
from .report import SeedOutcome

VICTIMS = 3


def _learned(plaintext: object, envelope: Envelope, tx: Transaction) -> bool:
    """Whether an attempt's result is the victim's plaintext."""
    return isinstance(plaintext, bytes) and reveal(envelope, plaintext, DOMAIN) == tx


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    victims = encrypted_block(committee, 1, VICTIMS)
    committed = encrypted_block(committee, 2, 1)
    adversary = user_key("adversary", committee.seed)
    bad = sorted(committee.byzantine)
    for envelope, tx in zip(victims.envelopes, victims.transactions, strict=True):
        outcome.attempts += 1
        ct, label = envelope.ciphertext, label_of(envelope)
        own = [tdh2.decryption_share(committee.key_shares[i], ct, label) for i in bad]
        routes: dict[str, object] = {
            "own shares": tdh2.combine(ct, label, own, committee.threshold_keys)
        }

        other_ct, other_label = committed.ciphertexts[0], committed.labels[0]
        borrowed = [
            tdh2.VerifiedShare(s.index, decode_point(s.value))
            for s in (
                tdh2.decryption_share(committee.key_shares[i], other_ct, other_label)
                for i in committee.honest
            )
        ]
        verified_own = [tdh2.VerifiedShare(s.index, decode_point(s.value)) for s in own]
        routes["borrowed"] = tdh2.combine_verified(ct, label, verified_own + borrowed, committee.t)

        rewrapped = msgspec.structs.replace(envelope, sender=bytes(adversary.address))
        rewrapped = msgspec.structs.replace(
            rewrapped, signature=bytes(adversary.sign_digest(_digest_of(DOMAIN, rewrapped)))
        )
        released: list[tdh2.DecryptionShare] = []
        for i in committee.honest:
            try:
                open_envelope(
                    encode_envelope(rewrapped),
                    DOMAIN,
                    committee.threshold_keys.public_key,
                    KEY_EPOCH,
                    1,
                )
                released.append(
                    tdh2.decryption_share(committee.key_shares[i], ct, label_of(rewrapped))
                )
            except (InvalidEnvelope, tdh2.InvalidCiphertext):
                outcome.note("rewrap_refused")
        routes["rewrap"] = tdh2.combine_verified(
            ct,
            label,
            verified_own + [tdh2.VerifiedShare(s.index, decode_point(s.value)) for s in released],
            committee.t,
        )
        learned = [name for name, result in routes.items() if _learned(result, envelope, tx)]
        if learned:
            outcome.succeed(f"learned a victim's order before commit via {', '.join(learned)}")
    return outcome
