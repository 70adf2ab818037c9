"""A deployed seqnet L1 on a local anvil, for the contract tests.

`L1Chain` holds the web3 connection, the four contracts, the validator keys
and the signing domain; `expect_revert(name, send)` asserts a call is refused
with the named custom error.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import RPCEndpoint, RPCResponse, TxReceipt

from consensus.crypto import PrivateKey, keccak256
from consensus.encoding import Domain
from sequencer_net.l1.anvil import DEV_PRIVATE_KEYS, Anvil, anvil_available, anvil_binary
from sequencer_net.l1.artifacts import custom_error_name, load_artifact
from sequencer_net.l1.deploy import DeployEpoch, L1Addresses, deploy
from sequencer_net.l1.header import L1Header, sign_packed
from sequencer_net.l1.posts import PostRef
from sequencer_net.l1.transact import transact

SEQ_CHAIN_ID = 4242
GENESIS_HASH = keccak256(b"seqnet l1 test genesis")
INCLUSION_WINDOW = 20
ESCAPE_DELAY = 50
CHALLENGE_WINDOW = 10
RESUME_DELAY = 30

requires_anvil = pytest.mark.skipif(
    not anvil_available(), reason=f"no anvil at {anvil_binary()} (run scripts/setup.sh)"
)


def validator_keys(n: int, tag: bytes = b"") -> list[PrivateKey]:
    return [PrivateKey(keccak256(b"seqnet l1 test validator %d" % i + tag)) for i in range(n)]


@dataclass
class L1Chain:
    w3: Web3
    anvil: Anvil
    addresses: L1Addresses
    deployer: LocalAccount
    users: list[LocalAccount]
    keys: list[PrivateKey]
    domain: Domain
    commitments: Contract
    bridge: Contract
    inbox: Contract
    token: Contract

    def send(
        self,
        call: Any,
        account: LocalAccount | None = None,
        value: int = 0,
        estimate_on: str = "latest",
    ) -> TxReceipt:
        return transact(
            self.w3, account or self.deployer, call, value=value, estimate_on=estimate_on
        )

    def header(
        self, height: int, state_height: int | None = None, state_root: bytes | None = None
    ) -> L1Header:
        return L1Header(
            view=height + 3,
            height=height,
            parent=keccak256(b"parent %d" % height),
            proposer=height % len(self.keys),
            timestamp_ms=1_760_000_000_000 + 250 * height,
            state_height=height if state_height is None else state_height,
            state_root=state_root or keccak256(b"root %d" % height),
            batches_hash=L1Header.hash_batches([keccak256(b"batch %d" % height)]),
            namespace_root=keccak256(b"ns %d" % height),
        )

    def post(
        self,
        header: L1Header,
        signers: Sequence[PrivateKey] | None = None,
        signatures: bytes | None = None,
        epoch: int = 0,
    ) -> TxReceipt:
        """Post `header` signed by `signers` (default: the first three keys) in
        `epoch`'s separator, or with the packed `signatures` given."""
        if signatures is None:
            signers = self.keys[:3] if signers is None else signers
            signatures = sign_packed(signers, header.finalize_digest(self.domain, epoch))
        # Estimated on the pending block: the latest may hold a post already (one per block).
        call = self.commitments.functions.post(header.as_abi(), signatures)
        return self.send(call, estimate_on="pending")

    def post_ref(self, receipt: TxReceipt) -> PostRef:
        """The ref of the post `receipt` made (from its Committed event)."""
        args = self.events(self.commitments, "Committed", receipt)[0]["args"]
        return PostRef(
            args["postIndex"], bytes(args["stateRoot"]), args["stateHeight"], args["toHeight"]
        )

    def events(self, contract: Contract, name: str, receipt: TxReceipt) -> list[Any]:
        """The `name` events `contract` emitted in `receipt` (other contracts' logs skipped)."""
        return list(contract.events[name]().process_receipt(receipt, errors=DISCARD))

    def posting_mid_read(self, headers: Sequence[L1Header], after: str | None = None) -> Web3:
        """A Web3 on this chain whose endpoint answers every eth_call from its live
        head state, whatever block the call names (anvil does so for a call at its
        head block), and posts `headers`, one right after each eth_call (or each
        call of the function signature `after`, e.g. "postCount()"): posts landing
        between the view calls of a read, and right after a read of one call."""
        return Web3(PostingMidRead(self, headers, after))

    def mine(self, blocks: int) -> None:
        self.w3.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        snapshot_id = self.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        try:
            yield
        finally:
            self.w3.provider.make_request("evm_revert", [snapshot_id])  # type: ignore[arg-type]


class PostingMidRead(HTTPProvider):
    """L1Chain.posting_mid_read's endpoint."""

    def __init__(self, chain: L1Chain, headers: Sequence[L1Header], after: str | None) -> None:
        super().__init__(chain.anvil.url)
        self.chain = chain
        self.pending = list(headers)
        self.selector = None if after is None else bytes(keccak256(after.encode())[:4])

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method != "eth_call":
            return super().make_request(method, params)
        response = super().make_request(method, [params[0], "latest", *params[2:]])
        data = params[0].get("data") or params[0].get("input") or "0x"
        if self.pending and self.selector in (None, bytes.fromhex(data[2:10])):
            self.chain.post(self.pending.pop(0))
        return response


def expect_revert(name: str, send: Callable[[], object]) -> None:
    """`send()` must be refused with custom error `name` (web3 raises it when estimating gas)."""
    with pytest.raises(ContractCustomError) as info:
        send()
    assert custom_error_name(info.value) == name


@contextmanager
def running_chain(n_validators: int = 4, epochs: Sequence[DeployEpoch] = ()) -> Iterator[L1Chain]:
    """Anvil with the contracts deployed for `n_validators` of power 1 (epoch 0)
    and the later `epochs`."""
    with Anvil.start() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.url))
        keys = validator_keys(n_validators)
        addresses = deploy(
            w3,
            DEV_PRIVATE_KEYS[0],
            SEQ_CHAIN_ID,
            GENESIS_HASH,
            [key.address for key in keys],
            [1] * n_validators,
            INCLUSION_WINDOW,
            ESCAPE_DELAY,
            challenge_window=CHALLENGE_WINDOW,
            admin=bytes.fromhex(Account.from_key(DEV_PRIVATE_KEYS[0]).address[2:]),
            resume_delay=RESUME_DELAY,
            epochs=epochs,
        )

        def contract(name: str, field: str) -> Contract:
            return w3.eth.contract(
                address=addresses.checksum(field), abi=load_artifact(name).abi_list
            )

        yield L1Chain(
            w3=w3,
            anvil=anvil,
            addresses=addresses,
            deployer=Account.from_key(DEV_PRIVATE_KEYS[0]),
            users=[Account.from_key(key) for key in DEV_PRIVATE_KEYS[1:]],
            keys=sorted(keys, key=lambda key: key.address),
            domain=Domain(SEQ_CHAIN_ID, addresses.commitments, GENESIS_HASH),
            commitments=contract("Commitments", "commitments"),
            bridge=contract("Bridge", "bridge"),
            inbox=contract("Inbox", "inbox"),
            token=contract("CollateralToken", "collateral_token"),
        )


@contextmanager
def node_api(routes: dict[str, Any]) -> Iterator[str]:
    """A stand-in node API on loopback answering GET `routes` (path -> JSON), 404 else."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path in routes
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(routes[self.path] if found else {}).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
