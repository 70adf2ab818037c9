"""A full node's intake (RelayIntake): a copy of a transaction that arrives while
the first is being handed to a validator is answered as the first one ends,
never `duplicate` while no validator holds it."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from sequencer_net.api.intake import Accepted, Outcome, Refused
from sequencer_net.mempool.transaction import tx_hash
from sequencer_net.mempool.verifier import VerifierPool
from sequencer_net.node.follow import encode_outcome
from sequencer_net.node.full import RelayIntake
from sequencer_net.storage.group_commit import GroupCommit
from tests.api.conftest import ApiWorld
from tests.mempool.factories import DOMAIN, signed


class HeldValidators:
    """The p2p side: every request waits until `release` with the answer to give
    (None: the transport fails, as an unreachable validator does)."""

    def __init__(self) -> None:
        self.requests = 0
        self.asked = trio.Event()
        self.release = trio.Event()
        self.answer: Outcome | None = None

    async def request(self, peer: int, data: bytes) -> bytes:
        self.requests += 1
        self.asked.set()
        await self.release.wait()
        if self.answer is None:
            raise OSError("unreachable")
        return encode_outcome(self.answer)


def relay(world: ApiWorld, validators: HeldValidators) -> RelayIntake:
    p2p: Any = validators
    return RelayIntake(
        p2p=p2p,
        order=lambda: [0],
        mempool=world.mempool,
        verifier=VerifierPool(DOMAIN, threads=1),
        group=GroupCommit(world.store.write_synced),
        store=world.store,
        metrics=world.metrics,
        accepted_at={},
        client_rate=1e9,
        client_burst=1e9,
    )


async def _two_copies(intake: RelayIntake, validators: HeldValidators, tx: bytes) -> list[Outcome]:
    answers: list[Outcome] = []

    async def submit() -> None:
        answers.extend(await intake.submit([tx], "127.0.0.1"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit)
        await validators.asked.wait()
        nursery.start_soon(submit)  # the client's retry, while the first is in flight
        await trio.testing.wait_all_tasks_blocked()
        assert len(answers) == 0  # the retry waits for the first copy's end
        validators.release.set()
    return answers


async def test_a_retry_during_a_relay_that_fails_gets_the_failure_not_duplicate(
    world: ApiWorld,
) -> None:
    validators = HeldValidators()  # answer None: no validator reachable
    intake = relay(world, validators)
    tx = signed(sender=1, nonce=0)
    answers = await _two_copies(intake, validators, tx)
    assert [a.code for a in answers if isinstance(a, Refused)] == ["no_validator"] * 2
    assert validators.requests == 1
    assert not world.mempool.seen(tx_hash(tx))  # nothing held: the client must retry
    validators.release = trio.Event()
    validators.answer = Accepted(tx_hash(tx))
    validators.release.set()
    assert await intake.submit([tx], "127.0.0.1") == [Accepted(tx_hash(tx))]


async def test_a_retry_during_a_relay_that_succeeds_is_a_duplicate(world: ApiWorld) -> None:
    validators = HeldValidators()
    tx = signed(sender=2, nonce=0)
    validators.answer = Accepted(tx_hash(tx))
    answers = await _two_copies(relay(world, validators), validators, tx)
    assert sorted(type(a).__name__ for a in answers) == ["Accepted", "Refused"]
    assert [a.code for a in answers if isinstance(a, Refused)] == ["duplicate"]
    assert validators.requests == 1
