"""The validator's store: round trips, restarts, corruption and kill -9."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from rocksdict import Options, Rdict, WriteBatch

from consensus.crypto import keccak256
from consensus.io import SafetyRecord
from consensus.messages import Block, Certificate, VoteKind
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.storage.node_store import (
    KEY_LAYOUT,
    SAFETY_KEY,
    TIP_KEY,
    CommitOutOfOrder,
    CorruptStore,
    NodeStore,
)

GENESIS = keccak256(b"test genesis")
REPO = Path(__file__).resolve().parents[2]


def block(height: int, parent: bytes, view: int | None = None) -> Block:
    return Block(
        view=view if view is not None else 2 * height,
        height=height,
        parent=parent,
        proposer=height % 4,
        payload=b"payload %d" % height,
    )


def cert(kind: int, view: int, height: int = 0, digest: bytes = bytes(32)) -> Certificate:
    return Certificate(
        kind=kind, view=view, height=height, block=digest, signers=[0, 1, 2],
        signatures=[bytes([i]) * 65 for i in range(3)],
    )  # fmt: skip


def txs_at(height: int, count: int = 5) -> list[bytes]:
    return [b"tx %d/%d " % (height, i) + bytes(40) for i in range(count)]


def commit_chain(store: NodeStore, heights: int) -> list[Block]:
    chain = []
    parent = store.tip()[1]
    start = store.tip()[0] + 1
    for height in range(start, start + heights):
        b = block(height, parent)
        digest = b.digest()
        store.commit_block(
            b,
            cert(VoteKind.FINALIZE, b.view, height, digest),
            txs_at(height),
            keccak256(b"root %d" % height),
            executed=b"receipts %d" % height,
            batch_digests=[keccak256(b"batch %d" % height)],
        )
        chain.append(b)
        parent = digest
    return chain


def test_empty_store(tmp_path: Path) -> None:
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        assert store.tip() == (0, GENESIS, 0)
        assert store.load_safety() is None
        assert store.load_certificates() == []
        assert store.load_pending_transactions() == []
        assert store.block_at(1) is None
        assert store.next_batch_sequence() == 0


def test_key_prefixes_are_prefix_free() -> None:
    prefixes = list(KEY_LAYOUT.values())
    assert len(set(prefixes)) == len(prefixes)
    for a in prefixes:
        for b in prefixes:
            assert a == b or not b.startswith(a), (a, b)


def test_safety_record_and_voted_blocks_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    b1 = block(1, GENESIS, view=1)
    b2 = block(2, b1.digest(), view=2)
    with NodeStore(path, genesis_digest=GENESIS) as store:
        store.save_vote(SafetyRecord(view=1, notarized=b1.digest()), [b1])
        store.store_block(b2)
        store.save_vote(SafetyRecord(view=2, notarized=b2.digest(), finalized=True))
    with NodeStore(path, genesis_digest=GENESIS) as store:
        assert store.load_safety() == SafetyRecord(view=2, notarized=b2.digest(), finalized=True)
        assert store.get_voted_block(b1.digest()) == b1
        assert store.block_by_digest(b2.digest()) == b2
        assert store.voted_blocks() == [b1, b2]
        assert store.get_voted_block(bytes(32)) is None


def test_certificates_below_the_highest_finalization_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with NodeStore(path) as store:
        store.save_certificate(cert(VoteKind.NOTARIZE, 1, 1, b"\x01" * 32))
        store.save_certificate(cert(VoteKind.NULLIFY, 2))
        assert [c.view for c in store.load_certificates()] == [1, 2]
        store.save_certificate(cert(VoteKind.NOTARIZE, 3, 2, b"\x03" * 32))
        store.save_certificate(cert(VoteKind.FINALIZE, 3, 2, b"\x03" * 32))
        store.save_certificate(cert(VoteKind.NULLIFY, 4))
    with NodeStore(path) as store:
        loaded = store.load_certificates()
        assert [(c.view, c.kind) for c in loaded] == [
            (3, VoteKind.NOTARIZE),
            (3, VoteKind.FINALIZE),
            (4, VoteKind.NULLIFY),
        ]
        assert loaded[1] == cert(VoteKind.FINALIZE, 3, 2, b"\x03" * 32)


def test_the_block_of_a_view_is_found_by_its_view(tmp_path: Path) -> None:
    """committed_in_view searches the chain by view (views grow along it), and
    view_certificates adds that block's own finalization to the view's kept ones."""
    store = NodeStore(tmp_path / "db", genesis_digest=GENESIS, sync=False)
    chain = commit_chain(store, 37)  # block h is in view 2h: odd views hold no block
    for b in chain:
        assert store.committed_in_view(b.view) == b
    for view in (0, 1, 3, 41, 75, 1_000):
        assert store.committed_in_view(view) is None
    (final,) = store.view_certificates(chain[9].view)
    assert (final.kind, final.height, final.block) == (VoteKind.FINALIZE, 10, chain[9].digest())
    store.save_certificate(cert(VoteKind.NULLIFY, 75))
    assert [c.kind for c in store.view_certificates(75)] == [VoteKind.NULLIFY]
    assert store.view_certificates(73) == []
    store.close()


def test_commits_round_trip_and_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with NodeStore(path, genesis_digest=GENESIS) as store:
        voted_low = block(2, b"\x09" * 32, view=99)  # a fork at height 2, never committed
        voted_high = block(4, b"\x08" * 32, view=98)
        store.store_block(voted_low)
        store.store_block(voted_high)
        chain = commit_chain(store, 3)
        assert store.get_voted_block(voted_low.digest()) is None  # pruned: height <= 3
        assert store.get_voted_block(voted_high.digest()) == voted_high
    with NodeStore(path, genesis_digest=GENESIS) as store:
        assert store.tip() == (3, chain[-1].digest(), chain[-1].view)
        for b in chain:
            h = b.height
            assert store.block_at(h) == b
            assert store.block_by_digest(b.digest()) == b
            finalization = store.finalization_at(h)
            assert finalization is not None and finalization.block == b.digest()
            assert store.state_root_at(h) == keccak256(b"root %d" % h)
            assert store.executed_at(h) == b"receipts %d" % h
            assert store.transactions_at(h) == txs_at(h)
            for position, tx in enumerate(txs_at(h)):
                assert store.find_transaction(tx_hash(tx)) == (h, position)
        assert store.find_transaction(bytes(32)) is None
        every = [tx_hash(tx) for b in chain for tx in txs_at(b.height)]
        assert every and store.committed_among([*every, bytes(32)]) == set(every)
        assert store.committed_among([bytes(32)]) == set() == store.committed_among([])
        assert store.transactions_at(4) == []
        with pytest.raises(CommitOutOfOrder):
            store.commit_block(
                block(5, chain[-1].digest()), cert(3, 10, 5), [], bytes(32)
            )  # skips height 4
        with pytest.raises(CommitOutOfOrder):
            store.commit_block(block(4, b"\x07" * 32), cert(3, 8, 4), [], bytes(32))
        commit_chain(store, 1)
        assert store.tip()[0] == 4


def test_pending_transactions(tmp_path: Path) -> None:
    path = tmp_path / "db"
    first, second = txs_at(1, 3), [b"late tx", b"later tx"]
    with NodeStore(path, genesis_digest=GENESIS) as store:
        store.save_pending_transactions(first)
        store.save_pending_transactions(second)
    with NodeStore(path, genesis_digest=GENESIS) as store:
        assert store.load_pending_transactions() == first + second  # in saved order
        commit_chain(store, 1)  # commits txs_at(1, 5), which includes `first`
        assert store.load_pending_transactions() == second
        store.remove_pending([tx_hash(b"late tx")])
        assert store.load_pending_transactions() == [b"later tx"]
        # A pending entry for an already committed tx (a lost unsynced delete) is dropped.
        store.save_pending_transactions([txs_at(1)[4], b"new"])
        assert store.load_pending_transactions() == [b"later tx", b"new"]
    with NodeStore(path, genesis_digest=GENESIS) as store:
        assert store.load_pending_transactions() == [b"later tx", b"new"]
        store.save_pending_transactions([b"newest"])
        assert store.load_pending_transactions()[-1] == b"newest"  # arrival continues


def test_batches(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with NodeStore(path, genesis_digest=GENESIS) as store:
        for height in range(1, 5):
            store.save_batch(keccak256(b"batch %d" % height), b"encoded %d" % height)
        store.save_batch(keccak256(b"own"), b"own 0", own_sequence=0)
        store.save_batch(keccak256(b"own 1"), b"own 1", own_sequence=1)
        commit_chain(store, 4)  # height h references keccak("batch h")
        assert store.get_batch(keccak256(b"batch 2")) == b"encoded 2"
    with NodeStore(path, genesis_digest=GENESIS) as store:
        assert store.next_batch_sequence() == 2
        assert store.get_batch(keccak256(b"own")) == b"own 0"


def test_unreferenced_batches_are_pruned_after_their_retention(tmp_path: Path) -> None:
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        included, stray, own = keccak256(b"included"), keccak256(b"stray"), keccak256(b"own")
        store.save_batch(included, b"included", author=1)
        store.save_batch(stray, b"stray", author=2)  # never in any block
        store.save_batch(own, b"own", author=0, own_sequence=0)  # ours, never included
        b1 = block(1, GENESIS)
        store.commit_block(b1, cert(3, 2, 1, b1.digest()), [], bytes(32), batch_digests=[included])
        late = keccak256(b"late")
        store.save_batch(late, b"late", author=3)  # arrived at height 1
        # Arrived at height 0: pruned below 1 unless included or our own.
        assert store.prune_unreferenced_batches(1, keep_author=0) == [stray]
        assert store.get_batch(stray) is None
        assert store.get_batch(included) == b"included"  # chain data
        assert store.get_batch(own) == b"own"
        assert store.get_batch(late) == b"late"  # still within its retention
        assert store.prune_unreferenced_batches(1, keep_author=0) == []  # index consumed
        assert store.prune_unreferenced_batches(2, keep_author=0) == [late]


@pytest.mark.parametrize(
    ("key", "value", "read"),
    [
        (TIP_KEY, b"short", "reopen"),
        (SAFETY_KEY, b"\xc1", "safety"),
        (SAFETY_KEY, b"\x93\x01\x02\x03", "safety"),
        (b"f/" + (1).to_bytes(8, "big"), b"\x92\x01", "finalization"),
        (b"c/" + (1).to_bytes(8, "big") + b"\x01", b"junk", "certificates"),
        (b"bh/" + (1).to_bytes(8, "big"), b"\x90", "block"),
        (b"i/" + bytes(32), b"\x00" * 5, "find"),
        (b"i/" + bytes(32), b"\x00" * 5, "committed_among"),
        (b"p/" + bytes(32), b"\x00" * 8 + b"not matching its hash", "pending"),
    ],
)
def test_corrupt_records_raise_corrupt_store(
    tmp_path: Path, key: bytes, value: bytes, read: str
) -> None:
    path = tmp_path / "db"
    NodeStore(path).close()
    options = Options(raw_mode=True)
    raw = Rdict(os.fspath(path), options)
    raw.put(key, value)
    raw.close()
    with pytest.raises(CorruptStore):
        store = NodeStore(path)
        try:
            match read:
                case "safety":
                    store.load_safety()
                case "finalization":
                    store.finalization_at(1)
                case "certificates":
                    store.load_certificates()
                case "block":
                    store.block_at(1)
                case "find":
                    store.find_transaction(bytes(32))
                case "committed_among":
                    store.committed_among([bytes(31) + b"\x01", bytes(32)])
                case "pending":
                    store.load_pending_transactions()
        finally:
            store.close()


# ---- kill -9 ---------------------------------------------------------------------------

CRASH_TXS = 300

WRITER = """
import sys
from consensus.crypto import keccak256
from consensus.io import SafetyRecord
from consensus.messages import Block, Certificate
from sequencer_net.storage.node_store import NodeStore

