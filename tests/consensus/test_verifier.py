"""The signature verifier's memo: right answers, bounded, and safe to share
between threads (the node checks followed blocks in worker threads)."""

from __future__ import annotations

import threading
import time

from consensus.crypto import Address
from consensus.sim.simulator import validator_key
from consensus.verifier import SignatureVerifier

SEPARATOR = bytes(32)


def signed(index: int, digest: bytes) -> tuple[bytes, bytes, Address]:
    key = validator_key(index)
    return digest, key.sign_digest(digest), key.address


def test_recover_remembers_and_stays_bounded() -> None:
    verifier = SignatureVerifier(SEPARATOR, max_entries=2)
    pairs = [signed(i, bytes([i + 1]) * 32) for i in range(3)]
    for digest, signature, address in pairs:
        assert verifier.recover(digest, signature) == address
    assert verifier.recover(pairs[0][0], pairs[1][1]) != pairs[1][2]
    assert len(verifier._memo) == 2


class _SlowToAnswerFirst(dict[tuple[bytes, bytes], Address | None]):
    """A memo whose membership test for one key takes 50 ms: it holds the
    thread asking about that key between its check and its read while
    another thread fills the memo. `entered` is set once that thread is in."""

    def __init__(self, slow: tuple[bytes, bytes]) -> None:
        super().__init__()
        self.slow = slow
        self.entered = threading.Event()

    def __contains__(self, key: object) -> bool:
        found = super().__contains__(key)
        if key == self.slow:
            self.entered.set()
            time.sleep(0.05)
        return found


def test_one_verifier_shared_by_threads_never_loses_an_answer() -> None:
    """Thread A finds its signature remembered and, before it reads the answer,
    thread B recovers another one into the full memo and evicts A's. A must
    still get the right address, never a KeyError."""
    first, second = signed(0, b"\x01" * 32), signed(1, b"\x02" * 32)
    verifier = SignatureVerifier(SEPARATOR, max_entries=1)
    memo = _SlowToAnswerFirst((first[0], first[1]))
    verifier._memo = memo
    assert verifier.recover(first[0], first[1]) == first[2]
    memo.entered.clear()
    answers: dict[str, Address | None] = {}
    errors: list[BaseException] = []

    def recover(name: str, digest: bytes, signature: bytes) -> None:
        try:
            answers[name] = verifier.recover(digest, signature)
        except BaseException as exc:
            errors.append(exc)

    a = threading.Thread(target=recover, args=("a", first[0], first[1]))
    b = threading.Thread(target=recover, args=("b", second[0], second[1]))
    a.start()
    assert memo.entered.wait(timeout=30)  # A is inside its slow membership test
    b.start()
    for thread in (a, b):
        thread.join(timeout=30)
    assert not a.is_alive() and not b.is_alive()
    assert errors == []
    assert answers == {"a": first[2], "b": second[2]}
    assert len(verifier._memo) == 1
