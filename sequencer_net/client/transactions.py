"""Building signed transactions for a seqnet chain: DEX actions and rollup data.

A transaction has one signature, the sequencer's EIP-712 one
(sequencer_net/mempool/transaction.py). A DEX action (deposit, withdrawal,
transfer, order, cancel, governance, oracle update: sequencer_net.execution.
transactions) travels as the canonical encoding of the action in namespace 0;
anything else is opaque data in the rollup's own namespace. Every transaction
offers a fee of at least `FeeSchedule.fee_for(len(payload))`, paid from the
sender's subaccount 0, so the sender needs collateral there first (a genesis
deposit or an L1 deposit).

`withdraw_transaction` builds a withdrawal to L1 (collateral, or an L1 asset
balance such as ETH); `deposit_report_transaction` builds a validator's report
of an L1 `Deposited` event (docs/execution.md, "L1 bridge").

Example:

    from sequencer_net.client import FeeSchedule, dex_transaction
    from sequencer_net.execution.transactions import Transfer
    tx = dex_transaction(key, domain, nonce=0, action=Transfer(0, to_subaccount, 10**18))
    node.submit(tx)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.crypto import PrivateKey
from consensus.encoding import Domain
from sequencer_net.execution.fees import DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE
from sequencer_net.execution.transactions import (
    DEX_NAMESPACE,
    L1DepositReport,
    TxPayload,
    Withdraw,
    encode_payload,
)
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """The chain's fee parameters (its genesis `execution.fee_base` and
    `execution.fee_per_byte`, wad): required = base + per_byte * payload bytes."""

    base: int = DEFAULT_FEE_BASE
    per_byte: int = DEFAULT_FEE_PER_BYTE

    def fee_for(self, payload_length: int) -> int:
        return self.base + self.per_byte * payload_length

    @classmethod
    def of_genesis(cls, genesis: Any) -> FeeSchedule:
        """From a `sequencer_net.home.genesis.Genesis` (or anything with `.execution`)."""
        return cls(genesis.execution.fee_base, genesis.execution.fee_per_byte)


DEFAULT_FEES = FeeSchedule()


def signed_transaction(
    key: PrivateKey,
    domain: Domain,
    nonce: int,
    namespace: int,
    payload: bytes,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    fee: int | None = None,
) -> bytes:
    """Encoded signed transaction offering `fee`, or the required fee if None."""
    offered = fees.fee_for(len(payload)) if fee is None else fee
    return encode_transaction(sign_transaction(key, domain, nonce, namespace, offered, payload))


def dex_transaction(
    key: PrivateKey,
    domain: Domain,
    nonce: int,
    action: TxPayload,
    *,
    fees: FeeSchedule = DEFAULT_FEES,
    fee: int | None = None,
) -> bytes:
    """One DEX action as a namespace-0 transaction, signed once by `key`."""
    return signed_transaction(
        key, domain, nonce, DEX_NAMESPACE, encode_payload(action), fees=fees, fee=fee
    )


def withdraw_transaction(
    key: PrivateKey,
    domain: Domain,
    nonce: int,
    *,
    amount: int,
    recipient: bytes,
    subaccount_number: int = 0,
    token: bytes = b"",
    fees: FeeSchedule = DEFAULT_FEES,
    fee: int | None = None,
) -> bytes:
    """A withdrawal of `amount` to `recipient` (20 bytes) on L1. `token` b"" (or
    the chain's collateral token) takes quote collateral from subaccount
    `subaccount_number`; any other 20-byte token (ETH: 20 zero bytes) takes the
    signer's L1 asset balance of it (`subaccount_number` 0). Signed as EIP-712
    typed data a wallet can show (mempool/typed.py)."""
    if len(recipient) != 20:
        raise ValueError("recipient is a 20-byte address")
    if token and len(token) != 20:
        raise ValueError("token is a 20-byte address, or empty for the collateral")
    action = Withdraw(subaccount_number, amount, recipient, token)
    return dex_transaction(key, domain, nonce, action, fees=fees, fee=fee)


def deposit_report_transaction(
    key: PrivateKey,
    domain: Domain,
    nonce: int,
    *,
    deposit_nonce: int,
    subaccount: bytes,
    token: bytes,
    amount: int,
    fees: FeeSchedule = DEFAULT_FEES,
    fee: int | None = None,
) -> bytes:
    """A validator's report of the L1 bridge's `Deposited(deposit_nonce, ...,
    subaccount, token, amount)` event, signed by its oracle key `key` (`nonce`
    is the signer's own transaction nonce). An amount the wire cannot carry
    (2**255 or more) is reported as 2**255 - 1; the engine refuses both."""
    if len(subaccount) != 21 or len(token) != 20:
        raise ValueError("subaccount is 21 bytes, token 20 bytes")
    reported = min(amount, 2**255 - 1)
    action = L1DepositReport(deposit_nonce, subaccount, token, reported)
    return dex_transaction(key, domain, nonce, action, fees=fees, fee=fee)