path, genesis = sys.argv[1], bytes.fromhex(sys.argv[2])
store = NodeStore(path, genesis_digest=genesis)

def txs(h):
    return [b"tx %d/%d " % (h, i) + bytes(60) for i in range({txs})]

print("ready", flush=True)
while True:
    height, parent, _ = store.tip()
    h = height + 1
    b = Block(view=2 * h, height=h, parent=parent, proposer=h % 4, payload=b"p %d" % h)
    d = b.digest()
    store.save_pending_transactions(txs(h)[:20])
    store.save_vote(SafetyRecord(view=2 * h, notarized=d), [b])
    fin = Certificate(kind=3, view=2 * h, height=h, block=d, signers=[0], signatures=[bytes(65)])
    store.save_certificate(fin)
    store.save_vote(SafetyRecord(view=2 * h, notarized=d, finalized=True))
    store.commit_block(b, fin, txs(h), keccak256(b"root %d" % h))
    print("committed", h, flush=True)
""".replace("{txs}", str(CRASH_TXS))


COMMITTED_LINE = re.compile(r"committed (\d+)")


def crash_txs(height: int) -> list[bytes]:
    return [b"tx %d/%d " % (height, i) + bytes(60) for i in range(CRASH_TXS)]


def check_consistent(path: Path, acknowledged: int) -> int:
    """Reopen after a kill: the tip's block, transactions, finalization and root are all
    there, nothing past the tip is, and nothing acknowledged as committed is lost."""
    with NodeStore(path, genesis_digest=GENESIS) as store:
        height, digest, view = store.tip()
        assert height >= acknowledged
        if height == 0:
            assert digest == GENESIS
            return 0
        tip_block = store.block_at(height)
        assert tip_block is not None and tip_block.digest() == digest and tip_block.view == view
        parent = store.block_at(height - 1)
        assert tip_block.parent == (GENESIS if parent is None else parent.digest())
        finalization = store.finalization_at(height)
        assert finalization is not None and finalization.block == digest
        assert store.state_root_at(height) == keccak256(b"root %d" % height)
        committed = crash_txs(height)
        assert store.transactions_at(height) == committed
        assert store.find_transaction(tx_hash(committed[-1])) == (height, CRASH_TXS - 1)
        assert store.block_at(height + 1) is None
        assert store.transactions_at(height + 1) == []
        safety = store.load_safety()
        assert safety is not None and safety.view >= view
        assert all(b.height > height for b in store.voted_blocks())
        for pending in store.load_pending_transactions():
            assert store.find_transaction(tx_hash(pending)) is None
        return height


def test_kill_9_at_random_points_leaves_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEQNET_TEST_SEED", "20261107"))
    rng = random.Random(seed)
    print(f"kill -9 test seed={seed} (replay: SEQNET_TEST_SEED={seed})")
    path = tmp_path / "db"
    last = 0
    for kill in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, os.fspath(path), GENESIS.hex()],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", f"seed={seed} kill={kill}"
        time.sleep(rng.uniform(0.02, 0.4))
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        # Only whole "committed N" lines are acknowledgements; anything else the
        # process printed before it died (or a line it did not finish) claims
        # nothing and is shown for the record.
        lines = output.split("\n")
        complete, unfinished = lines[:-1], lines[-1]
        acknowledged = [int(m[1]) for m in map(COMMITTED_LINE.fullmatch, complete) if m]
        other = [line for line in complete if not COMMITTED_LINE.fullmatch(line)]
        if other or unfinished:
            print(f"kill {kill}: other output {other!r}, unfinished line {unfinished!r}")
        print(f"kill {kill}: writer acknowledged up to {max(acknowledged, default=last)}")
        height = check_consistent(path, max(acknowledged, default=last))
        assert height >= last, f"seed={seed} kill={kill}: tip went back"
        last = height
    assert last > 0, f"seed={seed}: the writer never committed"


def test_a_blocks_own_finalization_is_kept_even_when_a_descendants_committed_it(
    tmp_path: Path,
) -> None:
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        (first,) = commit_chain(store, 1)
        assert store.own_finalization(1, first.digest()) == store.finalization_at(1)
        second = block(2, first.digest())
        third = block(3, second.digest())
        learned = cert(VoteKind.FINALIZE, second.view, 2, second.digest())
        store.save_certificate(learned)  # learned, but the chain commits under 3's
        store.commit_block(
            second, cert(VoteKind.FINALIZE, third.view, 3, third.digest()), [], bytes(32)
        )
        assert store.own_finalization(2, second.digest()) == learned
        assert store.own_finalization(2, b"\x01" * 32) is None
        store.save_certificate(cert(VoteKind.FINALIZE, third.view, 3, third.digest()))
        assert store.own_finalization(2, second.digest()) == learned  # not dropped by view
        assert not store.has_own_finalization(4)
        late = cert(VoteKind.FINALIZE, 20, 4, b"\x04" * 32)
        store.save_late_finalization(late)
        assert store.has_own_finalization(4)
        assert store.own_finalization(4, b"\x04" * 32) == late
        with pytest.raises(ValueError):
            store.save_late_finalization(cert(VoteKind.NOTARIZE, 20, 4))


def test_a_commit_indexes_transactions_by_the_hashes_given_and_refuses_a_miscount(
    tmp_path: Path,
) -> None:
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        b = block(1, GENESIS)
        finalization = cert(VoteKind.FINALIZE, b.view, 1, b.digest())
        txs = txs_at(1)
        with pytest.raises(ValueError):
            store.commit_block(b, finalization, txs, bytes(32), tx_hashes=[tx_hash(txs[0])])
        assert store.tip()[0] == 0 and store.find_transaction(tx_hash(txs[0])) is None
        store.commit_block(b, finalization, txs, bytes(32), tx_hashes=[tx_hash(t) for t in txs])
        for position, tx in enumerate(txs):
            assert store.find_transaction(tx_hash(tx)) == (1, position)


def test_pending_transactions_are_kept_under_the_hashes_given(tmp_path: Path) -> None:
    from rocksdict import WriteBatch

    txs = txs_at(1, 3)
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        with pytest.raises(ValueError):
            store.stage_pending_transactions(WriteBatch(raw_mode=True), txs, [tx_hash(txs[0])])
        batch = WriteBatch(raw_mode=True)
        store.stage_pending_transactions(batch, txs, [tx_hash(t) for t in txs])
        store.write_synced(batch)
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        assert store.load_pending_transactions() == txs
        store.remove_pending([tx_hash(txs[1])])
        assert store.load_pending_transactions() == [txs[0], txs[2]]


def test_commits_prune_exactly_the_voted_blocks_at_or_below_them(tmp_path: Path) -> None:
    """Whatever order blocks are stored, voted for, committed and the store
    reopened in, the voted blocks on disk after a commit at height h are the
    ones stored with a height above h, plus those stored since (a model of the
    old scan-and-delete). A commit finds them in memory, not by scanning a key
    range full of its predecessors' tombstones."""
    rng = random.Random(7)
    path = tmp_path / "db"
    model: dict[bytes, Block] = {}
    store = NodeStore(path, genesis_digest=GENESIS)
    try:
        for step in range(400):
            op = rng.random()
            tip = store.tip()[0]
            if op < 0.45:
                height = tip + rng.randint(-2, 3)
                if height < 1:
                    continue
                b = block(height, keccak256(b"fork %d" % step), view=10_000 + step)
                if rng.random() < 0.5:
                    store.store_block(b, synced=rng.random() < 0.5)
                else:
                    store.save_vote(SafetyRecord(view=step), [b])
                model[b.digest()] = b
            elif op < 0.9:
                (committed,) = commit_chain(store, 1)
                model = {d: b for d, b in model.items() if b.height > committed.height}
            else:
                store.close()
                store = NodeStore(path, genesis_digest=GENESIS)
            on_disk = store.voted_blocks()
            assert {b.digest() for b in on_disk} == set(model)
            assert [b.height for b in on_disk] == sorted(b.height for b in on_disk)
            for digest, b in model.items():
                assert store.get_voted_block(digest) == b
    finally:
        store.close()


