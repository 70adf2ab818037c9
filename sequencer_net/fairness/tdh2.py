"""Threshold encryption (Shoup-Gennaro TDH2 over secp256k1) and a threshold coin.

The network holds a secret x shared t-of-n (Shamir, indices 1..n); its public
key is Y = xG and shareholder i's verification key is Y_i = x_i G. Gbar is a
second generator with unknown discrete log (hash to curve of a fixed tag).

Encryption, a KEM plus AEAD (TDH2, Shoup and Gennaro 1998, section 4):

    r, s random;  U = rG;  Ubar = r Gbar;  W = sG;  Wbar = s Gbar
    key  = keccak(frame(KDF_TAG, U, rY))
    body = ChaCha20-Poly1305(key, nonce 0, plaintext, associated data = label)
    e    = H(G, Gbar, Y, U, Ubar, W, Wbar, keccak(nonce || body), label)
    f    = s + r e                      ciphertext = (U, Ubar, e, f, body)

`verify_ciphertext` recomputes W = fG - eU and Wbar = f Gbar - e Ubar and
checks e: a proof that log_G U = log_Gbar Ubar whose Fiat-Shamir challenge
covers the whole statement, the body and the label. So a ciphertext (or its U)
copied under another label, public key or body fails, and shareholders only
release shares for ciphertexts whose author knows r: that is TDH2's chosen
ciphertext security. Each key is used once (r is fresh), so a fixed AEAD nonce
is safe.

Decryption: shareholder i releases U_i = x_i U with a Chaum-Pedersen proof
that log_G Y_i = log_U U_i (`decryption_share`), or one message for a whole
block's ciphertexts with one aggregated proof (`block_shares`). `combine`
verifies shares, takes the first t valid ones, interpolates rY = sum lambda_i U_i
and opens the AEAD. Verified shares are all correct, so every t of them give
the same rY: every honest node gets the same plaintext or the same
`DecryptionFailed`.

Threshold coin: shareholder i releases x_i H(tag) with a proof; t of them give
x H(tag), and its hash is a seed no coalition of fewer than t knows in advance.

Nothing here does I/O or reads a clock; randomness comes only from the `rng`
arguments (default `secrets.token_bytes`). Proof nonces of shares are
derived from the key share and the statement (as RFC 6979 does), so a share is
a function of its inputs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final, TypeVar

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from consensus.crypto import keccak256
from sequencer_net.canonical import decode_strict

from .group import (
    GENERATOR,
    ORDER,
    POINT_LENGTH,
    SCALAR_LENGTH,
    IdentityPoint,
    InvalidGroupElement,
    Point,
    RandomBytes,
    add,
    decode_point,
    decode_scalar,
    encode_point,
    encode_scalar,
    frame,
    hash_to_curve,
    hash_to_scalar,
    lagrange_at_zero,
    mul,
    mul_base,
    random_scalar,
)
from .limits import (
    MAX_BLOCK_CIPHERTEXTS,
    MAX_BLOCK_SHARES_BYTES,
    MAX_CIPHERTEXT_BODY_BYTES,
    MAX_CIPHERTEXT_BYTES,
    MAX_COIN_TAG_BYTES,
    MAX_PLAINTEXT_BYTES,
    MAX_SHARE_BYTES,
    MAX_SHAREHOLDERS,
    PROOF_CACHE_ENTRIES,
)

GBAR_TAG: Final = b"seqnet/tdh2/v1/gbar"
KDF_TAG: Final = b"seqnet/tdh2/v1/kdf"
CIPHERTEXT_PROOF_TAG: Final = b"seqnet/tdh2/v1/ciphertext-proof"
SHARE_PROOF_TAG: Final = b"seqnet/tdh2/v1/share-proof"
BLOCK_SHARES_TAG: Final = b"seqnet/tdh2/v1/block-shares"
PROOF_CACHE_TAG: Final = b"seqnet/tdh2/v1/checked-ciphertext"
BEACON_TAG: Final = b"seqnet/beacon/v1"
COIN_PROOF_TAG: Final = b"seqnet/beacon/v1/share-proof"
COIN_SEED_TAG: Final = b"seqnet/beacon/v1/seed"
NONCE_TAG: Final = b"seqnet/tdh2/v1/proof-nonce"
AEAD_NONCE: Final = bytes(12)

GBAR: Final = hash_to_curve(GBAR_TAG, b"")


# -- errors and results ------------------------------------------------------


class ThresholdError(ValueError):
    """A threshold t that is unsafe for n shareholders (see `check_threshold`)."""


class MalformedMessage(ValueError):
    """Bytes that are not a canonical encoding of a TDH2 message; subclasses name which."""


class MalformedCiphertext(MalformedMessage):
    pass


class MalformedShare(MalformedMessage):
    pass


class MalformedBlockShares(MalformedMessage):
    pass


class InvalidCiphertext(ValueError):
    """A ciphertext whose proof does not verify under its label and public key."""


@dataclass(frozen=True, slots=True)
class NotEnoughShares:
    """Fewer than t valid shares so far: wait for more (not a final outcome)."""

    valid: int
    needed: int


@dataclass(frozen=True, slots=True)
class DecryptionFailed:
    """A final, deterministic failure: t verified shares open nothing.

    reason "aead": the body does not authenticate under the key the shares
    give, so its author did not encrypt it to this key; every node that
    combines any t verified shares gets this same result."""

    reason: str


# -- keys ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublicKeySet:
    """The network key: Y, each shareholder's Y_i (index i at position i - 1), t."""

    public_key: Point
    verification_keys: tuple[Point, ...]
    threshold: int

    @property
    def size(self) -> int:
        return len(self.verification_keys)

    def verification_key(self, index: int) -> Point | None:
        if 1 <= index <= len(self.verification_keys):
            return self.verification_keys[index - 1]
        return None


