"""Byzantine behaviours, one per file, each a test actor for the simulator."""

from consensus.sim.byzantine.base import Behaviour, ByzantineNode
from consensus.sim.byzantine.certificate_replayer import CertificateReplayer
from consensus.sim.byzantine.double_voter import DoubleVoter
from consensus.sim.byzantine.empty_fetch_responder import EmptyFetchResponder
from consensus.sim.byzantine.equivocator import Equivocator
from consensus.sim.byzantine.future import Future
from consensus.sim.byzantine.height_forger import HeightForger
from consensus.sim.byzantine.height_liar import HeightLiar
from consensus.sim.byzantine.impersonator import Impersonator
from consensus.sim.byzantine.invalid import InvalidSender
from consensus.sim.byzantine.outdated import Outdated
from consensus.sim.byzantine.slow import Slow
from consensus.sim.byzantine.withholder import Withholder

BEHAVIOURS: dict[str, type[Behaviour]] = {
    b.name: b
    for b in (
        Equivocator,
        DoubleVoter,
        Withholder,
        InvalidSender,
        Impersonator,
        Outdated,
        Future,
        HeightForger,
        HeightLiar,
        CertificateReplayer,
        EmptyFetchResponder,
        Slow,
    )
}

__all__ = ["BEHAVIOURS", "Behaviour", "ByzantineNode"]
