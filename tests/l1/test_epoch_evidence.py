"""Evidence is judged against the validator set of the offence's epoch, in that
epoch's separator: validators who fork and then leave the set at the next
epoch are still proven (submitEvidence finds their epoch; submitEvidenceOfEpoch
names it with its set), and freeze the contract once more than a third of THAT
epoch's power is proven; wrong sets, heights, domains and signers are refused
with their own errors; an epoch's tail votes dispute its last height;
`submit_evidence` finds the epoch on its own; and the watcher proves every
epoch's stored evidence (from the node's store or its API) in the record's
epoch, an epoch's tail votes through submitEvidenceOfEpoch.

The chain here is deployed with a schedule: epoch 0 (4 validators of power 1)
from height 1, epoch 1 from height 3 (one validator of epoch 0 with power 2 and
three new ones, total 5)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import trio
from eth_typing import ChecksumAddress
from web3 import Web3
from web3.types import TxReceipt

from consensus.crypto import PrivateKey, keccak256
from consensus.messages import Certificate, Vote
from sequencer_net.api.server import evidence_answer
from sequencer_net.l1 import evidence
from sequencer_net.l1.deploy import DeployEpoch
from sequencer_net.l1.evidence import (
    EvidenceRejected,
    evidence_args,
    evidence_epoch,
    installed_set,
    submit_evidence,
)
from sequencer_net.l1.evidence_watch import EpochEvidence, EvidenceWatcher, Finalized
from sequencer_net.l1.header import validator_set_hash
from sequencer_net.l1.link import L1Link
from sequencer_net.l1.node_api import NodeApiSource
from sequencer_net.l1.posts import escape_posts
from sequencer_net.l1.status import L1Status
from sequencer_net.mempool.mempool import Mempool
from sequencer_net.storage.node_store import EvidenceRecord
from tests.api.conftest import ApiWorld
from tests.l1.finalized_store import FinalizedStore
from tests.l1.l1_chain import (
    RESUME_DELAY,
    L1Chain,
    expect_revert,
    node_api,
    requires_anvil,
    running_chain,
    validator_keys,
)
from tests.l1.test_evidence import finalize_vote, nullify_vote, submit
from tests.l1.test_evidence_watch import WATCHER_KEY, fund, make_watcher


def checksums(keys: Sequence[PrivateKey]) -> list[ChecksumAddress]:
    return [Web3.to_checksum_address(key.address) for key in keys]


def submit_of_epoch(
    chain: L1Chain,
    epoch: int,
    keys: Sequence[PrivateKey],
    powers: list[int],
    first: Vote,
    second: Vote,
) -> TxReceipt:
    call = chain.commitments.functions.submitEvidenceOfEpoch(
        epoch, checksums(keys), powers, *evidence_args(first, second)
    )
    return chain.send(call)


def epoch_of_height(height: int) -> int:
    return 0 if height < EPOCH_1_FIRST else 1


def fork_pair(
    chain: L1Chain, key: PrivateKey, height: int, epoch: int | None = None
) -> tuple[Vote, Vote]:
    """`key`'s FINALIZE votes for two blocks at `height` in one view, signed in the
    separator of `epoch` (default: the epoch holding `height`)."""
    epoch = epoch_of_height(height) if epoch is None else epoch
    block = chain.header(height)
    twin = dataclasses.replace(block, state_root=keccak256(b"the other side"))
    return (
        finalize_vote(key, chain.domain, block, epoch),
        finalize_vote(key, chain.domain, twin, epoch),
    )


def sorted_keys(keys: Sequence[PrivateKey]) -> list[PrivateKey]:
    return sorted(keys, key=lambda key: key.address)


EPOCH_1_FIRST = 3
OLD = sorted_keys(validator_keys(4))
NEW = sorted_keys([OLD[0], *validator_keys(3, tag=b"epoch 1")])
NEW_POWERS = [2 if key is OLD[0] else 1 for key in NEW]


@pytest.fixture(scope="module")
def module_chain() -> Iterator[L1Chain]:
    """This module's anvil: deployed with epoch 1 scheduled from height 3."""
    if requires_anvil.args[0]:
        pytest.skip(requires_anvil.kwargs["reason"])
    epoch_1 = DeployEpoch(EPOCH_1_FIRST, [key.address for key in NEW], NEW_POWERS)
    with running_chain(epochs=[epoch_1]) as chain:
        assert [key.address for key in chain.keys] == [key.address for key in OLD]
        yield chain


