"""Malformed, oversized and wrongly signed input, from a validator peer and from
API clients: refused with a clear error, no state change, no crash."""

from __future__ import annotations

from dataclasses import replace

import msgspec
import pytest
import trio

from consensus.crypto import PrivateKey
from consensus.messages import (
    Block,
    Certificate,
    Proposal,
    Vote,
    VoteKind,
    encode_message,
)
from consensus.types import ZERO_DIGEST
from consensus.verifier import SignatureVerifier
from sequencer_net.batches.batch import encode_batch
from sequencer_net.batches.certificate import (
    MAX_CERTIFICATE_BYTES,
    BatchCertificate,
    encode_cert_message,
    sign_ack,
)
from sequencer_net.mempool.transaction import encode_transaction, sign_transaction
from sequencer_net.p2p.network import Channel, P2PNetwork, PeerSpec
from tests.mempool.factories import DOMAIN, carrying_batch
from tests.node.harness import LocalNetwork

pytestmark = pytest.mark.slow

HONEST = [0, 1, 2]
BYZANTINE = 3


def _hostile_frames(net: LocalNetwork) -> list[tuple[Channel, bytes]]:
    """What a Byzantine validator 3 sends: each must be refused without harm."""
    key = PrivateKey(net.secrets[BYZANTINE])
    verifier = SignatureVerifier(net.genesis.domain().separator())

    def vote(kind: VoteKind, view: int, height: int, block: bytes, signer: int) -> Vote:
        digest = verifier.vote_digest(kind, view, height, block)
        return Vote(kind, view, height, block, signer, key.sign_digest(digest))

    fake_block = Block(view=5, height=1, parent=b"\x01" * 32, proposer=1, payload=b"x")
    good_sig = vote(VoteKind.NULLIFY, 7, 0, ZERO_DIGEST, BYZANTINE).signature
    user = PrivateKey(b"\x05" * 32)
    other_chain = replace(net.genesis.domain(), chain_id=999)
    wrong_chain = encode_transaction(sign_transaction(user, other_chain, 0, 1, 0, b"p"))
    separator = net.genesis.domain().separator()
    ack3 = sign_ack(key, separator, BYZANTINE, b"\x07" * 32, BYZANTINE, 0, True).signature
    return [
        (Channel.CONSENSUS, b"\x00garbage\xff" * 10),
        (Channel.CONSENSUS, b"\x93" + bytes(5 * 1024 * 1024)),  # over the 4 MiB message cap
        (Channel.CONSENSUS, msgspec.msgpack.encode([1, 9, 1, 1, b"x" * 32, 0, b"s" * 65])),
        # A vote naming validator 0 as signer, signed with 3's key (impersonation).
        (Channel.CONSENSUS, encode_message(vote(VoteKind.NULLIFY, 3, 0, ZERO_DIGEST, 0))),
        # A broken signature.
        (
            Channel.CONSENSUS,
            encode_message(Vote(VoteKind.NULLIFY, 3, 0, ZERO_DIGEST, BYZANTINE, b"\x01" * 65)),
        ),
        # A "certificate" with only its own signature.
        (
            Channel.CONSENSUS,
            encode_message(
                Certificate(VoteKind.NULLIFY, 7, 0, ZERO_DIGEST, [BYZANTINE], [good_sig])
            ),
        ),
        # A proposal in a view it does not lead, signed by itself.
        (
            Channel.CONSENSUS,
            encode_message(
                Proposal(
                    Block(
                        view=5,
                        height=1,
                        parent=net.genesis.genesis_block().digest(),
                        proposer=BYZANTINE,
                        payload=b"\x92\x00\x90",
                    ),
                    vote(VoteKind.NOTARIZE, 5, 1, fake_block.digest(), BYZANTINE).signature,
                    None,
                    [],
                )
            ),
        ),
        (Channel.BATCH, b"not a batch"),
        # A batch claiming another author, and one carrying a wrong-chain transaction.
        (
            Channel.BATCH,
            encode_batch(carrying_batch(DOMAIN, author=0, sequence=0, transactions=[wrong_chain])),
        ),
        (
            Channel.BATCH,
            encode_batch(
                carrying_batch(DOMAIN, author=BYZANTINE, sequence=0, transactions=[wrong_chain])
            ),
        ),
        (Channel.CERT, b"\x02not a certificate"),
        (Channel.CERT, b"\x02" + bytes(MAX_CERTIFICATE_BYTES)),  # over the certificate cap
        # An acknowledgement naming validator 1 as signer, signed with 3's key.
        (Channel.CERT, encode_cert_message(sign_ack(key, separator, 1, b"\x07" * 32, 0, 0, True))),
        # A batch "certificate" with only its own signature: no quorum.
        (
            Channel.CERT,
            encode_cert_message(
                BatchCertificate(b"\x07" * 32, BYZANTINE, 0, [BYZANTINE], [ack3], [True])
            ),
        ),
    ]


