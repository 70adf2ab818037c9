"""Local multi-node testnets: manifests, process supervision, perturbations,
the load generator and the live view behind `seqnet testnet` and `seqnet load`.

Programmatic use (what the CLI does):

    from sequencer_net.testnet import start_testnet
    net = start_testnet(Path(".seqnet-testnet"), validators=4)
    try:
        ...  # net.nodes[i].api_url, net.kill(2), net.restart(2), ...
    finally:
        net.stop()
"""

from sequencer_net.testnet.manifest import (
    Manifest,
    ManifestError,
    Perturbation,
    PerturbationAction,
    load_manifest,
    parse_manifest,
)
from sequencer_net.testnet.network import Testnet, TestnetError, start_testnet

__all__ = [
    "Manifest",
    "ManifestError",
    "Perturbation",
    "PerturbationAction",
    "Testnet",
    "TestnetError",
    "load_manifest",
    "parse_manifest",
    "start_testnet",
]
