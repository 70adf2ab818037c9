"""Commitments follows the genesis schedule of validator-set epochs: each epoch's
set signs in its own separator (equal to consensus.epochs.epoch_domain_separator),
a header is verified with the set of the epoch holding its height, and neither
set's signatures count at the other's heights. The poster posts each block with
its epoch's set, and turns follow that set.

The chain here: epoch 0 (4 validators of power 1) from height 1, epoch 1 from
height 5 (one validator of epoch 0 with power 2 and three new ones: total 5,
quorum 4), epoch 2 from height 9 (four other validators)."""

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
from consensus.encoding import Domain
from consensus.epochs import Epoch, EpochSchedule, epoch_domain_separator
from consensus.types import Height, Validator, ValidatorSet
from sequencer_net.l1.artifacts import load_artifact
from sequencer_net.l1.deploy import DeployEpoch
from sequencer_net.l1.evidence import evidence_args, submit_evidence
from sequencer_net.l1.header import L1Header, sign_packed, validator_set_hash
from sequencer_net.l1.link import L1Link
from sequencer_net.l1.poster import CommitmentPoster, RoundResult
from sequencer_net.l1.status import L1Status
from sequencer_net.storage.node_store import EvidenceRecord
from tests.l1.finalized_store import FinalizedStore
from tests.l1.l1_chain import (
    GENESIS_HASH,
    SEQ_CHAIN_ID,
    L1Chain,
    expect_revert,
    requires_anvil,
    running_chain,
    validator_keys,
)
from tests.l1.test_epoch_evidence import fork_pair
from tests.l1.test_evidence import finalize_vote
from tests.l1.test_evidence_watch import WATCHER_KEY, conflicting_block, make_watcher
from tests.l1.test_poster import fund, wait_posted


def sorted_keys(keys: Sequence[PrivateKey]) -> list[PrivateKey]:
    return sorted(keys, key=lambda key: key.address)


OLD = sorted_keys(validator_keys(4))
NEW = [*sorted_keys(validator_keys(3, tag=b"epoch 1")), OLD[0]]
"""Epoch 1's set in its genesis order (turns follow it): three newcomers, then OLD[0]."""
NEW_POWERS = [1, 1, 1, 2]
THIRD = sorted_keys(validator_keys(4, tag=b"epoch 2"))
FIRST_HEIGHTS = (1, 5, 9)
NEWCOMER = NEW[0]
TAKEOVER = 1_000
"""Turns so long that index (head // TAKEOVER) % 4 = 0 keeps the turn for the whole test."""


@pytest.fixture(scope="module")
def module_chain() -> Iterator[L1Chain]:
    if requires_anvil.args[0]:
        pytest.skip(requires_anvil.kwargs["reason"])
    epochs = [
        DeployEpoch(FIRST_HEIGHTS[1], [key.address for key in NEW], NEW_POWERS),
        DeployEpoch(FIRST_HEIGHTS[2], [key.address for key in THIRD], [1] * 4),
    ]
    with running_chain(epochs=epochs) as chain:
        yield chain


