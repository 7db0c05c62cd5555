"""Simulator support for guest operations: keyed property paths, console tickets,
serial console logs, boot options, NIC hot-plug, suspend and quick stats."""

from __future__ import annotations

import time

import pytest
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import PC, Dev, bind, create_vm, fault_of, props, run

VNC_PORT = 'config.extraConfig["RemoteDisplay.vnc.port"]'


def _serial_port(path: str, start_connected: bool | None = None) -> Dev.VirtualDeviceSpec:
    port = Dev.VirtualSerialPort(key=-300, yieldOnPoll=True,
                                 backing=Dev.VirtualSerialPort.FileBackingInfo(fileName=path))
    if start_connected is not None:
        port.connectable = Dev.VirtualDevice.ConnectInfo(startConnected=start_connected,
                                                         allowGuestControl=True,
                                                         connected=False)
    return Dev.VirtualDeviceSpec(operation="add", device=port)


def _add_serial_port(vm, path: str, start_connected: bool | None = None) -> None:
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[_serial_port(path,
                                                                        start_connected)])))


def _log(sim, ds: str, path: str) -> str:
    return (sim.files.get(ds, path).data or b"").decode()


def _retrieve(si, objs, paths):
    pc = si.content.propertyCollector
    spec = PC.FilterSpec(objectSet=[PC.ObjectSpec(obj=o, skip=False) for o in objs],
                         propSet=[PC.PropertySpec(type=vim.VirtualMachine, pathSet=paths)])
    return {o.obj._moId: props(o) for o in pc.RetrieveContents([spec])}


# -- keyed property paths ---------------------------------------------------------------


def test_keyed_extra_config_path_selects_one_option(si, sim):
    with_port = create_vm(si, sim, "vnc-1")
    without = create_vm(si, sim, "vnc-2")
    run(with_port.ReconfigVM_Task(vim.vm.ConfigSpec(extraConfig=[
        vim.option.OptionValue(key="RemoteDisplay.vnc.port", value="5901"),
        vim.option.OptionValue(key="RemoteDisplay.vnc.enabled", value="true")])))
    found = _retrieve(si, [with_port, without], [VNC_PORT, "name"])
    option = found[with_port._moId][VNC_PORT]
    assert isinstance(option, vim.option.OptionValue)
    assert (option.key, option.value) == ("RemoteDisplay.vnc.port", "5901")
    # A VM without the option: the property is unset, so it is not returned.
    assert VNC_PORT not in found[without._moId]
    assert found[without._moId]["name"] == "vnc-2"


def test_keyed_device_path_takes_an_integer_key_and_a_sub_path(si, sim):
    vm = create_vm(si, sim, "keyed", disk_gb=1)
    disk = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    path = f"config.hardware.device[{disk.key}].backing.fileName"
    assert _retrieve(si, [vm], [path])[vm._moId][path] == disk.backing.fileName
    with pytest.raises(vmodl.query.InvalidProperty):
        _retrieve(si, [vm], ['config.extraConfig["unterminated'])
    with pytest.raises(vmodl.query.InvalidProperty):  # only arrays take a key
        _retrieve(si, [vm], ['config.name["x"]'])


# -- AcquireTicket ----------------------------------------------------------------------


def test_webmks_ticket_points_at_the_esxi_host(si, sim):
    vm = create_vm(si, sim, "mks", "esx-a2", power_on=True)
    ticket = vm.AcquireTicket("webmks")
    assert ticket.host == "esx-a2"
    assert ticket.port == 443
    assert ticket.url == f"wss://esx-a2:443/ticket/{ticket.ticket}"
    assert ticket.cfgFile == vm.config.files.vmPathName
    octets = ticket.sslThumbprint.split(":")
    assert len(octets) == 20 and all(len(o) == 2 for o in octets)
    # Each ticket is new; the host's thumbprint is not.
    again = vm.AcquireTicket("webmks")
    assert again.ticket != ticket.ticket and again.sslThumbprint == ticket.sslThumbprint
    assert vm.AcquireTicket("mks").port == 902
    other_host = create_vm(si, sim, "mks-b", "esx-a3", power_on=True).AcquireTicket("webmks")
    assert other_host.host == "esx-a3" and other_host.sslThumbprint != ticket.sslThumbprint


def test_ticket_needs_a_running_vm_on_a_connected_host(si, sim):
    vm = create_vm(si, sim, "mks-off", "esx-a1")
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.AcquireTicket("webmks")
    with pytest.raises(vmodl.fault.InvalidArgument):
        vm.AcquireTicket("teleport")
    run(vm.PowerOnVM_Task())
    sim.disconnect_host("esx-a1")
    with pytest.raises(vim.fault.InvalidState):
        vm.AcquireTicket("webmks")


# -- serial console log -------------------------------------------------------------------