@dataclass(frozen=True, slots=True)
class KeyShare:
    """Shareholder `index`'s secret x_i, with the group key it belongs to."""

    index: int
    secret: int
    public_key: Point
    verification_key: Point  # x_i G

    def __repr__(self) -> str:
        return f"KeyShare(index={self.index}, secret=<hidden>)"


def max_faults(n: int) -> int:
    """f = (n - 1) // 3: the Byzantine shareholders consensus tolerates."""
    return (n - 1) // 3


def check_threshold(n: int, t: int) -> None:
    """Raise ThresholdError unless f + 1 <= t <= n - f (f = (n - 1) // 3).

    t >= f + 1: the f faulty shareholders alone cannot decrypt before commit.
    t <= n - f: the n - f honest shareholders alone can always decrypt."""
    if not 1 <= n <= MAX_SHAREHOLDERS:
        raise ThresholdError(f"n must be between 1 and {MAX_SHAREHOLDERS}, not {n}")
    f = max_faults(n)
    if not f + 1 <= t <= n - f:
        raise ThresholdError(
            f"threshold {t} is unsafe for n={n}: it must be between f+1={f + 1} "
            f"(no f colluders decrypt early) and n-f={n - f} (honest nodes can decrypt)"
        )


def deal(n: int, t: int, rng: RandomBytes | None = None) -> tuple[PublicKeySet, list[KeyShare]]:
    """A trusted dealer's keys: x shared on a random degree t-1 polynomial.

    Returns the public key set and the key shares for indices 1..n."""
    check_threshold(n, t)
    coefficients = [random_scalar(rng) for _ in range(t)]
    secrets_ = []
    for i in range(1, n + 1):
        value = 0
        for coefficient in reversed(coefficients):  # Horner
            value = (value * i + coefficient) % ORDER
        if value == 0:  # probability ~n/2**256; a zero share has no verification key
            raise ThresholdError("dealt a zero share; deal again")
        secrets_.append(value)
    public_key = mul_base(coefficients[0])
    keys = PublicKeySet(
        public_key=public_key,
        verification_keys=tuple(mul_base(x) for x in secrets_),
        threshold=t,
    )
    shares = [
        KeyShare(i, x, public_key, keys.verification_keys[i - 1])
        for i, x in enumerate(secrets_, start=1)
    ]
    return keys, shares


# -- wire messages ---------------------------------------------------------------

PointBytes = Annotated[bytes, msgspec.Meta(min_length=POINT_LENGTH, max_length=POINT_LENGTH)]
ScalarBytes = Annotated[bytes, msgspec.Meta(min_length=SCALAR_LENGTH, max_length=SCALAR_LENGTH)]
ShareIndex = Annotated[int, msgspec.Meta(ge=1, le=MAX_SHAREHOLDERS)]


class Ciphertext(msgspec.Struct, frozen=True, array_like=True):
    u: PointBytes
    u_bar: PointBytes
    e: ScalarBytes
    f: ScalarBytes
    body: Annotated[bytes, msgspec.Meta(max_length=MAX_CIPHERTEXT_BODY_BYTES)]


