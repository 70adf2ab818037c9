"""Fuzzing `execute_block`: hostile bytes and mutated transactions of every kind.

A hypothesis state machine builds blocks out of
- valid DEX transactions of every payload kind (faucet deposits, L1 deposit
  reports of collateral, ETH and another token, withdrawals of collateral
  and of L1 asset balances, transfers, orders of every type in perpetual and
  option markets, cancels, oracle updates, listings, parameter updates, pauses),
- the same with one field replaced by an extreme or ill-typed value,
- their payload bytes flipped, cut, inserted, spliced or nested,
- arbitrary payload bytes, and rollup transactions of other namespaces,
- sequenced transactions whose own fields are out of range (hash and sender
  lengths, nonce, namespace, fee, payload type and size),
- reused, out-of-order and far-away nonces; fees below, at and above the
  required fee and beyond the sender's balance,
and executes them over many blocks with time jumps from 0 s to weeks. After
every block it checks:
- `execute_block` returned (never raised), one receipt per input;
- a (sender, nonce) is consumed at most once over the whole run, and the fee
  pool grew by exactly the fees the receipts and fills report;
- no transaction handler and no block-level unit raised internally (a
  `HandlerFailed` receipt or a `PhaseSkipped` event is a crash the safety net
  caught: the fuzz counts it as a failure, so it finds them);
- conservation of money, long == short open interest, order bookkeeping;
- per L1 token, the L1 asset balances sum to what Credited events credited
  minus what Withdrawn events paid out, and the bridge records are consistent;
- every account meets maintenance or has positive equity (a bankrupt one
  was closed out; one below maintenance has liquidation orders pending);
- determinism: the same block on the same state gives the same outcome bytes.

Normal runs take a few thousand cases; `SEQNET_FUZZ_LONG=1` runs tens of
thousands (and prints the counts).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import msgspec
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sequencer_net.execution.block import SequencedTransaction
from sequencer_net.execution.encoding import encode
from sequencer_net.execution.engine import ExecutionBlock, encode_outcome, execute_block
from sequencer_net.execution.fees import DEFAULT_FEE_BASE, DEFAULT_FEE_PER_BYTE
from sequencer_net.execution.receipts import Credited, FillEvent, PhaseSkipped, Withdrawn
from sequencer_net.execution.records import MarketKind, OptionKind, OptionTerms, TimeInForce
from sequencer_net.execution.transactions import (
    CancelOrder,
    CancelOrderByClientId,
    Deposit,
    L1DepositReport,
    ListMarket,
    OraclePrice,
    OracleUpdate,
    PlaceOrder,
    SetMarketPaused,
    Transfer,
    TxPayload,
    UpdateMarketParams,
    Withdraw,
    encode_payload,
)
from tests.execution.execution_harness import (
    ADMIN,
    COLLATERAL_TOKEN,
    ETH,
    GENESIS_TIME,
    ORACLE,
    Chain,
    W,
    check_engine_invariants,
    key,
    l1_asset_totals,
    make_genesis,
    option_params,
    perp_params,
    sequenced,
    sub,
)

LONG = os.environ.get("SEQNET_FUZZ_LONG") == "1"
EXAMPLES = 2_000 if LONG else 150
STEPS = 60 if LONG else 40

TRADERS = ("t0", "t1", "t2", "t3")
HOSTILE = ("h0", "h1", "h2", "h3")  # sign mutated and arbitrary inputs (nonces go wild)
# h2 holds nothing and h3 one unit: their fees fail (InsufficientFeeBalance).
PERPS = (1, 2)
CALL, PUT = 10, 11
MARKETS = (*PERPS, CALL, PUT)
EXPIRY = GENESIS_TIME + 30 * 86_400
OTHER_TOKEN = b"\x70" * 20
L1_TOKENS = (COLLATERAL_TOKEN, ETH, OTHER_TOKEN)

EXTREME_INTS = (
    0,
    -1,
    1,
    2,
    255,
    256,
    2**31,
    2**32 - 1,
    2**32,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    10**40,
    10**40 + 1,
    2**255,
    -(2**255),
    2**256,
    2**300,
    -(2**300),
)
extreme_ints = st.sampled_from(EXTREME_INTS) | st.sampled_from(EXTREME_INTS) | st.integers()
odd_values = st.one_of(
    extreme_ints,
    st.binary(max_size=40),
    st.sampled_from([b"", bytes(20), bytes(21), bytes(32), True, False, None, "x"]),
)

STATS: Counter[str] = Counter()


def price_ticks(index: int, offset: int) -> int:
    price = index + offset * (W // 10)
    return max(price - price % (W // 100), W // 100)


def odd_value_like(current: Any, data: st.DataObject) -> Any:
    """An extreme value of the field's own type most of the time, else any type."""
    if data.draw(st.integers(0, 3)) == 0:
        return data.draw(odd_values)
    if isinstance(current, bool):
        return not current
    if isinstance(current, int):
        return data.draw(extreme_ints)
    if isinstance(current, bytes):
        return data.draw(st.binary(max_size=40))
    return data.draw(odd_values)


