"""The verifier pool: signatures checked off the event loop, results in order."""

from __future__ import annotations

import threading
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from consensus.crypto import keccak256
from sequencer_net.mempool import mempool as mempool_module
from sequencer_net.mempool import verifier
from sequencer_net.mempool.encrypted import ENCRYPTED_TX_PREFIX
from sequencer_net.mempool.mempool import CheckedTx
from sequencer_net.mempool.transaction import InvalidTransaction, MalformedTransaction
from sequencer_net.mempool.verifier import CHUNK, INLINE_ENCRYPTED_AT_MOST, VerifierPool
from tests.mempool.factories import DOMAIN, KEYS, signed


async def test_results_come_back_in_order_with_the_invalid_ones_named() -> None:
    good = [signed(sender=i % 8, nonce=i) for i in range(3 * CHUNK + 5)]
    items = list(good)
    items[7] = b"\x00garbage"
    items[CHUNK + 1] = good[0][:-1]  # truncated
    pool = VerifierPool(DOMAIN, threads=2)
    results = await pool.check_many(items)
    assert len(results) == len(items)
    for i, result in enumerate(results):
        if i in (7, CHUNK + 1):
            assert isinstance(result, InvalidTransaction)
        else:
            assert isinstance(result, CheckedTx)
            assert result.encoded == items[i] and result.sender == KEYS[i % 8].address
    assert pool.checked == len(items)


async def test_the_event_loop_keeps_running_while_a_large_batch_is_checked() -> None:
    """Other tasks get the loop between chunks: a heartbeat ticks during the check."""
    items = [signed(sender=i % 8, nonce=i) for i in range(8 * CHUNK)]
    pool = VerifierPool(DOMAIN, threads=1)
    ticks = 0
    done = False

    async def heartbeat() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat)
        results = await pool.check_many(items)
        done = True
    assert all(isinstance(r, CheckedTx) for r in results)
    assert ticks > 8  # at least once per chunk; inline checking would give 1


async def test_a_single_transaction_raises_its_error() -> None:
    pool = VerifierPool(DOMAIN)
    assert (await pool.check(signed())).sender == KEYS[0].address
    try:
        await pool.check(b"\x92")
    except MalformedTransaction:
        pass
    else:
        raise AssertionError("an undecodable transaction was accepted")


async def test_one_or_two_envelopes_alone_are_checked_on_the_event_loop(monkeypatch: Any) -> None:
    """A lone plain transaction is checked inline, and so are one or two
    envelopes alone (a thread hop costs a busy node more); three envelopes, or
    an envelope with plain ones around it, go to a worker thread."""
    threads: list[bool] = []
    real = verifier.check_chunk

    def check_chunk(*args: Any) -> Any:
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args)

    monkeypatch.setattr(verifier, "check_chunk", check_chunk)
    pool = VerifierPool(DOMAIN, threads=2)
    plain = signed(0, 0)
    envelope = ENCRYPTED_TX_PREFIX + b"\x90"
    await pool.check_many([plain])
    await pool.check_many([plain, envelope])
    await pool.check_many([envelope])
    await pool.check_many([envelope] * INLINE_ENCRYPTED_AT_MOST)
    await pool.check_many([envelope] * (INLINE_ENCRYPTED_AT_MOST + 1))
    assert threads == [True, False, True, True, False]


async def test_hashes_the_caller_computed_are_used_not_computed_again(monkeypatch: Any) -> None:
    """Given each transaction's hash, the checks (inline and in threads) put it in
    the result and hash nothing; without them, each result's hash is computed."""
    items = [signed(sender=i % 8, nonce=i) for i in range(CHUNK + 3)]
    hashes = [keccak256(tx) for tx in items]
    pool = VerifierPool(DOMAIN, threads=2)
    computed = [c.hash for c in await pool.check_many(items) if isinstance(c, CheckedTx)]
    assert computed == hashes

    def no_hashing(encoded: bytes) -> bytes:
        raise AssertionError("hashed again")

    monkeypatch.setattr(mempool_module, "tx_hash", no_hashing)
    for batch in (items[:1], items):  # inline, then in worker threads
        results = await pool.check_many(batch, hashes=hashes[: len(batch)])
        assert [r.hash for r in results if isinstance(r, CheckedTx)] == hashes[: len(batch)]
    try:
        await pool.check_many(items[:2], hashes=hashes[:1])
    except ValueError:
        pass
    else:
        raise AssertionError("hashes that do not match the transactions one to one were taken")


async def test_jobs_run_on_the_pools_own_threads_started_once(monkeypatch: Any) -> None:
    """Many calls, many chunks each, at once: every chunk runs on one of the pool's
    `threads` long-lived worker threads, each started once (no thread per job)."""
    monkeypatch.setattr(verifier, "CHUNK", 4)
    names: set[str] = set()
    real = verifier.check_chunk

    def recording(*args: Any) -> Any:
        names.add(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(verifier, "check_chunk", recording)
    items = [signed(sender=i % 8, nonce=i) for i in range(24)]
    pool = VerifierPool(DOMAIN, threads=2)
    results: list[list[Any]] = []

    async def call() -> None:
        results.append(await pool.check_many(items))

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(call)
    assert len(results) == 10
    for result in results:
        assert [r.sender for r in result] == [KEYS[i % 8].address for i in range(24)]
    assert names <= {"seqnet-verify-0", "seqnet-verify-1"} and names
    assert pool.threads_started == len(names)


@given(st.lists(st.booleans(), max_size=9))
def test_the_inline_choice_skips_the_scan_only_where_the_scan_would_say_thread(
    encrypted: list[bool],
) -> None:
    from sequencer_net.mempool.verifier import INLINE_BELOW, _inline

    txs = [ENCRYPTED_TX_PREFIX + b"x" if e else b"\x96x" for e in encrypted]
    count = sum(encrypted)
    by_rule = (
        len(txs) < INLINE_BELOW if count == 0 else len(txs) == count <= INLINE_ENCRYPTED_AT_MOST
    )
    assert _inline(txs) == by_rule
