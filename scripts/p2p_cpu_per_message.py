"""CPU per message through two P2PNetworks in one process (docs/performance.md).

Both networks run in this one trio thread, so `time.process_time` covers both
ends: the sender's queue, frame, yamux and Noise write, and the receiver's
Noise and yamux read, frame parse and delivery. Messages go one at a time
(send, wait for it to arrive), so every message is its own socket write and
read, as a block's messages mostly are between validators.

    PYTHONPATH=$PWD .venv/bin/python scripts/p2p_cpu_per_message.py

Listens on 127.0.0.1 (`--port`, and the next port). Prints one line, or a JSON
object with `--json`.
"""

from __future__ import annotations

import argparse
import json
import time

import trio

from consensus.crypto import PrivateKey
from sequencer_net.p2p import Channel, P2PLimits, P2PNetwork, PeerSpec


async def measure(*, port: int, messages: int, warmup: int, size: int) -> dict[str, float]:
    keys = [PrivateKey((i + 1).to_bytes(32, "big")) for i in range(2)]
    specs = [PeerSpec(i, key.public_key, "127.0.0.1", port + i) for i, key in enumerate(keys)]
    nets = [
        P2PNetwork(
            secret=keys[i].secret,
            me=i,
            listen_host="127.0.0.1",
            listen_port=port + i,
            peers=specs,
            limits=P2PLimits(),
        )
        for i in range(2)
    ]
    payload = bytes(size)
    async with trio.open_nursery() as nursery:
        for net in nets:
            await nursery.start(net.run)
        with trio.fail_after(30):
            while not all(net.connected_peers() for net in nets):
                await trio.sleep(0.01)

        async def one_way(count: int) -> None:
            for _ in range(count):
                if not nets[0].send(1, Channel.CONSENSUS, payload):
                    raise RuntimeError("send refused")
                await nets[1].inbound.receive()

        with trio.fail_after(120):
            await one_way(warmup)
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await one_way(messages)
            cpu1, wall1 = time.process_time(), time.perf_counter()
        nursery.cancel_scope.cancel()
    return {
        "messages": messages,
        "bytes": size,
        "cpu_us_per_message": (cpu1 - cpu0) / messages * 1e6,
        "wall_us_per_message": (wall1 - wall0) / messages * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=47000)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--bytes", type=int, default=200, dest="size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = trio.run(
        lambda: measure(port=args.port, messages=args.messages, warmup=args.warmup, size=args.size)
    )
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['messages']} messages of {result['bytes']} bytes: "
            f"{result['cpu_us_per_message']:.1f} us CPU per message (both ends), "
            f"{result['wall_us_per_message']:.1f} us wall"
        )


if __name__ == "__main__":
    main()