class DecryptionShare(msgspec.Struct, frozen=True, array_like=True):
    """U_i = x_i U for one ciphertext, with a proof that log_G Y_i = log_U U_i."""

    index: ShareIndex
    value: PointBytes
    e: ScalarBytes
    f: ScalarBytes


class BlockShares(msgspec.Struct, frozen=True, array_like=True):
    """Shareholder `index`'s shares for a block's ciphertexts, in block order,
    with one aggregated proof (see `block_shares`)."""

    index: ShareIndex
    values: Annotated[list[PointBytes], msgspec.Meta(max_length=MAX_BLOCK_CIPHERTEXTS)]
    e: ScalarBytes
    f: ScalarBytes


class CoinShare(msgspec.Struct, frozen=True, array_like=True):
    """x_i H(tag) with a proof that log_G Y_i = log_H(tag) of it."""

    index: ShareIndex
    value: PointBytes
    e: ScalarBytes
    f: ScalarBytes


_Message = TypeVar("_Message", Ciphertext, DecryptionShare, BlockShares, CoinShare)

_encoder = msgspec.msgpack.Encoder()
_ciphertext_decoder = msgspec.msgpack.Decoder(Ciphertext)
_share_decoder = msgspec.msgpack.Decoder(DecryptionShare)
_block_shares_decoder = msgspec.msgpack.Decoder(BlockShares)
_coin_share_decoder = msgspec.msgpack.Decoder(CoinShare)


def encode(message: Ciphertext | DecryptionShare | BlockShares | CoinShare) -> bytes:
    return _encoder.encode(message)


def _decode(
    data: bytes,
    decoder: msgspec.msgpack.Decoder[_Message],
    limit: int,
    error: type[MalformedMessage],
    what: str,
) -> _Message:
    if not isinstance(data, bytes):
        raise error("expected bytes")
    return decode_strict(data, decoder, limit=limit, what=what, malformed=error)


def decode_ciphertext(data: bytes) -> Ciphertext:
    """Size cap, structure and canonical form; the proof is `verify_ciphertext`'s."""
    return _decode(
        data, _ciphertext_decoder, MAX_CIPHERTEXT_BYTES, MalformedCiphertext, "ciphertext"
    )


def decode_share(data: bytes) -> DecryptionShare:
    return _decode(data, _share_decoder, MAX_SHARE_BYTES, MalformedShare, "decryption share")


def decode_block_shares(data: bytes) -> BlockShares:
    return _decode(
        data, _block_shares_decoder, MAX_BLOCK_SHARES_BYTES, MalformedBlockShares, "block shares"
    )


def decode_coin_share(data: bytes) -> CoinShare:
    return _decode(data, _coin_share_decoder, MAX_SHARE_BYTES, MalformedShare, "coin share")


# -- Chaum-Pedersen proofs of equal discrete logs ----------------------------------


def _mul_any(base: Point, k: int) -> Point:
    return mul_base(k) if base is GENERATOR else mul(base, k)


def _challenge(tag: bytes, context: bytes, points: Sequence[Point]) -> int:
    return hash_to_scalar(tag, context, *(encode_point(p) for p in points))


def _prove_dleq(
    tag: bytes,
    secret: int,
    base1: Point,
    public1: Point,
    base2: Point,
    public2: Point,
    context: bytes,
    nonce: int | None = None,
) -> tuple[bytes, bytes]:
    """(e, f) proving log_base1 public1 = log_base2 public2 = secret.

    Without a `nonce` the proof nonce is derived from the secret and the whole
    statement, so equal statements give equal proofs and no nonce repeats
    across different statements."""
    statement = (base1, public1, base2, public2)
    if nonce is None:
        nonce = hash_to_scalar(
            NONCE_TAG, tag, encode_scalar(secret), context, *(encode_point(p) for p in statement)
        )
    commitment1 = _mul_any(base1, nonce)
    commitment2 = mul(base2, nonce)
    e = _challenge(tag, context, (*statement, commitment1, commitment2))
    f = (nonce + e * secret) % ORDER
    return encode_scalar(e), encode_scalar(f)


