"""The API reference as an OpenAPI 3.1 document, served at GET /v1/openapi.json.

One static document: every HTTP endpoint the node serves with its
parameters, request body, answers (JSON Schema 2020-12, as OpenAPI 3.1 uses)
and error answers (`{"error", "code"}`, errors.py). OpenAPI has no object for
WebSockets, so the three WebSocket endpoints are in `x-websocket` (and the
description): their path, query, the messages each way and the close codes.

docs/api.md is the prose reference; the two are kept consistent by hand, and
tests/api/test_openapi.py checks that every route the app registers is here
(and nothing else) and that real answers validate against these schemas.
"""

from __future__ import annotations

import json
from typing import Any

from consensus.limits import MAX_EPOCH_TAIL_BLOCKS, MAX_FINALITY_CHAIN
from sequencer_net.fairness.limits import MAX_SHAREHOLDERS

__all__ = ["OPENAPI", "openapi_json"]

_Schema = dict[str, Any]


def _ref(name: str) -> _Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: _Schema) -> _Schema:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(required: dict[str, _Schema], optional: dict[str, _Schema] | None = None) -> _Schema:
    """A JSON object with exactly these keys (the optional ones may be absent)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
        "additionalProperties": False,
    }


_INT = {"type": "integer", "minimum": 0}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NUMBER = {"type": "number"}
_OPT_INT = {"type": ["integer", "null"], "minimum": 0}
_OPT_STR = {"type": ["string", "null"]}

_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"

_ORDER_FIELDS: dict[str, _Schema] = {
    "market_id": _INT,
    "order_id": _ref("Hash"),
    "side": {"enum": ["buy", "sell"]},
    "price": _ref("Decimal"),
    "quantity": _ref("Decimal"),
    "time_in_force": {"enum": ["gtc", "ioc"]},
    "post_only": _BOOL,
    "reduce_only": _BOOL,
    "placed_height": _INT,
    "client_id": _OPT_INT,
    "good_til": _OPT_INT,
}
"""A resting order; a conditional order has these and its trigger."""

_SCHEMAS: dict[str, _Schema] = {
    "Error": {
        **_object(
            {
                "error": {"type": "string", "description": "for people"},
                "code": {"type": "string", "description": "for programs (docs/api.md, Errors)"},
            }
        ),
        "description": "Every refusal: a 4xx/5xx status with this body.",
    },
    "Hex": {"type": "string", "pattern": "^0x([0-9a-f]{2})*$", "description": "0x-hex bytes"},
    "Hash": {"type": "string", "pattern": "^0x[0-9a-f]{64}$", "description": "32 bytes"},
    "Address": {"type": "string", "pattern": "^0x[0-9a-f]{40}$", "description": "20 bytes"},
    "Decimal": {
        "type": "string",
        "pattern": _DECIMAL_PATTERN,
        "description": "an exact decimal (the engine's wad value, up to 18 decimals)",
    },
    "OptionalDecimal": {"type": ["string", "null"], "pattern": _DECIMAL_PATTERN},
    "Accepted": _object({"hash": _ref("Hash")}),
    "BatchRequest": _object(
        {"transactions": {"type": "array", "maxItems": 10_000, "items": _ref("Hex")}}
    ),
    "BatchAnswer": _object(
        {
            "results": {
                "type": "array",
                "description": "one per submitted transaction, in order",
                "items": {"oneOf": [_ref("Accepted"), _ref("Error")]},
            }
        }
    ),
    "Receipt": _object(
        {
            "success": _BOOL,
            "error": {**_OPT_STR, "description": "the engine's rejection name; null on success"},
            "reason": _OPT_STR,
            "fee": _ref("Decimal"),
        }
    ),
    "TransactionStatus": {
        "oneOf": [
            _object(
                {
                    "hash": _ref("Hash"),
                    "status": {"const": "committed"},
                    "height": _INT,
                    "index": _INT,
                },
                {"receipt": _ref("Receipt")},
            ),
            _object({"hash": _ref("Hash"), "status": {"const": "pending"}}),
            _object({"hash": _ref("Hash"), "status": {"const": "dropped"}, "reason": _STR}),
        ]
    },
    "Status": {
        "type": "object",
        "description": "This node's chain, consensus and oracle reporter (docs/api.md).",
        "properties": {
            "name": _STR,
            "validator_index": _OPT_INT,
            "chain_id": _INT,
            "verifying_contract": _ref("Address"),
            "genesis_hash": _ref("Hash"),
            "height": _INT,
            "last_hash": _ref("Hex"),
            "consensus_height": _INT,
            "view": _INT,
            "state_root": _ref("Hex"),
            "peers": {"type": "array", "items": _INT},
            "connected": _BOOL,
            "mempool_size": _INT,
            "committed_txs": _INT,
            "commit_latency_ms": _object(
                {"p50": {"type": ["number", "null"]}, "p99": {"type": ["number", "null"]}}
            ),
            "oracle": {
                "type": "object",
                "required": ["source"],
                "properties": {
                    "source": _STR,
                    "last_published_at": _OPT_INT,
                    "last_markets": _INT,
                    "reports_sent": _INT,
                    "reports_refused": _INT,
                    "last_error": _OPT_STR,
                    "fee_balance": {
                        **_OPT_STR,
                        "description": "the reporting subaccount's fee balance (wei, decimal)",
                    },
                    "hour_of_fees": {
                        **_OPT_STR,
                        "description": "what the next hour of reports costs (wei, decimal)",
                    },
                    "fee_balance_low": _BOOL,
                },
            },
            "forced": {
                "type": ["object", "null"],
                "description": "Forced transactions from the L1 Inbox (docs/l1.md).",
                "properties": {"tracked": _INT, "overdue": _INT},
            },
            "l1": _object(
                {
                    "enabled": _BOOL,
                    "posted_height": _OPT_INT,
                    "posted_state_height": _OPT_INT,
                    "committed_height": _OPT_INT,
                    "backlog": _OPT_INT,
                    "gas_per_posting": _OPT_INT,
                    "postings": _INT,
                    "l1_head": _OPT_INT,
                    "l1_blocks_behind": _OPT_INT,
                    "deposits_seen": _INT,
                    "deposits_reported": _INT,
                    "forced_seen": _INT,
                    "evidence_submitted": _INT,
                    "frozen": {"type": ["boolean", "null"]},
                    "fork_height": _OPT_INT,
                    "last_error": _OPT_STR,
                }
            ),
            "uptime_s": _NUMBER,
            "epoch": {
                **_INT,
                "description": "the current validator-set epoch (a chain with epochs only)",
            },
            "member": {
                **_BOOL,
                "description": "whether this node runs that epoch's consensus (else it "
                "follows it; a chain with epochs only)",
            },
        },
        "required": ["height"],
    },
    "Health": _object(
        {
            "status": {"const": "ok"},
            "height": _INT,
            "seconds_since_progress": _NUMBER,
            "stall_bound_s": _NUMBER,
        }
    ),
    "Stalled": _object(
        {
            "status": {"const": "stalled"},
            "error": {"type": "string", "description": "why: how long the height has not moved"},
            "code": {"const": "stalled"},
            "height": _INT,
            "seconds_since_progress": _NUMBER,
            "stall_bound_s": _NUMBER,
        }
    ),
    "Block": _object(
        {
            "height": _INT,
            "view": _INT,
            "hash": _ref("Hash"),
            "parent": _ref("Hash"),
            "proposer": _INT,
            "payload": _ref("Hex"),
            "state_root": {
                "oneOf": [_ref("Hash"), {"type": "null"}],
                "description": "the state root after this block, null if not executed here",
            },
            "namespace_root": {
                "oneOf": [_ref("Hash"), {"type": "null"}],
                "description": "the payload's fifth field (null if the payload does not decode)",
            },
            "order_seed": {
                "oneOf": [_ref("Hash"), {"type": "null"}],
                "description": "the block's order seed, a threshold coin drawn after commit "
                "that fixed its execution order (docs/fairness.md, Content-blind order); "
                "null on a chain without a threshold key (the block order, not "
                "content-blind), and for a block that draws none: no envelope and at "
                "most one non-forced sender, so its order is the same for every seed",
            },
            "forced": {
                "type": "array",
                "items": _object({"index": _INT, "tx_hash": _ref("Hash")}),
                "description": "the forced L1 inbox entries the payload marks (Inbox index "
                "and transaction hash), in inbox order; they execute first",
            },
            "transactions": {
                "type": "array",
                "items": _ref("Hex"),
                "description": "the encoded transactions the block executed, in execution "
                "order: those the payload marks forced (L1 inbox) first, in inbox order",
            },
        }
    ),
    "BlockHeader": _object(
        {
            "view": _INT,
            "height": _INT,
            "parent": _ref("Hash"),
            "proposer": _INT,
            "payload": _ref("Hex"),
            "hash": _ref("Hash"),
        }
    ),
    "Certificate": _object(
        {
            "kind": {"type": "integer", "description": "1: notarize, 2: nullify, 3: finalize"},
            "view": _INT,
            "height": _INT,
            "block": _ref("Hash"),
            "signers": {"type": "array", "items": _INT},
            "signatures": {"type": "array", "items": _ref("Hex")},
        }
    ),
    "ViewCertificates": _object(
        {
            "view": _INT,
            "certificates": {"type": "array", "items": _ref("Certificate")},
        }
    ),
    "EntryProof": _object(
        {
            "index": _INT,
            "entry": _object({"namespace": _UINT32, "count": _INT, "root": _ref("Hash")}),
            "path": {"type": "array", "items": _ref("Hash")},
        }
    ),
    "ChainHeader": _object(
        {
            "view": _INT,
            "height": _INT,
            "parent": _ref("Hash"),
            "proposer": _INT,
            "payload_hash": _ref("Hash"),
        }
    ),
    "NamespaceBlock": {
        **_object(
            {
                "type": {"const": "block"},
                "height": _INT,
                "block": _ref("BlockHeader"),
                "certificate": _nullable(_ref("Certificate")),
                "namespace": _UINT32,
                "transactions": {"type": "array", "items": _ref("Hex")},
                "proof": _object(
                    {
                        "namespace": _UINT32,
                        "size": _INT,
                        "present": _nullable(_ref("EntryProof")),
                        "below": _nullable(_ref("EntryProof")),
                        "above": _nullable(_ref("EntryProof")),
                    }
                ),
            },
            {
                "finalized_by": _object(
                    {
                        "certificate": _ref("Certificate"),
                        "chain": {
                            "type": "array",
                            "items": _ref("ChainHeader"),
                            "minItems": 1,
                            "maxItems": MAX_FINALITY_CHAIN + MAX_EPOCH_TAIL_BLOCKS,
                        },
                    }
                ),
                "order": {"oneOf": [_ref("OrderProof"), {"type": "null"}]},
            },
        ),
        "description": "One namespace of a finalized block, with what proves it "
        "(docs/api.md, Subscriptions, says how to check it). `certificate` is the "
        "block's own finalization; null for a block finalized under a descendant's, "
        "which carries `finalized_by` instead: that descendant's certificate and the "
        "headers from the descendant down to the block's child (at most "
        f"{MAX_FINALITY_CHAIN} of the block's epoch; for the last blocks of an epoch, "
        f"topped by up to {MAX_EPOCH_TAIL_BLOCKS} empty tail blocks of that epoch, "
        "whose finalization is then the certificate). On a chain with a threshold "
        "key, `order` holds the block's order seed and the coin shares that prove it, "
        "from which the namespace's execution order follows (docs/rollups.md, "
        "Execution order); null for a block that draws no order seed (no envelope and "
        "at most one non-forced sender: its order is the same for every seed; accept it "
        "only if the namespace's non-forced transactions come from one sender at most); "
        "a chain without one sends no `order`. A subscriber that "
        "asked for `order=later` may get a message without `order` on such a chain: "
        "its OrderMessage follows.",
    },
    "OrderMessage": {
        **_object(
            {
                "type": {"const": "order"},
                "height": {"type": "integer", "minimum": 1},
                "order": {"oneOf": [_ref("OrderProof"), {"type": "null"}]},
            }
        ),
        "description": "The order of a block whose NamespaceBlock message went out "
        "without it (`order=later`): sent once its order seed is known, for each such "
        "height in height order; `order` null for a block that draws no seed.",
    },
    "OrderProof": {
        **_object(
            {
                "seed": _ref("Hash"),
                "shares": {
                    "type": "array",
                    "items": _ref("CoinShare"),
                    "maxItems": MAX_SHAREHOLDERS,
                },
            }
        ),
        "description": "A block's order seed and exactly t coin shares (t of the "
        "threshold key of the block's epoch) whose combination it is: each share's "
        "proof verifies against its shareholder's verification key on "
        "order_seed_tag(chain id, height, block hash) (docs/fairness.md, "
        "The order seed's proof).",
    },
    "CoinShare": _object(
        {
            "index": {"type": "integer", "minimum": 1, "maximum": MAX_SHAREHOLDERS},
            "value": _ref("Hex"),
            "e": _ref("Hex"),
            "f": _ref("Hex"),
        }
    ),
    "TransactionStatusMessage": _object(
        {
            "type": {"const": "status"},
            "hash": _ref("Hash"),
            "status": {"enum": ["pending", "committed", "unknown"]},
            "height": _OPT_INT,
            "receipt": _nullable(_ref("Receipt")),
        }
    ),
    "Ping": _object({"type": {"const": "ping"}}),
    "ExecutedMessage": _object({"type": {"const": "executed"}, "height": _INT}),
    "Validators": _object(
        {
            "chain_id": _INT,
            "verifying_contract": _ref("Address"),
            "genesis_hash": _ref("Hash"),
            "validators": _ref("ValidatorList"),
        },
        {
            # The threshold encryption key encrypted transactions are sealed to
            # (docs/fairness.md); null when the chain has none.
            "threshold": _nullable(_ref("ThresholdKey")),
            # Present only when the genesis schedules later validator-set epochs.
            "epochs": {
                "type": "array",
                "items": _ref("Epoch"),
                "minItems": 2,
                "description": "Every validator-set epoch, from epoch 0 (whose set and "
                "key are also `validators` and `threshold`). Absent for a chain that "
                "never rotates its set.",
            },
        },
    ),
    "ValidatorList": {
        "type": "array",
        "items": _object({"index": _INT, "name": _STR, "address": _ref("Address"), "weight": _INT}),
    },
    "ThresholdKey": _object({"key_epoch": _INT, "threshold": _INT, "public_key": _ref("Hex")}),
    "Epoch": {
        **_object(
            {
                "number": _INT,
                "first_height": _INT,
                "last_height": _OPT_INT,
                "domain_separator": _ref("Hash"),
                "validators": _ref("ValidatorList"),
                "threshold": _nullable(_ref("ThresholdKey")),
            }
        ),
        "description": "One validator-set epoch: its heights (last_height null for the "
        "last epoch), its set, the EIP-712 domain separator its votes and "
        "certificates are signed in (the chain's own for epoch 0) and its threshold key.",
    },
    "Vote": _object(
        {
            "kind": {"enum": ["notarize", "nullify", "finalize"]},
            "view": _INT,
            "height": _INT,
            "block": _ref("Hash"),
            "signer": _INT,
            "signature": _ref("Hex"),
        }
    ),
    "Evidence": _object(
        {
            "evidence": {
                "type": "array",
                "maxItems": 1000,
                "items": _object(
                    {
                        "offender": _INT,
                        "offender_address": _nullable(_ref("Address")),
                        "view": _INT,
                        "reason": _STR,
                        "first": _ref("Vote"),
                        "second": _ref("Vote"),
                    },
                    # Present on a chain that rotates its set: the epoch whose set
                    # `offender` indexes and whose separator the votes are signed in.
                    {"epoch": _UINT32},
                ),
            }
        }
    ),
    "OptionTerms": _object(
        {
            "type": {"enum": ["call", "put"]},
            "strike": _ref("Decimal"),
            "expiry": _INT,
            "underlying": _INT,
            "settlement_window_s": _INT,
            "settlement_average": _ref("OptionalDecimal"),
            "settlement_seconds_sampled": _INT,
            "settlement_price": _ref("OptionalDecimal"),
        }
    ),
    "Market": _object(
        {
            "id": _INT,
            "kind": {"enum": ["perp", "option"]},
            "option": _nullable(_ref("OptionTerms")),
            "paused": _BOOL,
            "tick_size": _ref("Decimal"),
            "lot_size": _ref("Decimal"),
            "oracle_price": _ref("OptionalDecimal"),
            "oracle_volatility": _ref("OptionalDecimal"),
            "oracle_published_at": _OPT_INT,
            "oracle_fresh": _BOOL,
            "mark_price": _ref("OptionalDecimal"),
            "last_trade_price": _ref("OptionalDecimal"),
            "last_clearing_price": _ref("OptionalDecimal"),
            "last_clearing_volume": _ref("Decimal"),
            "last_cleared_height": _OPT_INT,
            "auctions_cleared": _INT,
            "volume": _ref("Decimal"),
            "open_interest": _ref("Decimal"),
            "funding_interval_s": _OPT_INT,
            "funding_rate": _ref("OptionalDecimal"),
            "next_funding_at": _OPT_INT,
            "cumulative_funding": _ref("OptionalDecimal"),
            "last_funding_per_unit": _ref("OptionalDecimal"),
            "last_funding_height": _OPT_INT,
            "liquidations": _INT,
        }
    ),
    "Markets": _object(
        {
            "height": _INT,
            "timestamp": _INT,
            "counted_since_height": _OPT_INT,
            "markets": {"type": "array", "items": _ref("Market")},
        }
    ),
    "Order": _object(_ORDER_FIELDS),
    "ConditionalOrder": _object(
        {
            **_ORDER_FIELDS,
            "trigger": {"enum": ["stop", "take-profit"]},
            "trigger_price": _ref("Decimal"),
            "triggered_at": _OPT_INT,
        }
    ),
    "Subaccount": _object(
        {
            "number": _INT,
            "id": _ref("Hex"),
            "collateral": _ref("Decimal"),
            "equity": _ref("Decimal"),
            "maintenance_margin": _ref("Decimal"),
            "initial_margin": _ref("Decimal"),
            "initial_margin_with_orders": _ref("Decimal"),
            "free_collateral": _ref("Decimal"),
            "positions": {
                "type": "array",
                "items": _object(
                    {
                        "market_id": _INT,
                        "size": _ref("Decimal"),
                        "valuation_price": _ref("OptionalDecimal"),
                        "value": _ref("Decimal"),
                        "pending_funding": _ref("Decimal"),
                        "open_buy": _ref("Decimal"),
                        "open_sell": _ref("Decimal"),
                    }
                ),
            },
            "open_orders": _INT,
            "orders": {"type": "array", "items": _ref("Order")},
            "orders_truncated": _BOOL,
            "conditional_orders": {"type": "array", "items": _ref("ConditionalOrder")},
        }
    ),
    "Account": _object(
        {
            "address": _ref("Address"),
            "height": _INT,
            "next_nonce": _INT,
            "subaccounts": {"type": "array", "items": _ref("Subaccount")},
        }
    ),
    "Network": _object({"connected": _BOOL}),
    "StateProof": {
        **_object(
            {
                "key": _ref("Hex"),
                "state_height": _INT,
                "state_root": _ref("Hash"),
                "value": _nullable(_ref("Hex")),
                "proof": _ref("Hex"),
            }
        ),
        "description": "The entry under `key` in the latest executed state (null: none) "
        "and its proof against `state_root` (docs/execution.md, State tree: Proofs).",
    },
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _json(description: str, schema: _Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _path_param(name: str, description: str, schema: _Schema) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


_HEIGHT_PARAM = _path_param(
    "height",
    "ASCII decimal digits in 0..2^63-1 (no sign, spaces or other digit scripts)",
    {"type": "string", "pattern": "^[0-9]{1,20}$"},
)
_HASH_TEXT = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{64}$"}
_ADDRESS_TEXT = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]{40}$"}

_SUBMIT_ERRORS = {
    "400": _error(
        "`invalid_transaction` (undecodable, oversized, wrong chain id, bad signature), "
        "`bad_request` (empty body), `fee_too_low`, `nonce_used`, `nonce_too_high`"
    ),
    "402": _error("`insufficient_balance`: the fee balance does not cover the pending fees"),
    "409": _error("`duplicate` or `nonce_taken`"),
    "413": _error("`too_large`: body over the endpoint's cap"),
    "429": _error("`sender_limit` or `rate_limited`"),
    "503": _error("`full` (mempool), `storage_failed` or `busy` (retry after a second)"),
}
_BUSY = {"503": _error("`busy`: too many requests in flight (with Retry-After: 1)")}
_BAD = {"400": _error("`bad_request`: a malformed path parameter")}

_PATHS: dict[str, Any] = {
    "/v1/transactions": {
        "post": {
            "operationId": "submitTransaction",
            "summary": "Submit one encoded signed transaction",
            "description": "Answered 200 only once the transaction is durably stored.",
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {
                        "schema": {
                            "type": "string",
                            "contentEncoding": "binary",
                            "maxLength": 32896,
                        }
                    }
                },
            },
            "responses": {"200": _json("accepted and stored", _ref("Accepted")), **_SUBMIT_ERRORS},
        }
    },
    "/v1/transactions/batch": {
        "post": {
            "operationId": "submitBatch",
            "summary": "Submit up to 10,000 transactions (JSON hex, or msgpack binary)",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("BatchRequest")},
                    "application/msgpack": {
                        "schema": {
                            "type": "string",
                            "contentEncoding": "binary",
                            "description": "a msgpack array of binary transactions (8 MiB)",
                        }
                    },
                },
            },
            "responses": {
                "200": {
                    "description": "one result per transaction, in order; the accepted "
                    "ones stored in one write",
                    "content": {
                        "application/json": {"schema": _ref("BatchAnswer")},
                        "application/msgpack": {
                            "schema": {
                                "type": "string",
                                "contentEncoding": "binary",
                                "description": "an array of 32-byte hashes or [code, message]",
                            }
                        },
                    },
                },
                "400": _error("`bad_request`: the body is not such an object or array"),
                "413": _error("`too_large`: over 8 MiB or 10,000 transactions"),
                **_BUSY,
            },
        }
    },
    "/v1/transactions/{hash}": {
        "get": {
            "operationId": "transactionStatus",
            "summary": "A transaction's status: committed (with receipt), pending or dropped",
            "parameters": [_path_param("hash", "32 bytes of hex, 0x optional", _HASH_TEXT)],
            "responses": {
                "200": _json("what this node knows of it", _ref("TransactionStatus")),
                **_BAD,
                "404": _error("`not_found`: unknown transaction"),
            },
        }
    },
    "/v1/status": {
        "get": {
            "operationId": "status",
            "summary": "Height, last hash, view, state root, peers, signing domain, oracle",
            "responses": {"200": _json("this node's status", _ref("Status"))},
        }
    },
    "/v1/health": {
        "get": {
            "operationId": "health",
            "summary": "For load balancers: 200 while the node commits blocks, 503 once stalled",
            "description": "Healthy while the committed height moved within three view "
            "timeouts (or since the node started). Cheap: reads the cached tip and a clock.",
            "responses": {
                "200": _json("committing", _ref("Health")),
                "503": _json("stalled: the reason is in `error`", _ref("Stalled")),
            },
        }
    },
    "/v1/blocks/{height}": {
        "get": {
            "operationId": "blockByHeight",
            "summary": "A committed block with the transactions it executed",
            "parameters": [_HEIGHT_PARAM],
            "responses": {
                "200": _json("the block", _ref("Block")),
                **_BAD,
                "404": _error("`not_found`: no committed block at that height"),
            },
        }
    },
    "/v1/blocks/by-hash/{hash}": {
        "get": {
            "operationId": "blockByHash",
            "summary": "A committed block found by its hash (the same answer as by height)",
            "parameters": [_path_param("hash", "the block hash: 32 bytes of hex", _HASH_TEXT)],
            "responses": {
                "200": _json("the block", _ref("Block")),
                **_BAD,
                "404": _error("`not_found`: no block with that hash committed here"),
            },
        }
    },
    "/v1/blocks/{height}/namespaces/{namespace}": {
        "get": {
            "operationId": "blockNamespace",
            "summary": "One namespace of a finalized block, with certificate and proof",
            "description": "The same object as one /v1/subscribe/blocks message.",
            "parameters": [
                _HEIGHT_PARAM,
                _path_param("namespace", "decimal uint32", {"type": "string"}),
            ],
            "responses": {
                "200": _json("the namespace's transactions and proof", _ref("NamespaceBlock")),
                "400": _error("`bad_request`: a bad height or namespace"),
                "404": _error(
                    "`not_found` (no block at that height yet) or `no_certificate` (no "
                    "finalization certificate of the block's own here, nor of a "
                    "descendant close enough to prove it with)"
                ),
            },
        }
    },
    "/v1/validators": {
        "get": {
            "operationId": "validators",
            "summary": "The validator set and signing domain this node uses",
            "responses": {
                "200": _json(
                    "the set, and every epoch's when the set rotates (pin them from a "
                    "genesis file)",
                    _ref("Validators"),
                ),
                "503": _error("`unavailable`: no validator set behind this API"),
            },
        }
    },
    "/v1/evidence": {
        "get": {
            "operationId": "evidence",
            "summary": "Equivocation evidence this node has seen (both signed votes)",
            "description": (
                "Every epoch's records, epoch 0's first; on a chain that rotates its "
                "validator set each names its `epoch`."
            ),
            "responses": {"200": _json("at most 1,000 records", _ref("Evidence"))},
        }
    },
    "/v1/views/{view}": {
        "get": {
            "operationId": "viewCertificates",
            "summary": "The certificates of one consensus view this node holds",
            "description": (
                "Its notarization and nullification (until a later finalization prunes "
                "them) and the finalization certificate of the committed block proposed in "
                "it, if the node holds that block's own. Watchers compare these with what "
                "the L1 holds to prove a fork."
            ),
            "parameters": [
                _path_param(
                    "view",
                    "ASCII decimal digits in 0..2^63-1",
                    {"type": "string", "pattern": "^[0-9]{1,20}$"},
                )
            ],
            "responses": {
                "200": _json("possibly none", _ref("ViewCertificates")),
                **_BAD,
            },
        }
    },
    "/v1/markets": {
        "get": {
            "operationId": "markets",
            "summary": "Every market: prices, last auction, open interest, funding",
            "responses": {
                "200": _json("the latest executed state", _ref("Markets")),
                "503": _error("`unavailable`: no execution engine behind this API"),
            },
        }
    },
    "/v1/accounts/{address}": {
        "get": {
            "operationId": "account",
            "summary": "An address's subaccounts: collateral, positions, orders, margin",
            "parameters": [_path_param("address", "20 bytes of hex, 0x optional", _ADDRESS_TEXT)],
            "responses": {
                "200": _json("at most 1,000 orders in all", _ref("Account")),
                "400": _error("`bad_request`: a malformed address"),
                "404": _error("`not_found`: no subaccount in state"),
                "503": _error("`unavailable`: no execution engine behind this API"),
            },
        }
    },
    "/v1/proofs/{key}": {
        "get": {
            "operationId": "stateProof",
            "summary": "A state entry and its Merkle proof (what the L1 bridge verifies)",
            "parameters": [
                _path_param("key", "the state key: 1 to 128 bytes of hex, 0x optional", _STR),
                {
                    "name": "state_height",
                    "in": "query",
                    "required": False,
                    "description": "prove in the state executed at this height (default: latest)",
                    "schema": {"type": "integer", "minimum": 0},
                },
            ],
            "responses": {
                "200": _json("from the state asked for", _ref("StateProof")),
                "400": _error("`bad_request`: a malformed, empty or too long key, or a bad height"),
                "404": _error("`not_found`: no executed state at that height on this node"),
                "503": _error("`unavailable`: no execution engine behind this API"),
            },
        }
    },
    "/v1/withdrawals": {
        "get": {
            "operationId": "withdrawals",
            "summary": "L1 withdrawal records, newest first (find the id to claim on L1)",
            "parameters": [
                {
                    "name": "recipient",
                    "in": "query",
                    "required": False,
                    "description": "only records paying this 20-byte L1 address (0x hex)",
                    "schema": _STR,
                },
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "description": "only ids below this one (paging)",
                    "schema": {"type": "integer", "minimum": 0},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "at most this many records, 1..100 (default 100)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100},
                },
            ],
            "responses": {
                "200": _json(
                    "records of the latest executed state",
                    {
                        "type": "object",
                        "required": ["state_height", "next_id", "withdrawals", "scanned_down_to"],
                        "properties": {
                            "state_height": {"type": "integer"},
                            "next_id": {"type": "integer"},
                            "scanned_down_to": {"type": "integer"},
                            "withdrawals": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["id", "recipient", "token", "amount"],
                                    "properties": {
                                        "id": {"type": "integer"},
                                        "recipient": _STR,
                                        "token": _STR,
                                        "amount": _STR,
                                    },
                                },
                            },
                        },
                    },
                ),
                "400": _error("`bad_request`: a malformed recipient, before or limit"),
                "503": _error("`unavailable`: no execution engine behind this API"),
            },
        }
    },
    "/v1/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus text (docs/operator.md lists every metric)",
            "responses": {
                "200": {
                    "description": "Prometheus exposition format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/v1/admin/network": {
        "post": {
            "operationId": "adminNetwork",
            "summary": "Cut or restore this node's validator links (admin)",
            "security": [{"adminToken": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Network")}},
            },
            "responses": {
                "200": _json("the new state", _ref("Network")),
                "400": _error("`bad_request`: a body of another shape"),
                "401": _error("`unauthorized`: no or wrong bearer token"),
                "404": _error("`admin_disabled`: the node has no admin token"),
            },
        }
    },
}

_WEBSOCKETS: dict[str, Any] = {
    "/v1/transactions/stream": {
        "summary": "Submit msgpack batches continuously",
        "client_messages": "binary: a msgpack array of binary transactions (8 MiB at most)",
        "server_messages": "binary, one per batch, in order: the msgpack batch answer, or a "
        "msgpack map {error, code} for a malformed batch",
        "close_codes": {"1003": "a text message, or one over 8 MiB"},
    },
    "/v1/subscribe/blocks": {
        "summary": "Every finalized block's namespace, in order, with no gap",
        "query": {
            "namespace": {"required": True, "schema": {"type": "string"}, "description": "uint32"},
            "from": {
                "required": False,
                "schema": {"type": "string"},
                "description": "height >= 1; default: the next height to commit",
            },
            "order": {
                "required": False,
                "schema": {"enum": ["inline", "later"]},
                "description": "inline (default): each block message carries its order, "
                "sent once the order seed is known; later: each block as soon as it is "
                "committed here with its own certificate and batches, its order in an "
                "OrderMessage once known (inline when known already)",
            },
        },
        "server_messages": {
            "oneOf": [_ref("NamespaceBlock"), _ref("OrderMessage"), _ref("Ping")],
            "description": "text JSON; a ping every 15 s when idle",
        },
        "close_codes": {
            "4400": "a bad namespace, from or order",
            "4429": "too many subscribers; retry later",
            "4008": "too slow; resume from height H",
            "4410": "no finalization certificate of height H here (its own, or a "
            "descendant's close enough to prove it with); resume elsewhere from height H",
        },
    },
    "/v1/subscribe/transactions/{hash}": {
        "summary": "A transaction's status, then each change, until committed",
        "server_messages": {
            "oneOf": [_ref("TransactionStatusMessage"), _ref("Ping")],
            "description": "text JSON; closes with 1000 after `committed`",
        },
        "close_codes": {
            "1000": "sent after the committed status",
            "4400": "a malformed hash",
            "4429": "too many subscribers; retry later",
        },
    },
    "/v1/subscribe/executed": {
        "summary": "The height this node has executed and stored, at once and as it advances",
        "server_messages": {
            "oneOf": [_ref("ExecutedMessage"), _ref("Ping")],
            "description": "text JSON; the newest height only (heights advanced while a "
            "message was being sent are not each sent); a ping every 15 s when idle",
        },
        "close_codes": {"4429": "too many subscribers; retry later"},
    },
}

_DESCRIPTION = """\
The HTTP API of a seqnet validator (docs/api.md is the prose reference).

