"""Property paths (``summary.quickStats``, ``config.extraConfig["key"]``), resolved through
the vim25 type model only.

A path is checked against the declared types of the object's managed type
before any value is read, as vCenter's property collector does: each name
must be a property that the type model declares on the type reached so
far, so no path ever reaches a Python attribute (``name.__class__`` is an
InvalidProperty, not a value). A property that the type model declares but
the simulator leaves unset reads as unset, as on vCenter.

vCenter accepts a key selector after an array property whose elements have
a ``key`` (OptionValue, VirtualDevice, ...): ``["text"]`` for string keys,
``[4000]`` for integer keys. The selected element is returned (an unset
value when no element has that key), so a client reads one extraConfig
option of many VMs without fetching every option of each.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from pyVmomi import VmomiSupport

from nova_vsphere_driver.simulator.vim_faults import invalid_property

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.base import ManagedObject

_SEGMENT = re.compile(
    r'(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?:"(?P<text>[^"]*)"|(?P<number>-?\d+))\])?')

#: A property name as the type model spells them (no leading underscore).
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
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


def _declared(owner: type, name: str, path: str) -> Any:
    """The declared property ``name`` of ``owner`` in the type model (InvalidProperty if none)."""
    lookup = getattr(owner, "_GetPropertyInfo", None)
    if lookup is None:
        raise invalid_property(path)
    try:
        return lookup(name)
    except AttributeError:
        raise invalid_property(path) from None


@functools.lru_cache(maxsize=8192)
def compile_path(vim_type: type, path: str) -> tuple[tuple[str, Any, bool], ...]:
    """The segments of ``path`` on managed type ``vim_type``: (property name, key, checked).

    Each name must be a property the type model declares on the type
    reached so far; a key selector must follow an array of keyed elements;
    only data objects are stepped into. A name declared only by a subtype of
    the declared type (``backing.fileName``: a file backing's, not every
    backing's) cannot be checked until the value is known: such segments,
    and those after them, are checked against the value's own type in
    :func:`resolve`. InvalidProperty for anything that fails.
    """
    segments = parse(path) if "[" in path else [(name, _NO_KEY) for name in path.split(".")]
    declared: Any = vim_type
    checked = []
    for i, (name, key) in enumerate(segments):
        if not _NAME.match(name):
            raise invalid_property(path)  # vim25 names a property as an identifier
        if declared is None:  # past a subtype's property: checked on the value
            checked.append((name, key, False))
            continue
        if i and not issubclass(declared, VmomiSupport.DataObject):
            raise invalid_property(path)  # no stepping into arrays, primitives or references
        lookup = declared._GetPropertyInfo
        try:
            info = lookup(name)
        except AttributeError:
            if i == 0:
                raise invalid_property(path) from None
            checked.append((name, key, False))
            declared = None
            continue
        declared = _step_key(info.type, key, path)
        checked.append((info.name, key, True))
    return tuple(checked)


def _step_key(declared: Any, key: Any, path: str) -> Any:
    """The type after an optional key selector on a value of type ``declared``."""
    if key is _NO_KEY:
        return declared
    item = getattr(declared, "Item", None)
    if item is None or not issubclass(declared, list) \
            or not issubclass(item, VmomiSupport.DataObject):
        raise invalid_property(path)  # only arrays take a key selector ...
    try:
        item._GetPropertyInfo("key")  # ... of elements that have a key
    except AttributeError:
        raise invalid_property(path) from None
    return item


def _select(items: Any, key: Any) -> Any:
    for item in items or ():
        if item.key == key:
            return item
    return None


def resolve(obj: ManagedObject, path: str) -> Any:
    """The value at ``path`` on ``obj`` (None when unset); InvalidProperty for a bad path."""
    segments = compile_path(obj.vim_type, path)
    name, key, _ = segments[0]
    value = obj.get_top(name)
    if key is not _NO_KEY:
        value = _select(value, key)
    for name, key, checked in segments[1:]:
        if value is None:
            return None
        if not checked:
            # A subtype's property: the value's own type must declare it.
            if not isinstance(value, VmomiSupport.DataObject):
                raise invalid_property(path)
            try:
                name = type(value)._GetPropertyInfo(name).name
            except AttributeError:
                raise invalid_property(path) from None
            if key is not _NO_KEY:
                _step_key(type(value)._GetPropertyInfo(name).type, key, path)
        value = getattr(value, name)
        if key is not _NO_KEY:
            value = _select(value, key)
    return value
