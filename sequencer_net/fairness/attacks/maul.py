"""maul: reuse a victim's ciphertext components under another label or sender.

For each victim envelope the adversary (a user key of its own) builds:

    sender          the victim's ciphertext under its own sender, signed by it
    namespace       ... and another namespace
    expiry          ... and another expiry height
    key-epoch       ... and another key epoch (checked by a node of that epoch)
    body            the victim's (U, Ubar, e, f) with its own ciphertext's body
    proof           its own ciphertext's (U, Ubar) with the victim's (e, f)
    mixed           the victim's U with its own Ubar, e, f
    unsigned        the victim's envelope with the namespace changed and the
                    victim's signature kept

Each goes through the real `open_envelope` (what intake and batch
verification run) and, as a second line, an honest validator's
`decryption_share` under the mauled label. Success: any mauled envelope
accepted, or any honest share released for one.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import (
    Envelope,
    InvalidEnvelope,
    _digest_of,
    encode_envelope,
    label_of,
    open_envelope,
)

from .committee import DOMAIN, KEY_EPOCH, Committee, seal_transaction, user_key, user_transaction
from .exchange import encrypted_block
from .report import SeedOutcome

VICTIMS = 2


def _resigned(envelope: Envelope, key: Any, **changes: Any) -> Envelope:
    changed = msgspec.structs.replace(envelope, sender=bytes(key.address), **changes)
    return msgspec.structs.replace(
        changed, signature=bytes(key.sign_digest(_digest_of(DOMAIN, changed)))
    )


def _variants(victim: Envelope, own: Envelope, key: Any) -> dict[str, tuple[Envelope, int]]:
    """name -> (mauled envelope, the key epoch of the node that checks it)."""
    v, o = victim.ciphertext, own.ciphertext
    replace = msgspec.structs.replace
    return {
        "sender": (_resigned(victim, key), KEY_EPOCH),
        "namespace": (_resigned(victim, key, namespace=victim.namespace + 1), KEY_EPOCH),
        "expiry": (_resigned(victim, key, expiry_height=victim.expiry_height + 1), KEY_EPOCH),
        "key-epoch": (_resigned(victim, key, key_epoch=KEY_EPOCH + 1), KEY_EPOCH + 1),
        "body": (_resigned(own, key, ciphertext=replace(v, body=o.body)), KEY_EPOCH),
        "proof": (_resigned(own, key, ciphertext=replace(o, e=v.e, f=v.f)), KEY_EPOCH),
        "mixed": (_resigned(own, key, ciphertext=replace(o, u=v.u)), KEY_EPOCH),
        "unsigned": (replace(victim, namespace=victim.namespace + 1), KEY_EPOCH),
    }


def run(committee: Committee) -> SeedOutcome:
    outcome = SeedOutcome()
    victims = encrypted_block(committee, 1, VICTIMS)
    key = user_key("adversary", committee.seed)
    rng = committee.rng("maul")
    honest = committee.key_shares[committee.honest[0]]
    for position, victim in enumerate(victims.envelopes):
        own = seal_transaction(
            committee, key, user_transaction(key, position, b"adversary order"), rng.randbytes
        )
        for name, (mauled, epoch) in _variants(victim, own, key).items():
            outcome.attempts += 1
            try:
                open_envelope(
                    encode_envelope(mauled), DOMAIN, committee.threshold_keys.public_key, epoch, 1
                )
            except InvalidEnvelope as exc:
                outcome.note(f"refused_{type(exc).__name__}")
            else:
                outcome.succeed(f"mauled envelope ({name}) accepted by open_envelope")
                continue
            try:
                tdh2.decryption_share(honest, mauled.ciphertext, label_of(mauled))
            except tdh2.InvalidCiphertext:
                continue
            outcome.succeed(f"an honest share released for a mauled ciphertext ({name})")
    return outcome
