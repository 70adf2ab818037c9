"""One P2PNetwork in its own process, for tests that stop and resume real processes.

    python -m tests.p2p.node_process INDEX PORT0,PORT1,... [--limits JSON]

Validator keys come from `harness.validator_keys(n)`. The process broadcasts a
small CONSENSUS frame every 50 ms and writes one JSON line per 50 ms to stdout:
`{"t": <CLOCK_MONOTONIC>, "connected": [...], "received": {"<sender>": [count, last_t]},
"disconnects": n, "reconnects": n}` — `t` and `last_t` are on the system-wide
monotonic clock, so the parent can compare them with the moment it sent SIGCONT.
It exits when stdin closes (the parent went away) or after --max-seconds.
Logs go to stderr at WARNING (set P2P_LOG=DEBUG to see more).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import trio

from sequencer_net.p2p import Channel, P2PLimits, P2PNetwork, PeerSpec
from tests.p2p.harness import LOOPBACK, validator_keys

TICK_S = 0.05


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("index", type=int)
    parser.add_argument("ports", help="comma-separated p2p ports of validators 0..n-1")
    parser.add_argument("--limits", default="{}", help="P2PLimits fields as JSON")
    parser.add_argument("--max-seconds", type=float, default=120.0)
    return parser.parse_args()


async def _watch_stdin(scope: trio.CancelScope) -> None:
    """Exit when the parent closes our stdin (it died or is done with us)."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some(1024):
        pass
    scope.cancel()


async def _main(args: argparse.Namespace) -> None:
    ports = [int(p) for p in args.ports.split(",")]
    keys = validator_keys(len(ports))
    specs = [PeerSpec(i, k.public_key, LOOPBACK, ports[i]) for i, k in enumerate(keys)]
    limits = P2PLimits(**json.loads(args.limits))
    net = P2PNetwork(
        secret=keys[args.index].secret,
        me=args.index,
        listen_host=LOOPBACK,
        listen_port=ports[args.index],
        peers=specs,
        limits=limits,
    )
    received: dict[int, list[Any]] = {}

    async def consume() -> None:
        async for sender, _channel, _payload in net.inbound:
            entry = received.setdefault(sender, [0, 0.0])
            entry[0] += 1
            entry[1] = time.monotonic()

    async def report() -> None:
        while True:
            net.broadcast(Channel.CONSENSUS, b"tick")
            line = {
                "t": time.monotonic(),
                "connected": net.connected_peers(),
                "received": {str(k): v for k, v in received.items()},
                "disconnects": net.stats.disconnects,
                "reconnects": net.stats.reconnects,
            }
            print(json.dumps(line), flush=True)
            await trio.sleep(TICK_S)

    with trio.move_on_after(args.max_seconds) as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(net.run)
            nursery.start_soon(consume)
            nursery.start_soon(report)
            nursery.start_soon(_watch_stdin, scope)


def main() -> None:
    level = os.environ.get("P2P_LOG", "WARNING")
    logging.basicConfig(level=level, stream=sys.stderr, format="%(created).3f %(message)s")
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    trio.run(_main, _parse())


if __name__ == "__main__":
    main()
