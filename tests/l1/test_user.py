"""A user's round trip through the real contracts and the real engine: deposit
on L1, a withdrawal executed by the engine, proven on L1 with a proof read
from a node at the posted state height and paid after the challenge window,
then the escape hatch after silence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from eth_account import Account
from starlette.applications import Starlette
from starlette.testclient import TestClient
from web3.exceptions import ContractCustomError

from sequencer_net.api.errors import ApiError, api_error_handler
from sequencer_net.api.proofs import proof_routes
from sequencer_net.client import SeqnetClient
from sequencer_net.execution.state import PREFIX_SUBACCOUNT, decode_account
from sequencer_net.execution.transactions import Withdraw
from sequencer_net.l1.artifacts import custom_error_name
from sequencer_net.l1.header import L1Header
from sequencer_net.l1.user import (
    NotPostedYet,
    claim_withdrawal,
    contract,
    deposit_eth,
    deposit_token,
    escape_collateral,
    finalize_withdrawal,
    prove_withdrawal,
)
from tests.execution.execution_harness import Chain, W, key, sub
from tests.execution.test_l1_bridge import ALICE, bridge_chain, quorum
from tests.l1.l1_chain import ESCAPE_DELAY, L1Chain

ALICE_1 = sub("alice", 1)
"""Alice's subaccount 1: holds only what the L1 deposit brings (subaccount 0 is
funded at genesis, which no L1 deposit backs)."""

BOB = key("bob")


def _node(engine: Chain, roots: dict[int, bytes]) -> SeqnetClient:
    """A SeqnetClient whose requests reach an in-process proof API over `engine`."""
    app = Starlette(
        routes=proof_routes(lambda: engine.state, roots.get),
        exception_handlers={ApiError: api_error_handler},
    )
    client = SeqnetClient("http://node")
    client._http.close()
    client._http = TestClient(app, base_url="http://node")  # an httpx.Client
    return client


@pytest.fixture
def engine(chain: L1Chain) -> Iterator[Chain]:
    yield bridge_chain(collateral_token=chain.addresses.collateral_token)


def _mine_to(chain: L1Chain, block: int) -> None:
    """Stands in for waiting: mine until the L1 head is at `block`."""
    chain.mine(max(0, block - chain.w3.eth.block_number))


def _record(engine: Chain, roots: dict[int, bytes]) -> int:
    roots[engine.state.height] = engine.state.state_root
    return engine.state.height


def test_deposit_withdraw_claim_and_escape(chain: L1Chain, engine: Chain) -> None:
    user = chain.users[0]
    chain.send(chain.token.functions.mint(user.address, 10 * W))
    deposit = deposit_token(chain.w3, user, chain.bridge, ALICE_1, 3 * W)
    assert (deposit.nonce, deposit.subaccount, deposit.amount) == (0, ALICE_1, 3 * W)
    assert deposit.token == chain.addresses.collateral_token
    ether = deposit_eth(chain.w3, user, chain.bridge, ALICE_1, 10**15)
    assert ether.nonce == 1 and ether.token == bytes(20)

    # The engine credits the deposit once a quorum reports it, then alice withdraws 1 to L1.
    roots: dict[int, bytes] = {}
    quorum(engine, 0, amount=3 * W, token=chain.addresses.collateral_token, subaccount=ALICE_1)
    recipient = bytes.fromhex(chain.users[1].address[2:])
    engine.block([engine.tx(ALICE, Withdraw(1, W, recipient))])
    height = _record(engine, roots)
    node = _node(engine, roots)

    with pytest.raises(NotPostedYet):  # nothing posted yet
        claim_withdrawal(chain.w3, user, chain.bridge, chain.commitments, node, 0)
    chain.post(chain.header(1, state_height=height, state_root=roots[height]))
    before = chain.token.functions.balanceOf(chain.users[1].address).call()
    waited: list[int] = []

    def wait(block: int) -> None:
        waited.append(block)
        _mine_to(chain, block)

    payout = claim_withdrawal(chain.w3, user, chain.bridge, chain.commitments, node, 0, wait=wait)
    assert (payout.recipient, payout.amount, payout.state_height) == (recipient, W, height)
    assert chain.token.functions.balanceOf(chain.users[1].address).call() == before + W
    assert len(waited) == 1 and payout.l1_block > waited[0]
    with pytest.raises(ContractCustomError) as again:
        claim_withdrawal(chain.w3, user, chain.bridge, chain.commitments, node, 0, wait=wait)
    assert custom_error_name(again.value) == "AlreadyWithdrawn"

    # A withdrawal executed after the posted state is not claimable until it is posted.
    # Bob, never funded, uses a nonce on a withdrawal that fails: his subaccount 0
    # entry then holds only his nonce window.
    engine.block(
        [
            engine.tx(ALICE, Withdraw(1, W // 2, recipient)),
            engine.tx(BOB, Withdraw(1, W, recipient)),
        ]
    )
    later = _record(engine, roots)
    with pytest.raises(NotPostedYet):
        claim_withdrawal(chain.w3, user, chain.bridge, chain.commitments, node, 1)
    chain.post(chain.header(2, state_height=later, state_root=roots[later]))
    # Proven now, paid later: before the window passes the Bridge refuses to pay.
    proven = prove_withdrawal(chain.w3, user, chain.bridge, chain.commitments, node, 1)
    assert (proven.amount, proven.state_height, proven.recipient) == (W // 2, later, recipient)
    with pytest.raises(ContractCustomError) as early_pay:
        finalize_withdrawal(chain.w3, user, chain.bridge, 1)
    assert custom_error_name(early_pay.value) == "ChallengeWindowOpen"

    # Validators go silent: after the escape delay alice takes her collateral from the
    # last posted state (3 - 1 - 0.5 = 1.5), once.
    alice = Account.from_key(ALICE.secret)
    chain.w3.provider.make_request("anvil_setBalance", [alice.address, hex(10**18)])  # type: ignore[arg-type]
    with pytest.raises(ContractCustomError) as early:
        escape_collateral(chain.w3, alice, chain.bridge, chain.commitments, node, 1)
    assert custom_error_name(early.value) == "EscapeNotOpen"
    chain.mine(ESCAPE_DELAY + 1)
    escaped = escape_collateral(chain.w3, alice, chain.bridge, chain.commitments, node, 1)
    assert (escaped.amount, escaped.state_height) == (3 * W // 2, later)
    # Bob's subaccount 0 entry is his nonce window alone: refused before any L1
    # transaction (he holds no ether for one), not by the Bridge.
    window_only = node.state_proof(PREFIX_SUBACCOUNT + BOB.address + b"\x00", state_height=later)
    assert window_only.value is not None and decode_account(window_only.value)[0] is None
    with pytest.raises(NotPostedYet):
        escape_collateral(
            chain.w3, Account.from_key(BOB.secret), chain.bridge, chain.commitments, node, 0
        )
    assert chain.token.functions.balanceOf(alice.address).call() == 3 * W // 2
    with pytest.raises(ContractCustomError) as twice:
        escape_collateral(chain.w3, alice, chain.bridge, chain.commitments, node, 1)
    assert custom_error_name(twice.value) == "AlreadyEscaped"
    # The withdrawal proven before the escape is still paid.
    paid = finalize_withdrawal(chain.w3, user, chain.bridge, 1)
    assert (paid.amount, paid.state_height) == (W // 2, later)


def test_the_escape_command_pays_a_flat_subaccount_once(
    chain: L1Chain, engine: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seqnet l1 escape`: refused while postings are recent, then pays the
    subaccount's collateral from the last posted state, once."""
    import json

    import sequencer_net.client
    from sequencer_net.cli.main import cli

    user = chain.users[0]
    chain.send(chain.token.functions.mint(user.address, 10 * W))
    deposit_token(chain.w3, user, chain.bridge, ALICE_1, 2 * W)
    quorum(engine, 0, amount=2 * W, token=chain.addresses.collateral_token, subaccount=ALICE_1)
    roots: dict[int, bytes] = {}
    height = _record(engine, roots)
    chain.post(chain.header(1, state_height=height, state_root=roots[height]))
    monkeypatch.setattr(
        sequencer_net.client, "SeqnetClient", lambda *args, **kwargs: _node(engine, roots)
    )
    alice = Account.from_key(ALICE.secret)
    chain.w3.provider.make_request("anvil_setBalance", [alice.address, hex(10**18)])  # type: ignore[arg-type]
    key_file = tmp_path / "alice.key"
    key_file.write_text("0x" + ALICE.secret.hex())
    command = ["l1", "escape", "--rpc", chain.anvil.url, "--bridge",
               "0x" + chain.addresses.bridge.hex(), "--node", "http://node",
               "--key-file", str(key_file), "--subaccount", "1", "--json"]  # fmt: skip
    runner = CliRunner()
    early = runner.invoke(cli, command)
    assert early.exit_code == 1 and "EscapeNotOpen" in early.output, early.output
    chain.mine(ESCAPE_DELAY + 1)
    escaped = runner.invoke(cli, command)
    assert escaped.exit_code == 0, escaped.output
    assert json.loads(escaped.output)["amount"] == str(2 * W)
    assert chain.token.functions.balanceOf(alice.address).call() == 2 * W
    twice = runner.invoke(cli, command)
    assert twice.exit_code == 1 and "AlreadyEscaped" in twice.output, twice.output


