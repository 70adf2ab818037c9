"""The client's L1 bridge helpers: withdrawal and deposit-report transactions,
and state proofs read from GET /v1/proofs/{key}, checked before use."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from sequencer_net.api.markets import MarketSource
from sequencer_net.api.server import build_app
from sequencer_net.client import (
    AsyncSeqnetClient,
    SeqnetApiError,
    deposit_report_transaction,
    withdraw_transaction,
)
from sequencer_net.client.proofs import parse_state_proof, withdrawal_proof
from sequencer_net.execution.state import ExecutionState, withdrawal_tree_key
from sequencer_net.execution.state_tree import Proof, verify_proof
from sequencer_net.execution.transactions import L1DepositReport, Withdraw, decode_payload
from sequencer_net.mempool.transaction import decode_transaction, recover_sender
from sequencer_net.mempool.typed import typed_action
from sequencer_net.node.market_activity import MarketActivity
from tests.api.conftest import open_world
from tests.execution.execution_harness import COLLATERAL_TOKEN, ETH, W
from tests.execution.test_l1_bridge import ALICE, ALICE_SUB, bridge_chain, quorum
from tests.mempool.factories import DOMAIN, KEYS


def test_withdraw_and_report_transactions_carry_the_actions() -> None:
    encoded = withdraw_transaction(
        KEYS[0], DOMAIN, 3, amount=2 * W, recipient=b"\x11" * 20, token=ETH
    )
    tx = decode_transaction(encoded)
    assert recover_sender(tx, DOMAIN) == KEYS[0].address
    assert decode_payload(tx.payload) == Withdraw(0, 2 * W, b"\x11" * 20, ETH)
    assert typed_action(tx.payload) is not None  # a wallet shows it
    collateral = decode_transaction(
        withdraw_transaction(KEYS[0], DOMAIN, 4, amount=W, recipient=b"\x11" * 20)
    )
    assert decode_payload(collateral.payload) == Withdraw(0, W, b"\x11" * 20)

    report = decode_transaction(
        deposit_report_transaction(
            KEYS[1], DOMAIN, 0, deposit_nonce=7, subaccount=ALICE_SUB, token=ETH, amount=2**256 - 1
        )
    )
    assert decode_payload(report.payload) == L1DepositReport(7, ALICE_SUB, ETH, 2**255 - 1)
    assert recover_sender(report, DOMAIN) == KEYS[1].address
    with pytest.raises(ValueError):
        withdraw_transaction(KEYS[0], DOMAIN, 0, amount=W, recipient=b"\x11" * 19)


def _bridged_state() -> ExecutionState:
    chain = bridge_chain()
    quorum(chain, 0, amount=3 * W, token=ETH)
    chain.block([chain.tx(ALICE, Withdraw(0, 2 * W, b"\x22" * 20, ETH))])
    chain.block([chain.tx(ALICE, Withdraw(0, W, b"\x33" * 20))])
    return chain.state


async def test_a_withdrawal_proof_read_through_the_api_verifies(tmp_path: Path) -> None:
    state = _bridged_state()
    world = open_world(tmp_path)
    context = world.context()
    context.markets = MarketSource(lambda: state, MarketActivity())
    try:
        transport = httpx.ASGITransport(app=build_app(context))
        async with AsyncSeqnetClient("http://api") as client:
            await client._http.aclose()  # talk to the app in process instead
            client._http = httpx.AsyncClient(transport=transport, base_url="http://api")
            first = await client.withdrawal_proof(0)
            assert (first.withdrawal_id, first.recipient, first.token, first.amount) == (
                0,
                b"\x22" * 20,
                ETH,
                2 * W,
            )
            second = await client.withdrawal_proof(1)
            assert (second.token, second.amount) == (COLLATERAL_TOKEN, W)
            assert second.state_root == state.state_root and second.state_height == state.height
            value = state.tree().get(withdrawal_tree_key(1))
            assert value is not None
            proof = Proof.decode(second.proof)
            assert verify_proof(state.state_root, withdrawal_tree_key(1), value, proof)
            with pytest.raises(SeqnetApiError) as missing:
                await client.withdrawal_proof(2)
            assert missing.value.status == 404
    finally:
        world.store.close()


def test_a_tampered_answer_is_refused() -> None:
    state = _bridged_state()
    key = withdrawal_tree_key(0)
    value = state.tree().get(key)
    assert value is not None
    answer = {
        "key": "0x" + key.hex(),
        "state_height": state.height,
        "state_root": "0x" + state.state_root.hex(),
        "value": "0x" + value.hex(),
        "proof": "0x" + state.tree().prove(key).encode().hex(),
    }
    assert withdrawal_proof(parse_state_proof(answer, key), 0).amount == 2 * W
    more = value[:-1] + bytes([value[-1] ^ 1])
    for changed in (
        {"value": "0x" + more.hex()},
        {"value": None},
        {"state_root": "0x" + bytes(32).hex()},
        {"key": "0x" + withdrawal_tree_key(1).hex()},
        {"proof": "0x00"},
        {"state_height": -1},
    ):
        with pytest.raises(SeqnetApiError, match="bad_response"):
            parse_state_proof({**answer, **changed}, key)


async def test_a_proof_at_an_earlier_state_height_verifies_against_that_root() -> None:
    """The L1 knows only posted roots, which trail execution: a client asks at
    the posted state height and gets that state's entry and proof."""
    from starlette.applications import Starlette

    from sequencer_net.api.errors import ApiError, api_error_handler
    from sequencer_net.api.proofs import proof_routes

    chain = bridge_chain()
    quorum(chain, 0, amount=3 * W, token=ETH)
    chain.block([chain.tx(ALICE, Withdraw(0, 2 * W, b"\x22" * 20, ETH))])
    earlier = (chain.state.height, chain.state.state_root)
    chain.block([chain.tx(ALICE, Withdraw(0, W, b"\x33" * 20))])
    roots = {earlier[0]: earlier[1], chain.state.height: chain.state.state_root}
    app = Starlette(
        routes=proof_routes(lambda: chain.state, roots.get),
        exception_handlers={ApiError: api_error_handler},
    )
    transport = httpx.ASGITransport(app=app)
    async with AsyncSeqnetClient("http://api") as client:
        await client._http.aclose()
        client._http = httpx.AsyncClient(transport=transport, base_url="http://api")
        first = await client.withdrawal_proof(0, state_height=earlier[0])
        assert (first.state_height, first.state_root) == earlier
        assert first.state_root != chain.state.state_root
        with pytest.raises(SeqnetApiError) as not_yet:
            await client.withdrawal_proof(1, state_height=earlier[0])
        assert not_yet.value.status == 404  # withdrawal 1 came after that state
        with pytest.raises(SeqnetApiError) as future:
            await client.withdrawal_proof(0, state_height=chain.state.height + 1)
        assert future.value.status == 404
        latest = await client.withdrawal_proof(1)
        assert latest.state_height == chain.state.height


