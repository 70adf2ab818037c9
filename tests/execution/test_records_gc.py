"""The state's records are never tracked by the garbage collector, which is
safe only while none can be part of a reference cycle: frozen, with fields of
ints, bytes, bools, enum members, tuples of those and other records."""

from __future__ import annotations

import enum
import gc
import inspect
import types
import typing

import msgspec

from sequencer_net.execution import records
from sequencer_net.execution.records import MarketKind, RestingOrder, Subaccount, TimeInForce

RECORDS = [
    cls
    for _, cls in inspect.getmembers(records, inspect.isclass)
    if issubclass(cls, msgspec.Struct) and cls.__module__ == records.__name__
]


def _acyclic(hint: object) -> bool:
    """Whether a field of this type can only hold objects that cannot reach back
    to the record holding it."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return _acyclic(typing.get_args(hint)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_acyclic(arg) for arg in typing.get_args(hint))
    if origin is tuple:
        return all(arg is Ellipsis or _acyclic(arg) for arg in typing.get_args(hint))
    if hint is type(None) or hint in (int, bytes, bool, str):
        return True
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return True
    if isinstance(hint, typing.NewType):
        return _acyclic(hint.__supertype__)
    return hint in RECORDS


def test_every_record_is_frozen_untracked_and_holds_nothing_that_could_close_a_cycle() -> None:
    assert len(RECORDS) >= 17
    for cls in RECORDS:
        config = cls.__struct_config__
        assert config.frozen, cls
        assert not config.gc, cls
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            assert _acyclic(hint), f"{cls.__name__}.{name}: {hint}"


def test_a_list_field_would_be_refused() -> None:
    """The check above can fail: a mutable field could hold its own record."""
    assert not _acyclic(list[int])
    assert not _acyclic(dict[bytes, int])
    assert not _acyclic(tuple[list[int], ...])


def test_records_are_not_tracked_even_holding_tuples_and_enums() -> None:
    sub = Subaccount(collateral=1, markets=(1, 2), open_orders=0)
    order = RestingOrder(
        order_id=b"\x01" * 32,
        subaccount=b"\x02" * 21,
        side=0,
        limit_price=1,
        quantity=1,
        time_in_force=TimeInForce.GOOD_TILL_CANCEL,
        post_only=False,
        reduce_only=False,
        placed_height=1,
        placed_nonce=0,
    )
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(sub), type=Subaccount)
    for record in (sub, order, decoded):
        assert not gc.is_tracked(record)
    assert MarketKind.PERPETUAL in MarketKind
