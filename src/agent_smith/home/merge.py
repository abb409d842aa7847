"""Three-way merge of JSON settings: what agent-smith contributes, over what is already there.

A home's settings outlive any one assembly: the agent (or a person attached
to it) may add a permission, Claude Code may record a preference. So
assembly never replaces such a file. It merges its *contributions* into the
file as found, and removes what it contributed last time but no longer
contributes — and nothing else:

- objects merge key by key;
- arrays are sets in order: new contributed items are appended once,
  items contributed before and no longer are dropped, everything else stays;
- scalars take the contributed value;
- a key contributed before and no longer is removed only if it still holds
  the value agent-smith put there (a changed value is someone's edit).

`merge3(merge3(E, P, N), N, N) == merge3(E, P, N)` for all E, P, N: running
assembly again changes nothing.
"""

from __future__ import annotations

import copy
from typing import Any, Final


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


def merge3(existing: Any, previous: Any, new: Any) -> Any:
    """`existing` with `new` contributed and the stale part of `previous` taken out.

    `existing` and `previous` may be `MISSING`. Pure: no argument is modified.
    """
    if existing is MISSING:
        return copy.deepcopy(new)
    if isinstance(new, dict) and isinstance(existing, dict):
        before = previous if isinstance(previous, dict) else {}
        result = copy.deepcopy(existing)
        for key, value in new.items():
            result[key] = merge3(existing.get(key, MISSING), before.get(key, MISSING), value)
        for key, old in before.items():
            if key in new or key not in result:
                continue
            kept = withdraw(result[key], old)
            if kept is MISSING:
                del result[key]
            else:
                result[key] = kept
        return result
    if isinstance(new, list) and isinstance(existing, list):
        stale = [item for item in previous if item not in new] if isinstance(previous, list) else []
        merged = [copy.deepcopy(item) for item in existing if item not in stale]
        for item in new:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(new)


def withdraw(existing: Any, previous: Any) -> Any:
    """`existing` without what `previous` contributed; `MISSING` when nothing else is left."""
    if isinstance(existing, dict) and isinstance(previous, dict):
        result = copy.deepcopy(existing)
        for key, old in previous.items():
            if key in result:
                kept = withdraw(result[key], old)
                if kept is MISSING:
                    del result[key]
                else:
                    result[key] = kept
        return MISSING if not result and previous else result
    if isinstance(existing, list) and isinstance(previous, list):
        remaining = [copy.deepcopy(item) for item in existing if item not in previous]
        return MISSING if not remaining and previous else remaining
    return MISSING if existing == previous else copy.deepcopy(existing)


def merge_named(existing: Any, previous: Any, new: dict[str, Any]) -> dict[str, Any]:
    """A map of named entries (MCP servers) where each entry is replaced whole, never merged inside.

    An entry's parts (a server's `args`) are ordered and belong together, so
    they are not merged item by item. Entries contributed before and no
    longer are removed unless someone changed them since.
    """
    current = dict(existing) if isinstance(existing, dict) else {}
    before = previous if isinstance(previous, dict) else {}
    for name, old in before.items():
        if name not in new and current.get(name) == old:
            del current[name]
    for name, entry in new.items():
        current[name] = copy.deepcopy(entry)
    return current