def test_batch_pruning_resumes_where_it_stopped_and_after_a_restart(tmp_path: Path) -> None:
    """Each prune deletes every arrival record below its bound; the next starts
    at that bound (the range below is tombstones). Batches that arrived since,
    a restart (which forgets where it stopped) and a bound above the tip all
    still prune exactly what arrived below the bound."""
    path = tmp_path / "db"
    arrived: dict[bytes, int] = {}
    with NodeStore(path, genesis_digest=GENESIS) as store:
        for round_ in range(6):
            for i in range(3):
                digest = keccak256(b"stray %d %d" % (round_, i))
                store.save_batch(digest, b"stray", author=2)
                arrived[digest] = store.tip()[0]
            commit_chain(store, 2)
            bound = store.tip()[0] - 1 if round_ != 3 else store.tip()[0] + 5
            expected = sorted(d for d, h in arrived.items() if h < bound)
            assert sorted(store.prune_unreferenced_batches(bound, keep_author=0)) == expected
            for digest in expected:
                assert store.get_batch(digest) is None
                del arrived[digest]
            for digest in arrived:
                assert store.get_batch(digest) == b"stray"
    with NodeStore(path, genesis_digest=GENESIS) as store:
        commit_chain(store, 1)
        bound = store.tip()[0] + 1
        assert sorted(store.prune_unreferenced_batches(bound, keep_author=0)) == sorted(arrived)


