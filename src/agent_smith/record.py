"""Frozen value records without `dataclasses`, for code a hook process imports.

A hook is a new Python process every time, and importing `dataclasses` (it
pulls `inspect`, `ast`, `dis`) and generating each class's methods costs
about 1.5 ms per class at start-up. A `Record` subclass lists its fields, in
order, in ``_fields`` (and makes them its ``__slots__``), annotates them, and
writes its ``__init__`` out, calling :func:`fill`; equality, hashing, ``repr``
and immutability come from here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar


class Record:
    """Equality, hash and repr over ``_fields`` (in order); attributes cannot be set after ``__init__``."""

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Record)
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash(self.values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __reduce__(self) -> tuple[type[Record], tuple[Any, ...]]:
        # copy and pickle rebuild through __init__, since attributes cannot be set one by one.
        return type(self), self.values()


def fill(record: Record, *values: object) -> None:
    """Set `record`'s fields, in ``_fields`` order, from `values` (its ``__init__`` calls this once)."""
    names = type(record)._fields
    if len(names) != len(values):
        raise TypeError(f"{type(record).__name__} has {len(names)} fields, got {len(values)} values")
    for name, value in zip(names, values, strict=True):
        object.__setattr__(record, name, value)
