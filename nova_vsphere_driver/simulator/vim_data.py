"""vim25 data values as the wire needs them: required fields filled, arrays typed.

A leaf module: it knows pyVmomi's type model and nothing of the simulator's
objects, so every other module may use it.
"""

from __future__ import annotations

import copy
import datetime
import functools
from collections.abc import Callable
from typing import Any

from pyVmomi import VmomiSupport

_REQUIRED: dict[type, list] = {}
_MO_ARRAY = VmomiSupport.GetVmodlType("vmodl.ManagedObject[]")
_STR_ARRAY = VmomiSupport.GetVmodlType("string[]")
_INT_ARRAY = VmomiSupport.GetVmodlType("int[]")
_BOOL_ARRAY = VmomiSupport.GetVmodlType("boolean[]")


@functools.cache
def properties(cls: type) -> tuple:
    """Every property of data object type ``cls`` (pyVmomi builds that list anew per call)."""
    return tuple(cls._GetPropertyList())


@functools.cache
def _blank(cls: type) -> tuple[dict[str, Any], tuple[tuple[str, type], ...]]:
    """The fields ``cls()`` sets, in pyVmomi's order, and its array fields with their
    types (each new object gets arrays of its own; the other values are immutable)."""
    fields = cls().__dict__
    return fields, tuple((name, type(value)) for name, value in fields.items()
                         if isinstance(value, list))


def data_object(cls: type, **fields: Any) -> Any:
    """``cls(**fields)`` as pyVmomi builds it, without its per-field type check.

    For values the simulator makes itself on hot paths (task infos, events,
    a new VM's configuration): pyVmomi re-derives the property list and
    checks each field on every construction, several times the cost of the
    object. A field the type does not have still fails (AttributeError).
    """
    blank, arrays = _blank(cls)
    unknown = fields.keys() - blank.keys()
    if unknown:
        raise AttributeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    obj = cls.__new__(cls)
    attrs = obj.__dict__
    attrs.update(blank)
    for name, ptype in arrays:
        attrs[name] = ptype()
    attrs.update(fields)
    return obj


def _required_fields(cls: type) -> list:
    fields = _REQUIRED.get(cls)
    if fields is None:
        fields = [p for p in properties(cls) if not p.flags & VmomiSupport.F_OPTIONAL]
        _REQUIRED[cls] = fields
    return fields


def _default_for(ptype: type) -> Any:
    if issubclass(ptype, list):
        return ptype()
    if ptype is bool:
        return False
    if issubclass(ptype, VmomiSupport.Enum):
        return ptype.values[0] if getattr(ptype, "values", None) else None
    if issubclass(ptype, int):
        return ptype(0)
    if ptype is float:
        return 0.0
    if issubclass(ptype, str):
        return ptype("")
    if ptype is datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc)
    if issubclass(ptype, VmomiSupport.DataObject):
        return complete(ptype())
    return None


def complete(obj: Any) -> Any:
    """Fill unset required fields of a data object tree with neutral values.

    vim25 declares many fields required that a simulator has no real value
    for (e.g. ``recordReplayState``); pyVmomi refuses to serialize objects
    missing them, and so would vCenter never send such an object.
    """
    if isinstance(obj, list):
        for item in obj:
            complete(item)
        return obj
    if not isinstance(obj, VmomiSupport.DataObject):
        return obj
    for prop in _required_fields(type(obj)):
        value = getattr(obj, prop.name, None)
        if value is None:
            default = _default_for(prop.type)
            if default is not None:
                setattr(obj, prop.name, default)
    for prop in properties(type(obj)):
        value = getattr(obj, prop.name, None)
        if isinstance(value, (VmomiSupport.DataObject, list)):
            complete(value)
    return obj


#: Values that are never changed in place: a copy shares them, as
#: ``copy.deepcopy`` does (object references included: they name objects).
_IMMUTABLE = (str, int, float, bytes, datetime.datetime, type, VmomiSupport.ManagedObject)


