"""Decryption shares after commit, exchanged round by round.

One committed block holding envelopes; every honest validator runs what
node/decryption.py runs, with the network and the clock simulated:

    block_shares           its one share message for the block (the real one)
    persist                the encoded SharesMessage into its store, then ...
    broadcast              ... to every validator, each copy arriving 0 to
                           MAX_DELAY_ROUNDS rounds later or lost
    consider               decode_shares_message, the index must be the
                           sender's + 1, the block must match, then
                           BlockOpening.offer (accept_block_shares)
    ask                    after ASK_AFTER_ROUNDS without t verified messages,
                           ask every validator not heard from (nor refused);
                           an honest one answers from its store the next round
    open                   BlockOpening.open once t messages verified

Byzantine validators act through a `ByzantineShares` behaviour: what each
sends to each honest validator in round 0 (delivered before any honest
message) and what it answers when asked. Honest validators may crash
(`Crash`): down from round `at` until `restart`; what they lose and keep is
what the node loses and keeps (memory lost, the store kept).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from sequencer_net.fairness import tdh2
from sequencer_net.fairness.envelope import Envelope, label_of, reveal
from sequencer_net.fairness.order import order_seed_tag
from sequencer_net.mempool.transaction import Transaction
from sequencer_net.node.decryption import (
    BlockOpening,
    MalformedSharesMessage,
    SharesMessage,
    decode_shares_message,
    encode_shares_message,
)

from .committee import DOMAIN, Committee, seal_transaction, user_key, user_transaction

MAX_ROUNDS = 24
"""A block not opened by then counts as never opened (an honest run opens
within a few rounds)."""
MAX_DELAY_ROUNDS = 2
LOSS_PERCENT = 10
ASK_AFTER_ROUNDS = 2
"""node/decryption.py ASK_AFTER_S (0.3 s) in rounds of about 150 ms."""

ByzantineShares = Callable[[int, int], list[bytes]]
"""(Byzantine validator, honest recipient) -> the messages it sends (or answers)."""


def withhold(_: int, __: int) -> list[bytes]:
    return []


@dataclass(frozen=True)
class EncryptedBlock:
    height: int
    digest: bytes
    envelopes: list[Envelope]
    transactions: list[Transaction]
    """What each envelope seals (the truth honest results are held to)."""

    @property
    def ciphertexts(self) -> list[tdh2.Ciphertext]:
        return [e.ciphertext for e in self.envelopes]

    @property
    def labels(self) -> list[bytes]:
        return [label_of(e) for e in self.envelopes]


def encrypted_block(committee: Committee, height: int, count: int) -> EncryptedBlock:
    """`count` users' transactions sealed to the committee's key, in one block."""
    rng = committee.rng(f"block/{height}")
    transactions, envelopes = [], []
    for i in range(count):
        key = user_key(f"user{i}", committee.seed)
        tx = user_transaction(key, height, b"order %d at height %d" % (i, height))
        transactions.append(tx)
        envelopes.append(seal_transaction(committee, key, tx, rng.randbytes))
    digest = rng.randbytes(32)
    return EncryptedBlock(height, digest, envelopes, transactions)


def coin_tag(block: EncryptedBlock) -> bytes:
    """The block's order coin tag, as a validator names it."""
    return order_seed_tag(DOMAIN.chain_id, block.height, block.digest)


def own_coin(committee: Committee, block: EncryptedBlock, index: int) -> bytes:
    """Validator `index`'s encoded coin share on the block's order seed tag."""
    return tdh2.encode(tdh2.coin_share(committee.key_shares[index], coin_tag(block)))


def own_message(committee: Committee, block: EncryptedBlock, index: int) -> bytes:
    """Validator `index`'s encoded SharesMessage for the block (made by the real
    `block_shares`, which checks every ciphertext first, and `coin_share`)."""
    shares = tdh2.block_shares(committee.key_shares[index], block.ciphertexts, block.labels)
    return encode_shares_message(
        SharesMessage(
            block.height, block.digest, tdh2.encode(shares), own_coin(committee, block, index)
        )
    )


def genuine(committee: Committee, block: EncryptedBlock) -> ByzantineShares:
    """Byzantine validators behaving honestly: each sends its real message."""
    messages = {i: own_message(committee, block, i) for i in committee.byzantine}

    def send(bad: int, _: int) -> list[bytes]:
        return [messages[bad]]

    return send


