"""Scanning contract logs at confirmation depth, shared by the L1's watchers.

    ScanPosition        the last scanned block and the hashes of the last
                        REMEMBERED_BLOCKS scanned range ends (persisted by the
                        task that owns it)
    check_reorg         the hash of the last scanned block still the L1's?
                        else walk back the remembered range ends to one that
                        is, and scan again from there (anvil, like many
                        endpoints, sends no `removed` logs)
    scan_confirmed      from the last scanned block + 1 up to head -
                        confirmations, in ranges of at most MAX_LOG_RANGE
                        blocks, MAX_RANGES_PER_ROUND ranges a round; each
                        range's events are handed over in L1 order, then the
                        position advances and is saved

Every log's block number is checked to lie in the range asked for. A range
with more than MAX_LOGS_PER_RANGE logs is read again in halves, down to single
blocks, whose logs are taken whatever their number (the L1's gas limit bounds
them): a burst of cheap deposits or forced transactions slows a scan, it never
stalls it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio

from sequencer_net.l1.link import L1AnswerInvalid, L1Link, L1Unavailable, checked_uint

log = logging.getLogger("seqnet.l1.scan")

E = TypeVar("E")

MAX_LOG_RANGE: Final = 2_000
"""L1 blocks per eth_getLogs request (public endpoints cap ranges near this)."""
MAX_RANGES_PER_ROUND: Final = 16
"""Ranges scanned per round: a watcher far behind catches up over rounds."""
MAX_LOGS_PER_RANGE: Final = 10_000
"""More logs than this in one range is not an answer we act on."""
REMEMBERED_BLOCKS: Final = 64
"""Scanned range ends (number, hash) kept to find where a reorg forked."""


@dataclass
class ScanPosition:
    """How far a log scan got."""

    block: int = -1
    """The last L1 block scanned (-1: none yet)."""
    hashes: list[tuple[int, bytes]] = field(default_factory=list)
    """Scanned range ends and their hashes, oldest first."""

    def scanned(self, number: int, block_hash: bytes) -> None:
        self.block = number
        self.hashes = [(n, h) for n, h in self.hashes if n < number]
        self.hashes.append((number, block_hash))
        del self.hashes[:-REMEMBERED_BLOCKS]

    def rewind(self, number: int) -> None:
        """Scan again from `number + 1` (-1: from the L1's genesis)."""
        self.block = number
        self.hashes = [(n, h) for n, h in self.hashes if n <= number]

    def position_json(self) -> dict[str, Any]:
        return {"block": self.block, "hashes": [[n, "0x" + h.hex()] for n, h in self.hashes]}

    @staticmethod
    def position_of(raw: Any) -> tuple[int, list[tuple[int, bytes]]]:
        """(block, hashes) of a `position_json` document; ValueError, KeyError or
        TypeError on anything else."""
        block = json_uint(raw["block"], -1)
        hashes = [(json_uint(n, 0), json_digest(h)) for n, h in raw["hashes"]]
        if len(hashes) > REMEMBERED_BLOCKS:
            raise ValueError("too many remembered blocks")
        return block, hashes


def json_uint(value: object, low: int) -> int:
    """An integer of a saved JSON state, at least `low` and below 2**64."""
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < 2**64:
        raise ValueError(f"expected an integer >= {low}")
    return value


def json_digest(value: object) -> bytes:
    """A 32-byte 0x hex string of a saved JSON state."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 66:
        raise ValueError("expected a 32-byte 0x hex string")
    return bytes.fromhex(value[2:])


def log_position(entry: Any, start: int, end: int) -> tuple[int, int]:
    """(block, log index) of a log, which must lie in start..end."""
    block = checked_uint(entry.get("blockNumber"), "log blockNumber")
    if not start <= block <= end:
        raise L1AnswerInvalid(f"a log of block {block} outside the range {start}..{end}")
    return block, checked_uint(entry.get("logIndex"), "log logIndex")


class TooManyLogs(L1AnswerInvalid):
    """A range held more than MAX_LOGS_PER_RANGE logs: the scan reads it in halves."""


def check_count(entries: Sequence[Any], start: int, end: int) -> None:
    """Refuse an overfull multi-block range (the scan halves it). One block's logs
    are taken whatever their number: the L1's gas limit bounds them, and refusing
    them would stall the scan there for good."""
    if len(entries) > MAX_LOGS_PER_RANGE and end > start:
        raise TooManyLogs(f"{len(entries)} logs in blocks {start}..{end}")


def end_hash(link: L1Link, end: int) -> bytes:
    """Blocking: the hash of a scanned range's last block."""
    found = link.block_hash(end)
    if found is None:
        raise L1Unavailable(f"block {end} vanished while it was scanned")
    return found


async def check_reorg(link: L1Link, position: ScanPosition, save: Callable[[], None]) -> None:
    """Rewind `position` to the newest remembered block the L1 still has."""
    remembered = position.hashes
    if not remembered:
        return
    for number, known in reversed(remembered):
        current = await trio.to_thread.run_sync(link.block_hash, number)
        if current == known:
            if number != position.block:
                log.warning(
                    "event=l1_reorg scanned_to=%d rescan_from=%d", position.block, number + 1
                )
                position.rewind(number)
                await trio.to_thread.run_sync(save)
            return
    log.warning("event=l1_reorg scanned_to=%d rescan_from=0", position.block)
    position.rewind(-1)
    await trio.to_thread.run_sync(save)


async def scan_confirmed(
    *,
    link: L1Link,
    position: ScanPosition,
    safe: int,
    read_range: Callable[[int, int], tuple[list[E], bytes]],
    handle: Callable[[E], Awaitable[bool]],
    save: Callable[[], None],
) -> bool:
    """Scan up to block `safe`. `read_range(start, end)` (blocking, run in a
    worker thread) returns the range's events in L1 order and its last block's
    hash; `handle(event)` returns False to stop the round (the range is read
    again next round). True when everything up to `safe` is scanned."""
    span = MAX_LOG_RANGE
    for _ in range(MAX_RANGES_PER_ROUND):
        if position.block >= safe:
            return True
        start = position.block + 1
        end = min(safe, start + span - 1)
        try:
            events, last_hash = await trio.to_thread.run_sync(read_range, start, end)
        except TooManyLogs:
            span = max(1, (end - start + 1) // 2)  # read the busy stretch in smaller ranges
            continue
        for event in events:
            if not await handle(event):
                return False
        position.scanned(end, last_hash)
        # The save fsyncs a file: off the event loop, which serves consensus.
        await trio.to_thread.run_sync(save)
    return position.block >= safe