def _verify_dleq(
    tag: bytes,
    base1: Point,
    public1: Point,
    base2: Point,
    public2: Point,
    context: bytes,
    e_bytes: bytes,
    f_bytes: bytes,
) -> bool:
    """Check (e, f): recompute A = f base1 - e public1, B = f base2 - e public2
    and the challenge. Never raises on bad input."""
    try:
        e = decode_scalar(e_bytes)
        f = decode_scalar(f_bytes)
        # f*base - e*public, with -e as a scalar (cheaper than negating the point)
        commitment1 = add(_mul_any(base1, f), mul(public1, ORDER - e))
        commitment2 = add(mul(base2, f), mul(public2, ORDER - e))
    except (InvalidGroupElement, IdentityPoint):
        return False
    expected = _challenge(tag, context, (base1, public1, base2, public2, commitment1, commitment2))
    return expected == e


# -- encryption ------------------------------------------------------------------


def _kdf(u: Point, shared: Point) -> bytes:
    return keccak256(frame(KDF_TAG, (encode_point(u), encode_point(shared))))


def _ciphertext_context(public_key: Point, body: bytes, label: bytes) -> bytes:
    return frame(b"", (encode_point(public_key), keccak256(AEAD_NONCE + body), label))


def encrypt(
    public_key: Point, plaintext: bytes, label: bytes, rng: RandomBytes | None = None
) -> Ciphertext:
    """Encrypt `plaintext` to the network key, bound to `label`."""
    if len(plaintext) > MAX_PLAINTEXT_BYTES:
        raise ValueError(f"plaintext of {len(plaintext)} bytes exceeds {MAX_PLAINTEXT_BYTES}")
    r = random_scalar(rng)
    s = random_scalar(rng)
    u = mul_base(r)
    u_bar = mul(GBAR, r)
    body = ChaCha20Poly1305(_kdf(u, mul(public_key, r))).encrypt(AEAD_NONCE, plaintext, label)
    e, f = _prove_dleq(
        CIPHERTEXT_PROOF_TAG,
        r,
        GENERATOR,
        u,
        GBAR,
        u_bar,
        _ciphertext_context(public_key, body, label),
        nonce=s,
    )
    return Ciphertext(u=encode_point(u), u_bar=encode_point(u_bar), e=e, f=f, body=body)


class CiphertextProofCache:
    """The ciphertexts whose proof this node has checked and found valid, so
    the same check is not paid twice (at intake or in a peer's batch, then
    again when the block's shares are made).

    An entry is keccak(frame(tag, Y, canonical ciphertext encoding, label)):
    it names every input of `verify_ciphertext`, so a hit is the answer the
    check would give again (the check is a function of its inputs), short of
    a keccak collision. Only successes are remembered; a hostile ciphertext is
    checked every time it comes. At most `capacity` entries, the least
    recently used dropped first; safe to share between threads."""

    def __init__(self, capacity: int = PROOF_CACHE_ENTRIES) -> None:
        if capacity < 1:
            raise ValueError("a proof cache holds at least one entry")
        self.capacity = capacity
        self._entries: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0

    @staticmethod
    def key(public_key: Point, ct: Ciphertext, label: bytes) -> bytes:
        return keccak256(frame(PROOF_CACHE_TAG, (encode_point(public_key), encode(ct), label)))

    def __len__(self) -> int:
        return len(self._entries)

    def holds(self, key: bytes) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._entries.move_to_end(key)
            self.hits += 1
            return True

    def remember(self, key: bytes) -> None:
        with self._lock:
            self._entries[key] = None
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


def verify_ciphertext(
    public_key: Point, ct: Ciphertext, label: bytes, cache: CiphertextProofCache | None = None
) -> bool:
    """Whether `ct`'s proof holds for this key and label (false on any bad input).
    With a `cache`, a ciphertext it holds is not checked again, and one that
    verifies is added."""
    if not isinstance(label, bytes) or not isinstance(ct, Ciphertext):
        return False
    if cache is None:
        return _check_ciphertext(public_key, ct, label)
    key = cache.key(public_key, ct, label)
    if cache.holds(key):
        return True
    ok = _check_ciphertext(public_key, ct, label)
    if ok:
        cache.remember(key)
    return ok


def _check_ciphertext(public_key: Point, ct: Ciphertext, label: bytes) -> bool:
    try:
        u = decode_point(ct.u)
        u_bar = decode_point(ct.u_bar)
    except InvalidGroupElement:
        return False
    return _verify_dleq(
        CIPHERTEXT_PROOF_TAG,
        GENERATOR,
        u,
        GBAR,
        u_bar,
        _ciphertext_context(public_key, ct.body, label),
        ct.e,
        ct.f,
    )