async def test_withdrawal_records_are_listed_newest_first_by_recipient() -> None:
    from starlette.applications import Starlette

    from sequencer_net.api.errors import ApiError, api_error_handler
    from sequencer_net.api.proofs import proof_routes

    chain = bridge_chain()
    quorum(chain, 0, amount=3 * W, token=ETH)
    to_a, to_b = b"\x22" * 20, b"\x33" * 20
    chain.block([chain.tx(ALICE, Withdraw(0, W, to_a, ETH))])
    chain.block([chain.tx(ALICE, Withdraw(0, W, to_b))])
    chain.block([chain.tx(ALICE, Withdraw(0, W // 2, to_a, ETH))])
    app = Starlette(
        routes=proof_routes(lambda: chain.state, None),
        exception_handlers={ApiError: api_error_handler},
    )
    async with AsyncSeqnetClient("http://api") as client:
        await client._http.aclose()
        client._http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        )
        everything = await client.withdrawals()
        assert [w["id"] for w in everything["withdrawals"]] == [2, 1, 0]
        assert everything["next_id"] == 3
        mine = await client.withdrawals(recipient=to_a)
        assert [(w["id"], w["amount"]) for w in mine["withdrawals"]] == [
            (2, str(W // 2)),
            (0, str(W)),
        ]
        assert mine["withdrawals"][0]["token"] == "0x" + ETH.hex()
        paged = await client.withdrawals(recipient=to_a, before=2, limit=1)
        assert [w["id"] for w in paged["withdrawals"]] == [0]
        for bad in ({"recipient": b"\x01"}, {"limit": 0}, {"limit": 101}):
            with pytest.raises(SeqnetApiError) as refused:
                await client.withdrawals(**bad)  # type: ignore[arg-type]
            assert refused.value.status == 400
