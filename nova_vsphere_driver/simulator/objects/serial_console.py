"""What a guest writes to a file-backed serial port when it boots.

A VM whose serial port is backed by a datastore file
(``VirtualSerialPortFileBackingInfo``) gets its console output in that
file; ESXi appends to it for the life of the VM. The simulator has no guest,
so each boot writes a short banner naming the VM, its host, the time and
what started it. That makes ``console.log`` real content for clients that
read it over the datastore HTTP interface (Nova's get_console_output).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from pyVmomi import vim

from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

Dev = vim.vm.device


def log_files(vm: VirtualMachine) -> list[tuple[str, str]]:
    """(datastore, path) of each file-backed serial port connected at power-on."""
    files = []
    for dev in vm.config.hardware.device:
        if not isinstance(dev, Dev.VirtualSerialPort):
            continue
        backing = dev.backing
        if not isinstance(backing, Dev.VirtualSerialPort.FileBackingInfo) \
                or not backing.fileName:
            continue
        # vCenter gives a serial port added without connect info
        # startConnected = true; one explicitly not connected writes nothing.
        if dev.connectable is not None and dev.connectable.startConnected is False:
            continue
        files.append(parse_datastore_path(backing.fileName))
    return files


def banner(vm: VirtualMachine, reason: str, when: datetime.datetime) -> bytes:
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"[    0.000000] {reason}: {vm.name} on {vm.host.name} at {stamp}",
        f"[    0.000000] Simulated BIOS: {vm.num_cpus} vCPU(s), {vm.memory_mb} MB memory",
        "[    0.120000] Booting from the first bootable disk",
        f"[    2.400000] {vm.name} reached target Multi-User System",
        f"{vm.name} login: ",
    ]
    return ("\n".join(lines) + "\n").encode()


def record_boot(vm: VirtualMachine, reason: str) -> None:
    """Append a boot banner to every console log file of ``vm``.

    A file whose folder is gone is skipped: ESXi then starts the VM with the
    serial port disconnected rather than failing the power-on.
    """
    files = vm.sim.files
    text = banner(vm, reason, datetime.datetime.now(datetime.timezone.utc))
    for ds_name, rel in log_files(vm):
        try:
            old = (files.get(ds_name, rel).data or b"") if files.exists(ds_name, rel) else b""
            files.write(ds_name, rel, old + text, overwrite=True, create_parents=False)
        except vim.fault.VimFault:
            continue
