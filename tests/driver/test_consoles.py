"""VNC, WebMKS, serial and console-log access through VSphereDriver, against the simulator."""

from __future__ import annotations

import json

import pytest
from nova import exception
from nova.console import type as ctype

from tests.driver.conftest import make_instance
from tests.driver.guest_support import (
    Dev,
    extra_config,
    move_to_host,
    sim_vm,
    spawn,
)


def _vnc(sim, instance) -> tuple[str | None, str | None]:
    options = extra_config(sim, instance)
    return options.get("RemoteDisplay.vnc.enabled"), options.get("RemoteDisplay.vnc.port")


def _booted(drv, sim, ctx, node, host: str, count: int = 1) -> list:
    """``count`` running instances, moved onto ESXi host ``host``."""
    instances = []
    for i in range(count):
        instance = make_instance(node, vcpus=1, memory_mb=1024, root_gb=1, name=f"c-{i}")
        spawn(drv, ctx, instance)
        move_to_host(sim, instance, host)
        instances.append(instance)
    return instances


@pytest.fixture
def sim(vsphere):
    return vsphere[1].simulator


# -- VNC -------------------------------------------------------------------------------------


def test_vnc_console_is_on_the_vm_host_and_keeps_its_port(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    [instance] = _booted(drv, sim, ctx, node_a, "esx-a2")
    console = drv.get_vnc_console(ctx, instance)
    assert isinstance(console, ctype.ConsoleVNC)
    assert (console.host, console.port) == ("esx-a2", 5900)
    assert _vnc(sim, instance) == ("true", "5900")
    # Asked again (Nova's validate_console_port does): same port, nothing changed.
    reconfigs = sim.request_counts.get("ReconfigVM_Task", 0)
    assert drv.get_vnc_console(ctx, instance).port == 5900
    assert sim.request_counts.get("ReconfigVM_Task", 0) == reconfigs


def test_vnc_ports_are_unique_per_host_not_per_vcenter(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    first, second = _booted(drv, sim, ctx, node_a, "esx-a1", count=2)
    [elsewhere] = _booted(drv, sim, ctx, node_a, "esx-a3")
    assert drv.get_vnc_console(ctx, first).port == 5900
    assert drv.get_vnc_console(ctx, second).port == 5901
    # Another host's VMs do not collide with esx-a1's.
    assert drv.get_vnc_console(ctx, elsewhere).port == 5900
    # A vMotion brings a colliding port: the VM that moved gets a free one.
    move_to_host(sim, elsewhere, "esx-a1")
    console = drv.get_vnc_console(ctx, elsewhere)
    assert (console.host, console.port) == ("esx-a1", 5902)
    assert _vnc(sim, first) == ("true", "5900")


def test_vnc_allocation_reads_only_the_vm_host(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    [instance] = _booted(drv, sim, ctx, node_a, "esx-a4")
    # Many other VMs in vCenter, none of them on esx-a4.
    _booted(drv, sim, ctx, node_a, "esx-a1", count=4)
    before = sim.request_count
    reads = sim.request_counts.get("RetrievePropertiesEx", 0)
    drv.get_vnc_console(ctx, instance)
    # Where the VM runs, its host's VMs, the reconfiguration and its task.
    assert sim.request_count - before <= 5
    assert sim.request_counts.get("RetrievePropertiesEx", 0) - reads <= 4


def test_vnc_port_range_exhausted(vsphere, ctx, node_a, sim, conf_overrides):
    drv, _ = vsphere
    conf_overrides("vsphere", vnc_port=6000, vnc_port_total=1)
    first, second = _booted(drv, sim, ctx, node_a, "esx-a1", count=2)
    assert drv.get_vnc_console(ctx, first).port == 6000
    with pytest.raises(exception.ConsolePortRangeExhausted):
        drv.get_vnc_console(ctx, second)
    assert _vnc(sim, second) == (None, None)


def test_failed_vnc_reconfiguration_changes_nothing(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    [instance] = _booted(drv, sim, ctx, node_a, "esx-a1")
    sim.faults.fail_next("ReconfigVM_Task", "InvalidState")
    with pytest.raises(exception.NovaException):
        drv.get_vnc_console(ctx, instance)
    assert _vnc(sim, instance) == (None, None)
    assert drv.get_vnc_console(ctx, instance).port == 5900


# -- WebMKS ------------------------------------------------------------------------------------


def test_mks_console_hands_out_a_webmks_ticket_for_the_vm_host(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    [instance] = _booted(drv, sim, ctx, node_a, "esx-a3")
    console = drv.get_mks_console(ctx, instance)
    assert isinstance(console, ctype.ConsoleMKS)
    assert (console.host, console.port) == ("esx-a3", 443)
    auth = json.loads(console.internal_access_path)
    assert auth["cfgFile"] == sim_vm(sim, instance).config.files.vmPathName
    assert len(auth["thumbprint"]) == 40 and auth["thumbprint"] == auth["thumbprint"].lower()
    assert auth["url"] == f"wss://esx-a3:443/ticket/{auth['ticket']}"
    assert sim.request_counts["AcquireTicket"] == 1
    # Each request gets a new one-time ticket.
    assert json.loads(drv.get_mks_console(ctx, instance).internal_access_path)["ticket"] \
        != auth["ticket"]


def test_mks_console_of_a_stopped_instance_is_not_ready(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    instance = make_instance(node_a, root_gb=1)
    spawn(drv, ctx, instance, power_on=False)
    with pytest.raises(exception.InstanceNotReady):
        drv.get_mks_console(ctx, instance)


def test_serial_console_is_not_implemented(vsphere, ctx, node_a):
    drv, _ = vsphere
    with pytest.raises(NotImplementedError, match="vSPC"):
        drv.get_serial_console(ctx, make_instance(node_a))


# -- console output ------------------------------------------------------------------------------


def test_console_output_is_the_serial_log_of_each_boot(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    instance = make_instance(node_a, root_gb=1)
    spawn(drv, ctx, instance)
    output = drv.get_console_output(ctx, instance)
    assert isinstance(output, bytes)  # as libvirt's: Nova's manager decodes it
    text = output.decode()
    host = sim_vm(sim, instance).host.name
    assert f"Power on: {instance.uuid} on {host}" in text
    assert text.rstrip().endswith(f"{instance.uuid} login:")
    drv.reboot(ctx, instance, [], "HARD")
    drv.reboot(ctx, instance, [], "SOFT")
    text = drv.get_console_output(ctx, instance).decode()
    assert text.index("Power on:") < text.index("Reset:") < text.index("Guest reboot:")
    # After the vCenter session expired the driver logs in again and still reads it.
    sim.expire_sessions()
    assert drv.get_console_output(ctx, instance).decode() == text
    # Also when it expires between the SOAP read and the datastore download
    # (the download gets HTTP 401 and is repeated after a login).
    consoles = drv.operations.consoles
    ds, path = consoles._log_path(instance)
    url = drv.services.images._url(drv.services.nodes[node_a].datacenter_name, ds, path)
    sim.expire_sessions()
    logins = sim.request_counts.get("Login", 0)
    assert consoles._get(url).content.decode() == text
    assert sim.request_counts["Login"] == logins + 1


def test_console_output_returns_the_tail_of_a_long_log(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    instance = make_instance(node_a, root_gb=1)
    spawn(drv, ctx, instance)
    port = next(d for d in sim_vm(sim, instance).config.hardware.device
                if isinstance(d, Dev.VirtualSerialPort))
    ds, rel = port.backing.fileName[1:].split("] ", 1)
    old = b"".join(b"old line %06d\n" % i for i in range(20000))  # ~300 KiB
    sim.files.write(ds, rel, old + sim.files.get(ds, rel).data, overwrite=True)
    drv.reboot(ctx, instance, [], "HARD")
    output = drv.get_console_output(ctx, instance)
    assert len(output) == 100 * 1024
    assert output.decode().rstrip().endswith(f"{instance.uuid} login:")
    assert b"old line 000000" not in output and b"old line 019999" in output


def test_console_output_without_a_log_is_not_available(vsphere, ctx, node_a, sim):
    drv, _ = vsphere
    instance = make_instance(node_a, root_gb=1)
    spawn(drv, ctx, instance, power_on=False)  # never booted: no log yet
    with pytest.raises(exception.ConsoleNotAvailable):
        drv.get_console_output(ctx, instance)
    # A VM without a file-backed serial port has no console log at all.
    vm = sim_vm(sim, instance)
    with sim.registry.lock:
        vm.config.hardware.device = [d for d in vm.config.hardware.device
                                     if not isinstance(d, Dev.VirtualSerialPort)]
        sim.registry.touch()
    drv.power_on(ctx, instance, [])
    with pytest.raises(exception.ConsoleNotAvailable):
        drv.get_console_output(ctx, instance)
