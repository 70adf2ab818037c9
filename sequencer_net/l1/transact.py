"""Send contract calls from a local key: build (web3 estimates gas, so a revert
raises its `ContractCustomError` here, before anything is sent), sign locally,
send raw, wait for the receipt.

Gas is estimated on the latest block unless `estimate_on` names another:
Commitments takes one post per L1 block, so a post is estimated on the pending
block (where it lands), since the latest block may hold a post already.
"""

from __future__ import annotations

from typing import Any, Final

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import Nonce, TxParams, TxReceipt, Wei

# A local chain mines in well under a second; a public L1 takes a few blocks.
RECEIPT_TIMEOUT_S: Final = 120.0
RECEIPT_POLL_S: Final = 0.05


class TransactionFailed(RuntimeError):
    """A sent transaction was mined with status 0."""


def send(
    w3: Web3,
    account: LocalAccount,
    call: Any,
    *,
    nonce: int | None = None,
    value: int = 0,
    gas: int | None = None,
    estimate_on: str = "latest",
) -> HexBytes:
    """Build, sign and send `call` (a bound contract function or constructor).

    Without `nonce`, the account's pending nonce is used; without `gas`, it is
    estimated on block `estimate_on` ("latest" or "pending").
    """
    params: TxParams = {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending")
        if nonce is None
        else Nonce(nonce),
        "chainId": w3.eth.chain_id,
        "value": Wei(value),
    }
    params["gas"] = (
        gas if gas is not None else call.estimate_gas(params, block_identifier=estimate_on)
    )
    tx = call.build_transaction(params)
    signed = account.sign_transaction(tx)
    return w3.eth.send_raw_transaction(signed.raw_transaction)


def wait(w3: Web3, tx_hash: HexBytes, timeout_s: float = RECEIPT_TIMEOUT_S) -> TxReceipt:
    """The receipt of `tx_hash`; raises TransactionFailed if it reverted."""
    receipt = w3.eth.wait_for_transaction_receipt(
        tx_hash, timeout=timeout_s, poll_latency=RECEIPT_POLL_S
    )
    if receipt["status"] != 1:
        raise TransactionFailed(f"transaction {tx_hash.hex()} reverted")
    return receipt


def transact(
    w3: Web3,
    account: LocalAccount,
    call: Any,
    *,
    value: int = 0,
    gas: int | None = None,
    estimate_on: str = "latest",
) -> TxReceipt:
    """`send` then `wait`."""
    return wait(w3, send(w3, account, call, value=value, gas=gas, estimate_on=estimate_on))