# -- decryption shares --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedShare:
    """A share whose proof has been checked. Only `verify_*`/`accept_*`
    functions here make them, and only these enter an interpolation."""

    index: int
    value: Point


def _share_context(index: int) -> bytes:
    return index.to_bytes(4, "big")


def decryption_share(key_share: KeyShare, ct: Ciphertext, label: bytes) -> DecryptionShare:
    """U_i = x_i U with its proof. Raises InvalidCiphertext if `ct` does not
    verify: releasing a share of an unchecked ciphertext would give up TDH2's
    chosen ciphertext security."""
    if not verify_ciphertext(key_share.public_key, ct, label):
        raise InvalidCiphertext("the ciphertext's proof does not verify under this label")
    u = decode_point(ct.u)
    value = mul(u, key_share.secret)
    e, f = _prove_dleq(
        SHARE_PROOF_TAG,
        key_share.secret,
        GENERATOR,
        key_share.verification_key,
        u,
        value,
        _share_context(key_share.index),
    )
    return DecryptionShare(index=key_share.index, value=encode_point(value), e=e, f=f)


def accept_share(
    verification_key: Point, ct: Ciphertext, share: DecryptionShare
) -> VerifiedShare | None:
    """The share as a VerifiedShare if its proof holds against `verification_key`."""
    try:
        u = decode_point(ct.u)
        value = decode_point(share.value)
    except InvalidGroupElement:
        return None
    ok = _verify_dleq(
        SHARE_PROOF_TAG,
        GENERATOR,
        verification_key,
        u,
        value,
        _share_context(share.index),
        share.e,
        share.f,
    )
    return VerifiedShare(share.index, value) if ok else None


def verify_share(verification_key: Point, ct: Ciphertext, share: DecryptionShare) -> bool:
    return accept_share(verification_key, ct, share) is not None


def combine(
    ct: Ciphertext,
    label: bytes,
    shares: Sequence[DecryptionShare],
    keys: PublicKeySet,
) -> bytes | NotEnoughShares | DecryptionFailed:
    """Verify shares in the order given, keep the first valid one per index,
    stop at t, and open the ciphertext. A share that fails its proof (a wrong
    value under a valid-looking index, an index out of range) is skipped,
    never interpolated."""
    verified: list[VerifiedShare] = []
    seen: set[int] = set()
    for share in shares:
        if len(verified) == keys.threshold:
            break
        if share.index in seen:
            continue
        key = keys.verification_key(share.index)
        if key is None:
            continue
        accepted = accept_share(key, ct, share)
        if accepted is not None:
            verified.append(accepted)
            seen.add(share.index)
    return combine_verified(ct, label, verified, keys.threshold)


def combine_verified(
    ct: Ciphertext, label: bytes, shares: Sequence[VerifiedShare], threshold: int
) -> bytes | NotEnoughShares | DecryptionFailed:
    """Open `ct` from verified shares: the first t with distinct indices."""
    chosen: dict[int, Point] = {}
    for share in shares:
        if len(chosen) == threshold:
            break
        chosen.setdefault(share.index, share.value)
    if len(chosen) < threshold:
        return NotEnoughShares(valid=len(chosen), needed=threshold)
    indices = list(chosen)
    lambdas = lagrange_at_zero(indices)
    try:
        u = decode_point(ct.u)
        shared = add(*(mul(chosen[i], lam) for i, lam in zip(indices, lambdas, strict=True)))
    except (InvalidGroupElement, IdentityPoint):
        return DecryptionFailed("group")  # unreachable for a verified ciphertext
    try:
        return ChaCha20Poly1305(_kdf(u, shared)).decrypt(AEAD_NONCE, ct.body, label)
    except InvalidTag:
        return DecryptionFailed("aead")


# -- aggregated shares for a block ---------------------------------------------------


def _block_coefficients(
    index: int, verification_key: Point, us: Sequence[bytes], values: Sequence[bytes]
) -> list[int]:
    statement = keccak256(
        frame(
            BLOCK_SHARES_TAG,
            (index.to_bytes(4, "big"), encode_point(verification_key), *us, b"|", *values),
        )
    )
    return [
        hash_to_scalar(BLOCK_SHARES_TAG, statement, j.to_bytes(4, "big")) for j in range(len(us))
    ]


