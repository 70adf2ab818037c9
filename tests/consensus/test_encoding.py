"""Signed digests match EIP-712 as Ethereum tooling computes it; signatures are
in the exact form `ecrecover` accepts."""

from __future__ import annotations

import msgspec
import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data

from consensus.crypto import (
    SECP256K1_N,
    InvalidSignature,
    PrivateKey,
    keccak256,
    recover_address,
)
from consensus.encoding import (
    OPAQUE_PAYLOAD_TAG,
    PAYLOAD_TYPEHASH,
    Domain,
    block_hash,
    forced_entries_hash,
    payload_hash,
    vote_digest,
)
from consensus.payload import (
    FORCED_ENTRIES_MARK,
    BlockPayload,
    ForcedEntry,
    MalformedPayload,
    decode_payload,
    encode_payload,
)
from consensus.types import Digest, Height, ValidatorIndex, View

CONTRACT = bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3")
GENESIS = keccak256(b"a genesis block")


def _typed_vote(kind: int, view: int, height: int, block: bytes) -> dict[str, object]:
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
                {"name": "salt", "type": "bytes32"},
            ],
            "Vote": [
                {"name": "kind", "type": "uint8"},
                {"name": "view", "type": "uint64"},
                {"name": "height", "type": "uint64"},
                {"name": "block", "type": "bytes32"},
            ],
        },
        "primaryType": "Vote",
        "domain": {
            "name": "seqnet",
            "version": "1",
            "chainId": 31337,
            "verifyingContract": "0x" + CONTRACT.hex(),
            "salt": GENESIS,
        },
        "message": {"kind": kind, "view": view, "height": height, "block": block},
    }


def test_vote_digest_is_eip712_as_eth_account_computes_it() -> None:
    block = keccak256(b"some block")
    separator = Domain(31337, CONTRACT, GENESIS).separator()
    ours = vote_digest(separator, 1, View(7), Height(5), Digest(block))
    signable = encode_typed_data(full_message=_typed_vote(1, 7, 5, block))
    theirs = keccak256(b"\x19" + signable.version + signable.header + signable.body)
    assert ours == theirs


def test_signature_recovers_with_eth_account() -> None:
    key = PrivateKey(b"\x07" * 32)
    block = keccak256(b"b")
    separator = Domain(31337, CONTRACT, GENESIS).separator()
    digest = vote_digest(separator, 3, View(9), Height(4), Digest(block))
    signature = key.sign_digest(digest)
    assert signature[64] in (27, 28)
    assert recover_address(digest, signature) == key.address
    signable = encode_typed_data(full_message=_typed_vote(3, 9, 4, block))
    recovered = Account.recover_message(signable, signature=signature)
    assert bytes.fromhex(recovered[2:]) == key.address


def test_domain_separates_chains_contracts_and_geneses() -> None:
    block = Digest(keccak256(b"b"))
    a = vote_digest(Domain(1, CONTRACT, GENESIS).separator(), 1, View(1), Height(1), block)
    b = vote_digest(Domain(2, CONTRACT, GENESIS).separator(), 1, View(1), Height(1), block)
    c = vote_digest(Domain(1, bytes(20), GENESIS).separator(), 1, View(1), Height(1), block)
    other_genesis = keccak256(b"another genesis block")
    d = vote_digest(Domain(1, CONTRACT, other_genesis).separator(), 1, View(1), Height(1), block)
    assert len({a, b, c, d}) == 4


def test_block_hash_binds_every_field() -> None:
    base = (View(3), Height(2), Digest(b"\x01" * 32), b"payload", ValidatorIndex(1))
    variants = [
        (View(4), *base[1:]),
        (base[0], Height(3), *base[2:]),
        (*base[:2], Digest(b"\x02" * 32), *base[3:]),
        (*base[:3], b"payload2", base[4]),
        (*base[:4], ValidatorIndex(2)),
    ]
    digests = {block_hash(*base)} | {block_hash(*v) for v in variants}  # type: ignore[arg-type]
    assert len(digests) == 6


def test_high_s_twin_is_rejected() -> None:
    key = PrivateKey(b"\x09" * 32)
    digest = keccak256(b"m")
    signature = key.sign_digest(digest)
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    with pytest.raises(InvalidSignature, match="high s"):
        recover_address(digest, twin)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sig: sig[:64],  # short
        lambda sig: sig[:64] + b"\x00",  # v = 0
        lambda sig: bytes(32) + sig[32:],  # r = 0
    ],
)
def test_malformed_signatures_are_rejected(mangle: object) -> None:
    key = PrivateKey(b"\x09" * 32)
    digest = keccak256(b"m")
    with pytest.raises(InvalidSignature):
        recover_address(digest, mangle(key.sign_digest(digest)))  # type: ignore[operator]


def test_keccak_known_vector() -> None:
    assert keccak256(b"").hex() == (
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )


def _typed_payload(payload: BlockPayload) -> dict[str, object]:
    return {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}],
            "Payload": [
                {"name": "timestamp", "type": "uint64"},
                {"name": "stateHeight", "type": "uint64"},
                {"name": "stateRoot", "type": "bytes32"},
                {"name": "batches", "type": "bytes32[]"},
                {"name": "namespaceRoot", "type": "bytes32"},
            ],
        },
        "primaryType": "Payload",
        "domain": {"name": "seqnet"},
        "message": {
            "timestamp": payload.timestamp_ms,
            "stateHeight": payload.state_height,
            "stateRoot": payload.state_root,
            "batches": payload.batches,
            "namespaceRoot": payload.namespace_root,
        },
    }


