"""Keyed property paths: ``config.extraConfig["RemoteDisplay.vnc.port"]``.

vCenter's property collector accepts a key selector after an array
property whose elements have a ``key`` (OptionValue, VirtualDevice, ...):
``["text"]`` for string keys, ``[4000]`` for integer keys. The selected
element is returned (an unset value when no element has that key), so a
client reads one extraConfig option of many VMs without fetching every
option of each.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nova_vsphere_driver.simulator.vim_faults import invalid_property

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedObject

_SEGMENT = re.compile(
    r'(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?:"(?P<text>[^"]*)"|(?P<number>-?\d+))\])?')

#: "no key selector" in a parsed segment.
_NO_KEY = object()


def parse(path: str) -> list[tuple[str, Any]]:
    """``a.b["k"].c`` -> ``[("a", _NO_KEY), ("b", "k"), ("c", _NO_KEY)]``.

    Keys may contain dots (``RemoteDisplay.vnc.port``), so the path cannot
    simply be split on ``.``.
    """
    segments = []
    pos = 0
    while True:
        match = _SEGMENT.match(path, pos)
        if match is None:
            raise invalid_property(path)
        if match.group("text") is not None:
            key: Any = match.group("text")
        elif match.group("number") is not None:
            key = int(match.group("number"))
        else:
            key = _NO_KEY
        segments.append((match.group("name"), key))
        pos = match.end()
        if pos == len(path):
            return segments
        if path[pos] != ".":
            raise invalid_property(path)
        pos += 1


def _select(items: Any, key: Any, path: str) -> Any:
    if not isinstance(items, list):
        raise invalid_property(path)  # only arrays take a key selector
    for item in items:
        if getattr(item, "key", None) == key:
            return item
    return None


def get_keyed(obj: ManagedObject, path: str) -> Any:
    """The value at a property path with key selectors (None when unset)."""
    segments = parse(path)
    name, key = segments[0]
    value = obj.get_top(name)
    if key is not _NO_KEY:
        value = _select(value, key, path)
    for name, key in segments[1:]:
        if value is None:
            return None
        if isinstance(value, list):
            raise invalid_property(path)
        try:
            value = getattr(value, name)
        except AttributeError:
            raise invalid_property(path) from None
        if key is not _NO_KEY and value is not None:
            value = _select(value, key, path)
    return value