def _withdrawal_posted(chain: L1Chain, engine: Chain) -> tuple[dict[int, bytes], list[L1Header]]:
    """Alice's withdrawal 0 (1 to users[1]) executed, its state posted (post 0),
    and the headers of two later states holding it, not posted yet; the state
    roots by height."""
    user = chain.users[0]
    chain.send(chain.token.functions.mint(user.address, 10 * W))
    deposit_token(chain.w3, user, chain.bridge, ALICE_1, 3 * W)
    quorum(engine, 0, amount=3 * W, token=chain.addresses.collateral_token, subaccount=ALICE_1)
    recipient = bytes.fromhex(chain.users[1].address[2:])
    engine.block([engine.tx(ALICE, Withdraw(1, W, recipient))])
    roots: dict[int, bytes] = {}
    first = _record(engine, roots)
    chain.post(chain.header(1, state_height=first, state_root=roots[first]))
    later = []
    for height in (2, 3):
        engine.block([])
        state_height = _record(engine, roots)
        later.append(chain.header(height, state_height, roots[state_height]))
    return roots, later


def test_a_post_landing_right_after_the_latest_post_is_read_leaves_its_ref_provable(
    chain: L1Chain, engine: Chain
) -> None:
    # A post lands right after every eth_call: after the Bridge's frozenPost (post 1 lands)
    # and after the one latestPost call, which reads post 1 whole. Post 2 then lands before
    # the proof is sent: post 1 is no longer the latest, but a ref of it is still valid.
    roots, (second, third) = _withdrawal_posted(chain, engine)
    w3 = chain.posting_mid_read([second, third])
    bridge = contract(w3, "Bridge", chain.addresses.bridge)
    commitments = contract(w3, "Commitments", chain.addresses.commitments)
    node = _node(engine, roots)
    proven = prove_withdrawal(w3, chain.users[0], bridge, commitments, node, 0)
    assert chain.commitments.functions.postCount().call() == 3  # both landed mid-proof
    assert (proven.amount, proven.state_height) == (W, second.state_height)
    pending = chain.bridge.functions.pendingWithdrawals(0).call()
    assert (pending[1], pending[4]) == (proven.payable_at, second.height)


