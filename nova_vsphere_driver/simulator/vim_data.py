"""vim25 data values as the wire needs them: required fields filled, arrays typed.

A leaf module: it knows pyVmomi's type model and nothing of the simulator's
objects, so every other module may use it.
"""

from __future__ import annotations

import datetime
from typing import Any

from pyVmomi import VmomiSupport

_REQUIRED: dict[type, list] = {}
_MO_ARRAY = VmomiSupport.GetVmodlType("vmodl.ManagedObject[]")
_STR_ARRAY = VmomiSupport.GetVmodlType("string[]")
_INT_ARRAY = VmomiSupport.GetVmodlType("int[]")
_BOOL_ARRAY = VmomiSupport.GetVmodlType("boolean[]")


def _required_fields(cls: type) -> list:
    fields = _REQUIRED.get(cls)
    if fields is None:
        fields = [p for p in cls._GetPropertyList() if not p.flags & VmomiSupport.F_OPTIONAL]
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
    for prop in type(obj)._GetPropertyList():
        value = getattr(obj, prop.name, None)
        if isinstance(value, (VmomiSupport.DataObject, list)):
            complete(value)
    return obj


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


def typed(value: Any, declared: type | None = None) -> Any:
    """Give plain Python lists the array type the SOAP serializer needs.

    An array of data objects goes out as its declared type, as from vCenter
    (``config.hardware.device`` is an ``ArrayOfVirtualDevice`` whatever its
    first device is; clients such as Nova's in-tree driver, through
    ``vim_util.get_array_items``, find the items under that name).
    """
    if not isinstance(value, list) or hasattr(value, "Item"):
        return value
    item = getattr(declared, "Item", None)
    if isinstance(item, type) and issubclass(item, VmomiSupport.DataObject) \
            and all(isinstance(v, item) for v in value):
        return declared(value)
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
