"""Waiting for an HttpNfcLease to be ready: exports (vsphere/nfc.py) and imports alike.

vCenter's NFC leases (``ExportVm``, ``ExportSnapshot``, ``ImportVApp``)
start ``initializing`` while vCenter prepares the disks, then turn ``ready``
with their ``info`` (one URL per disk), or ``error`` with the fault in
``error``. ``done`` means the lease ended (completed, aborted or timed out)
before it was used. vCenter has no task to wait on, so the state is polled.
"""

from __future__ import annotations

import time
from typing import Any

from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import TaskTimeout, VSphereSession


def lease_fault(error: Any, what: str) -> vexc.VimException:
    """An oslo.vmware exception for a lease's ``error`` (a LocalizedMethodFault)."""
    fault = getattr(error, "fault", None) or error
    name = type(fault).__name__
    message = getattr(error, "localizedMessage", None) or getattr(fault, "msg", None) or name
    text = f"{what}: {message}"
    fault_class = vexc.get_fault_class(name)
    if fault_class is not None:
        return fault_class(text)
    return vexc.VimFaultException([name], text)


def wait_ready(session: VSphereSession, lease: Any, timeout: float, kind: str) -> Any:
    """The lease's ``info`` once it is ready.

    Raises the lease's fault if it fails, VimException if it ended unused,
    TaskTimeout after ``timeout`` seconds. ``kind`` ("export", "import")
    names the lease in messages.
    """
    what = f"{kind} lease {vim_util.get_moref_value(lease)}"
    deadline = time.monotonic() + timeout
    while True:
        state = session.call("get_object_property", lease, "state", skip_op_id=True)
        if state == "ready":
            return session.call("get_object_property", lease, "info")
        if state == "error":
            error = session.call("get_object_property", lease, "error")
            raise lease_fault(error, f"{what} failed")
        if state == "done":
            raise vexc.VimException(f"{what} ended before it was used")
        if time.monotonic() >= deadline:
            raise TaskTimeout(f"{what} still {state} after {timeout:.0f} s")
        time.sleep(session.task_poll_interval)
