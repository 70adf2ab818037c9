"""Every bound of the encrypted mempool's wire messages, in one place, with its reason.

Each `decode_*` function checks the raw length against these caps before it
parses anything.
"""

from __future__ import annotations

from typing import Final

from consensus.limits import MAX_VALIDATORS
from sequencer_net.mempool.limits import MAX_TX_BYTES

BLIND_BYTES: Final = 32
"""The random blind in front of the inner transaction: it keeps the public
payload hash from confirming a guessed transaction."""

AEAD_TAG_BYTES: Final = 16
"""ChaCha20-Poly1305's authentication tag."""

MAX_PLAINTEXT_BYTES: Final = BLIND_BYTES + MAX_TX_BYTES
"""What one envelope encrypts: the blind and one encoded signed transaction."""

MAX_CIPHERTEXT_BODY_BYTES: Final = MAX_PLAINTEXT_BYTES + AEAD_TAG_BYTES

MAX_CIPHERTEXT_BYTES: Final = MAX_CIPHERTEXT_BODY_BYTES + 256
"""A whole encoded ciphertext: the body with its 5-byte length prefix, two
35-byte points and two 34-byte scalars (138 bytes of fixed fields) rounded up."""

MAX_SHARE_BYTES: Final = 160
"""One encoded decryption or coin share: index (at most 5 bytes), a point and
two scalars with their prefixes (103 bytes), rounded up."""

MAX_BLOCK_CIPHERTEXTS: Final = 16_384
"""Ciphertexts one aggregated share message covers: twice a full batch
(mempool MAX_BATCH_TXS), far above what one block's decryption needs at the
throughput target, and bounding one message's verification to a few seconds
of one core at worst."""

MAX_BLOCK_SHARES_BYTES: Final = 35 * MAX_BLOCK_CIPHERTEXTS + 256
"""An encoded aggregated share message: 35 bytes per share value plus the
index, the list header and one proof."""

PROOF_CACHE_ENTRIES: Final = 65_536
"""Ciphertexts whose proof a node remembers having checked (32 bytes each,
about 6 MB with the dictionary's overhead): far more than the envelopes
between intake and the making of the block's shares at the throughput
target, so the share maker finds them all checked."""

MAX_COIN_TAG_BYTES: Final = 256
"""What a threshold coin is named by (for example an encoded height)."""

MAX_SHAREHOLDERS: Final = MAX_VALIDATORS

MAX_ENVELOPE_BYTES: Final = MAX_CIPHERTEXT_BYTES + 256
"""A whole encoded envelope: the ciphertext plus the version, chain id,
namespace, key epoch, expiry and max fee (at most 9 bytes each), the 20-byte
sender, the 32-byte payload hash and the 65-byte signature with their
prefixes (about 180 bytes), rounded up."""