def test_a_finalization_drops_exactly_the_lower_views_certificates_without_range_deletes(
    tmp_path: Path,
) -> None:
    """Certificates of several epochs saved in random order, the store reopened
    now and then: after each save the records on disk are those of a model of
    consensus' StoreCertificate (a finalization drops its epoch's lower views),
    and the database holds no range tombstone (one per finalization made every
    read pay for all of them)."""
    rng = random.Random(11)
    path = tmp_path / "db"
    model: dict[tuple[int, int, int], Certificate] = {}  # (epoch, view, kind)
    store = NodeStore(path, genesis_digest=GENESIS)
    try:
        for step in range(300):
            if rng.random() < 0.1:
                store.close()
                store = NodeStore(path, genesis_digest=GENESIS)
                continue
            epoch = rng.choice((0, 0, 1, 2))
            kind = rng.choice(list(VoteKind))
            view = rng.randint(1, 40)
            c = cert(kind, view, height=view, digest=keccak256(b"%d" % step))
            store.save_certificate(c, epoch=epoch)
            if kind == VoteKind.FINALIZE:
                model = {k: v for k, v in model.items() if k[0] != epoch or k[1] >= view}
            model[(epoch, view, kind)] = c
            for e in (0, 1, 2):
                on_disk = {(e, c.view, int(c.kind)): c for c in _stored_certificates(store, e)}
                assert on_disk == {k: v for k, v in model.items() if k[0] == e}
    finally:
        store.close()


