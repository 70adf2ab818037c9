"""The `l1` object of /v1/status: stable keys, the OpenAPI schema, backlog."""

from __future__ import annotations

from sequencer_net.api.openapi import _SCHEMAS
from sequencer_net.l1.status import DISABLED_DOCUMENT, L1Status


def test_keys_match_the_published_schema_on_and_off() -> None:
    schema = _SCHEMAS["Status"]["properties"]["l1"]
    status = L1Status(enabled=True, posted_height=7, l1_head=30, last_post_block=26)
    for document in (status.document(12), DISABLED_DOCUMENT):
        assert set(document) == set(schema["required"]) == set(schema["properties"])
    document = status.document(12)
    assert (document["backlog"], document["l1_blocks_behind"]) == (5, 4)
    assert DISABLED_DOCUMENT["enabled"] is False and DISABLED_DOCUMENT["backlog"] is None


def test_backlog_waits_for_the_contract_and_the_head_never_goes_back() -> None:
    status = L1Status(enabled=True)
    assert status.document(5)["backlog"] is None
    status.observe_head(10)
    status.observe_head(8)
    assert status.l1_head == 10