@pytest.fixture
def rotated(chain: L1Chain) -> tuple[list[PrivateKey], list[int]]:
    """Heights 1 and 2 posted by epoch 0, height 3 by epoch 1 (so epoch 1 holds the
    latest post: the current set)."""
    for height in (1, 2):
        chain.post(chain.header(height), signers=OLD[:3])
    chain.post(chain.header(3), signers=NEW[:4], epoch=1)
    assert chain.commitments.functions.epoch().call() == 1
    return NEW, NEW_POWERS


def test_epochs_record_their_sets_and_first_heights(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    functions = chain.commitments.functions
    new, powers = rotated
    old = [key.address for key in chain.keys]
    assert functions.setHashOf(0).call() == validator_set_hash(0, old, [1] * 4)
    assert functions.setHashOf(1).call() == validator_set_hash(1, [k.address for k in new], powers)
    assert functions.setHashOf(2).call() == bytes(32)
    assert functions.epochStart(0).call()[0] == 0 and functions.epochStart(1).call()[0] == 3
    assert functions.lastEpoch().call() == 1
    expect_revert("UnknownValidatorSet", lambda: functions.epochStart(2).call())
    assert [functions.epochOf(h).call() for h in (0, 2, 3, 1_000)] == [
        [True, 0],
        [True, 0],
        [True, 1],
        [True, 1],
    ]
    # Epoch 0 was installed by the deployment, epoch 1 by installEpoch after it.
    assert 0 < functions.epochStart(0).call()[1] < functions.epochStart(1).call()[1]
    assert installed_set(chain.commitments, 1) == ([k.address for k in new], powers)
    assert installed_set(chain.commitments, 0) == (old, [1] * 4)


def test_old_epoch_evidence_is_judged_against_its_set_and_freezes_on_its_power(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    functions = chain.commitments.functions
    old, new = chain.keys, rotated[0]
    liars = old[1:3]  # not in epoch 1's set
    pairs = [fork_pair(chain, liar, 2) for liar in liars]

    # Signed in epoch 1's separator, votes at a height of epoch 0 prove nothing: in
    # epoch 0's separator they recover to unrelated addresses.
    wrong = fork_pair(chain, liars[0], 2, epoch=1)
    expect_revert("EvidenceSignerNotInSet", lambda: submit(chain, *wrong))
    expect_revert("EvidenceSignerNotInSet", lambda: submit_of_epoch(chain, 0, old, [1] * 4, *wrong))

    receipt = submit_of_epoch(chain, 0, old, [1] * 4, *pairs[0])
    (event,) = chain.events(chain.commitments, "EquivocationProven", receipt)
    assert (event["args"]["validator"], event["args"]["height"], event["args"]["epoch"]) == (
        checksums(liars[:1])[0],
        2,
        0,
    )
    assert functions.offenceOfInEpoch(checksums(liars[:1])[0], 0).call() == [True, 2]
    assert functions.offenceOf(checksums(liars[:1])[0]).call() == [False, 0]  # epoch 1's
    assert functions.offendingPowerInEpoch(0).call() == [1, False]  # 1 of 4: within f
    assert functions.offendingPower().call() == [0, False]
    assert not functions.frozen().call()
    expect_revert(
        "EquivocationAlreadyProven", lambda: submit_of_epoch(chain, 0, old, [1] * 4, *pairs[0])
    )

    # A validator of epoch 1 (power 1 of 5) proven too: offences of two epochs do not add up.
    newcomer = next(key for key in new if key.address not in {k.address for k in old})
    submit(chain, *fork_pair(chain, newcomer, 3))
    assert functions.offendingPower().call() == [1, False]
    assert not functions.frozen().call()

    # The second liar of epoch 0, through submitEvidence (which finds epoch 0 itself):
    # 2 of 4 is more than a third of epoch 0's power.
    receipt = submit(chain, *pairs[1])
    assert chain.events(chain.commitments, "FrozenAt", receipt)[0]["args"]["disputedHeight"] == 2
    assert functions.frozen().call()
    assert functions.offendingPowerInEpoch(0).call() == [2, True]
    assert functions.disputedHeight(0).call() == [True, 2]
    assert escape_posts(chain.commitments)[0].height == 1
    # Frozen: a lower offence of either epoch lowers the disputed height.
    low = chain.header(1)
    liar = liars[0]
    receipt = submit_of_epoch(
        chain,
        0,
        old,
        [1] * 4,
        finalize_vote(liar, chain.domain, low),
        nullify_vote(liar, chain.domain, low.view),
    )
    assert chain.events(chain.commitments, "FrozenAt", receipt)[0]["args"]["disputedHeight"] == 1


def test_a_current_epoch_offence_is_also_accepted_through_the_epoch_entry_point(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    new, powers = rotated
    stayer = chain.keys[0]  # power 2 of 5 in epoch 1: more than a third alone
    receipt = submit_of_epoch(chain, 1, new, powers, *fork_pair(chain, stayer, 4))
    assert chain.events(chain.commitments, "FrozenAt", receipt)[0]["args"]["disputedHeight"] == 4
    assert chain.commitments.functions.offenceOf(checksums([stayer])[0]).call() == [True, 4]


def test_wrong_sets_heights_and_signers_are_refused_with_their_own_errors(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    old, (new, powers) = chain.keys, rotated
    pair = fork_pair(chain, old[1], 2)

    def refused(name: str, epoch: int, keys: Sequence[PrivateKey], weights: list[int]) -> None:
        expect_revert(name, lambda: submit_of_epoch(chain, epoch, keys, weights, *pair))

    # a set that is not the epoch's: other powers, other order, fewer members, another
    # epoch's set, an epoch not installed
    refused("UnknownValidatorSet", 0, old, [1, 1, 1, 2])
    refused("UnknownValidatorSet", 0, [old[1], old[0], *old[2:]], [1] * 4)
    refused("UnknownValidatorSet", 0, old[:3], [1] * 3)
    refused("UnknownValidatorSet", 0, new, powers)
    refused("UnknownValidatorSet", 1, old, [1] * 4)
    refused("UnknownValidatorSet", 2, old, [1] * 4)
    # the disputed height below the epoch: height 2 is epoch 0's
    refused("EvidenceOutsideEpoch", 1, new, powers)
    # signers outside the epoch's set: a newcomer of epoch 1, a stranger
    newcomer = next(key for key in new if key.address not in {k.address for k in old})
    stranger = validator_keys(1, tag=b"stranger")[0]
    for outsider_pair in (fork_pair(chain, newcomer, 2), fork_pair(chain, stranger, 2)):
        expect_revert(
            "EvidenceSignerNotInSet",
            functools.partial(submit_of_epoch, chain, 0, old, [1] * 4, *outsider_pair),
        )
    # the votes of two validators
    expect_revert(
        "EvidenceSignersDiffer",
        lambda: submit_of_epoch(chain, 0, old, [1] * 4, pair[0], fork_pair(chain, old[2], 2)[1]),
    )
    assert chain.commitments.functions.offendingPowerInEpoch(0).call() == [0, False]


def test_an_era_ended_by_resume_takes_no_more_evidence_of_its_epochs(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    functions = chain.commitments.functions
    new, powers = rotated
    submit(chain, *fork_pair(chain, chain.keys[0], 4))  # power 2 of 5 in epoch 1
    assert functions.frozen().call()
    chain.mine(RESUME_DELAY)
    after = sorted_keys(validator_keys(4, tag=b"after resume"))
    receipt = chain.send(
        functions.resume(
            2, keccak256(b"block 2"), 2, keccak256(b"root 2"), checksums(after), [1] * 4
        )
    )
    (installed,) = chain.events(chain.commitments, "ValidatorSetInstalled", receipt)
    assert (installed["args"]["epoch"], installed["args"]["fromHeight"]) == (2, 3)
    assert functions.epochOf(3).call() == [True, 2]
    assert functions.epochOf(2).call() == [False, 0]
    expect_revert(
        "EvidenceOutsideEpoch",
        lambda: submit_of_epoch(chain, 0, chain.keys, [1] * 4, *fork_pair(chain, chain.keys[1], 2)),
    )
    expect_revert(
        "EvidenceOutsideEpoch",
        lambda: submit_of_epoch(chain, 1, new, powers, *fork_pair(chain, new[1], 5)),
    )
    assert evidence_epoch(chain.commitments, 2) is None


def test_tail_votes_of_an_epoch_dispute_its_last_height(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    """Epoch 0's tail (empty blocks above its last height 2 that finalize it) is
    signed in epoch 0's separator: only submitEvidenceOfEpoch can judge it, and the
    offence disputes height 2, the block the tail commits."""
    old = chain.keys
    liars = old[1:3]
    pairs = [fork_pair(chain, liar, 4, epoch=0) for liar in liars]
    # Height 4 is epoch 1's: in its separator these votes name nobody of its set.
    expect_revert("EvidenceSignerNotInSet", lambda: submit(chain, *pairs[0]))
    receipt = submit_of_epoch(chain, 0, old, [1] * 4, *pairs[0])
    (event,) = chain.events(chain.commitments, "EquivocationProven", receipt)
    assert (event["args"]["height"], event["args"]["epoch"]) == (2, 0)
    proven = evidence.submit_evidence_of_epoch(
        chain.w3, chain.deployer, chain.commitments, 0, EvidenceRecord(2, *pairs[1], "tail")
    )
    assert (proven.height, proven.epoch, proven.froze) == (2, 0, True)
    assert chain.commitments.functions.disputedHeight(0).call() == [True, 2]


def test_submit_evidence_finds_the_offence_epoch(
    chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    old = chain.keys
    first, second = fork_pair(chain, old[1], 2)
    proven = submit_evidence(
        chain.w3, chain.deployer, chain.commitments, EvidenceRecord(1, first, second, "test")
    )
    assert (proven.validator, proven.height, proven.epoch, proven.froze) == (
        old[1].address,
        2,
        0,
        False,
    )
    newcomer = next(key for key in rotated[0] if key.address not in {k.address for k in old})
    first, second = fork_pair(chain, newcomer, 3)
    proven = submit_evidence(
        chain.w3, chain.deployer, chain.commitments, EvidenceRecord(2, first, second, "test")
    )
    assert (proven.height, proven.epoch) == (3, 1)
    with pytest.raises(EvidenceRejected) as again:
        first, second = fork_pair(chain, old[1], 2)
        submit_evidence(
            chain.w3, chain.deployer, chain.commitments, EvidenceRecord(1, first, second, "t")
        )
    assert again.value.reason == "EquivocationAlreadyProven"


def test_the_watcher_proves_each_offence_in_its_epochs_domain(
    tmp_path: Path, chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    """Two validators that left the set at epoch 1 forked at height 2 (epoch 0's
    domain); a newcomer of epoch 1 forked at height 4 (epoch 1's domain)."""
    old = chain.keys
    newcomer = next(key for key in rotated[0] if key.address not in {k.address for k in old})
    node = FinalizedStore.open(tmp_path / "chain", old, chain.domain)
    fund(chain, WATCHER_KEY.address)
    try:
        for offender, liar in enumerate(old[1:3], start=1):
            first, second = fork_pair(chain, liar, 2)
            assert node.store.save_evidence(EvidenceRecord(offender, first, second, "fork"))
        # Epoch 1's instance keeps its evidence under epoch 1 (the offender is an
        # index in epoch 1's set).
        first, second = fork_pair(chain, newcomer, 4)
        offender = [key.address for key in rotated[0]].index(newcomer.address)
        assert node.store.save_evidence(EvidenceRecord(offender, first, second, "fork"), epoch=1)
        watcher = make_watcher(chain, node, tmp_path / "l1")
        assert trio.run(watcher.submit_stored, chain.domain.separator()) == 3
        functions = chain.commitments.functions
        for liar in old[1:3]:
            assert functions.offenceOfInEpoch(checksums([liar])[0], 0).call() == [True, 2]
        assert functions.offenceOfInEpoch(checksums([newcomer])[0], 1).call() == [True, 4]
        assert functions.frozen().call() and functions.disputedHeight(0).call() == [True, 2]
        # A restarted watcher without its file asks offenceOfInEpoch: nothing is resent.
        (tmp_path / "l1" / "evidence.json").unlink()
        assert (
            trio.run(
                make_watcher(chain, node, tmp_path / "l1").submit_stored, chain.domain.separator()
            )
            == 0
        )
    finally:
        node.close()


def test_the_watcher_sends_an_epochs_tail_votes_through_submit_evidence_of_epoch(
    tmp_path: Path, chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    """Epoch 0's instance kept a fork of its tail (height 4, above its last height
    2, signed in epoch 0's separator): only submitEvidenceOfEpoch judges it, and
    the offence disputes height 2. A stranger's pair that epoch 1's instance kept
    is refused by the contract and settled, without failing the round."""
    old = chain.keys
    stranger = validator_keys(1, tag=b"stranger")[0]
    node = FinalizedStore.open(tmp_path / "chain", old, chain.domain)
    fund(chain, WATCHER_KEY.address)
    try:
        assert node.store.save_evidence(EvidenceRecord(1, *fork_pair(chain, old[1], 4, 0), "tail"))
        assert node.store.save_evidence(
            EvidenceRecord(3, *fork_pair(chain, stranger, 4), "outsider"), epoch=1
        )
        watcher = make_watcher(chain, node, tmp_path / "l1")
        before = chain.w3.eth.block_number
        assert trio.run(watcher.submit_stored, chain.domain.separator()) == 1
        (event,) = chain.commitments.events.EquivocationProven().get_logs(from_block=before + 1)
        assert (event["args"]["validator"], event["args"]["height"], event["args"]["epoch"]) == (
            checksums([old[1]])[0],
            2,
            0,
        )
        proof = chain.w3.eth.get_transaction(event["transactionHash"])
        function, _ = chain.commitments.decode_function_input(proof["input"])
        assert function.fn_name == "submitEvidenceOfEpoch"
        assert chain.commitments.functions.offenceOfInEpoch(checksums([old[1]])[0], 0).call() == [
            True,
            2,
        ]
        assert watcher.status.last_error is not None
        assert "EvidenceSignerNotInSet" in watcher.status.last_error
        assert len(watcher.state.settled) == 2  # neither is tried again
        assert trio.run(watcher.submit_stored, chain.domain.separator()) == 0
    finally:
        node.close()


class ClaimedEpochs:
    """A source (as node APIs are) that names epochs for records; only
    `evidence` is asked by `submit_stored`."""

    def __init__(self, claims: list[EpochEvidence]) -> None:
        self.claims = claims

    async def evidence(self) -> list[EpochEvidence]:
        return self.claims

    async def height(self) -> int:
        return 0

    async def view(self) -> int:
        return 0

    async def finalized(self, height: int) -> list[Finalized]:
        return []

    async def view_certificates(self, view: int) -> list[Certificate]:
        return []


def test_a_pair_named_with_the_wrong_epoch_does_not_settle_the_pair_named_rightly(
    tmp_path: Path, chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    """A lying node calls epoch 1's fork at height 4 epoch 0's (a tail): in epoch
    0's separator the votes name no one signer, so that claim is settled, and the
    honest node's claim of the same votes is still submitted."""
    newcomer = next(key for key in rotated[0] if key not in chain.keys)
    record = EvidenceRecord(1, *fork_pair(chain, newcomer, 4), "fork")
    fund(chain, WATCHER_KEY.address)
    watcher = EvidenceWatcher(
        link=L1Link.connect(chain.anvil.url, commitments=chain.addresses.commitments),
        source=ClaimedEpochs([EpochEvidence(0, record), EpochEvidence(1, record)]),
        key=WATCHER_KEY,
        data_dir=tmp_path / "l1",
        status=L1Status(enabled=True),
        confirmations=0,
        poll_s=0.05,
    )
    assert trio.run(watcher.submit_stored, chain.domain.separator()) == 1
    offence = chain.commitments.functions.offenceOfInEpoch(checksums([newcomer])[0], 1).call()
    assert offence == [True, 4]
    assert len(watcher.state.settled) == 2  # both claims, each under its own epoch


def test_later_epochs_evidence_goes_from_a_node_api_to_the_contract(
    tmp_path: Path, chain: L1Chain, rotated: tuple[list[PrivateKey], list[int]]
) -> None:
    """What `seqnet watch` does on a rotating chain: the node's /v1/evidence names
    each record's epoch (epoch 1's fork at height 4, epoch 0's tail fork at height
    4), and the watcher proves each in its epoch, the tail at epoch 0's last height."""
    old, (new, powers) = chain.keys, rotated
    newcomer = next(key for key in new if key not in old)
    node = FinalizedStore.open(tmp_path / "chain", old, chain.domain, [(3, new, powers)])
    fund(chain, WATCHER_KEY.address)
    try:
        index = new.index(newcomer)
        fork = EvidenceRecord(index, *fork_pair(chain, newcomer, 4), "fork")
        assert node.store.save_evidence(fork, epoch=1)
        assert node.store.save_evidence(EvidenceRecord(1, *fork_pair(chain, old[1], 4, 0), "tail"))
        context = ApiWorld(store=node.store, mempool=Mempool(chain.domain)).context()
        context.schedule = node.schedule()
        served = evidence_answer(context)
        assert [item["epoch"] for item in served["evidence"]] == [0, 1]
        with node_api({"/v1/evidence": served}) as url:
            source = NodeApiSource([url])
            watcher = EvidenceWatcher(
                link=L1Link.connect(chain.anvil.url, commitments=chain.addresses.commitments),
                source=source,
                key=WATCHER_KEY,
                data_dir=None,
                status=L1Status(enabled=True),
                confirmations=0,
                poll_s=0.05,
            )
            try:
                assert trio.run(watcher.submit_stored, chain.domain.separator()) == 2
            finally:
                source.close()
        functions = chain.commitments.functions
        assert functions.offenceOfInEpoch(checksums([old[1]])[0], 0).call() == [True, 2]
        assert functions.offenceOfInEpoch(checksums([newcomer])[0], 1).call() == [True, 4]
    finally:
        node.close()