def test_finalizations_write_point_deletes_not_range_deletes(tmp_path: Path) -> None:
    """Every entry a run of views writes to the memtable is a put or a point
    delete: a range tombstone per finalization made every read of the database
    slower by all of them (milliseconds per read after a few thousand blocks)."""
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS) as store:
        entries = store._db.property_int_value("rocksdb.num-entries-active-mem-table")
        deletes = store._db.property_int_value("rocksdb.num-deletes-active-mem-table")
        puts = point_deletes = 0
        for view in range(1, 200):
            store.save_certificate(cert(VoteKind.NOTARIZE, view, view))
            puts += 1
            if view % 3 == 0:
                store.save_certificate(cert(VoteKind.FINALIZE, view, view))
                puts += 2  # the certificate and the block's own finalization
                # Views view-3 (notarization, finalization), view-2 and view-1.
                point_deletes += 4 if view > 3 else 2
        assert store._db.property_int_value("rocksdb.num-deletes-active-mem-table") == (
            deletes + point_deletes
        )
        assert store._db.property_int_value("rocksdb.num-entries-active-mem-table") == (
            entries + puts + point_deletes
        )


def _stored_certificates(store: NodeStore, epoch: int) -> list[Certificate]:
    """Every certificate record of `epoch` on disk (load_certificates filters them)."""
    prefix = b"c/" if epoch == 0 else b"ec/" + epoch.to_bytes(8, "big")
    raw = store._db  # the records as stored, not through the index under test
    out = []
    for key, value in raw.items(from_key=prefix):
        if not key.startswith(prefix):
            break
        out.append(msgspec.msgpack.decode(value, type=Certificate))
    return out


