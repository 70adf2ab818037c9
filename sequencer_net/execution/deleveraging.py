"""Automatic deleveraging (ADL): closing a bankrupt account against the
opposite side when the insurance fund cannot pay its loss.

`deleverage(w, sid)`, for each position of `sid` (ascending market id):
1. rank the subaccounts holding the opposite side of that market by
   profit x leverage, highest first:
       profit   = floor(size * valuation price) - entry_notional   (unrealized)
       leverage = |size| * valuation price / equity                (equity <= 0: / 1 wei)
       score    = floor(profit * notional / equity)
   ties by subaccount id; the insurance fund, if it holds that side, comes last;
2. close min(what is left, their size) against each in turn at the valuation
   price: `sid` is credited floor(q * price), the counterparty pays the same
   integer, both positions shrink (open interest falls on both sides);
3. once every position is closed, the account's remaining negative balance L
   (its loss beyond zero) is paid by the counterparties in proportion to the
   notional each closed, ceil(L * n_j / sum n), but never more than a
   counterparty's equity (after the close): nobody is made bankrupt by
   deleveraging. What that cap leaves is charged to the same counterparties
   in ranking order, each up to its equity; only if all of them together
   cannot pay does the fund pay the rest. `sid` receives exactly L and ends
   at zero; the rounding excess goes to the fund. Closing at the valuation
   price and paying a share of L is closing at the bankruptcy price.
Every unit moves from one subaccount to another as one integer, so money is
conserved exactly. A counterparty left below maintenance is liquidated like any
other account (the liquidation loop runs again).
"""

from __future__ import annotations

from .exceptions import EngineInvariantBroken
from .fixed_point import SCALE
from .margin import maintenance_risk, settled_positions
from .positions import change_size, credit
from .receipts import Deleveraged
from .records import Position
from .state import INSURANCE_FUND, StateWriter


def deleverage(w: StateWriter, sid: bytes) -> tuple[int, int]:
    """Close every position of `sid` against the opposite side; return its loss
    once closed (each chunk's value floored, so it can be a few units more than
    its equity at the valuation price said) and the part of that loss the
    counterparties bore."""
    chunks: list[tuple[int, bytes, int, int, int]] = []  # market, counterparty, q, price, notional
    for market_id, _, _, size, price in settled_positions(w, sid):
        remaining = size
        for counterparty in ranked_counterparties(w, market_id, sid, size, price):
            theirs = w.position(counterparty, market_id)
            assert theirs is not None
            quantity = min(abs(remaining), abs(theirs.size)) * (1 if size > 0 else -1)
            value = (quantity * price) // SCALE  # toward -inf: the bankrupt side gets less
            credit(w, sid, value)
            change_size(w, sid, market_id, -quantity, price)
            credit(w, counterparty, -value)
            change_size(w, counterparty, market_id, quantity, price)
            chunks.append((market_id, counterparty, quantity, price, abs(value)))
            remaining -= quantity
            if remaining == 0:
                break
        if remaining:
            raise EngineInvariantBroken("lots held long != lots held short")
    loss = max(-w.subaccount(sid).collateral, 0)
    return loss, (_share_loss(w, sid, loss, chunks) if loss else 0)


def _share_loss(
    w: StateWriter, sid: bytes, loss: int, chunks: list[tuple[int, bytes, int, int, int]]
) -> int:
    """Charge `loss` to the counterparties: pro rata to the notional each
    closed, never more than a counterparty's equity; what that cap leaves goes
    to them in ranking order up to their equity; the fund pays what is left.
    Return what the counterparties paid toward `loss`."""
    capacity: dict[bytes, int] = {}
    for _, counterparty, _, _, _ in chunks:
        if counterparty not in capacity:
            capacity[counterparty] = max(maintenance_risk(w, counterparty).equity, 0)
    total = sum(chunk[4] for chunk in chunks)
    shares: list[int] = []
    for _, counterparty, _, _, notional in chunks:
        due = -((-loss * notional) // total) if total else 0  # ceiling: collect at least L
        share = min(due, capacity[counterparty])
        capacity[counterparty] -= share
        shares.append(share)
    short = loss - sum(shares)
    for i, (_, counterparty, _, _, _) in enumerate(chunks):
        if short <= 0:
            break
        extra = min(short, capacity[counterparty])
        capacity[counterparty] -= extra
        shares[i] += extra
        short -= extra
    for (market_id, counterparty, quantity, price, _), share in zip(chunks, shares, strict=True):
        credit(w, counterparty, -share)
        w.events.append(Deleveraged(market_id, sid, counterparty, quantity, price, share))
    credit(w, sid, loss)
    credit(w, INSURANCE_FUND, sum(shares) - loss)  # the rounding excess, or the fund's part
    return min(sum(shares), loss)


def adl_score(w: StateWriter, sid: bytes, position: Position, price: int) -> int:
    """profit x leverage = profit * notional / equity (floor; equity <= 0 counts as 1 wei)."""
    profit = (position.size * price) // SCALE - position.entry_notional
    notional = (abs(position.size) * price) // SCALE
    equity = maintenance_risk(w, sid).equity
    return (profit * notional) // max(equity, 1)


def ranked_counterparties(
    w: StateWriter, market_id: int, sid: bytes, size: int, price: int
) -> list[bytes]:
    """Holders of the side opposite `size` in the market, highest score first
    (ties: lower id), the insurance fund last. Cost O(positions): ADL is rare."""
    suffix = market_id.to_bytes(4, "big")
    scored: list[tuple[int, bytes]] = []
    fund_holds = False
    for key in sorted(w.positions.live_keys()):
        if key[21:] != suffix or key[:21] == sid:
            continue
        position = w.positions.get(key)
        if position is None or position.size == 0 or (position.size > 0) == (size > 0):
            continue
        holder = key[:21]
        if holder == INSURANCE_FUND:
            fund_holds = True
            continue
        scored.append((-adl_score(w, holder, position, price), holder))
    scored.sort()
    return [holder for _, holder in scored] + ([INSURANCE_FUND] if fund_holds else [])
