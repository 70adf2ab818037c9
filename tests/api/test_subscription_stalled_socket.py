"""A subscriber whose client stops reading, over real sockets on 127.0.0.1:
its subscription slot is freed within a bound while commits go on, so a new
subscriber gets in. The web server shields its socket writes from
cancellation, so no deadline inside the subscription can cut a write short;
what bounds it is the connection's own write deadline (http_server.
ConnectionStream, `send_timeout_s`), which ends the connection and with it the
subscription's task. Every wait is bounded; the server is cancelled at the end."""

from __future__ import annotations

from pathlib import Path

import msgspec
import trio

from sequencer_net.api.server import ApiOptions, build_app
from sequencer_net.client.websocket_trio import TrioWebSocket, WebSocketEnded
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.storage.node_store import NodeStore
from tests.api.conftest import GENESIS, ApiWorld
from tests.api.test_http_server import serving
from tests.api.test_subscriptions import NS, Chain
from tests.mempool.factories import DOMAIN, signed

BOUND_S = 20.0
TX_PAYLOAD = bytes(24 * 1024)
"""Each block carries 32 of these in the namespace: about 1.5 MiB of hex a
message, so a few blocks fill the loopback socket's buffers."""


def commit_large(chain: Chain) -> None:
    height = chain.store.tip()[0] + 1
    txs = []
    for _ in range(32):
        txs.append(signed(sender=1, nonce=chain.nonce, namespace=NS, payload=TX_PAYLOAD))
        chain.nonce += 1
    chain.commit_txs(txs)
    assert chain.store.tip()[0] == height


async def test_a_client_that_stops_reading_frees_its_subscription_slot(tmp_path: Path) -> None:
    store = NodeStore(tmp_path / "chain", genesis_digest=GENESIS, sync=False)
    chain = Chain(store)
    world = ApiWorld(store=store, mempool=Mempool(DOMAIN))
    context = world.context()
    context.commit_feed = chain.feed
    options = ApiOptions(host="127.0.0.1", port=0, max_subscribers=1)
    try:
        async with serving(build_app(context, options), options, send_timeout_s=0.5) as (port, _):
            url = f"ws://127.0.0.1:{port}/v1/subscribe/blocks?namespace={NS}&from=1"
            stalled = await TrioWebSocket.connect(url, 5.0, 64 * 1024 * 1024)  # never read
            with trio.fail_after(BOUND_S):
                while True:
                    commit_large(chain)  # the node goes on committing meanwhile
                    await trio.sleep(0.05)
                    second = await TrioWebSocket.connect(url, 5.0, 64 * 1024 * 1024)
                    try:
                        text = await second.receive_text(5.0)
                    except WebSocketEnded as exc:
                        assert exc.ended.code == 4429  # the stalled one still holds the slot
                        continue
                    finally:
                        await second.close()
                    break
            assert msgspec.json.decode(text)["height"] == 1
            await stalled.close()
    finally:
        store.close()
