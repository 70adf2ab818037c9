"""The shared log scan: an overfull range is read again in halves, down to a
single block whose logs are taken whatever their number, so a burst of cheap
L1 events slows the scan and never stalls it."""

from __future__ import annotations

import trio

from sequencer_net.l1.scan import MAX_LOGS_PER_RANGE, ScanPosition, check_count, scan_confirmed


def test_a_burst_of_logs_is_read_in_halves_and_never_stalls_the_scan() -> None:
    busy = 1_234  # one L1 block holding more logs than a range may
    per_block = {busy: MAX_LOGS_PER_RANGE + 5, busy + 1: 3, 7: 1}
    asked: list[tuple[int, int]] = []
    handled: list[int] = []

    def read_range(start: int, end: int) -> tuple[list[int], bytes]:
        asked.append((start, end))
        entries = [b for b in range(start, end + 1) for _ in range(per_block.get(b, 0))]
        check_count(entries, start, end)
        return entries, end.to_bytes(32, "big")

    async def handle(block: int) -> bool:
        handled.append(block)
        return True

    position = ScanPosition()

    async def scan() -> bool:
        done = False
        for _ in range(20):  # rounds
            done = await scan_confirmed(
                link=None,  # type: ignore[arg-type]  # the scan itself reads nothing from it
                position=position,
                safe=3_000,
                read_range=read_range,
                handle=handle,
                save=lambda: None,
            )
            if done:
                break
        return done

    assert trio.run(scan)
    assert position.block == 3_000
    assert handled.count(busy) == MAX_LOGS_PER_RANGE + 5 and handled.count(busy + 1) == 3
    assert handled.count(7) == 1
    assert (busy, busy) in asked  # the busy block alone, taken whatever its count
