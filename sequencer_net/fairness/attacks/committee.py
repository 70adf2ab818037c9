"""The validators, keys and users every attack simulation starts from.

One seed gives one committee: n validator signing keys, a threshold key
dealt t = f + 1 of n (`tdh2.deal`), the f Byzantine validators (drawn from
the seed), and users with signing keys. Everything is derived from the seed,
so a run is replayed by its seed alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache

from consensus.crypto import Address, PrivateKey, keccak256, recover_address
from consensus.encoding import Domain
from consensus.types import Validator, ValidatorSet
from sequencer_net.batches.certificate import AckCollector, BatchCertificate, sign_ack, verify_ack
from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import Envelope, seal
from sequencer_net.fairness.group import RandomBytes
from sequencer_net.mempool.transaction import Transaction, sign_transaction

DOMAIN = Domain(
    chain_id=31337,
    verifying_contract=bytes(20),
    genesis_hash=keccak256(b"seqnet attack simulation genesis"),
)
KEY_EPOCH = 1
NAMESPACE = 7
EXPIRY_HEIGHT = 1_000_000
MAX_FEE = 1_000


def threshold_for(n: int) -> int:
    """t = f + 1, what `seqnet testnet up` deals (docs/fairness.md, "Why t = f + 1")."""
    return tdh2.max_faults(n) + 1


@dataclass(frozen=True)
class Committee:
    n: int
    f: int
    seed: int
    keys: tuple[PrivateKey, ...]
    validators: ValidatorSet
    separator: bytes
    threshold_keys: tdh2.PublicKeySet
    key_shares: tuple[tdh2.KeyShare, ...]
    byzantine: frozenset[int]
    """Validator indices (0-based) the adversary controls; their share index is i + 1."""

    @property
    def t(self) -> int:
        return self.threshold_keys.threshold

    @property
    def honest(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.byzantine]

    @property
    def quorum(self) -> int:
        return self.validators.quorum_weight

    def rng(self, purpose: str) -> random.Random:
        """A random stream for one purpose, a function of the seed alone."""
        return random.Random(f"{self.seed}/{self.n}/{purpose}")

    def randbytes(self, purpose: str) -> RandomBytes:
        return self.rng(purpose).randbytes


def make_committee(n: int, seed: int, byzantine: int | None = None) -> Committee:
    """n validators, f = (n - 1) // 3 of them Byzantine (or `byzantine`), from `seed`."""
    f = tdh2.max_faults(n)
    rng = random.Random(f"committee/{seed}/{n}")
    keys = tuple(PrivateKey(keccak256(b"validator/%d/%d/%d" % (seed, n, i))) for i in range(n))
    validators = ValidatorSet([Validator(k.address, 1) for k in keys])
    threshold_keys, shares = tdh2.deal(n, threshold_for(n), rng.randbytes)
    bad = frozenset(rng.sample(range(n), f if byzantine is None else byzantine))
    return Committee(
        n=n,
        f=f,
        seed=seed,
        keys=keys,
        validators=validators,
        separator=DOMAIN.separator(),
        threshold_keys=threshold_keys,
        key_shares=tuple(shares),
        byzantine=bad,
    )


@lru_cache(maxsize=65_536)
def recover(digest: bytes, signature: bytes) -> Address | None:
    """(digest, signature) -> signer, as SignatureVerifier.recover (memoized:
    every validator checks the same certificates)."""
    try:
        return recover_address(digest, signature)
    except ValueError:
        return None


def user_key(name: str, seed: int) -> PrivateKey:
    return PrivateKey(keccak256(b"user/%s/%d" % (name.encode(), seed)))


def user_transaction(key: PrivateKey, nonce: int, payload: bytes) -> Transaction:
    return sign_transaction(key, DOMAIN, nonce, NAMESPACE, 10, payload)


def seal_transaction(
    committee: Committee, key: PrivateKey, tx: Transaction, rng: RandomBytes
) -> Envelope:
    """`tx` sealed to the committee's threshold key (the client's `seal`)."""
    return seal(
        key,
        DOMAIN,
        committee.threshold_keys.public_key,
        KEY_EPOCH,
        EXPIRY_HEIGHT,
        MAX_FEE,
        tx,
        rng,
    )


def certify(committee: Committee, batch: bytes, author: int, round_: int) -> BatchCertificate:
    """The author's certificate for `batch`: it collects acknowledgements from
    the honest validators (`sign_ack`, checked with `verify_ack`, counted by
    `AckCollector`); the Byzantine ones withhold theirs."""
    collector = AckCollector(committee.validators, batch, author, round_)
    signers = [author, *(i for i in committee.honest if i != author)]
    for signer in signers:
        ack = sign_ack(
            committee.keys[signer], committee.separator, signer, batch, author, round_, True
        )
        verify_ack(committee.validators, committee.separator, ack, recover)
        cert = collector.add(ack)
        if cert is not None:
            return cert
    raise AssertionError("the honest validators alone hold a quorum")
