"""Every bound of the consensus core, in one place, with its reason."""

# Wire-level caps: checked on the raw bytes before any decoding.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
"""A proposal carries its payload (batch certificate digests in the node) plus
the certificates that justify its view; 4 MiB is far above a real proposal."""

MAX_PAYLOAD_BYTES = 1024 * 1024
"""The payload of one block. The node puts batch digests here, not transactions."""

MAX_VALIDATORS = 1024
"""Largest validator set a certificate may name; bounds signer lists."""

MAX_SKIPPED_VIEWS = 256
"""Nullifications a proposal may carry to justify skipping views. Views only
advance when a quorum nullifies one, so long runs of skipped views need long
runs of failed leaders; past this bound the leader does not propose."""

MAX_FUTURE_VIEWS = 64
"""Votes for views this far ahead of ours are dropped, bounding tally memory."""

MAX_BLOCKS_PER_RESPONSE = 64
"""Blocks in one sync response (and the most one request asks for)."""

MAX_SYNC_BLOCKS = 128
"""Blocks in one forward-sync response: a range of committed blocks plus, when the
finalization stored with the last one certifies a descendant, the blocks up to it."""

SYNC_GAP = MAX_BLOCKS_PER_RESPONSE
"""A validator this many blocks behind the highest finalization it knows syncs
forward by height from its tip instead of walking back from the finalization."""

MAX_PENDING_BLOCKS = 4096
"""Uncommitted blocks the core keeps in memory (proposals and fetched blocks)."""

MAX_EVIDENCE = 1024
"""Equivocation evidence kept in memory before the oldest is dropped."""

U64_MAX = 2**63 - 1
"""Views and heights on the wire stay below 2**63 (msgspec bounds are int64);
the signed encoding has room for uint64."""
