"""What the store keeps per validator-set epoch: epoch 0 under the single-epoch
keys (a chain that never rotates stores exactly as before), later epochs apart
(views restart at 1 in each), and the epochs' end proofs."""

from __future__ import annotations

from pathlib import Path

from rocksdict import Options, Rdict

from consensus.io import SafetyRecord
from consensus.messages import Block, EpochEndProof, Vote, VoteKind
from sequencer_net.storage.node_store import (
    CERTIFICATE_PREFIX,
    SAFETY_KEY,
    EvidenceRecord,
    NodeStore,
)
from tests.storage.test_node_store import block, cert


def _raw_keys(path: Path) -> list[bytes]:
    db = Rdict(str(path), Options(raw_mode=True))
    try:
        stored = db.keys()
        return [k for k in stored if isinstance(k, bytes)]
    finally:
        db.close()


def test_epoch_zero_keeps_the_single_epoch_keys(tmp_path: Path) -> None:
    with NodeStore(tmp_path / "db", sync=False) as store:
        store.save_vote(SafetyRecord(view=3))
        store.save_certificate(cert(VoteKind.NULLIFY, 3))
    keys = _raw_keys(tmp_path / "db")
    assert SAFETY_KEY in keys
    assert CERTIFICATE_PREFIX + (3).to_bytes(8, "big") + bytes([VoteKind.NULLIFY]) in keys
    assert all(not k.startswith((b"es/", b"ec/", b"ep/", b"ee/")) for k in keys)


def test_each_epoch_has_its_own_safety_record_and_certificates(tmp_path: Path) -> None:
    with NodeStore(tmp_path / "db", sync=False) as store:
        store.save_vote(SafetyRecord(view=40), epoch=0)
        store.save_vote(SafetyRecord(view=2), epoch=1)
        store.save_certificate(cert(VoteKind.NULLIFY, 2), epoch=0)
        store.save_certificate(cert(VoteKind.NULLIFY, 2), epoch=1)
        store.save_certificate(cert(VoteKind.NOTARIZE, 3, 12, b"\x01" * 32), epoch=1)
        # A finalization of epoch 1 drops epoch 1's lower views only.
        store.save_certificate(cert(VoteKind.FINALIZE, 3, 12, b"\x01" * 32), epoch=1)
    with NodeStore(tmp_path / "db", sync=False) as store:
        safety0, safety1 = store.load_safety(), store.load_safety(epoch=1)
        assert safety0 is not None and safety0.view == 40
        assert safety1 is not None and safety1.view == 2
        assert store.load_safety(epoch=2) is None
        assert [c.view for c in store.load_certificates()] == [2]
        assert [(c.view, c.kind) for c in store.load_certificates(epoch=1, first_height=10)] == [
            (3, VoteKind.NOTARIZE),
            (3, VoteKind.FINALIZE),
        ]
        assert [c.kind for c in store.certificates_at(2)] == [VoteKind.NULLIFY]
        assert store.certificates_at(2, epoch=1) == []


def test_an_epoch_end_proof_survives_a_restart(tmp_path: Path) -> None:
    tail: list[Block] = [block(11, b"\x02" * 32)]
    proof = EpochEndProof(
        epoch=1,
        last_height=10,
        finalization=cert(VoteKind.FINALIZE, 7, 11, tail[0].digest()),
        tail=tail,
    )
    with NodeStore(tmp_path / "db", sync=False) as store:
        assert store.epoch_end(1) is None
        store.save_epoch_end(proof)
    with NodeStore(tmp_path / "db", sync=False) as store:
        assert store.epoch_end(1) == proof
        assert store.epoch_end(0) is None


def test_evidence_of_a_later_epoch_is_kept_apart_from_epoch_zeros(tmp_path: Path) -> None:
    """Views restart, so the same (offender, view, kind) can be two offences in two
    epochs; each epoch's are read apart, or all together with their epochs (what
    the API and the L1 watcher read)."""
    first = Vote(VoteKind.NOTARIZE, 3, 5, b"\x01" * 32, 2, b"\x00" * 65)
    second = Vote(VoteKind.NOTARIZE, 3, 5, b"\x02" * 32, 2, b"\x00" * 65)
    record = EvidenceRecord(2, first, second, "two notarize votes in one view")
    with NodeStore(tmp_path / "db", sync=False) as store:
        assert store.save_evidence(record)
        assert store.save_evidence(record, epoch=1)
        assert not store.save_evidence(record, epoch=1)
    with NodeStore(tmp_path / "db", sync=False) as store:
        assert store.load_evidence() == [record]
        assert store.load_evidence(epoch=1) == [record]
        assert store.load_evidence(epoch=2) == []
        assert store.save_evidence(record, epoch=3)
        assert store.load_every_epoch_evidence() == [(0, record), (1, record), (3, record)]
        assert store.load_every_epoch_evidence(limit=2) == [(0, record), (1, record)]
