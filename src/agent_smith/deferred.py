"""Modules a process imports but seldom uses, executed on their first use instead of at import;
and a search it never needs (pydantic's, for plugins) skipped.

nats-py imports aiohttp and multidict when it is imported, for its WebSocket
transport only; a ``nats://`` URL never uses them. Every process that
publishes an event (the supervisor, the firewall, each agent's events MCP
server) would otherwise pay for them at start: aiohttp alone is ~150 ms of
CPU and ~11 MB resident. Deferred, ``import aiohttp`` gives a module whose
first attribute access runs it, so a ``ws://`` URL, or the model server stand-in
that does use aiohttp, works as before.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType

TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

DEFERRED = ("aiohttp", "multidict")


class _Deferring:
    """A meta path finder (importlib.abc is not imported: it costs more than it saves here)
    that finds `names` with the other finders and wraps their loader in a `LazyLoader`."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec: ModuleSpec | None = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def defer(names: Sequence[str] = DEFERRED) -> None:
    """From now on, `names` not imported yet run on their first use (installed once per process)."""
    if any(isinstance(finder, _Deferring) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _Deferring([name for name in names if name not in sys.modules]))


def without_pydantic_plugins() -> None:
    """From now on, pydantic builds its models without looking for plugins.

    Before building its first model, pydantic looks for plugins among the entry
    points of every installed distribution: it imports `importlib.metadata`
    (with `email`, `zipfile` and `csv`) and reads ~110 distributions' metadata,
    ~18 ms of every process that reads crew.yaml (`up` before its agents start,
    each hook). agent-smith's environment installs no pydantic plugin and uses
    none, so that lookup is answered with none: the module that makes it stands
    in as one that finds nothing. Once the lookup ran (the module was imported),
    nothing changes.
    """
    name = "pydantic.plugin._loader"
    if name in sys.modules:
        return
    lookup = ModuleType(name, "pydantic's plugin lookup, finding none (`agent_smith.deferred`)")
    lookup.get_plugins = _no_plugins  # type: ignore[attr-defined]
    sys.modules[name] = lookup


def _no_plugins() -> tuple[()]:
    return ()


def names_from_parts(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """A package's module `__getattr__` (PEP 562): each name in `where` is imported from the
    part (submodule) it names on first use, so importing the package loads none of them."""

    def attribute(name: str) -> object:
        part = where.get(name)
        if part is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{part}"), name)

    return attribute