def test_epoch_separators_are_the_consensus_ones(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    base = chain.domain.separator()
    assert functions.epochSeparator(0).call() == functions.domainSeparator().call() == base
    for epoch in (1, 2, 3, 2**32, 2**63 - 1):
        assert functions.epochSeparator(epoch).call() == epoch_domain_separator(base, epoch)
    assert len({functions.epochSeparator(e).call() for e in range(4)}) == 4


def test_the_deployment_installs_the_whole_schedule(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    assert functions.lastEpoch().call() == 2 and functions.epoch().call() == 0
    sets = [(OLD, [1] * 4), (NEW, NEW_POWERS), (THIRD, [1] * 4)]
    for epoch, (keys, powers) in enumerate(sets):
        # the contract holds each set in ascending address order
        ordered = sorted(zip([key.address for key in keys], powers, strict=True))
        addresses, ordered_powers = [a for a, _ in ordered], [p for _, p in ordered]
        assert functions.setHashOf(epoch).call() == validator_set_hash(
            epoch, addresses, ordered_powers
        )
        first = functions.epochStart(epoch).call()[0]
        assert first == (0 if epoch == 0 else FIRST_HEIGHTS[epoch])
        for key, power in zip(keys, powers, strict=True):
            checksum = Web3.to_checksum_address(key.address)
            assert functions.powerOfInEpoch(checksum, epoch).call() == power
    assert functions.powerOfInEpoch(Web3.to_checksum_address(OLD[1].address), 1).call() == 0
    assert [functions.epochOf(h).call()[1] for h in (1, 4, 5, 8, 9, 10**9)] == [0, 0, 1, 1, 2, 2]
    # each set's event is in the block that installed it: the deployment's for epoch 0
    for epoch, first in enumerate((0, *FIRST_HEIGHTS[1:])):
        block = functions.epochStart(epoch).call()[1]
        (event,) = chain.commitments.events.ValidatorSetInstalled().get_logs(
            from_block=block, to_block=block, argument_filters={"epoch": epoch}
        )
        assert event["args"]["fromHeight"] == first
    expect_revert("UnknownValidatorSet", lambda: functions.epochStart(3).call())


def test_posts_in_each_epoch_verify_with_its_set_and_separator(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    chain.post(chain.header(3), signers=OLD[:3])
    assert functions.epoch().call() == 0
    # Epoch 1's quorum is 4 of 5: the validator of power 2 and two newcomers.
    h = chain.header(6)
    expect_revert(
        "InsufficientQuorum",
        lambda: chain.post(h, signers=[key for key in NEW if key is not OLD[0]][:3], epoch=1),
    )
    receipt = chain.post(h, signers=[OLD[0], *[k for k in NEW if k is not OLD[0]][:2]], epoch=1)
    (event,) = chain.events(chain.commitments, "Committed", receipt)
    assert (event["args"]["fromHeight"], event["args"]["toHeight"]) == (4, 6)
    assert functions.epoch().call() == 1
    assert (functions.totalPower().call(), functions.quorumPower().call()) == (5, 4)
    assert functions.powerOf(Web3.to_checksum_address(OLD[0].address)).call() == 2
    chain.post(chain.header(8), signers=NEW, epoch=1)
    chain.post(chain.header(12), signers=THIRD[:3], epoch=2)
    assert (functions.latestHeight().call(), functions.epoch().call()) == (12, 2)


def test_epoch_0_signatures_on_an_epoch_1_height_are_refused(chain: L1Chain) -> None:
    post = chain.post
    h = chain.header(5)
    # in epoch 0's separator, and in epoch 1's (three of them are not in its set)
    expect_revert("SignerNotInSet", functools.partial(post, h, signers=OLD[:3]))
    expect_revert("SignerNotInSet", functools.partial(post, h, signers=OLD[:3], epoch=1))
    # also once epoch 0's last height is posted, and at heights of epoch 2
    post(chain.header(4), signers=OLD[:3])
    for height in (5, 9, 100):
        expect_revert("SignerNotInSet", functools.partial(post, chain.header(height), OLD[:3]))
    # epoch 1's signatures at epoch 2's heights, in either separator
    for epoch in (1, 2):
        expect_revert("SignerNotInSet", functools.partial(post, chain.header(9), NEW, None, epoch))
    # the right set in the right separator goes through
    post(h, signers=NEW, epoch=1)
    assert chain.commitments.functions.epoch().call() == 1


def test_epoch_1_signatures_on_an_epoch_0_height_are_refused(chain: L1Chain) -> None:
    h = chain.header(2)
    expect_revert("SignerNotInSet", functools.partial(chain.post, h, signers=NEW, epoch=1))
    expect_revert("SignerNotInSet", functools.partial(chain.post, h, signers=NEW, epoch=0))
    chain.post(h, signers=OLD[:3])
    assert chain.commitments.functions.epoch().call() == 0


def test_one_post_may_cover_a_whole_epoch(chain: L1Chain) -> None:
    """Epoch 2's set vouches for its block and every ancestor, epoch 1's heights
    included, as a later finalization does within one epoch."""
    receipt = chain.post(chain.header(10), signers=THIRD[:3], epoch=2)
    (event,) = chain.events(chain.commitments, "Committed", receipt)
    assert (event["args"]["fromHeight"], event["args"]["toHeight"]) == (1, 10)
    assert chain.commitments.functions.epoch().call() == 2
    expect_revert("SignerNotInSet", functools.partial(chain.post, chain.header(11), NEW, None, 1))


def test_an_epoch_1_equivocation_is_judged_in_epoch_1s_domain(chain: L1Chain) -> None:
    functions = chain.commitments.functions
    newcomer = Web3.to_checksum_address(NEWCOMER.address)
    # Signed in epoch 0's separator, votes at height 6 name nobody of epoch 1's set.
    wrong = fork_pair(chain, NEWCOMER, 6, epoch=0)
    expect_revert(
        "EvidenceSignerNotInSet",
        lambda: chain.send(functions.submitEvidence(*evidence_args(*wrong))),
    )
    first, second = fork_pair(chain, NEWCOMER, 6, 1)
    proven = submit_evidence(
        chain.w3, chain.deployer, chain.commitments, EvidenceRecord(1, first, second, "epoch 1")
    )
    assert (proven.validator, proven.height, proven.epoch, proven.froze) == (
        NEWCOMER.address,
        6,
        1,
        False,
    )
    assert functions.offenceOfInEpoch(newcomer, 1).call() == [True, 6]
    assert functions.offendingPowerInEpoch(1).call() == [1, False]  # 1 of 5
    # The validator of power 2 (of 5) is more than a third of epoch 1 on its own.
    first, second = fork_pair(chain, OLD[0], 7, 1)
    proven = submit_evidence(
        chain.w3, chain.deployer, chain.commitments, EvidenceRecord(0, first, second, "epoch 1")
    )
    assert (proven.epoch, proven.froze) == (1, True)
    assert functions.disputedHeight(0).call() == [True, 6]
    assert functions.offendingPowerInEpoch(1).call() == [3, True]
    assert functions.offendingPowerInEpoch(0).call() == [0, False]


def make_poster(
    chain: L1Chain,
    store: FinalizedStore,
    key: PrivateKey,
    data: Path,
    schedule: EpochSchedule,
) -> CommitmentPoster:
    return CommitmentPoster(
        link=L1Link.connect(chain.anvil.url, commitments=chain.addresses.commitments),
        store=store.store,
        validators=store.validators,
        my_index=store.validators.index_of(key.address),
        key=key,
        data_dir=data,
        status=L1Status(enabled=True),
        post_interval_s=0.0,
        takeover_blocks=TAKEOVER,
        poll_s=0.05,
        schedule=schedule,
    )


@pytest.fixture
def blocks(tmp_path: Path, chain: L1Chain) -> Iterator[FinalizedStore]:
    later = [(FIRST_HEIGHTS[1], NEW, NEW_POWERS), (FIRST_HEIGHTS[2], THIRD, [1] * 4)]
    store = FinalizedStore.open(tmp_path / "chain", OLD, chain.domain, later)
    for key in {*OLD, *NEW, *THIRD}:
        fund(chain, key.address)
    try:
        yield store
    finally:
        store.close()


def test_the_poster_posts_with_the_epoch_of_the_block(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    """Index 0 holds the turn in every epoch: OLD[0] in epoch 0, where NEW[0] has
    no index; NEW[0] in epoch 1, where OLD[0] is index 3."""
    assert chain.w3.eth.block_number < TAKEOVER
    schedule = blocks.schedule()
    in_0 = make_poster(chain, blocks, OLD[0], tmp_path / "a", schedule)
    in_1 = make_poster(chain, blocks, NEW[0], tmp_path / "b", schedule)
    assert (in_0.my_index, in_1.my_index) == (0, None)
    blocks.commit(3)
    assert run(in_1) is RoundResult.NOT_MY_TURN
    assert run(in_0) is RoundResult.POSTED
    wait_posted(chain, 3)
    blocks.commit(4)  # heights 4..7: 7 is epoch 1's
    assert run(in_0) is RoundResult.NOT_MY_TURN  # (settling its posting first)
    assert in_0.journal.pending is None and in_0.status.postings == 1
    assert run(in_1) is RoundResult.POSTED
    wait_posted(chain, 7)
    functions = chain.commitments.functions
    assert (functions.latestHeight().call(), functions.epoch().call()) == (7, 1)


def test_the_poster_refuses_a_contract_with_another_schedule(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    """The poster's genesis puts epoch 1 at height 3; the contract at height 5."""
    validators = ValidatorSet(
        [Validator(k.address, w) for k, w in zip(NEW, NEW_POWERS, strict=True)]
    )
    other = EpochSchedule([Epoch(0, Height(1), blocks.validators), Epoch(1, Height(3), validators)])
    poster = make_poster(chain, blocks, NEW[0], tmp_path / "l1", other)
    blocks.commit(3)
    assert run(poster) is RoundResult.REFUSED
    assert poster.status.last_error is not None
    assert "not deployed with this genesis's schedule" in poster.status.last_error


def run(poster: CommitmentPoster) -> RoundResult:
    return trio.run(poster.post_round)


def test_the_watcher_proves_a_posted_fork_of_epoch_1_in_its_domain(
    chain: L1Chain, blocks: FinalizedStore, tmp_path: Path
) -> None:
    """This side finalized block 5 (epoch 1) with NEW[0], NEW[1] and NEW[3]; a
    conflicting block 5 in the same view was posted with NEW[0], NEW[2] and NEW[3].
    The watcher reads both in epoch 1's separator and proves the two who signed both."""
    (*_, fourth) = blocks.commit(4)
    chain.post(L1Header.of_block(fourth), signers=OLD[:3])
    block, theirs = conflicting_block(blocks, view=6)
    ours = blocks.certificate(block.view, block.height, block.digest(), signers=[0, 1, 3])
    blocks.store.commit_block(block, ours, [], blocks.state_root(5))
    chain.post(theirs, signers=[NEW[0], NEW[2], NEW[3]], epoch=1)
    fund(chain, WATCHER_KEY.address)

    watcher = make_watcher(chain, blocks, tmp_path / "l1")
    trio.run(watcher.watch_round)
    functions = chain.commitments.functions
    proven = [
        functions.offenceOfInEpoch(Web3.to_checksum_address(key.address), 1).call() for key in NEW
    ]
    assert proven == [[True, 5], [False, 0], [False, 0], [True, 5]]
    assert functions.frozen().call() and functions.disputedHeight(0).call() == [True, 5]
    assert watcher.status.evidence_submitted == 2


def test_the_constructor_refuses_a_bad_schedule(chain: L1Chain) -> None:
    artifact = load_artifact("Commitments")
    factory = chain.w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
    old = [Web3.to_checksum_address(key.address) for key in OLD]
    some = keccak256(b"a set hash")

    def deploy(first_heights: list[int], hashes: list[bytes]) -> None:
        call = factory.constructor(
            SEQ_CHAIN_ID,
            GENESIS_HASH,
            old,
            [1] * 4,
            chain.deployer.address,
            0,
            first_heights,
            hashes,
        )
        call.estimate_gas({"from": chain.deployer.address})

    expect_revert("EpochsNotAscending", lambda: deploy([1], [some]))  # epoch 0 holds height 1
    expect_revert("EpochsNotAscending", lambda: deploy([5, 5], [some, some]))
    expect_revert("EpochsNotAscending", lambda: deploy([9, 5], [some, some]))
    expect_revert("HeightOutOfRange", lambda: deploy([2**48], [some]))
    expect_revert("LengthMismatch", lambda: deploy([5, 9], [some]))
    expect_revert("UnknownValidatorSet", lambda: deploy([5], [bytes(32)]))
    expect_revert("ZeroPower", lambda: factory.constructor(
        SEQ_CHAIN_ID, GENESIS_HASH, old, [1, 0, 1, 1], chain.deployer.address, 0, [], []
    ).estimate_gas({"from": chain.deployer.address}))  # fmt: skip
    deploy([2, 3], [some, some])  # the smallest legal first heights
    # TooManyEpochs (above 1,024) is not reachable here: 1,025 epochs' arguments exceed
    # the 49,152-byte initcode limit on their own.


def test_a_scheduled_epoch_waits_for_its_set(chain: L1Chain) -> None:
    """A deployment whose epoch 1 is not installed yet: its heights are refused with
    EpochNotInstalled (posts and evidence); installEpoch takes only the committed set,
    once; then epoch 1's signatures go through."""
    new = sorted((key.address, power) for key, power in zip(NEW, NEW_POWERS, strict=True))
    addresses, powers = [a for a, _ in new], [p for _, p in new]
    artifact = load_artifact("Commitments")
    factory = chain.w3.eth.contract(abi=artifact.abi_list, bytecode=artifact.bytecode)
    receipt = chain.send(
        factory.constructor(
            SEQ_CHAIN_ID,
            GENESIS_HASH,
            [Web3.to_checksum_address(key.address) for key in OLD],
            [1] * 4,
            chain.deployer.address,
            0,
            [5],
            [validator_set_hash(1, addresses, powers)],
        )
    )
    address = receipt["contractAddress"]
    assert address is not None
    commitments = chain.w3.eth.contract(address=address, abi=artifact.abi_list)
    functions = commitments.functions
    domain = Domain(SEQ_CHAIN_ID, bytes.fromhex(address[2:]), GENESIS_HASH)
    assert functions.epochStart(1).call() == [5, 0]

    def post(height: int, signers: Sequence[PrivateKey], epoch: int) -> None:
        header = chain.header(height)
        signatures = sign_packed(signers, header.finalize_digest(domain, epoch))
        chain.send(functions.post(header.as_abi(), signatures), estimate_on="pending")

    post(4, OLD[:3], 0)  # epoch 0 is installed
    expect_revert("EpochNotInstalled", lambda: post(6, NEW, 1))
    block = chain.header(6)
    twin = dataclasses.replace(block, state_root=keccak256(b"the other side"))
    votes = evidence_args(
        finalize_vote(NEWCOMER, domain, block, 1), finalize_vote(NEWCOMER, domain, twin, 1)
    )
    expect_revert("EpochNotInstalled", lambda: chain.send(functions.submitEvidence(*votes)))
    checksums = [Web3.to_checksum_address(a) for a in addresses]
    expect_revert(
        "EpochNotInstalled",
        lambda: chain.send(functions.submitEvidenceOfEpoch(1, checksums, powers, *votes)),
    )

    def install(epoch: int, members: list[ChecksumAddress], weights: list[int]) -> TxReceipt:
        return chain.send(functions.installEpoch(epoch, members, weights))

    expect_revert("UnknownValidatorSet", lambda: install(1, checksums, [1] * 4))
    expect_revert("UnknownValidatorSet", lambda: install(2, checksums, powers))
    expect_revert("EpochAlreadyInstalled", lambda: install(0, checksums, powers))
    receipt = install(1, checksums, powers)
    (event,) = chain.events(commitments, "ValidatorSetInstalled", receipt)
    assert (event["args"]["epoch"], event["args"]["fromHeight"]) == (1, 5)
    assert functions.epochStart(1).call() == [5, receipt["blockNumber"]]
    expect_revert("EpochAlreadyInstalled", lambda: install(1, checksums, powers))
    post(6, NEW, 1)
    assert (functions.latestHeight().call(), functions.epoch().call()) == (6, 1)
    chain.send(functions.submitEvidence(*votes))
    assert functions.offenceOfInEpoch(Web3.to_checksum_address(NEWCOMER.address), 1).call() == [
        True,
        6,
    ]