@dataclass(frozen=True)
class Crash:
    at: int
    """The round it goes down in (0 for a crash during the release)."""
    restart: int
    """The round it restarts in, counted as if it went down at `at`."""
    point: str
    """"before_persist", "after_persist", "mid_send" (sent to some), or
    "after_open" (opened and executed the block: after the restart it only
    serves its stored message, as a node past that height does)."""


CRASH_POINTS = ("before_persist", "after_persist", "mid_send", "after_open")


@dataclass
class _Node:
    index: int
    decryption: BlockOpening
    store: dict[int, bytes] = field(default_factory=dict)
    sent: bytes | None = None
    opened: list[bytes | tdh2.DecryptionFailed] | None = None
    opened_round: int | None = None
    last_ask: int = 0
    up: bool = True
    serves_only: bool = False


@dataclass
class ExchangeResult:
    opened: dict[int, list[bytes | tdh2.DecryptionFailed] | None]
    rounds: dict[int, int | None]
    refused: int = 0
    resent_identical: bool = True
    """Every restarted validator sent the same message it sent before."""


def persist(node: _Node, height: int, message: bytes) -> None:
    """The store write (synced in the node) that precedes every send."""
    node.store[height] = message


class ShareExchange:
    def __init__(
        self,
        committee: Committee,
        block: EncryptedBlock,
        byzantine: ByzantineShares = withhold,
        *,
        rng: random.Random,
        crashes: dict[int, Crash] | None = None,
        deaf: frozenset[int] = frozenset(),
        byzantine_first: bool = True,
    ) -> None:
        self.committee = committee
        self.block = block
        self.byzantine = byzantine
        self.rng = rng
        self.crashes = crashes or {}
        self.deaf = deaf
        self.byzantine_first = byzantine_first
        """Byzantine messages arrive in round 0 before any honest one; False:
        they travel like honest ones (delays, loss)."""
        """Honest validators whose incoming broadcasts are all lost (they must ask)."""
        self.nodes = {i: self._fresh(i) for i in committee.honest}
        self.inbox: list[tuple[int, int, int, int, bytes]] = []
        """(arrival round, priority, sequence, recipient, data): Byzantine
        messages (priority 0) before honest ones in the same round."""
        self._down_since: dict[int, int] = {}
        self._senders: dict[int, int] = {}
        self._sequence = 0
        self.refused = 0
        self.resent_identical = True

    def _fresh(self, index: int) -> _Node:
        return _Node(
            index,
            BlockOpening(
                height=self.block.height,
                block=self.block.digest,
                coin_tag=coin_tag(self.block),
                ciphertexts=self.block.ciphertexts,
                labels=self.block.labels,
                keys=self.committee.threshold_keys,
            ),
        )

    def _send(self, arrival: int, priority: int, sender: int, recipient: int, data: bytes) -> None:
        self._sequence += 1
        self._senders[self._sequence] = sender
        self.inbox.append((arrival, priority, self._sequence, recipient, data))

    def _broadcast(self, node: _Node, message: bytes, round_: int, only: list[int] | None) -> None:
        for recipient in self.committee.honest:
            if recipient == node.index or (only is not None and recipient not in only):
                continue
            if recipient in self.deaf or self.rng.randrange(100) < LOSS_PERCENT:
                continue
            delay = self.rng.randint(0, MAX_DELAY_ROUNDS)
            self._send(round_ + delay, 1, node.index, recipient, message)

    def _release(self, node: _Node, round_: int, crash: Crash | None) -> None:
        """Make (or load the stored) own message, persist it, offer it, send it."""
        stored = node.store.get(self.block.height)
        if stored is not None and decode_shares_message(stored)[0].block == self.block.digest:
            message = stored  # a restart: the stored message, as Decryptor._own_message
        else:
            if crash is not None and crash.point == "before_persist":
                return
            message = own_message(self.committee, self.block, node.index)
            persist(node, self.block.height, message)
        if node.sent is not None and message != node.sent:
            self.resent_identical = False
        if crash is not None and crash.point == "after_persist":
            return
        self._consider(node, node.index, message)
        only = None
        if crash is not None and crash.point == "mid_send":
            only = self.rng.sample(self.committee.honest, len(self.committee.honest) // 2)
        node.sent = message
        self._broadcast(node, message, round_, only)

    def _consider(self, node: _Node, sender: int, data: bytes) -> None:
        """node/decryption.py Decryptor._consider, without the early window."""
        try:
            message, shares, coin = decode_shares_message(data)
        except MalformedSharesMessage:
            return
        if coin.index != sender + 1:
            return
        job = node.decryption
        if message.height != job.height or message.block != job.block:
            return
        if coin.index in job.verified or coin.index in job.refused:
            return
        if not job.offer(shares, coin) and coin.index in job.refused:
            self.refused += 1

    def _ask(self, node: _Node, round_: int) -> None:
        heard = set(node.decryption.verified) | node.decryption.refused
        for peer in range(self.committee.n):
            if peer + 1 in heard or peer == node.index:
                continue
            if peer in self.committee.byzantine:
                for data in self.byzantine(peer, node.index):
                    self._send(round_ + 1, 0, peer, node.index, data)
                continue
            other = self.nodes[peer]
            answer = other.store.get(self.block.height) if other.up else None
            if answer is not None:
                self._send(round_ + 1, 1, peer, node.index, answer)

    def run(self) -> ExchangeResult:
        for bad in sorted(self.committee.byzantine):
            for recipient in self.committee.honest:
                for data in self.byzantine(bad, recipient):
                    if self.byzantine_first:
                        self._send(0, 0, bad, recipient, data)
                    elif recipient not in self.deaf and self.rng.randrange(100) >= LOSS_PERCENT:
                        self._send(self.rng.randint(0, MAX_DELAY_ROUNDS), 1, bad, recipient, data)
        for index in self.committee.honest:
            crash = self.crashes.get(index)
            during_release = crash if crash is not None and crash.point != "after_open" else None
            self._release(self.nodes[index], 0, during_release)
        for round_ in range(MAX_ROUNDS):
            self._crash_and_restart(round_)
            arriving = sorted(m for m in self.inbox if m[0] <= round_)
            self.inbox = [m for m in self.inbox if m[0] > round_]
            for _, _, sequence, recipient, data in arriving:
                node = self.nodes[recipient]
                if node.up and node.opened is None and not node.serves_only:
                    self._consider(node, self._senders[sequence], data)
            for node in self.nodes.values():
                if not node.up or node.serves_only or node.opened is not None:
                    continue
                if node.decryption.ready:
                    node.opened = node.decryption.open().plaintexts
                    node.opened_round = round_
                elif round_ - node.last_ask >= ASK_AFTER_ROUNDS:
                    node.last_ask = round_
                    self._ask(node, round_)
        return ExchangeResult(
            opened={i: n.opened for i, n in self.nodes.items()},
            rounds={i: n.opened_round for i, n in self.nodes.items()},
            refused=self.refused,
            resent_identical=self.resent_identical,
        )

    def _crash_and_restart(self, round_: int) -> None:
        """A crash during the release (any point but "after_open") happens in
        round 0; an "after_open" one at the first round from `at` on at which
        the node has opened the block. It is down for `restart - at` rounds."""
        for index, crash in sorted(self.crashes.items()):
            node = self.nodes[index]
            if index not in self._down_since and round_ >= crash.at:
                if crash.point == "after_open" and node.opened is None:
                    continue
                node.up = False
                self._down_since[index] = round_
            down = self._down_since.get(index)
            if down is not None and not node.up and round_ == down + crash.restart - crash.at:
                self._restart(node, round_, crash)

    def _restart(self, old: _Node, round_: int, crash: Crash) -> None:
        """Memory is lost, the store is kept. A node that had executed the block
        only serves its stored message; the others begin the block again."""
        node = self._fresh(old.index)
        node.store = old.store
        node.sent = old.sent
        node.last_ask = round_
        if crash.point == "after_open":
            node.serves_only = True
            node.opened, node.opened_round = old.opened, old.opened_round
        self.nodes[old.index] = node
        if not node.serves_only:
            self._release(node, round_, None)


def check_results(block: EncryptedBlock, result: ExchangeResult) -> tuple[list[str], bool]:
    """(what went wrong at which validator, whether every honest validator that
    opened the block got the same results). A result is wrong if it does not
    reveal the transaction the envelope sealed."""
    wrong: list[str] = []
    outcomes = {i: opened for i, opened in result.opened.items() if opened is not None}
    identical = len({tuple(o) for o in outcomes.values()}) <= 1
    for index, opened in outcomes.items():
        for position, (envelope, decrypted) in enumerate(zip(block.envelopes, opened, strict=True)):
            if reveal(envelope, decrypted, DOMAIN) != block.transactions[position]:
                wrong.append(f"validator {index} opened envelope {position} wrongly")
    return wrong, identical
