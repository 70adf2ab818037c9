"""A stand-in for `seqnet node run`: the node's HTTP API over a fake chain.

Serves /v1/status, /v1/transactions (single and batch), /v1/transactions/{h},
/v1/blocks/{h}, /metrics, /v1/admin/network and the WebSockets
/v1/subscribe/executed and /v1/transactions/stream on 127.0.0.1 with the
standard library (and msgspec for the stream's msgpack) only. A block is
"committed" every `block_interval_s`; it includes every transaction accepted
since the last one, and counts as executed `executed_lag_s` later (the
executed height is what /v1/status and the subscription report; its block is
readable at once, as if execution trailed the commit). Transactions are decoded and their
signatures recovered with the real mempool code, so tests can check what the
load generator signed (sender, nonce, namespace, payload size).

Run as a process (what the supervisor tests launch):
    python tests/testnet/fake_node.py --home DIR
reading the node's name and API port from DIR/config.toml and the chain id from
DIR/genesis.json (as written by the real `init_home`), or in a thread:
`FakeNode(FakeChain(...)).serve_in_thread()`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import queue
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # when run as a script from any directory
    sys.path.insert(0, str(ROOT))

from consensus.crypto import keccak256  # noqa: E402
from consensus.encoding import Domain  # noqa: E402
from sequencer_net.home.genesis import load_genesis  # noqa: E402
from sequencer_net.mempool.transaction import (  # noqa: E402
    InvalidTransaction,
    decode_transaction,
    recover_sender,
)

CONFIG_FILE = "fake-node.json"


@dataclass
class Accepted:
    sender: bytes
    nonce: int
    namespace: int
    payload_len: int
    hash: bytes
    height: int | None = None
    index: int | None = None


@dataclass
class FakeChain:
    name: str
    index: int
    chain_id: int = 31337
    genesis_hash: bytes = bytes(32)
    block_interval_s: float = 0.05
    peers: list[int] = field(default_factory=list)
    mempool_capacity: int = 1_000_000
    lock: threading.Lock = field(default_factory=threading.Lock)
    height: int = 0
    blocks: list[list[bytes]] = field(default_factory=list)
    txs: dict[bytes, Accepted] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)
    connected: bool = True
    admin_token: str | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    requests: int = 0
    started: float = field(default_factory=time.monotonic)
    executed_lag_s: float = 0.0
    committed_at: list[float] = field(default_factory=list)
    ws_drop_after: int | None = None
    """Close each executed-height subscription after this many messages."""
    ws_down_s: float = 0.0
    """After such a close, refuse new subscriptions (503) for this long."""
    ws_down_until: float = 0.0
    ws_connections: int = 0
    ws_sent: list[int] = field(default_factory=list)
    """Every height an executed-height subscription was sent, in order."""
    closed: bool = False
    encoded_blocks: bool = False
    """GET /v1/blocks lists each transaction encoded (0x-hex), as the node
    does, rather than by its hash."""
    encoded: dict[bytes, bytes] = field(default_factory=dict)
    stream_answer_delay_s: float = 0.0
    """Each answer on /v1/transactions/stream leaves this long after its
    message arrived (in order; the messages are read as they arrive)."""
    stream_close_after: int | None = None
    """Answer this many messages per stream connection, then close it (1011)
    on the next one, which is not answered and whose transactions are not taken."""
    stream_refuse_every: int | None = None
    """Refuse every k-th transaction that arrives on a stream (`test_refusal`)."""
    stream_connections: int = 0
    stream_messages: int = 0
    stream_txs: int = 0
    stream_in_flight: int = 0
    stream_max_in_flight: int = 0
    """The most messages the streams (all connections) held unanswered at once."""
    stream_refused: set[bytes] = field(default_factory=set)
    """Hashes of the transactions the stream refused (stream_refuse_every)."""
    stream_accepted: set[bytes] = field(default_factory=set)
    stream_unanswered: set[bytes] = field(default_factory=set)
    """Hashes of transactions in messages a stream closed on, unanswered."""

    def domain(self) -> Domain:
        return Domain(self.chain_id, bytes(20), self.genesis_hash)

    def executed_height(self) -> int:
        """Blocks committed at least `executed_lag_s` ago."""
        with self.lock:
            due = time.monotonic() - self.executed_lag_s
            return sum(1 for at in self.committed_at if at <= due)

    def commit_block(self) -> None:
        with self.lock:
            included = self.pending
            self.pending = []
            self.height += 1
            for position, tx_hash in enumerate(included):
                self.txs[tx_hash].height = self.height
                self.txs[tx_hash].index = position
            self.blocks.append(included)
            self.committed_at.append(time.monotonic())

    def accept(self, encoded: bytes) -> dict[str, str]:
        try:
            tx = decode_transaction(encoded)
            sender = recover_sender(tx, self.domain())
        except InvalidTransaction as exc:
            return {"error": str(exc), "code": "invalid_transaction"}
        tx_hash = keccak256(encoded)
        with self.lock:
            if len(self.pending) >= self.mempool_capacity:
                return {"error": "mempool full", "code": "mempool_full"}
            if tx_hash not in self.txs:
                self.txs[tx_hash] = Accepted(
                    sender, tx.nonce, tx.namespace, len(tx.payload), tx_hash
                )
                self.encoded[tx_hash] = encoded
                self.pending.append(tx_hash)
        return {"hash": "0x" + tx_hash.hex()}

    def status(self) -> dict[str, Any]:
        executed = self.executed_height()
        with self.lock:
            last = keccak256(executed.to_bytes(8, "big"))
            committed = sum(len(b) for b in self.blocks)
            return {
                "name": self.name,
                "validator_index": self.index,
                "chain_id": self.chain_id,
                "verifying_contract": "0x" + bytes(20).hex(),
                "genesis_hash": "0x" + self.genesis_hash.hex(),
                "height": executed,
                "last_hash": "0x" + last.hex(),
                "view": self.height + 1,
                "state_root": "0x" + keccak256(last).hex(),
                "peers": self.peers if self.connected else [],
                "mempool_size": len(self.pending),
                "committed_txs": committed,
                "commit_latency_ms": {"p50": 40.0, "p99": 90.0},
                "uptime_s": time.monotonic() - self.started,
            }


class _Handler(BaseHTTPRequestHandler):
    chain: FakeChain  # set on the subclass the server uses

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        if getattr(self, "_posting", False):
            # Counted out before the answer leaves: once the client has it, it may
            # send its next request, which must not find this one still counted.
            self._posting = False
            self._track(-1)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", "0")))

    def _track(self, delta: int) -> None:
        with self.chain.lock:
            self.chain.in_flight += delta
            self.chain.requests += max(delta, 0)
            self.chain.max_in_flight = max(self.chain.max_in_flight, self.chain.in_flight)

    def do_GET(self) -> None:
        chain = self.chain
        parts = self.path.strip("/").split("/")
        if parts == ["v1", "status"]:
            self._send(200, chain.status())
        elif self.path == "/v1/subscribe/executed":
            self._executed_subscription()
        elif self.path == "/v1/transactions/stream":
            self._transaction_stream()
        elif parts[:2] == ["v1", "transactions"] and len(parts) == 3:
            accepted = chain.txs.get(bytes.fromhex(parts[2].removeprefix("0x")))
            if accepted is None:
                self._send(404, {"error": "unknown transaction", "code": "not_found"})
            elif accepted.height is None:
                self._send(200, {"hash": parts[2], "status": "pending"})
            else:
                self._send(
                    200,
                    {
                        "hash": parts[2],
                        "status": "committed",
                        "height": accepted.height,
                        "index": accepted.index,
                    },
                )
        elif parts[:2] == ["v1", "blocks"] and len(parts) == 3:
            height = int(parts[2])
            if not 1 <= height <= chain.height:
                self._send(404, {"error": "no such block", "code": "not_found"})
            else:
                block_hash = keccak256(height.to_bytes(8, "big"))
                listed = chain.blocks[height - 1]
                if chain.encoded_blocks:
                    listed = [chain.encoded[h] for h in listed]
                txs = ["0x" + item.hex() for item in listed]
                self._send(
                    200, {"height": height, "hash": "0x" + block_hash.hex(), "transactions": txs}
                )
        elif parts == ["metrics"]:
            self._send(200, f"seqnet_height {chain.height}\n", "text/plain")
        else:
            self._send(404, {"error": "not found", "code": "not_found"})

    def _upgrade(self) -> None:
        key = self.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        self.wfile.flush()

    def _read_client_frame(self) -> tuple[int, bytes] | None:
        """(opcode, payload) of the next client frame, unmasked byte by byte
        (an implementation apart from the client's); None at the end, or for a
        frame that is not final or not masked (clients must mask)."""
        head = self.rfile.read(2)
        if len(head) < 2 or not head[0] & 0x80 or not head[1] & 0x80:
            return None
        size = head[1] & 0x7F
        if size == 126:
            size = int.from_bytes(self.rfile.read(2), "big")
        elif size == 127:
            size = int.from_bytes(self.rfile.read(8), "big")
        mask = self.rfile.read(4)
        data = self.rfile.read(size)
        if len(mask) < 4 or len(data) < size:
            return None
        return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))

    def _server_frame(self, opcode: int, payload: bytes) -> bytes:
        size = len(payload)
        if size < 126:
            head = bytes((0x80 | opcode, size))
        elif size < 1 << 16:
            head = bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big")
        return head + payload

    def _transaction_stream(self) -> None:
        """WS /v1/transactions/stream: each binary message a msgpack array of
        transactions, answered in order with the msgpack outcomes. Messages are
        read as they arrive; a writer thread sends each answer
        `stream_answer_delay_s` after its message arrived."""
        chain = self.chain
        self.close_connection = True
        with chain.lock:
            chain.stream_connections += 1
        self._upgrade()
        answers: queue.Queue[tuple[float, bytes] | None] = queue.Queue()
        write = threading.Lock()

        def send(opcode: int, payload: bytes) -> None:
            with write:
                self.wfile.write(self._server_frame(opcode, payload))
                self.wfile.flush()

        def writer() -> None:
            while (item := answers.get()) is not None:
                due, answer = item
                time.sleep(max(0.0, due - time.monotonic()))
                with chain.lock:
                    chain.stream_in_flight -= 1
                try:
                    send(0x2, answer)
                except OSError:
                    return

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        answered = 0
        try:
            while not chain.closed:
                frame = self._read_client_frame()
                if frame is None or frame[0] == 0x8:
                    return
                arrived = time.monotonic()
                opcode, payload = frame
                if opcode != 0x2:
                    continue
                encoded = msgspec.msgpack.decode(payload, type=list[bytes])
                with chain.lock:
                    chain.stream_messages += 1
                if chain.stream_close_after is not None and answered >= chain.stream_close_after:
                    with chain.lock:
                        chain.stream_unanswered.update(keccak256(tx) for tx in encoded)
                    answers.put(None)
                    thread.join()
                    send(0x8, (1011).to_bytes(2, "big") + b"test close")
                    # Read up to the client's echo: what it sent meanwhile is unanswered too.
                    while (frame := self._read_client_frame()) is not None and frame[0] != 0x8:
                        if frame[0] == 0x2:
                            pipelined = msgspec.msgpack.decode(frame[1], type=list[bytes])
                            with chain.lock:
                                chain.stream_unanswered.update(keccak256(tx) for tx in pipelined)
                    return
                outcomes: list[Any] = []
                for tx in encoded:
                    tx_hash = keccak256(tx)
                    with chain.lock:
                        chain.stream_txs += 1
                        refuse = (
                            chain.stream_refuse_every is not None
                            and chain.stream_txs % chain.stream_refuse_every == 0
                        )
                    if refuse:
                        with chain.lock:
                            chain.stream_refused.add(tx_hash)
                        outcomes.append(["test_refusal", "refused by the test"])
                        continue
                    result = chain.accept(tx)
                    if "hash" in result:
                        with chain.lock:
                            chain.stream_accepted.add(tx_hash)
                        outcomes.append(tx_hash)
                    else:
                        outcomes.append([result["code"], result["error"]])
                with chain.lock:
                    chain.stream_in_flight += 1
                    chain.stream_max_in_flight = max(
                        chain.stream_max_in_flight, chain.stream_in_flight
                    )
                answered += 1
                answers.put(
                    (arrived + chain.stream_answer_delay_s, msgspec.msgpack.encode(outcomes))
                )
        except OSError:
            return
        finally:
            answers.put(None)
            thread.join(timeout=5)

    def _executed_subscription(self) -> None:
        """WS /v1/subscribe/executed: the executed height at once and at each
        advance (looked at every 5 ms), a ping every 0.5 s otherwise."""
        chain = self.chain
        self.close_connection = True
        with chain.lock:
            chain.ws_connections += 1
            down = time.monotonic() < chain.ws_down_until
        if down:
            self._send(503, {"error": "down", "code": "unavailable"})
            return
        self._upgrade()

        def frame(opcode: int, payload: bytes) -> None:
            self.wfile.write(bytes((0x80 | opcode, len(payload))) + payload)
            self.wfile.flush()

        sent, count, written = -1, 0, time.monotonic()
        try:
            while not chain.closed:
                height = chain.executed_height()
                if height > sent:
                    frame(0x1, json.dumps({"type": "executed", "height": height}).encode())
                    chain.ws_sent.append(height)
                    sent, count, written = height, count + 1, time.monotonic()
                    if chain.ws_drop_after is not None and count >= chain.ws_drop_after:
                        chain.ws_down_until = time.monotonic() + chain.ws_down_s
                        frame(0x8, (1001).to_bytes(2, "big"))
                        return
                elif time.monotonic() - written > 0.5:
                    frame(0x1, b'{"type":"ping"}')
                    written = time.monotonic()
                time.sleep(0.005)
        except OSError:
            return

    def do_POST(self) -> None:
        self._track(1)
        self._posting = True
        try:
            self._post()
        finally:
            if self._posting:
                self._posting = False
                self._track(-1)

    def _post(self) -> None:
        chain = self.chain
        body = self._body()
        if self.path == "/v1/transactions":
            result = chain.accept(body)
            if "hash" in result:
                self._send(200, result)
            else:
                self._send(503 if result["code"] == "mempool_full" else 400, result)
        elif self.path == "/v1/transactions/batch":
            encoded = [
                bytes.fromhex(t.removeprefix("0x")) for t in json.loads(body)["transactions"]
            ]
            self._send(200, {"results": [chain.accept(tx) for tx in encoded]})
        elif self.path == "/v1/admin/network":
            if chain.admin_token is None:
                self._send(404, {"error": "admin API off", "code": "admin_disabled"})
                return
            if self.headers.get("authorization") != f"Bearer {chain.admin_token}":
                self._send(401, {"error": "admin token needed", "code": "unauthorized"})
                return
            chain.connected = bool(json.loads(body)["connected"])
            self._send(200, {"connected": chain.connected})
        else:
            self._send(404, {"error": "not found", "code": "not_found"})


class FakeNode:
    def __init__(self, chain: FakeChain, host: str = "127.0.0.1", port: int = 0) -> None:
        self.chain = chain
        handler = type("Handler", (_Handler,), {"chain": chain})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def _produce_blocks(self) -> None:
        while not self._stop.wait(self.chain.block_interval_s):
            self.chain.commit_block()

    def serve_in_thread(self) -> FakeNode:
        for target in (self.server.serve_forever, self._produce_blocks):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        self.chain.closed = True
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def read_home(home: Path) -> dict[str, Any]:
    """Settings from a real node home (config.toml, genesis.json), then fake-node.json.

    The fake node runs from the homes `write_validator_homes` writes, so tests
    exercise the real genesis and home code; fake-node.json (optional) adds
    test knobs: fail_on_start, ignore_sigterm, startup_delay_s.
    """
    settings: dict[str, Any] = {}
    config_path, genesis_path = home / "config.toml", home / "genesis.json"
    if config_path.exists():
        config = tomllib.loads(config_path.read_text())
        settings["name"] = config["name"]
        settings["api_port"] = config["api"]["listen_port"]
        token_file = config["api"].get("admin_token_file")
        if token_file is not None:  # the real node's rule: Bearer <first line of the file>
            settings["admin_token"] = (home / token_file).read_text().splitlines()[0].strip()
    if genesis_path.exists():
        genesis = json.loads(genesis_path.read_text())
        names = [v["name"] for v in genesis["validators"]]
        settings["chain_id"] = int(genesis["chain_id"])
        settings["genesis_hash"] = load_genesis(genesis_path).domain().genesis_hash.hex()
        settings["validators"] = len(names)
        settings["index"] = names.index(settings["name"])
    overrides = home / CONFIG_FILE
    if overrides.exists():
        settings.update(json.loads(overrides.read_text()))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args()
    config = read_home(args.home)
    if config.get("fail_on_start"):
        print("fake node: configured to fail at startup", flush=True)
        sys.exit(3)
    if config.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(float(config.get("startup_delay_s", 0.0)))
    chain = FakeChain(
        name=config["name"],
        index=config["index"],
        chain_id=config.get("chain_id", 31337),
        genesis_hash=bytes.fromhex(config.get("genesis_hash", "00" * 32)),
        peers=[i for i in range(config.get("validators", 1)) if i != config["index"]],
        admin_token=config.get("admin_token"),
    )
    node = FakeNode(chain, config.get("host", "127.0.0.1"), config["api_port"])
    stopping = threading.Event()
    if not config.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    node.serve_in_thread()
    print(f"fake node {chain.name} serving on {node.url}", flush=True)
    while not stopping.wait(0.1):
        pass
    node.close()
    print(f"fake node {chain.name} stopped cleanly", flush=True)


if __name__ == "__main__":
    main()