def clone(value: Any, _memo: dict[int, Any] | None = None) -> Any:
    """A deep copy of a vim25 value, as ``copy.deepcopy`` makes it, several times faster.

    Data objects are copied attribute by attribute without pyVmomi's
    per-field type check: the original's fields passed it already. Shared
    parts stay shared in the copy, as with ``copy.deepcopy``. Faults
    (exceptions) and anything not a vim25 value go to ``copy.deepcopy``.
    """
    if isinstance(value, _IMMUTABLE) or value is None:
        return value
    memo = {} if _memo is None else _memo
    done = memo.get(id(value))
    if done is not None:
        return done
    cls = value.__class__
    if isinstance(value, VmomiSupport.DataObject) and not isinstance(value, BaseException):
        new = memo[id(value)] = cls.__new__(cls)
        attrs = new.__dict__
        for name, item in value.__dict__.items():
            attrs[name] = item if isinstance(item, _IMMUTABLE) or item is None \
                else clone(item, memo)
        return new
    if cls is list or (isinstance(value, list) and hasattr(cls, "Item")):
        new = memo[id(value)] = cls()
        new.extend(item if isinstance(item, _IMMUTABLE) or item is None else clone(item, memo)
                   for item in value)
        return new
    new = memo[id(value)] = copy.deepcopy(value)
    return new


@functools.lru_cache(maxsize=8192)
def declared_type(vim_type: type, path: str) -> type | None:
    """The type a property path is declared with (None: unknown, e.g. a keyed path)."""
    declared = vim_type
    for name in path.split("."):
        lookup = getattr(declared, "_GetPropertyInfo", None)
        if lookup is None:
            return None
        try:
            declared = lookup(name).type
        except (AttributeError, KeyError):
            return None
    return declared


#: Primitive vim25 types whose Python values must carry the declared type
#: onto the wire (a plain int goes out as xsd:int, and a Go client reading
#: an xsd:long property into an int32 overflows).
_WIRE_PRIMITIVES = (VmomiSupport.GetVmodlType("long"), VmomiSupport.GetVmodlType("short"),
                    VmomiSupport.GetVmodlType("byte"), VmomiSupport.GetVmodlType("double"))


@functools.cache
def _coercer(declared: type) -> Callable[[Any], Any] | None:
    """How a value becomes ``declared`` on the wire (None: as it is)."""
    if not isinstance(declared, type):
        return None
    if issubclass(declared, list) and hasattr(declared, "Item"):
        item = declared.Item
        each = _coercer(item)
        if each is None:
            return lambda value: value if hasattr(value, "Item") else declared(value)
        return lambda value: declared([each(v) for v in value])
    if declared in _WIRE_PRIMITIVES or issubclass(declared, VmomiSupport.Enum):
        return lambda value: value if type(value) is declared else declared(value)
    return None


def typed(value: Any, declared: type | None = None) -> Any:
    """``value`` with the type the vim25 type model declares for it (``declared``).

    A property value goes out as an ``xsd:anyType``, so its Python type
    names its wire type: an ``xsd:long`` must be a pyVmomi ``long``, an
    enum its enum type, and an array its declared array type whatever its
    items -- ``config.hardware.device`` is an ``ArrayOfVirtualDevice`` and
    ``disabledMethod`` an ``ArrayOfString`` even when empty (clients such as
    govmomi, and Nova's in-tree driver through ``vim_util.get_array_items``,
    decode by that name). Without ``declared``, plain lists get an array
    type from their first item.
    """
    coerce = _coercer(declared) if declared is not None else None
    if coerce is not None:
        return coerce(value)
    if not isinstance(value, list) or hasattr(value, "Item"):
        return value
    if not value:
        return _MO_ARRAY()
    first = value[0]
    if isinstance(first, VmomiSupport.ManagedObject):
        return _MO_ARRAY(value)
    if isinstance(first, str):
        return _STR_ARRAY(value)
    if isinstance(first, bool):
        return _BOOL_ARRAY(value)
    if isinstance(first, int):
        return _INT_ARRAY(value)
    return type(first).Array(value)