Every error is `{"error": "<message>", "code": "<code>"}` with a 4xx/5xx
status: besides each endpoint's own, any request may get 404 `not_found`
(unknown path), 405 `method_not_allowed`, 413 `too_large` (body over its
endpoint's cap: 1 KiB unless said otherwise), 408 `body_timeout`,
503 `busy` and 500 `internal`.

WebSocket endpoints (OpenAPI has no object for them; `x-websocket` gives
each one's query, messages and close codes):
- `/v1/transactions/stream`: msgpack batches in, msgpack answers out.
- `/v1/subscribe/blocks?namespace=N&from=H[&order=later]`: every finalized
  block's namespace N, with certificate and proof (messages: NamespaceBlock,
  and with `order=later` OrderMessage).
- `/v1/subscribe/transactions/{hash}`: a transaction's status until committed.
- `/v1/subscribe/executed`: the height this node has executed, as it advances.
"""

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "seqnet validator API", "version": "1", "description": _DESCRIPTION},
    "servers": [{"url": "http://127.0.0.1:26700"}],
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "adminToken": {
                "type": "http",
                "scheme": "bearer",
                "description": "the node's admin token ([api] admin_token_file or "
                "SEQNET_ADMIN_TOKEN); admin endpoints are off without one",
            }
        },
    },
    "x-websocket": _WEBSOCKETS,
}
"""The document. Do not mutate it: openapi_json() is rendered once from it."""

_RENDERED = json.dumps(OPENAPI, separators=(",", ":"), sort_keys=True).encode()


def openapi_json() -> bytes:
    """The document as JSON, rendered once."""
    return _RENDERED