def test_a_block_commits_to_the_payload_struct_hash_as_eth_account_computes_it() -> None:
    payload = BlockPayload(
        timestamp_ms=1_700_000_000_123,
        state_height=41,
        state_root=keccak256(b"root"),
        batches=[keccak256(b"a"), keccak256(b"b"), keccak256(b"c")],
        namespace_root=keccak256(b"namespaces"),
    )
    signable = encode_typed_data(full_message=_typed_payload(payload))
    assert payload_hash(encode_payload(payload)) == signable.body  # body = hashStruct(message)
    parent = Digest(b"\x01" * 32)
    expected = keccak256(
        keccak256(
            b"Block(uint64 view,uint64 height,bytes32 parent,bytes32 payloadHash,uint32 proposer)"
        )
        + (3).to_bytes(32, "big")
        + (42).to_bytes(32, "big")
        + parent
        + signable.body
        + (1).to_bytes(32, "big")
    )
    assert block_hash(View(3), Height(42), parent, encode_payload(payload), ValidatorIndex(1)) == (
        expected
    )


def test_bytes_that_are_not_a_payload_hash_in_their_own_domain() -> None:
    assert payload_hash(b"") == keccak256(OPAQUE_PAYLOAD_TAG)
    assert payload_hash(b"raw") == keccak256(OPAQUE_PAYLOAD_TAG + b"raw")
    assert OPAQUE_PAYLOAD_TAG != PAYLOAD_TYPEHASH


def test_only_the_canonical_payload_encoding_is_a_payload() -> None:
    """The digest hashes decoded fields, so two byte strings of one payload would
    share a digest: only the canonical one decodes."""
    import msgspec

    from consensus.payload import MalformedPayload, decode_payload

    payload = BlockPayload(
        timestamp_ms=5,
        state_height=1,
        state_root=keccak256(b"r"),
        batches=[keccak256(b"a")],
        namespace_root=keccak256(b"n"),
    )
    canonical = encode_payload(payload)
    assert decode_payload(canonical) == payload
    fields = [5, 1, payload.state_root, payload.batches, payload.namespace_root]
    variants = [
        msgspec.msgpack.encode([*fields, b"junk"]),  # an extra element
        b"\xdc\x00\x05" + canonical[1:],  # array16 header for a 5-array
        canonical[:1] + b"\xcf" + (5).to_bytes(8, "big") + canonical[2:],  # uint64 for fixint 5
    ]
    for variant in variants:
        assert variant != canonical
        with pytest.raises(MalformedPayload):
            decode_payload(variant)
        assert payload_hash(variant) != payload_hash(canonical)


def _forced_payload(forced: list[ForcedEntry]) -> BlockPayload:
    return BlockPayload(
        timestamp_ms=1_700_000_000_123,
        state_height=41,
        state_root=keccak256(b"root"),
        batches=[keccak256(b"a"), keccak256(b"b")],
        namespace_root=keccak256(b"namespaces"),
        forced=forced,
    )


def test_forced_marks_enter_the_digest_after_the_batches_as_eth_account_computes_it() -> None:
    """A payload marking forced entries hashes as the same EIP-712 Payload whose
    `batches` array ends with FORCED_ENTRIES_MARK and the entries' hash, so the
    L1 contract (which takes batchesHash as given) verifies it unchanged."""
    entries = [ForcedEntry(3, keccak256(b"x")), ForcedEntry(8, keccak256(b"y"))]
    payload = _forced_payload(entries)
    entries_hash = keccak256(
        (3).to_bytes(8, "big") + keccak256(b"x") + (8).to_bytes(8, "big") + keccak256(b"y")
    )
    assert forced_entries_hash([(3, keccak256(b"x")), (8, keccak256(b"y"))]) == entries_hash
    typed = _typed_payload(
        msgspec.structs.replace(
            payload, batches=[*payload.batches, FORCED_ENTRIES_MARK, entries_hash]
        )
    )
    signable = encode_typed_data(full_message=typed)
    assert payload_hash(encode_payload(payload)) == signable.body
    # Without marks the hash is the one blocks always had; each mark changes it.
    plain = _forced_payload([])
    assert (
        payload_hash(encode_payload(plain))
        == encode_typed_data(full_message=_typed_payload(plain)).body
    )
    other = _forced_payload([ForcedEntry(3, keccak256(b"x")), ForcedEntry(9, keccak256(b"y"))])
    hashes = {payload_hash(encode_payload(p)) for p in (payload, plain, other)}
    assert len(hashes) == 3


def test_a_payload_without_forced_marks_keeps_its_five_field_encoding() -> None:
    plain = _forced_payload([])
    fields = [plain.timestamp_ms, plain.state_height, plain.state_root, plain.batches]
    assert encode_payload(plain) == msgspec.msgpack.encode([*fields, plain.namespace_root])
    # An explicit empty list is a second encoding of the same payload: refused.
    with pytest.raises(MalformedPayload, match="canonical"):
        decode_payload(msgspec.msgpack.encode([*fields, plain.namespace_root, []]))
    marked = _forced_payload([ForcedEntry(1, keccak256(b"x"))])
    assert decode_payload(encode_payload(marked)) == marked
    # The mark never names a batch: the batch list in the hash ends at it.
    with pytest.raises(MalformedPayload, match="mark"):
        decode_payload(
            encode_payload(msgspec.structs.replace(plain, batches=[FORCED_ENTRIES_MARK]))
        )