def _pending_on_disk(store: NodeStore) -> set[bytes]:
    """The hashes of every pending-transaction record as stored (not through
    `load_pending_transactions`, which filters committed ones)."""
    prefix = b"p/"
    return {
        bytes(key[len(prefix) :])
        for key in store._db.keys(from_key=prefix)
        if key.startswith(prefix)
    }


@pytest.mark.parametrize("seed", range(4))
def test_commits_delete_exactly_the_pending_records_of_their_transactions(
    tmp_path: Path, seed: int
) -> None:
    """Random saves (direct and staged), removals, commits of blocks mixing
    pending and never-pending transactions, and restarts: the pending records
    on disk are always the model's, and a commit writes one delete per
    transaction of it that was pending here, none for the others."""
    rng = random.Random(seed)
    path = tmp_path / "db"
    store = NodeStore(path, genesis_digest=GENESIS)
    pending: dict[bytes, bytes] = {}  # hash -> encoded, the model
    committed: set[bytes] = set()
    counter = 0

    def fresh(count: int) -> list[bytes]:
        nonlocal counter
        out = [b"tx %d/%d " % (seed, counter + i) + bytes(30) for i in range(count)]
        counter += count
        return out

    try:
        for _ in range(60):
            action = rng.random()
            if action < 0.25:
                txs = fresh(rng.randint(1, 6))
                store.save_pending_transactions(txs)
                pending.update((tx_hash(t), t) for t in txs)
            elif action < 0.4:
                txs = fresh(rng.randint(1, 6))
                batch = WriteBatch(raw_mode=True)
                store.stage_pending_transactions(batch, txs, [tx_hash(t) for t in txs])
                store._db.write(batch)
                pending.update((tx_hash(t), t) for t in txs)
            elif action < 0.5 and pending:
                gone = rng.sample(sorted(pending), rng.randint(1, len(pending)))
                store.remove_pending([*gone, keccak256(b"never pending %d" % counter)])
                for h in gone:
                    del pending[h]
            elif action < 0.9:
                mine = rng.sample(sorted(pending), rng.randint(0, min(4, len(pending))))
                txs = [pending[h] for h in mine] + fresh(rng.randint(0, 8))
                rng.shuffle(txs)
                height, parent, _ = store.tip()
                b = block(height + 1, parent)
                deletes = store._db.property_int_value("rocksdb.num-deletes-active-mem-table")
                store.commit_block(
                    b,
                    cert(VoteKind.FINALIZE, b.view, b.height, b.digest()),
                    txs,
                    keccak256(b"root"),
                )
                written = store._db.property_int_value("rocksdb.num-deletes-active-mem-table")
                assert written - deletes == len(mine)
                for h in mine:
                    del pending[h]
                committed.update(tx_hash(t) for t in txs)
            else:
                store.close()
                store = NodeStore(path, genesis_digest=GENESIS)
            assert _pending_on_disk(store) == set(pending)
            assert not committed & set(pending)
        assert sorted(store.load_pending_transactions()) == sorted(pending.values())
    finally:
        store.close()


def test_the_store_filters_reads_of_absent_keys_with_bloom_filters(tmp_path: Path) -> None:
    """Table files and the memtable carry bloom filters (RocksDB records the
    options it opened with): a commit's reads of the transaction index are for
    absent keys, which without them search every table file."""
    with NodeStore(tmp_path / "db", genesis_digest=GENESIS):
        pass
    options_file = sorted((tmp_path / "db").glob("OPTIONS-*"))[-1]
    settings = {
        name.strip(): value.strip()
        for name, _, value in (
            line.partition("=") for line in options_file.read_text().splitlines()
        )
    }
    assert settings["filter_policy"] == "bloomfilter"
    assert settings["memtable_whole_key_filtering"] == "true"
    assert float(settings["memtable_prefix_bloom_size_ratio"]) > 0
