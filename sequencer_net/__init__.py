"""seqnet: a decentralized shared sequencer for derivatives rollups (the node)."""

__version__ = "0.1.0"