def mutate_struct(value: Any, data: st.DataObject) -> Any:
    """Replace one field (possibly inside a nested struct or tuple) by an odd value."""
    if not isinstance(value, msgspec.Struct):
        return odd_value_like(value, data)
    fields = value.__struct_fields__
    name = data.draw(st.sampled_from(fields))
    current = getattr(value, name)
    if isinstance(current, msgspec.Struct) and data.draw(st.integers(0, 3)) > 0:
        replacement = mutate_struct(current, data)
    elif isinstance(current, tuple) and current and data.draw(st.booleans()):
        items = list(current)
        i = data.draw(st.integers(0, len(items) - 1))
        items[i] = mutate_struct(items[i], data)
        replacement = tuple(items)
    else:
        replacement = odd_value_like(current, data)
    STATS[f"mutated:{type(value).__name__}.{name}"] += 1
    return msgspec.structs.replace(value, **{name: replacement})


def mutate_bytes(raw: bytes, data: st.DataObject) -> bytes:
    if not raw:
        return data.draw(st.binary(max_size=64))
    how = data.draw(st.sampled_from(["flip", "cut", "insert", "nest", "splice"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        return raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1 :]
    if how == "cut":
        return raw[:i]
    if how == "insert":
        return raw[:i] + data.draw(st.binary(min_size=1, max_size=16)) + raw[i:]
    if how == "nest":
        # msgspec raises RecursionError at Python's recursion limit: 1,000 in a
        # node, 2,048 under hypothesis. 4,000 stays under the 4 KiB payload cap.
        depth = data.draw(
            st.sampled_from([1, 8, 64, 999, 2_100, 4_000, 5_000]) | st.integers(1, 4_000)
        )
        return raw[:i] + b"\x91" * depth + raw[i:]
    return raw[:i] + data.draw(st.binary(max_size=64))


class EngineFuzz(RuleBasedStateMachine):
    @initialize()
    def genesis(self) -> None:
        # Small impact notionals: the fuzz's books are thin, and funding should move.
        perp = perp_params(funding_interval=600, min_premium_notional=W, impact_notional=10 * W)
        call = OptionTerms(OptionKind.CALL, 100 * W, EXPIRY, underlying=1)
        put = OptionTerms(OptionKind.PUT, 90 * W, EXPIRY, underlying=1)
        self.chain = Chain(
            make_genesis(
                {
                    **{name: (500 + 400 * i) * W for i, name in enumerate(TRADERS + HOSTILE[:2])},
                    "h3": W,
                    "admin": 1_000 * W,
                    "oracle": 1_000 * W,
                },
                insurance=200 * W,
                fee_base=DEFAULT_FEE_BASE,
                fee_per_byte=DEFAULT_FEE_PER_BYTE,
                markets=[
                    (PERPS[0], perp),
                    (
                        PERPS[1],
                        perp_params(tick_size=W // 10, lot_size=W // 100, impact_notional=W),
                    ),
                    # One underlying: the two are margined as one portfolio.
                    (CALL, option_params(OptionKind.CALL, 100 * W, EXPIRY, option=call)),
                    (PUT, option_params(OptionKind.PUT, 90 * W, EXPIRY, option=put)),
                ],
            )
        )
        self.index = {mid: 100 * W for mid in MARKETS}
        self.pending: list[Any] = []
        self.kinds: dict[int, str] = {}
        self.consumed: set[tuple[bytes, int]] = set()
        self.deposit_nonce = 0  # the next L1 deposit nonce the "L1" assigns
        self.l1_expected: Counter[bytes] = Counter()  # per token: credited - paid out
        self.chain.block([self.oracle_tx(vol=W // 2)])

    # --- building blocks -----------------------------------------------------------

    def oracle_tx(self, vol: int, at: int | None = None) -> Any:
        return self.chain.prices(dict(self.index), vol=vol, at=at)

    def valid_payload(self, data: st.DataObject) -> tuple[Any, TxPayload]:
        """A plausible transaction of a random kind, and who signs it."""
        kind = data.draw(
            st.sampled_from(
                ["order"] * 6
                + ["cancel"] * 2
                + ["oracle", "deposit", "withdraw", "transfer", "list", "update", "pause"]
                + ["report", "report", "withdraw_asset"]
            ),
            label="kind",
        )
        trader = data.draw(st.sampled_from(TRADERS), label="trader")
        number = data.draw(st.sampled_from([0, 0, 0, 1]))
        if kind == "order":
            mid = data.draw(st.sampled_from(MARKETS))
            side = data.draw(st.sampled_from([0, 1]))
            params = self.chain.state.market_params.get(mid)
            lot = W // 1000 if params is None else params.lot_size
            tick = W // 100 if params is None else params.tick_size
            reference = self.index[mid] if mid in PERPS else 10 * W
            price = reference + data.draw(st.integers(-30, 30)) * tick
            price = max(price - price % tick, tick)
            style = data.draw(st.sampled_from(["gtc", "gtc", "ioc", "market", "post", "reduce"]))
            limit = 0 if style == "market" else price
            tif = (
                TimeInForce.IMMEDIATE_OR_CANCEL
                if style in ("ioc", "market")
                else TimeInForce.GOOD_TILL_CANCEL
            )
            quantity = data.draw(st.integers(1, 30_000 if mid in PERPS else 300)) * lot
            extras: dict[str, int] = {}
            if data.draw(st.integers(0, 3), label="with client id") == 0:
                extras["client_id"] = data.draw(st.integers(1, 4))  # small: duplicates happen
            if style == "gtc" and data.draw(st.integers(0, 3), label="with good-til") == 0:
                extras["good_til"] = self.chain.now + data.draw(st.integers(1, 8))
            if data.draw(st.integers(0, 4), label="conditional") == 0:
                trigger = reference + data.draw(st.integers(-10, 10)) * tick
                extras["trigger"] = data.draw(st.sampled_from([1, 2]))
                extras["trigger_price"] = max(trigger - trigger % tick, tick)
            payload: TxPayload = PlaceOrder(
                number,
                mid,
                side,
                limit,
                quantity,
                tif,
                style == "post",
                style == "reduce",
                **extras,
            )
            return key(trader), payload
        if kind == "cancel":
            books = [(mid, oid) for mid, book in self.chain.state.books.items() for oid in book]
            if books and data.draw(st.booleans()):
                mid, oid = data.draw(st.sampled_from(books))
            else:
                mid, oid = (
                    data.draw(st.sampled_from(MARKETS)),
                    data.draw(st.binary(min_size=32, max_size=32)),
                )
            owner = data.draw(st.sampled_from(TRADERS))
            if data.draw(st.integers(0, 2), label="by client id") == 0:
                return key(owner), CancelOrderByClientId(number, data.draw(st.integers(0, 4)))
            return key(owner), CancelOrder(number, mid, oid)
        if kind == "oracle":
            mid = data.draw(st.sampled_from(MARKETS))
            move = data.draw(st.integers(-25, 25))
            self.index[mid] = max(self.index[mid] + self.index[mid] * move // 100, W)
            vol = data.draw(st.sampled_from([W // 10, W // 2, W, 5 * W]))
            return ORACLE, OracleUpdate(
                self.chain.now + 1, (OraclePrice(mid, self.index[mid], vol),)
            )
        if kind == "deposit":
            amount = data.draw(st.integers(1, 10_000)) * W
            return ADMIN, Deposit(sub(trader, number), amount)
        if kind == "withdraw":
            amount = data.draw(st.integers(1, 2_000)) * W // 10
            token = data.draw(st.sampled_from([b"", b"", COLLATERAL_TOKEN]))
            return key(trader), Withdraw(number, amount, key(trader).address, token)
        if kind == "report":
            style = data.draw(st.sampled_from(["next"] * 4 + ["reuse", "ahead"]))
            if style == "next":
                nonce = self.deposit_nonce
                self.deposit_nonce += 1
            elif style == "reuse":
                nonce = data.draw(st.integers(0, self.deposit_nonce))
            else:
                nonce = self.deposit_nonce + data.draw(st.sampled_from([1, 5, 1023, 1024, 2**40]))
            edge = data.draw(st.sampled_from([None, None, None, 0, 1, 10**40, 10**40 + 1]))
            amount = data.draw(st.integers(1, 5_000)) * W if edge is None else edge
            token = data.draw(st.sampled_from(L1_TOKENS))
            return ORACLE, L1DepositReport(nonce, sub(trader, number), token, amount)
        if kind == "withdraw_asset":
            amount = data.draw(st.integers(1, 3_000)) * W
            token = data.draw(st.sampled_from([ETH, OTHER_TOKEN]))
            return key(trader), Withdraw(0, amount, key(trader).address, token)
        if kind == "transfer":
            to = sub(data.draw(st.sampled_from(TRADERS)), data.draw(st.sampled_from([0, 1])))
            amount = data.draw(st.integers(1, 2_000)) * W // 10
            return key(trader), Transfer(number, to, amount)
        if kind == "list":
            mid = data.draw(st.sampled_from([3, 12, 2**32 - 1]))
            if data.draw(st.booleans()):
                expiry = self.chain.now + data.draw(st.sampled_from([60, 86_400, 9 * 365 * 86_400]))
                params = option_params(
                    data.draw(st.sampled_from(list(OptionKind))),
                    data.draw(st.integers(1, 200)) * W,
                    expiry,
                    risk_free_rate=data.draw(st.sampled_from([-W, 0, W // 20, W])),
                )
            else:
                params = perp_params(funding_interval=data.draw(st.sampled_from([1, 60, 3600])))
            return ADMIN, ListMarket(mid, params)
        if kind == "update":
            mid = data.draw(st.sampled_from(MARKETS))
            old = self.chain.state.market_params[mid]
            changes: dict[str, Any] = {}
            if data.draw(st.booleans()):
                changes["tick_size"] = old.tick_size * data.draw(st.sampled_from([1, 2, 10]))
                changes["tick_size"] //= data.draw(st.sampled_from([1, 2, 10]))
            if data.draw(st.booleans()):
                changes["initial_margin"] = data.draw(st.sampled_from([W // 10, W // 5, W]))
            if data.draw(st.booleans()):
                changes["mark_band"] = data.draw(st.sampled_from([0, W // 100, W // 2]))
            if data.draw(st.booleans()) and old.kind == MarketKind.PERPETUAL:
                changes["funding_interval"] = data.draw(st.sampled_from([1, 7, 600]))
            if data.draw(st.booleans()) and old.kind == MarketKind.PERPETUAL:
                changes["impact_notional"] = data.draw(st.sampled_from([1, W, 10_000 * W]))
            return ADMIN, UpdateMarketParams(mid, msgspec.structs.replace(old, **changes))
        mid = data.draw(st.sampled_from(MARKETS))
        return ADMIN, SetMarketPaused(mid, data.draw(st.sampled_from([False, False, True])))

    def signed(self, signer: Any, payload: Any, data: st.DataObject) -> Any:
        """Send `payload` (a struct, or any value: it is encoded) with the next
        nonce or (sometimes) a reused, skipped or far-away one, offering the
        required fee or (sometimes) less, more, or more than the sender holds."""
        raw = payload if isinstance(payload, bytes) else encode(payload)
        current = self.chain.nonces.get(signer.address, 0)
        nonce_style = data.draw(st.sampled_from(["next"] * 7 + ["reuse", "skip", "far"]))
        if nonce_style == "next":
            nonce = self.chain.next_nonce(signer)
        elif nonce_style == "reuse":
            nonce = data.draw(st.integers(0, max(current, 0)))
        elif nonce_style == "skip":
            nonce = current + data.draw(st.integers(1, 70))
        else:
            nonce = current + data.draw(st.integers(65, 10**6))
        required = self.chain.fee(raw)
        fee = data.draw(
            st.sampled_from([required] * 6 + [required - 1, 0, 10 * required, 2**64 - 1])
        )
        return sequenced(signer.address, nonce, raw, fee=max(fee, 0))

    # --- rules -----------------------------------------------------------------------

    @rule(data=st.data(), count=st.integers(1, 8))
    def valid(self, data: st.DataObject, count: int) -> None:
        for _ in range(count):
            signer, payload = self.valid_payload(data)
            self.pending.append(self.signed(signer, payload, data))
            self.kinds[len(self.pending) - 1] = type(payload).__name__
        STATS["valid"] += count

    @rule(data=st.data())
    def mutated_field(self, data: st.DataObject) -> None:
        signer, payload = self.valid_payload(data)
        if signer not in (ADMIN, ORACLE) or data.draw(st.booleans()):
            signer = key(data.draw(st.sampled_from(HOSTILE)))
        self.pending.append(self.signed(signer, mutate_struct(payload, data), data))
        STATS["mutated_field"] += 1

    @rule(data=st.data())
    def mutated_bytes(self, data: st.DataObject) -> None:
        _, payload = self.valid_payload(data)
        signer = key(data.draw(st.sampled_from(HOSTILE)))
        mutated = mutate_bytes(encode_payload(payload), data)
        self.pending.append(self.signed(signer, mutated, data))
        STATS["mutated_bytes"] += 1

    @rule(
        pair=st.permutations(TRADERS).map(lambda t: t[:2]),
        mid=st.sampled_from(MARKETS),
        lots=st.integers(1, 20_000),
        offset=st.integers(-5, 5),
    )
    def trade(self, pair: tuple[str, str], mid: int, lots: int, offset: int) -> None:
        """Two traders cross at one price: positions (and later liquidations) exist."""
        params = self.chain.state.market_params[mid]
        reference = self.index[mid] if mid in PERPS else 10 * W
        price = max(
            reference - reference % params.tick_size + offset * params.tick_size, params.tick_size
        )
        quantity = (lots if mid in PERPS else 1 + lots // 200) * params.lot_size
        buyer, seller = pair
        for name, side in ((buyer, 0), (seller, 1)):
            order = PlaceOrder(
                0, mid, side, price, quantity, TimeInForce.GOOD_TILL_CANCEL, False, False
            )
            self.pending.append(self.chain.tx(key(name), order))
            self.kinds[len(self.pending) - 1] = "trade"
        STATS["trade"] += 1

    @rule(move=st.integers(-60, 60))
    def shock(self, move: int) -> None:
        """Every price jumps by `move` percent at once: liquidations, deficits."""
        for mid in MARKETS:
            self.index[mid] = max(self.index[mid] + self.index[mid] * move // 100, W)
        STATS["shock"] += 1

    @rule(raw=st.binary(max_size=300), who=st.sampled_from(HOSTILE))
    def arbitrary_bytes(self, raw: bytes, who: str) -> None:
        self.pending.append(self.chain.raw(key(who), raw))
        STATS["arbitrary_bytes"] += 1

    @rule(data=st.data())
    def wrapped_payload(self, data: st.DataObject) -> None:
        """A canonical msgpack payload of any shape: nested tuples of odd values."""
        signer = key(data.draw(st.sampled_from(HOSTILE)))
        value = data.draw(
            st.recursive(
                odd_values,
                lambda inner: st.lists(inner, max_size=6).map(tuple),
                max_leaves=12,
            )
        )
        self.pending.append(self.signed(signer, value, data))
        STATS["wrapped_payload"] += 1

    @rule(data=st.data(), raw=st.binary(max_size=2_000), namespace=st.integers(1, 2**32 - 1))
    def rollup(self, data: st.DataObject, raw: bytes, namespace: int) -> None:
        """Opaque data for another rollup: ordered, charged, not executed."""
        who = key(data.draw(st.sampled_from(TRADERS + HOSTILE)))
        tx = self.signed(who, raw, data)
        self.pending.append(msgspec.structs.replace(tx, namespace=namespace))
        STATS["rollup"] += 1

    @rule(data=st.data())
    def malformed_input(self, data: st.DataObject) -> None:
        """A sequenced transaction whose own fields are wrong (a caller bug)."""
        signer, payload = self.valid_payload(data)
        tx = self.signed(signer, payload, data)
        field = data.draw(st.sampled_from(SequencedTransaction.__struct_fields__))
        odd = data.draw(
            st.sampled_from(
                [
                    -1,
                    2**32,
                    2**64,
                    2**300,
                    True,
                    None,
                    "x",
                    b"",
                    bytes(19),
                    bytes(33),
                    bytes(20),
                    b"\x01" * (32 * 1024 + 1),
                ]
            )
        )
        self.pending.append(msgspec.structs.replace(tx, **{field: odd}))
        STATS["malformed_input"] += 1

    @rule(
        dt=st.sampled_from([0, 1, 1, 1, 1, 1, 2, 5, 59, 61, 600, 3_600, 36_000, 86_400 * 20]),
        refresh=st.sampled_from([True, True, False]),
    )
    def execute(self, dt: int, refresh: bool) -> None:
        chain = self.chain
        txs = list(self.pending)
        if refresh:  # keep prices fresh most of the time so orders can trade
            txs.insert(0, self.oracle_tx(vol=W // 2, at=chain.now + dt))
        self.pending = []
        state = chain.state
        block = ExecutionBlock(state.height + 1, state.block.timestamp + dt, tuple(txs))
        again = execute_block(state, block)
        result = chain.block(txs, dt=dt)
        assert encode_outcome(result) == encode_outcome(again)
        assert len(result.receipts) == len(txs)
        self.check_nonces_and_fees(state, txs, result)
        self.check_l1_assets(result)
        crashes = [e for e in result.events if isinstance(e, PhaseSkipped)]
        crashes += [r for r in result.receipts if r.error in ("HandlerFailed", "BlockFailed")]
        assert not crashes, crashes
        STATS["blocks"] += 1
        STATS["transactions"] += len(txs)
        STATS["rejected"] += sum(1 for r in result.receipts if not r.success)
        shift = 1 if refresh else 0
        for i, receipt in enumerate(result.receipts):
            kind = self.kinds.get(i - shift, "other")
            STATS[f"{kind}:{receipt.error or 'ok'}"] += 1
        self.kinds = {}
        # The engine's nonces are the truth (a malformed transaction consumed none).
        chain.nonces = {a: w.highest + 1 for a, w in chain.state.nonces.items()}
        for event in result.events:
            STATS[f"event:{type(event).__name__}"] += 1

    def check_nonces_and_fees(self, before: Any, txs: list[Any], result: Any) -> None:
        """(sender, nonce) consumed at most once; the fee pool grows by the fees
        receipts report plus the trading fees of the fills."""
        for tx, receipt in zip(txs, result.receipts, strict=True):
            unconsumed = receipt.error in ("BlockFull", "NonceUsed", "NonceTooHigh") or (
                receipt.error == "MalformedTransaction" and receipt.fee == 0
            )
            if receipt.error in ("NonceUsed", "NonceTooHigh", "BlockFull", "FeeTooLow"):
                assert receipt.fee == 0
            if unconsumed:
                continue
            pair = (tx.sender, tx.nonce)
            assert pair not in self.consumed, pair
            self.consumed.add(pair)
            assert receipt.fee == tx.fee or receipt.error in ("FeeTooLow", "InsufficientFeeBalance")
        trading = sum(e.fee for e in result.events if isinstance(e, FillEvent))
        paid = sum(r.fee for r in result.receipts)
        assert result.state.ledger.fee_pool - before.ledger.fee_pool == paid + trading

    def check_l1_assets(self, result: Any) -> None:
        """Per token, L1 asset balances == credited - withdrawn (events)."""
        collateral = result.state.config.collateral_token
        for event in result.events:
            if isinstance(event, Credited) and not event.collateral:
                self.l1_expected[event.token] += event.amount
            elif isinstance(event, Withdrawn) and event.token not in (b"", collateral):
                self.l1_expected[event.token] -= event.amount
        expected = {token: amount for token, amount in self.l1_expected.items() if amount}
        assert l1_asset_totals(result.state) == expected

    def teardown(self) -> None:
        """Execute what is still pending: no generated transaction goes untested."""
        if getattr(self, "pending", None):
            self.execute(1, True)

    @invariant()
    def money_and_books_are_consistent(self) -> None:
        if hasattr(self, "chain"):
            check_engine_invariants(self.chain.state)


EngineFuzz.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestEngineFuzz = EngineFuzz.TestCase


def teardown_module() -> None:
    print(f"\nfuzz counts: {dict(STATS)}")  # shown with -s