def _linear_combination(points: Sequence[Point], coefficients: Sequence[int]) -> Point:
    return add(*(mul(p, c) for p, c in zip(points, coefficients, strict=True)))


def block_shares(
    key_share: KeyShare,
    cts: Sequence[Ciphertext],
    labels: Sequence[bytes],
    cache: CiphertextProofCache | None = None,
) -> BlockShares:
    """Shareholder i's shares U_ij = x_i U_j for a block's ciphertexts with ONE proof.

    Aggregation (a random linear combination, batch verification as in
    Bellare, Garay and Rabin 1998): with coefficients

        rho_j = H(i, Y_i, U_1..U_m, S_1..S_m, j)      (S_j the claimed shares)

    the message proves log_G Y_i = log_U* S* for U* = sum rho_j U_j and
    S* = sum rho_j S_j (one Chaum-Pedersen proof). Soundness: write
    S_j = x_i U_j + D_j. Then S* - x_i U* = sum rho_j D_j. The coefficients are
    hash outputs over the whole statement, the claimed S_j included, so the
    prover fixes every D_j before it learns any rho_j; if some D_j != 0 the sum
    is zero for at most one value of that rho_j given the others, probability
    1/n per hash query (n the group order, a prime). When the sum is not zero
    the aggregated statement is false and the proof verifies with probability
    1/n per query. A prover making q hash queries is caught except with
    probability about 2q/n (~2**-190 for q = 2**64). An honest message always
    verifies; a failing one came from a faulty shareholder, and its shares
    are all dropped (ask it for per-ciphertext `decryption_share`s instead).

    Cost to verify: 2 scalar multiplications per ciphertext plus 4, against 4
    per ciphertext for separate proofs; to make: 2 per ciphertext (S_j and
    its term of U*; S* is x_i U*) plus 4. Every ciphertext is checked against
    its label first (raises InvalidCiphertext naming the position), or found
    in `cache` as checked before."""
    if len(cts) != len(labels):
        raise ValueError("one label per ciphertext")
    if not 1 <= len(cts) <= MAX_BLOCK_CIPHERTEXTS:
        raise ValueError(f"a block's shares cover 1 to {MAX_BLOCK_CIPHERTEXTS} ciphertexts")
    us = []
    for position, (ct, label) in enumerate(zip(cts, labels, strict=True)):
        if not verify_ciphertext(key_share.public_key, ct, label, cache):
            raise InvalidCiphertext(f"ciphertext {position} does not verify under its label")
        us.append(decode_point(ct.u))
    values = [mul(u, key_share.secret) for u in us]
    encoded_values = [encode_point(v) for v in values]
    verification_key = key_share.verification_key
    rho = _block_coefficients(
        key_share.index, verification_key, [ct.u for ct in cts], encoded_values
    )
    u_star = _linear_combination(us, rho)
    e, f = _prove_dleq(
        BLOCK_SHARES_TAG,
        key_share.secret,
        GENERATOR,
        verification_key,
        u_star,
        mul(u_star, key_share.secret),  # = sum rho_j S_j, as every S_j = x_i U_j
        _share_context(key_share.index),
    )
    return BlockShares(index=key_share.index, values=encoded_values, e=e, f=f)


def accept_block_shares(
    verification_key: Point, cts: Sequence[Ciphertext], message: BlockShares
) -> list[VerifiedShare] | None:
    """The message's shares, in block order, if its aggregated proof holds for
    these ciphertexts; None otherwise (never raises on bad input)."""
    if len(message.values) != len(cts) or not cts:
        return None
    try:
        us = [decode_point(ct.u) for ct in cts]
        values = [decode_point(v) for v in message.values]
        rho = _block_coefficients(
            message.index, verification_key, [ct.u for ct in cts], message.values
        )
        u_star = _linear_combination(us, rho)
        s_star = _linear_combination(values, rho)
    except (InvalidGroupElement, IdentityPoint):
        return None
    ok = _verify_dleq(
        BLOCK_SHARES_TAG,
        GENERATOR,
        verification_key,
        u_star,
        s_star,
        _share_context(message.index),
        message.e,
        message.f,
    )
    return [VerifiedShare(message.index, v) for v in values] if ok else None


