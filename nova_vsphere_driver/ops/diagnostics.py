"""Instance diagnostics from vCenter's quick statistics of the VM (one read).

vCenter's ``summary.quickStats`` carry the VM's CPU use in MHz, active guest
memory and uptime; per-vCPU, per-NIC and per-disk counters live in
vCenter's PerformanceManager, which this driver does not query. So CPU
utilisation is the VM's average over its vCPUs (reported for each vCPU),
and NICs and disks are listed without traffic counters.
"""

from __future__ import annotations

import datetime
from typing import Any

from nova import objects
from nova.compute import power_state
from oslo_vmware import vim_util

from nova_vsphere_driver.ops import vm_devices
from nova_vsphere_driver.ops.power import POWER_STATES
from nova_vsphere_driver.services import Services

PROPS = ["summary.config", "summary.quickStats", "summary.runtime", "config.hardware.device"]
#: The summaries whose plain fields make up the legacy diagnostics.
SUMMARIES = ("summary.config", "summary.quickStats", "summary.runtime")


def _plain(value: Any) -> Any:
    """A JSON-friendly value, or None for nested objects and arrays."""
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if getattr(value, "_type", None) is not None and getattr(value, "value", None) is not None:
        return vim_util.get_moref_value(value)  # a managed object reference
    return None


def _fields(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    out = {}
    for name, value in obj:  # suds objects iterate as (field, value) pairs
        plain = _plain(value)
        if plain is not None:
            out[name] = plain
    return out


class Diagnostics:
    """Diagnostics of one driver's instances (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._vm_refs = services.vm_refs
        self._vmops = services.vmops

    def _read(self, instance) -> dict[str, Any]:
        return self._vm_refs.with_vm(instance, lambda ref: self._vmops.properties(ref, PROPS))

    def legacy(self, instance) -> dict[str, Any]:
        """The plain fields of the VM's config, quick-stats and runtime summaries.

        Keys carry a ``vmware:`` prefix, as Nova's in-tree driver returns them.
        """
        props = self._read(instance)
        data: dict[str, Any] = {}
        for name in SUMMARIES:
            data.update(_fields(props.get(name)))
        return {f"vmware:{key}": value for key, value in sorted(data.items())}

    def instance(self, instance) -> objects.Diagnostics:
        props = self._read(instance)
        config = props.get("summary.config")
        stats = props.get("summary.quickStats")
        runtime = props.get("summary.runtime")
        state = POWER_STATES.get(str(getattr(runtime, "powerState", "")), power_state.NOSTATE)
        diags = objects.Diagnostics(
            state=power_state.STATE_MAP[state], driver="vmwareapi", hypervisor="vmware",
            hypervisor_os="esxi", uptime=int(getattr(stats, "uptimeSeconds", 0) or 0),
            # This driver builds no config drive.
            config_drive=False)
        diags.memory_details = objects.MemoryDiagnostics(
            maximum=int(getattr(config, "memorySizeMB", 0) or 0),
            used=int(getattr(stats, "guestMemoryUsage", 0) or 0))
        # maxCpuUsage is the VM's vCPUs times its host's core speed (MHz).
        max_mhz = int(getattr(runtime, "maxCpuUsage", 0) or 0)
        used_mhz = int(getattr(stats, "overallCpuUsage", 0) or 0)
        utilisation = round(100 * used_mhz / max_mhz) if max_mhz else None
        for cpu in range(int(getattr(config, "numCpu", 0) or 0)):
            diags.add_cpu(id=cpu, utilisation=utilisation)
        devices = vm_devices.items(props.get("config.hardware.device"))
        for nic in vm_devices.nics(devices):
            diags.add_nic(mac_address=str(nic.macAddress))
        for _disk in vm_devices.disks(devices):
            diags.add_disk()
        return diags

