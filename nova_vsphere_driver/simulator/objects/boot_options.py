"""VirtualMachineConfigSpec.bootOptions applied to a VM's config.

Set fields replace the current ones, unset fields stay (an empty
``bootOrder`` is unset: on the wire an empty array is no element). The boot
order names devices by key, so it is checked against the VM's devices after
the spec's device changes: an unknown key is an InvalidArgument, and a
device the spec removed drops out of the order.
"""

from __future__ import annotations

from pyVmomi import vim

from nova_vsphere_driver.simulator.vim_data import clone
from nova_vsphere_driver.simulator.vim_faults import invalid_argument

BootOptions = vim.vm.BootOptions
_KEYED = (BootOptions.BootableDiskDevice, BootOptions.BootableEthernetDevice)
_SCALARS = ("bootDelay", "enterBIOSSetup", "efiSecureBootEnabled", "bootRetryEnabled",
            "bootRetryDelay", "networkBootProtocol")


def _device_key(entry) -> int | None:
    key = getattr(entry, "deviceKey", None)
    return int(key) if key is not None else None


def apply(config: vim.vm.ConfigInfo, spec_boot: BootOptions | None) -> None:
    """Merge ``spec_boot`` into ``config.bootOptions``; prune removed devices."""
    keys = {d.key for d in config.hardware.device}
    current = clone(config.bootOptions) if config.bootOptions is not None else None
    if spec_boot is not None:
        current = current or BootOptions()
        for field in _SCALARS:
            value = getattr(spec_boot, field, None)
            if value is not None:
                setattr(current, field, value)
        if spec_boot.bootOrder:
            for index, entry in enumerate(spec_boot.bootOrder):
                if isinstance(entry, _KEYED) and _device_key(entry) not in keys:
                    raise invalid_argument(
                        f"bootOptions.bootOrder[{index}].deviceKey",
                        f"no device with key {_device_key(entry)} to boot from")
            current.bootOrder = list(spec_boot.bootOrder)
    if current is not None and current.bootOrder:
        current.bootOrder = [e for e in current.bootOrder
                             if not isinstance(e, _KEYED) or _device_key(e) in keys]
    config.bootOptions = current
