"""The benchmark's pre-signed load: plans, mixes, bodies, accounts."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import msgspec
import pytest

from consensus.crypto import Address
from consensus.encoding import Domain
from consensus.types import Validator, ValidatorSet
from sequencer_net.batches.certificate import designated_verifiers
from sequencer_net.client import DEFAULT_FEES
from sequencer_net.execution.transactions import DEX_NAMESPACE, decode_payload
from sequencer_net.mempool.transaction import decode_transaction, recover_sender, tx_hash
from sequencer_net.testnet.bench.limits import (
    ACCOUNT_TX_PER_S,
    MIN_ACCOUNTS_PER_STEP,
    PAYLOAD_BYTES,
)
from sequencer_net.testnet.bench.traffic import (
    AccountPool,
    AccountPoolExhausted,
    MarketLoad,
    Mix,
    RollupLoad,
    WireFormat,
    accounts_for_rate,
    build_plan,
    due_by,
    encode_body,
    generate_items,
    sign_items,
)
from sequencer_net.testnet.bench.verify_limit import (
    recoveries_per_transaction,
    verify_limit_tps,
)

DOMAIN = Domain(chain_id=31337, verifying_contract=bytes(20), genesis_hash=bytes(range(32)))


def decode_body(body: bytes, wire: WireFormat) -> list[bytes]:
    if wire is not WireFormat.JSON:  # msgpack POSTs and stream messages alike
        return list(msgspec.msgpack.decode(body))
    return [bytes.fromhex(t[2:]) for t in json.loads(body)["transactions"]]


@pytest.mark.parametrize("wire", list(WireFormat))
def test_plan_sends_every_transaction_once_pinned_and_in_nonce_order(wire: WireFormat) -> None:
    source = RollupLoad(seed=3, accounts=64)
    plan = build_plan(
        700.0,
        2.0,
        source=source,
        nodes=3,
        domain=DOMAIN,
        fees=DEFAULT_FEES,
        wire=wire,
        seed=9,
    )
    assert plan.total == 1400
    assert len(plan.ticks) == 40  # 2 s of 50 ms ticks
    step_accounts = source.pool.accounts[: plan.accounts]
    addresses = {a.address: a for a in step_accounts}
    nonces: dict[bytes, list[int]] = defaultdict(list)
    seen = []
    for requests in plan.ticks:
        for request in requests:
            encoded = decode_body(request.body, wire)
            assert len(encoded) == request.count
            for offset, tx in enumerate(encoded):
                assert "0x" + tx_hash(tx).hex() == plan.hashes[request.first + offset]
                decoded = decode_transaction(tx)
                assert decoded.signature.hex() == plan.signatures[request.first + offset]
                sender = bytes(recover_sender(decoded, DOMAIN))
                account = addresses[sender]
                assert account.index % 3 == request.node  # pinned to one node
                assert step_accounts[plan.account_of[request.first + offset]] is account
                assert decoded.namespace != DEX_NAMESPACE
                assert PAYLOAD_BYTES[0] <= len(decoded.payload) <= PAYLOAD_BYTES[1]
                nonces[sender].append(decoded.nonce)
                seen.append(request.first + offset)
    assert sorted(seen) == list(range(plan.total))
    for sent in nonces.values():
        assert sent == list(range(len(sent)))


def test_ticks_follow_the_rate() -> None:
    assert [due_by(30.0, t / 10, 1_000) for t in range(1, 5)] == [3, 6, 9, 12]
    assert due_by(30.0, 100.0, 50) == 50


def test_accounts_for_rate_bounds_each_accounts_rate() -> None:
    assert accounts_for_rate(1.0) == MIN_ACCOUNTS_PER_STEP
    for rate in (1_000.0, 5_000.0, 12_345.0):
        assert rate / accounts_for_rate(rate) <= ACCOUNT_TX_PER_S


def test_the_simple_dex_items_are_engine_transfers() -> None:
    pool = AccountPool(seed=1, count=8)
    dex = generate_items(Mix.DEX, pool.accounts, 40, seed=1)
    assert {item.namespace for item in dex} == {DEX_NAMESPACE}
    assert all(decode_payload(item.payload) for item in dex)


@pytest.mark.parametrize("mix", [Mix.DEX, Mix.MIXED])
def test_market_load_continues_its_nonces_from_step_to_step(mix: Mix) -> None:
    load = MarketLoad(3, 40, mix, DOMAIN, DEFAULT_FEES, genesis_time_s=int(time.time()) - 5)
    first = load.prepare(200.0, 300, seed=1)
    second = load.prepare(200.0, 300, seed=2)
    namespaces = {item.namespace for item in first.items + second.items}
    assert DEX_NAMESPACE in namespaces
    assert (len(namespaces) > 1) == (mix is Mix.MIXED)
    sent: dict[int, list[int]] = defaultdict(list)
    for item in first.items + second.items:
        sent[item.account].append(item.nonce)
    for nonces in sent.values():
        assert nonces == list(range(len(nonces)))  # no gap, no repeat across steps
    signed = sign_items(second.items[:20], second.secrets, DOMAIN, DEFAULT_FEES, processes=1)
    for item, tx in zip(second.items, signed, strict=False):
        sender = bytes(recover_sender(decode_transaction(tx), DOMAIN))
        assert sender == bytes(load.keys[item.account].address)


def test_same_seed_same_signed_transactions() -> None:
    def signed(seed: int) -> list[bytes]:
        pool = AccountPool(seed=5, count=4)
        items = generate_items(Mix.ROLLUP, pool.accounts, 20, seed=seed)
        secrets = [a.secret for a in pool.accounts]
        return sign_items(items, secrets, DOMAIN, DEFAULT_FEES, processes=1)

    assert signed(1) == signed(1)
    assert signed(1) != signed(2)


def test_parallel_signing_equals_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    import sequencer_net.testnet.bench.traffic as traffic

    monkeypatch.setattr(traffic, "PARALLEL_SIGN_MIN_TXS", 10)
    pool = AccountPool(seed=5, count=4)
    items = generate_items(Mix.ROLLUP, pool.accounts, 50, seed=4)
    secrets = [a.secret for a in pool.accounts]
    serial = sign_items(items, secrets, DOMAIN, DEFAULT_FEES, processes=1)
    assert sign_items(items, secrets, DOMAIN, DEFAULT_FEES, processes=2) == serial


def test_retired_accounts_are_not_reused_and_the_pool_runs_out() -> None:
    pool = AccountPool(seed=2, count=5)
    first = pool.take(3)
    pool.retire(first[:2])
    assert [a.index for a in pool.take(3)] == [2, 3, 4]
    with pytest.raises(AccountPoolExhausted):
        pool.take(4)


def test_encode_body_json_is_the_apis_batch_shape() -> None:
    body = encode_body([b"\x01\x02", b"\xff"], WireFormat.JSON)
    assert json.loads(body) == {"transactions": ["0x0102", "0xff"]}


def test_verify_limit_divides_all_cores_among_each_transactions_verifiers() -> None:
    assert verify_limit_tps([10_000.0, 12_000.0], 4) == 11_000.0  # f + 1 = 2 of 4
    assert verify_limit_tps([10_000.0, 12_000.0], 7) == 22_000.0 / 3  # f + 1 = 3 of 7
    assert verify_limit_tps([8_000.0], 1) == 8_000.0
    with pytest.raises(ValueError):
        verify_limit_tps([1.0], 0)


def test_recoveries_per_transaction_is_the_number_of_designated_verifiers() -> None:
    for n in range(1, 12):
        validators = ValidatorSet([Validator(Address(bytes([i + 1]) * 20), 1) for i in range(n)])
        for author in range(n):
            designated = designated_verifiers(validators, author)
            assert recoveries_per_transaction(n) == len(designated), (n, author)