def test_boots_append_a_banner_to_the_serial_console_log(si, sim):
    vm = create_vm(si, sim, "serial", "esx-a1")
    _add_serial_port(vm, "[shared-a] serial/console.log")
    assert not sim.files.exists("shared-a", "serial/console.log")  # no boot yet
    run(vm.PowerOnVM_Task())
    first = _log(sim, "shared-a", "serial/console.log")
    assert "Power on: serial on esx-a1" in first
    assert first.rstrip().endswith("serial login:")
    run(vm.ResetVM_Task())
    vm.RebootGuest()
    log = _log(sim, "shared-a", "serial/console.log")
    assert log.startswith(first)
    assert log.count("serial login:") == 3
    assert "Reset: serial" in log and "Guest reboot: serial" in log
    # Suspend and resume do not boot the guest.
    run(vm.SuspendVM_Task())
    run(vm.PowerOnVM_Task())
    assert _log(sim, "shared-a", "serial/console.log") == log
    # Power off and on is a boot again.
    run(vm.PowerOffVM_Task())
    run(vm.PowerOnVM_Task())
    assert _log(sim, "shared-a", "serial/console.log").count("Power on: serial") == 2


def test_storage_vmotion_moves_the_console_log_and_its_port(si, sim):
    vm = create_vm(si, sim, "svm", "esx-a1", datastore="shared-a")
    _add_serial_port(vm, "[shared-a] svm/console.log")
    run(vm.PowerOnVM_Task())
    log = _log(sim, "shared-a", "svm/console.log")
    run(vm.RelocateVM_Task(vim.vm.RelocateSpec(datastore=bind(si, sim.datastores["shared-all"]))))
    port = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualSerialPort))
    assert port.backing.fileName == "[shared-all] svm/console.log"
    assert _log(sim, "shared-all", "svm/console.log") == log
    assert not sim.files.exists("shared-a", "svm/console.log")


def test_a_serial_port_not_connected_at_power_on_writes_nothing(si, sim):
    vm = create_vm(si, sim, "quiet")
    _add_serial_port(vm, "[shared-a] quiet/console.log", start_connected=False)
    run(vm.PowerOnVM_Task())
    assert not sim.files.exists("shared-a", "quiet/console.log")


def test_a_log_in_a_missing_folder_does_not_stop_the_power_on(si, sim):
    vm = create_vm(si, sim, "nofolder")
    _add_serial_port(vm, "[shared-a] gone/console.log")
    run(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"
    assert not sim.files.exists("shared-a", "gone")


# -- boot options ---------------------------------------------------------------------------


def _boot_disk(key: int) -> vim.vm.BootOptions:
    return vim.vm.BootOptions(bootOrder=[vim.vm.BootOptions.BootableDiskDevice(deviceKey=key)])


def test_boot_order_names_existing_devices_and_loses_removed_ones(si, sim):
    vm = create_vm(si, sim, "boot", disk_gb=1)
    disk = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(bootOptions=_boot_disk(disk.key))))
    assert [e.deviceKey for e in vm.config.bootOptions.bootOrder] == [disk.key]
    # Other boot settings keep the order.
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(bootOptions=vim.vm.BootOptions(bootDelay=500))))
    assert vm.config.bootOptions.bootDelay == 500
    assert [e.deviceKey for e in vm.config.bootOptions.bootOrder] == [disk.key]
    # An unknown device is refused and changes nothing.
    fault = fault_of(vm.ReconfigVM_Task(vim.vm.ConfigSpec(bootOptions=_boot_disk(9999))))
    assert isinstance(fault, vmodl.fault.InvalidArgument)
    assert [e.deviceKey for e in vm.config.bootOptions.bootOrder] == [disk.key]
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="remove", fileOperation="destroy", device=disk)])))
    assert not vm.config.bootOptions.bootOrder


# -- NIC hot-plug, suspend, quick stats ----------------------------------------------------


def test_nics_are_hot_added_and_removed_on_a_running_vm(si, sim):
    vm = create_vm(si, sim, "hotnic", "esx-a1", power_on=True)
    pg = next(n for n in sim.host("esx-a1").networks if n.name == "br-int")
    nic = Dev.VirtualVmxnet3(
        key=-1, addressType="manual", macAddress="fa:16:3e:aa:bb:cc",
        backing=Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(switchUuid=pg.switch.uuid, portgroupKey=pg.key)))
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        deviceChange=[Dev.VirtualDeviceSpec(operation="add", device=nic)],
        extraConfig=[vim.option.OptionValue(key="nvp.iface-id.0", value="port-1")])))
    added = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard)]
    assert [d.macAddress for d in added] == ["fa:16:3e:aa:bb:cc"]
    assert [n.name for n in vm.network] == ["br-int"]
    assert vm.runtime.powerState == "poweredOn"
    run(vm.ReconfigVM_Task(vim.vm.ConfigSpec(
        deviceChange=[Dev.VirtualDeviceSpec(operation="remove", device=added[0])],
        extraConfig=[vim.option.OptionValue(key="nvp.iface-id.0", value="free")])))
    assert not [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard)]
    assert vm.network == []
    assert {o.key: o.value for o in vm.config.extraConfig}["nvp.iface-id.0"] == "free"


def test_suspend_and_uptime(si, sim):
    vm = create_vm(si, sim, "uptime", "esx-a1", power_on=True)
    state = sim.vm("uptime")
    state._boot_monotonic = time.monotonic() - 42  # booted 42 s ago
    sim.registry.touch()
    assert vm.summary.quickStats.uptimeSeconds >= 42
    run(vm.SuspendVM_Task())
    assert vm.runtime.powerState == "suspended"
    assert vm.summary.quickStats.uptimeSeconds == 0
    run(vm.PowerOnVM_Task())
    assert vm.runtime.powerState == "poweredOn"
    assert bind(si, sim.host("esx-a1")).summary.quickStats.overallMemoryUsage > 0
