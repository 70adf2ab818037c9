"""Building signed transactions for a seqnet chain: DEX actions and rollup data.

A transaction has one signature, the sequencer's EIP-712 one
(sequencer_net/mempool/transaction.py). A DEX action (deposit, withdrawal,
transfer, order, cancel, governance, oracle update: sequencer_net.execution.
transactions) travels as the canonical encoding of the action in namespace 0;
anything else is opaque data in the rollup's own namespace. Every transaction
offers a fee of at least `FeeSchedule.fee_for(len(payload))`, paid from the
sender's subaccount 0, so the sender needs collateral there first (a genesis
deposit or a bridge deposit).

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
from sequencer_net.execution.transactions import DEX_NAMESPACE, TxPayload, encode_payload
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
