"""vCenter faults -> Nova exceptions."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from nova import exception
from oslo_vmware import exceptions as vexc
from pyVmomi import VmomiSupport

from nova_vsphere_driver.vsphere.session import TaskTimeout

#: Faults meaning "this place lacks capacity" (and their subtypes, e.g.
#: InsufficientHostMemoryCapacityFault): Nova may reschedule elsewhere.
CAPACITY_FAULTS = ("InsufficientResourcesFault", "NoDiskSpace", "NotEnoughCpus", "OutOfBounds")
#: Faults meaning "not in this state": the instance's state forbids it now.
STATE_FAULTS = ("InvalidPowerState", "InvalidState", "TaskInProgress", "ToolsUnavailable",
                "HostNotConnected", "HostConnectFault")


@functools.lru_cache(maxsize=256)
def _is_a(name: str, ancestors: tuple[str, ...]) -> bool:
    """Whether vim fault ``name`` is (a subtype of) one of ``ancestors``.

    vCenter sends the most specific fault type; pyVmomi's registry knows
    the hierarchy, so a new subtype maps like its parent.
    """
    try:
        fault = VmomiSupport.GetWsdlType("urn:vim25", name)
    except KeyError:
        return name in ancestors
    for ancestor in ancestors:
        try:
            if issubclass(fault, VmomiSupport.GetWsdlType("urn:vim25", ancestor)):
                return True
        except KeyError:
            continue
    return False


def is_fault(names: set[str], ancestors: tuple[str, ...]) -> bool:
    return any(_is_a(name, ancestors) for name in names)


def fault_names(exc: BaseException) -> set[str]:
    """The vim fault type names an oslo.vmware exception carries."""
    names = set(getattr(exc, "fault_list", None) or [])
    cls = type(exc).__name__
    mapping = {
        vexc.InvalidPowerStateException: "InvalidPowerState",
        vexc.ManagedObjectNotFoundException: "ManagedObjectNotFound",
        vexc.NoDiskSpaceException: "NoDiskSpace",
        vexc.DuplicateName: "DuplicateName",
        vexc.FileNotFoundException: "FileNotFound",
        vexc.FileAlreadyExistsException: "FileAlreadyExists",
        vexc.ToolsUnavailableException: "ToolsUnavailable",
        vexc.TaskInProgress: "TaskInProgress",
        vexc.NotAuthenticatedException: "NotAuthenticated",
    }
    for klass, name in mapping.items():
        if isinstance(exc, klass):
            names.add(name)
    if cls.endswith("Fault"):
        names.add(cls)
    return names


def to_nova(exc: BaseException, instance=None) -> Exception:
    """The Nova exception that says what a vCenter failure means to Nova."""
    names = fault_names(exc)
    msg = str(exc)
    uuid = getattr(instance, "uuid", None)
    if is_fault(names, CAPACITY_FAULTS):
        return exception.ComputeResourcesUnavailable(reason=msg)
    if "ManagedObjectNotFound" in names and uuid:
        return exception.InstanceNotFound(instance_id=uuid)
    if "DuplicateName" in names and uuid:
        return exception.InstanceExists(name=uuid)
    if is_fault(names, STATE_FAULTS) and uuid:
        return exception.InstanceInvalidState(attr="power_state", instance_uuid=uuid,
                                              state=msg, method="vCenter")
    if isinstance(exc, TaskTimeout):
        return exception.NovaException(message=f"vCenter did not answer in time: {msg}")
    return exception.NovaException(message=f"vCenter error: {msg}")


@contextlib.contextmanager
def translated(instance=None) -> Iterator[None]:
    """Re-raise oslo.vmware exceptions and task timeouts as Nova exceptions."""
    try:
        yield
    except (vexc.VMwareDriverException, TaskTimeout) as exc:
        raise to_nova(exc, instance) from exc
