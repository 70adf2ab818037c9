"""Trader actions are signed as EIP-712 typed data a standard wallet shows
(sequencer_net/mempool/typed.py): one signature, over the order's own fields."""

from __future__ import annotations

import json

from eth_account import Account

from consensus.crypto import keccak256
from sequencer_net.client.transactions import dex_transaction
from sequencer_net.execution.records import TimeInForce
from sequencer_net.execution.transactions import (
    CancelOrder,
    CancelOrderByClientId,
    Deposit,
    L1DepositReport,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetMarketPaused,
    Transfer,
    TxPayload,
    Withdraw,
    encode_payload,
)
from sequencer_net.mempool.mempool import AddResult, Mempool
from sequencer_net.mempool.transaction import (
    TX_TYPEHASH,
    Transaction,
    decode_transaction,
    encode_transaction,
    recover_sender,
    transaction_digest,
)
from sequencer_net.mempool.typed import TYPED_ACTIONS, type_string, typed_data
from tests.mempool.factories import DOMAIN, KEYS, OTHER_DOMAIN

W = 10**18
ORDER = PlaceOrder(1, 7, 0, 60_123 * W, 3 * W // 2, TimeInForce.GOOD_TILL_CANCEL, True, False)
SAMPLES: list[TxPayload] = [
    ORDER,
    CancelOrder(0, 7, bytes(range(32))),
    CancelOrderByClientId(0, 42),
    Withdraw(0, 250 * W, bytes([0xAA]) * 20),
    Withdraw(0, 2 * W, bytes([0xAA]) * 20, bytes(20)),
    Transfer(0, bytes([0xBB]) * 21, 5 * W),
    Deposit(bytes([0xCC]) * 21, 10 * W),
    SetMarketPaused(7, True),
]


def wallet_sign(typed: dict[str, object], secret: bytes) -> tuple[bytes, bytes]:
    """(digest, signature) as a wallet makes them: eth-account's
    `Account.sign_typed_data` over the whole typed-data document
    (eth_signTypedData_v4's `full_message` form), after a JSON round trip as
    the document takes on its way to a wallet."""
    document = json.loads(json.dumps(typed))
    signed = Account.sign_typed_data(secret, full_message=document)
    return bytes(signed.message_hash), bytes(signed.signature)


def test_every_typed_action_is_signed_over_its_own_fields() -> None:
    assert {type(action) for action in SAMPLES} == set(TYPED_ACTIONS)
    for action in SAMPLES:
        payload = encode_payload(action)
        typed = typed_data(DOMAIN, 9, 10**15, action)
        digest, signature = wallet_sign(typed, KEYS[2].secret)
        # The node's digest of these payload bytes is the wallet's digest ...
        assert digest == transaction_digest(DOMAIN, 9, 0, 10**15, payload)
        # ... so the wallet's signature is the transaction's one signature.
        tx = Transaction(DOMAIN.chain_id, 9, 0, 10**15, payload, signature)
        assert recover_sender(tx, DOMAIN) == KEYS[2].address


def test_the_node_accepts_the_bytes_a_wallet_signature_makes() -> None:
    """For every typed action: the wallet's signature on the typed data, put in
    the transaction's one encoding, is byte for byte what the SDK sends, and the
    node's intake (decode, signature recovery, admission) accepts those bytes."""
    pool = Mempool(DOMAIN)
    for nonce, action in enumerate(SAMPLES):
        typed = typed_data(DOMAIN, nonce, 10**15, action)
        _, signature = wallet_sign(typed, KEYS[3].secret)
        raw = encode_transaction(
            Transaction(DOMAIN.chain_id, nonce, 0, 10**15, encode_payload(action), signature)
        )
        assert raw == dex_transaction(KEYS[3], DOMAIN, nonce, action, fee=10**15)
        checked = pool.check(raw)
        assert checked.sender == KEYS[3].address and checked.encoded == raw
        assert pool.add(checked) == (AddResult.ACCEPTED, [])
    assert pool.pending() == [
        dex_transaction(KEYS[3], DOMAIN, n, a, fee=10**15) for n, a in enumerate(SAMPLES)
    ]


def test_a_wallet_shows_the_order_fields() -> None:
    typed = typed_data(DOMAIN, 3, 10**15, ORDER)
    assert typed["primaryType"] == "PlaceOrder"
    assert typed["message"] == {
        "nonce": 3,
        "fee": 10**15,
        "subaccountNumber": 1,
        "marketId": 7,
        "side": 0,
        "limitPrice": 60_123 * W,
        "quantity": 3 * W // 2,
        "timeInForce": 0,
        "postOnly": True,
        "reduceOnly": False,
        "clientId": 0,
        "goodTil": 0,
        "trigger": 0,
        "triggerPrice": 0,
    }
    assert type_string(PlaceOrder) == (
        "PlaceOrder(uint64 nonce,uint256 fee,int256 subaccountNumber,int256 marketId,"
        "int256 side,int256 limitPrice,int256 quantity,int256 timeInForce,"
        "bool postOnly,bool reduceOnly,int256 clientId,int256 goodTil,int256 trigger,"
        "int256 triggerPrice)"
    )


def test_a_wallet_shows_the_withdrawal_token() -> None:
    eth = Withdraw(0, 2 * W, bytes([0xAA]) * 20, bytes(20))
    typed = typed_data(DOMAIN, 3, 10**15, eth)
    assert typed["message"]["token"] == "0x" + "00" * 20
    collateral = typed_data(DOMAIN, 3, 10**15, Withdraw(0, 2 * W, bytes([0xAA]) * 20))
    assert collateral["message"]["token"] == "0x"
    assert type_string(Withdraw) == (
        "Withdraw(uint64 nonce,uint256 fee,int256 subaccountNumber,int256 amount,"
        "bytes recipient,bytes token)"
    )


def test_the_sdk_and_a_wallet_make_the_same_transaction() -> None:
    encoded = dex_transaction(KEYS[1], DOMAIN, 4, ORDER, fee=10**15)
    tx = decode_transaction(encoded)
    _, wallet_signature = wallet_sign(typed_data(DOMAIN, 4, 10**15, ORDER), KEYS[1].secret)
    assert tx.signature == wallet_signature  # RFC 6979: the same key, digest, signature
    assert recover_sender(tx, DOMAIN) == KEYS[1].address


def test_the_signature_binds_every_field_the_chain_and_the_envelope() -> None:
    encoded = dex_transaction(KEYS[1], DOMAIN, 4, ORDER, fee=10**15)
    tx = decode_transaction(encoded)
    changed = [
        PlaceOrder(1, 7, 1, ORDER.limit_price, ORDER.quantity, ORDER.time_in_force, True, False),
        PlaceOrder(
            1, 7, 0, ORDER.limit_price + 1, ORDER.quantity, ORDER.time_in_force, True, False
        ),
        PlaceOrder(1, 7, 0, ORDER.limit_price, ORDER.quantity, ORDER.time_in_force, True, True),
    ]
    for other in changed:
        forged = Transaction(tx.chain_id, 4, 0, tx.fee, encode_payload(other), tx.signature)
        assert recover_sender(forged, DOMAIN) != KEYS[1].address
    assert (
        recover_sender(Transaction(tx.chain_id, 5, 0, tx.fee, tx.payload, tx.signature), DOMAIN)
        != KEYS[1].address
    )
    assert (
        recover_sender(Transaction(tx.chain_id, 4, 0, tx.fee + 1, tx.payload, tx.signature), DOMAIN)
        != KEYS[1].address
    )
    other_chain = Transaction(OTHER_DOMAIN.chain_id, 4, 0, tx.fee, tx.payload, tx.signature)
    assert recover_sender(other_chain, OTHER_DOMAIN) != KEYS[1].address


def test_other_payloads_keep_the_generic_transaction_structure() -> None:
    """A typed digest never equals the generic one for the same bytes (distinct
    type hashes), and what is not a typed action is signed as a Transaction."""
    report = encode_payload(OracleUpdate(1, (OraclePrice(1, W, 0),)))
    deposit = encode_payload(L1DepositReport(5, bytes(21), bytes(20), W))
    for namespace, payload in [
        (0, report),
        (0, deposit),
        (0, b"\xc1not msgpack"),
        (3, encode_payload(ORDER)),
    ]:
        generic = keccak256(
            b"\x19\x01"
            + DOMAIN.separator()
            + keccak256(
                TX_TYPEHASH
                + (1).to_bytes(32, "big")
                + namespace.to_bytes(32, "big")
                + (2).to_bytes(32, "big")
                + keccak256(payload)
            )
        )
        assert transaction_digest(DOMAIN, 1, namespace, 2, payload) == generic
    assert transaction_digest(DOMAIN, 1, 0, 2, encode_payload(ORDER)) != transaction_digest(
        DOMAIN, 1, 3, 2, encode_payload(ORDER)
    )
