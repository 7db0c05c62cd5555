"""Serialized property values, reused until the values can have changed.

Every change to the simulator's inventory bumps its registry's generation
(``Registry.touch``), and property values are computed and cached per
version of the object's state (``ManagedObject.cache_version``: that
generation, or an object's own change count): within one version a value's
wire form cannot change either. Reads of unchanged objects -- most reads --
then join cached strings instead of serializing data objects.

A leaf module: callers hold the registry lock.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any


def fragment(obj: Any, key: Hashable, encode: Callable[[], str]) -> str:
    """``obj``'s wire fragment ``key``: ``encode()`` once per version of ``obj``'s values."""
    version = obj.cache_version()
    cached = obj.__dict__.get("_wire_fragments")
    if cached is None or cached[0] != version:
        cached = obj._wire_fragments = (version, {})
    fragments = cached[1]
    xml = fragments.get(key)
    if xml is None:
        xml = fragments[key] = encode()
    return xml


def forget(obj: Any) -> None:
    """Drop ``obj``'s wire fragments (an object loaded from a saved state starts afresh)."""
    obj.__dict__.pop("_wire_fragments", None)
