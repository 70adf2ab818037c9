"""A node's connection to the L1: web3 over one JSON-RPC endpoint, the contracts,
and readers that check every answer before anything uses it.

Every method here blocks on the network: the node calls them through
`trio.to_thread.run_sync`, never on the event loop. The endpoint is not
trusted: a value of the wrong type or out of range raises `L1AnswerInvalid`,
and any transport or RPC failure raises `L1Unavailable` (its subclass), so a
caller catches one exception type, logs, and tries again next round.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import ContractLogicError

from sequencer_net.l1.artifacts import load_artifact

RPC_TIMEOUT_S: Final = 10.0
"""One JSON-RPC request; a public endpoint answers in well under a second."""
MAX_TX_BYTES: Final = 16_384
"""Inbox.submit takes 1..16,384 bytes (contracts/Inbox.sol)."""
U64: Final = 2**64

T = TypeVar("T")

log = logging.getLogger("seqnet.l1")


class L1Unavailable(RuntimeError):
    """The L1 endpoint did not answer, or answered with an RPC error."""


class L1AnswerInvalid(L1Unavailable):
    """The L1 endpoint answered something that is not what was asked for."""


def checked_uint(value: object, what: str, bound: int = U64) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < bound:
        raise L1AnswerInvalid(f"{what}: expected an integer in [0, {bound}), got {value!r:.80}")
    return value


def checked_bytes(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise L1AnswerInvalid(f"{what}: expected bytes, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise L1AnswerInvalid(f"{what}: expected {length} bytes, got {len(value)}")
    return bytes(value)


def checked_address(value: object, what: str) -> bytes:
    """A 20-byte address from web3's checksum string (or raw bytes)."""
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    if isinstance(value, bytes | bytearray) and len(value) == 20:
        return bytes(value)
    raise L1AnswerInvalid(f"{what}: expected an address, got {value!r:.80}")


@dataclass(frozen=True, slots=True)
class CommitmentsTip:
    """What Commitments holds about its latest post, from one `latestPost()` call.

    One call is answered from one state of the contract, so every field
    belongs to the same latest post; separate view calls (`latestHeight`,
    `latestStateRoot`, ...) may each see a different post when one lands
    between them, even when they all name one block number.
    """

    post_count: int
    """Posts and resumes so far; the latest has index post_count - 1."""
    latest_height: int
    latest_state_height: int
    latest_state_root: bytes
    """Zero before the first post."""
    last_post_block: int
    """The deployment block before the first post."""
    epoch: int
    era_first_post: int
    era: int
    frozen: bool
    disputed_height: int | None
    """The current era's disputed height (None: no evidence froze it)."""


TIP_FIELDS: Final = 9
"""Commitments.latestPost()'s outputs: ref, count, postBlock, epoch_, firstPost,
era_, frozen_, disputed, disputedAt."""
POST_REF_FIELDS: Final = 4
EPOCH_BOUND: Final = 2**32


def checked_bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise L1AnswerInvalid(f"{what}: expected a bool, got {value!r:.80}")
    return value


def decode_tip(answer: object) -> CommitmentsTip:
    """Commitments.latestPost()'s answer, checked: L1AnswerInvalid for a value of
    the wrong type or range, or fields that no contract state yields together."""
    if not isinstance(answer, list | tuple) or len(answer) != TIP_FIELDS:
        raise L1AnswerInvalid(f"latestPost: expected {TIP_FIELDS} values, got {answer!r:.80}")
    ref, count, post_block, epoch, first_post, era, frozen, disputed, disputed_at = answer
    if not isinstance(ref, list | tuple) or len(ref) != POST_REF_FIELDS:
        raise L1AnswerInvalid(f"latestPost ref: expected {POST_REF_FIELDS} values, got {ref!r:.80}")
    index = checked_uint(ref[0], "latestPost ref.index")
    tip = CommitmentsTip(
        post_count=checked_uint(count, "latestPost count"),
        latest_height=checked_uint(ref[3], "latestPost ref.height"),
        latest_state_height=checked_uint(ref[2], "latestPost ref.stateHeight"),
        latest_state_root=checked_bytes(ref[1], "latestPost ref.stateRoot", 32),
        last_post_block=checked_uint(post_block, "latestPost postBlock"),
        epoch=checked_uint(epoch, "latestPost epoch", EPOCH_BOUND),
        era_first_post=checked_uint(first_post, "latestPost firstPost"),
        era=checked_uint(era, "latestPost era"),
        frozen=checked_bool(frozen, "latestPost frozen"),
        disputed_height=(
            checked_uint(disputed_at, "latestPost disputedAt")
            if checked_bool(disputed, "latestPost disputed")
            else None
        ),
    )
    if tip.post_count == 0:
        if (index, tip.latest_height, tip.latest_state_height, tip.era_first_post) != (0,) * 4:
            raise L1AnswerInvalid("latestPost: a latest post, or an era, with no post made")
        if tip.latest_state_root != bytes(32):
            raise L1AnswerInvalid("latestPost: a latest state root with no post made")
    elif index != tip.post_count - 1 or tip.era_first_post > index:
        raise L1AnswerInvalid(
            f"latestPost: ref index {index} with {tip.post_count} posts, "
            f"the era's first at {tip.era_first_post}"
        )
    if tip.disputed_height is None and disputed_at != 0:
        raise L1AnswerInvalid("latestPost: a disputed height with no dispute")
    return tip