def test_the_claim_command_proves_while_a_post_lands_after_every_call(
    chain: L1Chain, engine: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sequencer_net.cli.l1
    import sequencer_net.client
    from sequencer_net.cli.main import cli

    roots, later = _withdrawal_posted(chain, engine)
    last = later[-1]
    headers = later + [chain.header(h, last.state_height, last.state_root) for h in range(4, 44)]
    # A post lands after each eth_call, more of them than the claim makes: a read of the
    # latest post's ref in several view calls would mix two posts every time (and never
    # get a ref the Bridge takes); the one latestPost call cannot.
    w3 = chain.posting_mid_read(headers)
    monkeypatch.setattr(sequencer_net.cli.l1, "_web3", lambda rpc_url: w3)
    monkeypatch.setattr(
        sequencer_net.client, "SeqnetClient", lambda *args, **kwargs: _node(engine, roots)
    )
    key_file = tmp_path / "user.key"
    key_file.write_text("0x" + bytes(chain.users[0].key).hex())
    command = ["l1", "claim", "--id", "0", "--rpc", chain.anvil.url, "--bridge",
               "0x" + chain.addresses.bridge.hex(), "--node", "http://node",
               "--key-file", str(key_file), "--no-wait", "--json"]  # fmt: skip
    proven = CliRunner().invoke(cli, command)
    assert proven.exit_code == 0, proven.output
    posts = int(chain.commitments.functions.postCount().call())
    assert 2 < posts < 1 + len(headers)  # posts landed after every call of the claim
    # proven on a post that was the latest when read, and is no longer
    post_height = chain.bridge.functions.pendingWithdrawals(0).call()[4]
    assert post_height < chain.commitments.functions.latestHeight().call()
