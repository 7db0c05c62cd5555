"""The vim25 faults the simulator's objects raise, built as vCenter fills them.

A leaf module: it knows pyVmomi's fault types and nothing of the
simulator's objects, so every object module may use it.
"""

from __future__ import annotations

from typing import Any

from pyVmomi import VmomiSupport, vim, vmodl

#: vCenter's limit on the length of an inventory entity's name.
MAX_ENTITY_NAME = 80


def invalid_property(name: str) -> vmodl.query.InvalidProperty:
    return vmodl.query.InvalidProperty(name=name, msg=f"Invalid property: {name}")


def invalid_argument(prop: str, msg: str | None = None) -> vmodl.fault.InvalidArgument:
    return vmodl.fault.InvalidArgument(
        invalidProperty=prop, msg=msg or f"A specified parameter was not correct: {prop}")


def object_not_found(moid: str, ref: Any = None) -> vmodl.fault.ManagedObjectNotFound:
    """vCenter's fault for a reference to an object that does not exist (any more)."""
    # The fault's obj is required on the wire: without the caller's typed
    # reference, name a generic managed object.
    return vmodl.fault.ManagedObjectNotFound(
        obj=ref if ref is not None else VmomiSupport.ManagedObject(moid),
        msg=f"The object '{moid}' has already been deleted or has not been completely "
        "created")


def check_entity_name(name: str | None) -> None:
    """Raise InvalidName, as vCenter does, for an empty or too long entity name."""
    if not name or len(name) > MAX_ENTITY_NAME:
        raise vim.fault.InvalidName(
            name=name or "",
            msg=f"The name '{name or ''}' is invalid: an entity name has 1 to "
            f"{MAX_ENTITY_NAME} characters")


def system_error() -> vmodl.fault.SystemError:
    """vCenter's answer when it fails internally: a SystemError that tells no internals.

    The simulator logs what went wrong (with its traceback); the client
    gets vim25 text, never Python's exception text or install paths.
    """
    reason = "Unexpected internal error in the simulator; its log has the details"
    return vmodl.fault.SystemError(reason=reason,
                                   msg=f"A general system error occurred: {reason}")


def with_fault_message(fault: vmodl.MethodFault) -> vmodl.MethodFault:
    """``fault`` with a ``faultMessage`` entry, as vCenter sends in task errors.

    suds turns an element with neither children nor text into plain text,
    so a fault without fields inside a LocalizedMethodFault would reach
    oslo.vmware as ``Text`` instead of its type; the message gives it content.
    """
    if not fault.faultMessage:
        fault.faultMessage = [vmodl.LocalizableMessage(
            key=type(fault).__name__, message=fault.msg or type(fault).__name__)]
    return fault