async def test_hostile_validator_frames_are_refused_and_the_network_keeps_going(
    network: LocalNetwork,
) -> None:
    network.start_all(HONEST)
    await trio.to_thread.run_sync(lambda: network.wait_height(HONEST, 2))
    specs = [
        PeerSpec(i, v.public_key, v.p2p_host, v.p2p_port)
        for i, v in enumerate(network.genesis.validators)
    ]
    byzantine = P2PNetwork(
        secret=network.secrets[BYZANTINE],
        me=BYZANTINE,
        listen_host="127.0.0.1",
        listen_port=specs[BYZANTINE].port,
        peers=specs,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(byzantine.run)
        with trio.fail_after(30):
            while len(byzantine.connected_peers()) < len(HONEST):
                await trio.sleep(0.1)
        before = [network.height(i) for i in HONEST]
        for channel, frame in _hostile_frames(network):
            byzantine.broadcast(channel, frame)
        await trio.to_thread.run_sync(
            lambda: network.wait_height(HONEST, max(before) + 5, timeout=60)
        )
        nursery.cancel_scope.cancel()
    for i in HONEST:
        assert network.procs[i].poll() is None, f"node{i} died:\n{network.log_tail(i)}"
        assert network.metric(i, "seqnet_malformed_messages") >= 2
        assert network.metric(i, "seqnet_equivocation_evidence") == 0
        assert network.status(i)["mempool_size"] == 0  # type: ignore[index]
    logs = network.log_tail(0, 400)
    assert "batch_rejected peer=3" in logs
    assert "cert_message_rejected peer=3" in logs
    network.assert_agree(HONEST, min(network.height(i) for i in HONEST))


def test_hostile_api_requests_get_clear_errors_and_change_nothing(
    network: LocalNetwork,
) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 2)
    url = network.url(0)
    client = network.client
    user = network.user("mallory")
    good = network.signed(user, 0, b"fine")
    tampered = bytearray(good)
    tampered[-1] = 99  # the signature's v byte: neither 27 nor 28
    other_chain = replace(network.genesis.domain(), chain_id=999)
    wrong_chain = encode_transaction(sign_transaction(user, other_chain, 0, 1, 0, b"p"))
    cases = [
        (b"garbage", 400, "invalid_transaction"),
        (b"", 400, "bad_request"),
        (bytes(tampered), 400, "invalid_transaction"),
        (wrong_chain, 400, "invalid_transaction"),
        (bytes(9 * 1024 * 1024), 413, "too_large"),
    ]
    for body, status, code in cases:
        response = client.post(url + "/v1/transactions", content=body)
        assert response.status_code == status, (body[:20], response.text)
        assert response.json()["code"] == code
    response = client.post(url + "/v1/transactions/batch", content=b"{not json")
    assert response.status_code == 400
    response = client.post(
        url + "/v1/transactions/batch", json={"transactions": ["zz", "0x" + good.hex()]}
    )
    results = response.json()["results"]
    assert results[0]["code"] == "bad_request" and "hash" in results[1]
    assert client.post(url + "/v1/transactions", content=good).status_code == 409  # duplicate
    assert client.get(url + "/v1/transactions/nothex").status_code == 400
    assert client.get(url + "/v1/blocks/abc").status_code == 400
    assert client.get(url + "/v1/blocks/999999").status_code == 404
    final = network.status(0)
    assert final is not None
    assert final["mempool_size"] + final["committed_txs"] == 1  # only the good one
