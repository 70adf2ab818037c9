"""Inbox: a forced transaction is logged with its due block; sizes are bounded."""

from __future__ import annotations

from tests.l1.l1_chain import INCLUSION_WINDOW, L1Chain, expect_revert

MAX_TX = 16384


def test_submit_emits_forced_transaction_with_due_block(chain: L1Chain) -> None:
    user = chain.users[0]
    receipts = [
        chain.send(chain.inbox.functions.submit(b"\x01signed tx"), user),
        chain.send(chain.inbox.functions.submit(b"\xab" * MAX_TX), user),
    ]
    events = [chain.events(chain.inbox, "ForcedTransaction", r)[0]["args"] for r in receipts]
    assert [e["index"] for e in events] == [0, 1]
    assert all(e["sender"] == user.address for e in events)
    assert [e["dueBlock"] for e in events] == [
        r["blockNumber"] + INCLUSION_WINDOW for r in receipts
    ]
    assert [e["tx"] for e in events] == [b"\x01signed tx", b"\xab" * MAX_TX]
    assert chain.inbox.functions.count().call() == 2
    assert chain.inbox.functions.inclusionWindow().call() == INCLUSION_WINDOW


def test_empty_and_oversize_transactions_are_refused(chain: L1Chain) -> None:
    submit = chain.inbox.functions.submit
    expect_revert("EmptyTransaction", lambda: chain.send(submit(b"")))
    expect_revert("TransactionTooLarge", lambda: chain.send(submit(b"\x00" * (MAX_TX + 1))))
    assert chain.inbox.functions.count().call() == 0
