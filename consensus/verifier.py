"""Signature checks for votes and certificates, with a bounded memo.

Verification is a pure function of (digest, signature), so remembering
results is safe: a vote seen alone and again inside a certificate is
recovered once. The memo is bounded and forgets oldest entries first.

One verifier may be used from several threads at once (the node checks
followed blocks in worker threads): the memo is read and updated under a
lock, and recovery itself runs outside it.
"""

from __future__ import annotations

import threading

from consensus.crypto import Address, InvalidSignature, recover_address
from consensus.encoding import vote_digest
from consensus.messages import Certificate, MalformedMessage, Vote, check_certificate_shape
from consensus.types import Digest, Height, ValidatorIndex, ValidatorSet, View

DEFAULT_MEMO_ENTRIES = 1 << 16


class SignatureVerifier:
    def __init__(self, domain_separator: bytes, max_entries: int = DEFAULT_MEMO_ENTRIES) -> None:
        self.domain_separator = domain_separator
        self._max_entries = max_entries
        self._memo: dict[tuple[bytes, bytes], Address | None] = {}
        self._lock = threading.Lock()

    def recover(self, digest: bytes, signature: bytes) -> Address | None:
        key = (digest, signature)
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        try:
            address: Address | None = recover_address(digest, signature)
        except InvalidSignature:
            address = None
        with self._lock:
            if key not in self._memo:
                if len(self._memo) >= self._max_entries:
                    del self._memo[next(iter(self._memo))]
                self._memo[key] = address
        return address

    def vote_digest(self, kind: int, view: int, height: int, block: bytes) -> bytes:
        return vote_digest(self.domain_separator, kind, View(view), Height(height), Digest(block))

    def check_signature(
        self,
        validators: ValidatorSet,
        signer: ValidatorIndex,
        kind: int,
        view: int,
        height: int,
        block: bytes,
        signature: bytes,
    ) -> bool:
        if not validators.contains(signer):
            return False
        digest = self.vote_digest(kind, view, height, block)
        return self.recover(digest, signature) == validators.address(signer)

    def check_vote(self, validators: ValidatorSet, vote: Vote) -> bool:
        return self.check_signature(
            validators,
            ValidatorIndex(vote.signer),
            vote.kind,
            vote.view,
            vote.height,
            vote.block,
            vote.signature,
        )

    def check_certificate(self, validators: ValidatorSet, cert: Certificate) -> bool:
        """A well-formed certificate: a quorum of distinct members, each signature
        valid for the certified vote. Stands on its own: it does not rely on the
        wire decoder having checked the shape."""
        try:
            check_certificate_shape(cert)
        except MalformedMessage:
            return False
        signers = [ValidatorIndex(i) for i in cert.signers]
        if not all(validators.contains(i) for i in signers):
            return False
        if validators.weight_of(signers) < validators.quorum_weight:
            return False
        digest = self.vote_digest(cert.kind, cert.view, cert.height, cert.block)
        return all(
            self.recover(digest, sig) == validators.address(i)
            for i, sig in zip(signers, cert.signatures, strict=True)
        )