def own_block_shares(key_share: KeyShare, message: BlockShares) -> list[VerifiedShare]:
    """The shares of a message this shareholder made itself (`block_shares`,
    or the copy it stored before sending), taken without checking its proof:
    they are x_i U_j computed from its own x_i, so the check could only pass.
    Raises ValueError if the message is not this shareholder's or a value is
    not a point (a damaged store)."""
    if message.index != key_share.index:
        raise ValueError(f"shares of shareholder {message.index}, not {key_share.index}")
    try:
        return [VerifiedShare(message.index, decode_point(v)) for v in message.values]
    except InvalidGroupElement as exc:
        raise ValueError(f"own block shares hold a value that is not a point: {exc}") from exc


def verify_block_shares(
    verification_key: Point, cts: Sequence[Ciphertext], message: BlockShares
) -> bool:
    return accept_block_shares(verification_key, cts, message) is not None


# -- threshold coin -------------------------------------------------------------------


def _coin_base(tag: bytes) -> Point:
    if not isinstance(tag, bytes) or len(tag) > MAX_COIN_TAG_BYTES:
        raise ValueError(f"a coin tag is at most {MAX_COIN_TAG_BYTES} bytes")
    return hash_to_curve(BEACON_TAG, tag)


def coin_share(key_share: KeyShare, tag: bytes) -> CoinShare:
    """x_i H("seqnet/beacon/v1" || tag) with a proof against Y_i."""
    base = _coin_base(tag)
    value = mul(base, key_share.secret)
    e, f = _prove_dleq(
        COIN_PROOF_TAG,
        key_share.secret,
        GENERATOR,
        key_share.verification_key,
        base,
        value,
        _share_context(key_share.index),
    )
    return CoinShare(index=key_share.index, value=encode_point(value), e=e, f=f)


def _accept_coin_share(verification_key: Point, base: Point, share: CoinShare) -> Point | None:
    try:
        value = decode_point(share.value)
    except InvalidGroupElement:
        return None
    ok = _verify_dleq(
        COIN_PROOF_TAG,
        GENERATOR,
        verification_key,
        base,
        value,
        _share_context(share.index),
        share.e,
        share.f,
    )
    return value if ok else None


def accept_coin_share(verification_key: Point, tag: bytes, share: CoinShare) -> Point | None:
    """The share's value x_i H(tag) if its proof holds against Y_i; None
    otherwise (never raises on bad input)."""
    try:
        base = _coin_base(tag)
    except ValueError:
        return None
    return _accept_coin_share(verification_key, base, share)


def own_coin_share(key_share: KeyShare, share: CoinShare) -> Point:
    """The value of a coin share this shareholder made itself (`coin_share`),
    taken without checking its proof. Raises ValueError as `own_block_shares`."""
    if share.index != key_share.index:
        raise ValueError(f"coin share of shareholder {share.index}, not {key_share.index}")
    try:
        return decode_point(share.value)
    except InvalidGroupElement as exc:
        raise ValueError(f"own coin share is not a point: {exc}") from exc


def verify_coin_share(verification_key: Point, tag: bytes, share: CoinShare) -> bool:
    return accept_coin_share(verification_key, tag, share) is not None


def combine_verified_coin(tag: bytes, values: dict[int, Point], threshold: int) -> bytes:
    """The coin's seed from t shares already verified (`accept_coin_share`),
    by shareholder index: keccak(frame(seed tag, tag, sum lambda_i x_i H(tag)))."""
    if len(values) != threshold:
        raise ValueError(f"combining a coin takes exactly {threshold} verified shares")
    indices = sorted(values)
    lambdas = lagrange_at_zero(indices)
    sigma = add(*(mul(values[i], lam) for i, lam in zip(indices, lambdas, strict=True)))
    return keccak256(frame(COIN_SEED_TAG, (tag, encode_point(sigma))))


def combine_coin(
    tag: bytes, shares: Sequence[CoinShare], keys: PublicKeySet
) -> bytes | NotEnoughShares:
    """The coin's 32-byte seed keccak(frame(seed tag, tag, x H(tag))) from the
    first t valid shares; the same for any t valid shares."""
    base = _coin_base(tag)
    chosen: dict[int, Point] = {}
    for share in shares:
        if len(chosen) == keys.threshold:
            break
        key = keys.verification_key(share.index)
        if key is None or share.index in chosen:
            continue
        value = _accept_coin_share(key, base, share)
        if value is not None:
            chosen[share.index] = value
    if len(chosen) < keys.threshold:
        return NotEnoughShares(valid=len(chosen), needed=keys.threshold)
    return combine_verified_coin(tag, chosen, keys.threshold)
