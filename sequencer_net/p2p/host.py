"""Builds the libp2p host a validator runs: TCP + Noise only + yamux only.

A default `libp2p.new_host()` also accepts /plaintext, TLS and secio peers
(measured, DESIGN.md "Facts"); restricting `sec_opt` and `muxer_opt` to one
protocol each makes a plaintext dialer fail multistream negotiation. The host
identity is the validator's secp256k1 key, so a peer id names a validator.
"""

from __future__ import annotations

import coincurve
from libp2p import new_swarm
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.secp256k1 import Secp256k1PublicKey, create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from sequencer_net.p2p.limits import P2PLimits


def key_pair_from_secret(secret: bytes) -> KeyPair:
    """The libp2p identity of a validator: its 32-byte secp256k1 secret."""
    if len(secret) != 32:
        raise ValueError("a validator secret is 32 bytes (secp256k1)")
    return create_new_key_pair(secret)


def peer_id_from_public_key(public_key: bytes) -> ID:
    """The libp2p peer id a validator with this secp256k1 public key must present.

    Accepts the 65-byte uncompressed (0x04...) or 33-byte compressed encoding;
    libp2p hashes the compressed form, so both give the same id.
    """
    return ID.from_pubkey(Secp256k1PublicKey(coincurve.PublicKey(public_key)))


def build_validator_host(key_pair: KeyPair, limits: P2PLimits) -> tuple[BasicHost, Swarm]:
    """A host with TCP, Noise XX and yamux only; returns it with its swarm."""
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    timeout = limits.connect_timeout_s
    swarm = new_swarm(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        enable_tcp=True,
        # Redials are paced by our own backoff (network.py); the swarm's
        # built-in retries would add 0.1 + 0.2 + 0.4 s of hidden waiting.
        retry_config=RetryConfig(max_retries=0),
        connection_config=ConnectionConfig(
            # The auto-connector dials whatever the peerstore knows to reach a
            # low watermark of 100 connections; a validator dials exactly its
            # configured peers itself (network.py), so switch it off.
            min_connections=0,
            low_watermark=0,
            dial_timeout=timeout,
            outbound_upgrade_timeout=timeout,
            inbound_upgrade_timeout=timeout,
            outbound_stream_protocol_negotiation_timeout=timeout,
            inbound_stream_protocol_negotiation_timeout=timeout,
        ),
    )
    if not isinstance(swarm, Swarm):  # new_swarm is typed as the interface
        raise TypeError("libp2p.new_swarm did not return a Swarm")
    host = BasicHost(network=swarm, negotiate_timeout=max(1, int(timeout)))
    return host, swarm
