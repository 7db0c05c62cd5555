"""Power: reboot (soft through VMware Tools, else reset), power off (clean shutdown
first when given time), power on, and the instance's power state for Nova."""

from __future__ import annotations

from nova.compute import power_state
from nova.virt import hardware
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc

from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere.vm import POWERED_OFF, POWERED_ON

LOG = logging.getLogger(__name__)

#: vCenter's runtime.powerState -> Nova's power state.
POWER_STATES = {
    POWERED_ON: power_state.RUNNING,
    POWERED_OFF: power_state.SHUTDOWN,
    "suspended": power_state.SUSPENDED,
}


class PowerOps:
    """Power operations of one driver's instances (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._vm_refs = services.vm_refs
        self._vmops = services.vmops

    def _power_state(self, vm_ref) -> str:
        return str(self._vmops.properties(vm_ref, ["runtime.powerState"]).get(
            "runtime.powerState"))

    def reboot(self, instance, reboot_type: str) -> None:
        def do(ref):
            if self._power_state(ref) != POWERED_ON:
                self._vmops.power_on(ref)
                return
            if reboot_type == "SOFT":
                try:
                    self._vmops.reboot_guest(ref)
                    return
                except (vexc.ToolsUnavailableException, vexc.VimFaultException) as exc:
                    LOG.info("Soft reboot not possible (%s); resetting", exc,
                             instance=instance)
            self._vmops.reset(ref)

        self._vm_refs.with_vm(instance, do)

    def power_off(self, instance, timeout: int = 0, retry_interval: int = 0) -> None:
        def do(ref):
            if timeout and self._vmops.shutdown_guest(ref, timeout, retry_interval or 1):
                return
            self._vmops.power_off(ref)

        self._vm_refs.with_vm(instance, do)

    def power_on(self, instance) -> None:
        def do(ref):
            if self._power_state(ref) != POWERED_ON:
                self._vmops.power_on(ref)

        self._vm_refs.with_vm(instance, do)

    def info(self, instance) -> hardware.InstanceInfo:
        props = self._vm_refs.with_vm(instance, lambda ref: self._vmops.properties(
            ref, ["runtime.powerState", "runtime.connectionState"]))
        if str(props.get("runtime.connectionState", "connected")) != "connected":
            # The host is unreachable: the VM is neither gone nor known to run.
            return hardware.InstanceInfo(state=power_state.NOSTATE)
        return hardware.InstanceInfo(
            state=POWER_STATES.get(str(props.get("runtime.powerState")), power_state.NOSTATE))
