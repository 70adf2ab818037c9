"""The engine's records, transactions, receipts and events are never tracked by
the garbage collector (`gc=False`), which is safe only while none can be part
of a reference cycle: frozen, with fields of ints, bytes, bools, strings, enum
members, tuples of those and other such structs."""

from __future__ import annotations

import enum
import gc
import inspect
import types
import typing

import msgspec

from sequencer_net.execution import block, receipts, records, transactions
from sequencer_net.execution.records import RestingOrder, Subaccount, TimeInForce
from sequencer_net.execution.transactions import PlaceOrder

MODULES = (records, transactions, receipts, block)


def _structs(module: types.ModuleType) -> list[type[msgspec.Struct]]:
    return [
        cls
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, msgspec.Struct) and cls.__module__ == module.__name__
    ]


UNTRACKED = [cls for module in MODULES for cls in _structs(module) if not cls.__struct_config__.gc]


def _acyclic(hint: object) -> bool:
    """Whether a field of this type can only hold objects that cannot reach back
    to the struct holding it: immutable values, and frozen structs whose own
    fields are such."""
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
    if isinstance(hint, type) and issubclass(hint, msgspec.Struct):
        return hint.__struct_config__.frozen and all(
            _acyclic(h) for h in typing.get_type_hints(hint, include_extras=True).values()
        )
    return False


def test_the_state_records_are_all_untracked() -> None:
    assert all(not cls.__struct_config__.gc for cls in _structs(records))
    assert len(_structs(records)) >= 17
    assert PlaceOrder in UNTRACKED and receipts.Receipt in UNTRACKED


def test_every_untracked_struct_is_frozen_and_holds_nothing_that_could_close_a_cycle() -> None:
    assert len(UNTRACKED) >= 45
    for cls in UNTRACKED:
        assert cls.__struct_config__.frozen, cls
        for name, hint in typing.get_type_hints(cls, include_extras=True).items():
            assert _acyclic(hint), f"{cls.__name__}.{name}: {hint}"


def test_a_mutable_field_would_be_refused() -> None:
    """The check above can fail: a mutable field could hold its own struct."""
    assert not _acyclic(list[int])
    assert not _acyclic(dict[bytes, int])
    assert not _acyclic(tuple[list[int], ...])
    assert not _acyclic(set[bytes] | None)


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