def read_tip(commitments: Contract) -> CommitmentsTip:
    """Commitments' latest post and the state around it, in one `latestPost()` call."""
    return decode_tip(commitments.functions.latestPost().call())


@dataclass
class L1Link:
    w3: Web3
    commitments: Contract | None
    inbox: Contract | None
    bridge: Contract | None

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        *,
        commitments: bytes | None = None,
        inbox: bytes | None = None,
        bridge: bytes | None = None,
        timeout_s: float = RPC_TIMEOUT_S,
    ) -> L1Link:
        """Set up the connection (nothing is sent until the first call)."""
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}))

        def contract(name: str, address: bytes | None) -> Contract | None:
            if address is None:
                return None
            return w3.eth.contract(
                address=Web3.to_checksum_address(address), abi=load_artifact(name).abi_list
            )

        return cls(
            w3=w3,
            commitments=contract("Commitments", commitments),
            inbox=contract("Inbox", inbox),
            bridge=contract("Bridge", bridge),
        )

    @staticmethod
    def guarded(call: Callable[[], T]) -> T:
        """Run `call`, turning every transport, RPC or decoding failure into
        L1Unavailable (a contract revert, ContractLogicError, passes through)."""
        try:
            return call()
        except (L1Unavailable, ContractLogicError):
            raise
        except Exception as exc:  # web3 raises many unrelated types for one failure
            raise L1Unavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    # ---- reads (blocking) --------------------------------------------------------------

    def head(self) -> int:
        return checked_uint(self.guarded(lambda: self.w3.eth.block_number), "block number")

    def chain_id(self) -> int:
        return checked_uint(self.guarded(lambda: self.w3.eth.chain_id), "chain id")

    def block_hash(self, number: int) -> bytes | None:
        """The hash of block `number`, or None if the L1 has no such block (now)."""

        def read() -> Any:
            try:
                return self.w3.eth.get_block(number)
            except Exception as exc:
                if type(exc).__name__ == "BlockNotFound":
                    return None
                raise

        block = self.guarded(read)
        if block is None:
            return None
        if checked_uint(block.get("number"), "block number") != number:
            raise L1AnswerInvalid(f"asked for block {number}, got {block.get('number')!r:.40}")
        return checked_bytes(block.get("hash"), "block hash", 32)

    def commitments_tip(self) -> CommitmentsTip:
        """The latest post's record, in one call (`read_tip`)."""
        contract = self.require(self.commitments, "commitments")
        return decode_tip(self.guarded(contract.functions.latestPost().call))

    def transaction_count(self, address: str, block: str) -> int:
        return checked_uint(
            self.guarded(lambda: self.w3.eth.get_transaction_count(address, block)),  # type: ignore[arg-type]
            "transaction count",
        )

    def receipt(self, tx_hash: bytes) -> tuple[int, int, int] | None:
        """(status, gasUsed, blockNumber) of a mined transaction, or None."""

        def read() -> Any:
            try:
                return self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except Exception as exc:
                if type(exc).__name__ == "TransactionNotFound":
                    return None
                raise

        receipt = self.guarded(read)
        if receipt is None:
            return None
        return (
            checked_uint(receipt.get("status"), "receipt status", 2),
            checked_uint(receipt.get("gasUsed"), "receipt gasUsed"),
            checked_uint(receipt.get("blockNumber"), "receipt blockNumber"),
        )

    def send_raw(self, raw: bytes) -> None:
        """Broadcast a signed transaction; "already known" is not an error."""
        try:
            self.guarded(lambda: self.w3.eth.send_raw_transaction(raw))
        except L1Unavailable as exc:
            text = str(exc).lower()
            if "already known" in text or "already imported" in text or "known transaction" in text:
                return
            raise

    @staticmethod
    def require(contract: Contract | None, name: str) -> Contract:
        if contract is None:
            raise L1Unavailable(f"no [l1] {name} address configured")
        return contract


async def run_rounds(
    one_round: Callable[[], Awaitable[object]], on_error: Callable[[str], None], poll_s: float
) -> None:
    """Run an L1 task's rounds forever, `poll_s` apart. An L1 problem, or any
    other failure of a round, is reported to `on_error` and never stops the node."""
    while True:
        try:
            await one_round()
        except L1Unavailable as exc:
            on_error(str(exc))
        except Exception as exc:
            log.exception("event=l1_round_failed")
            on_error(f"{type(exc).__name__}: {exc}")
        await trio.sleep(poll_s)
