"""The rest of the instance lifecycle through Nova's REST API: snapshot (createImage) and a
boot from it, suspend/resume, rescue/unrescue, port attach/detach, console output, VNC
console and diagnostics. Nova's compute manager drives the driver; the end state is
asserted in the simulator (and in Nova's fake Glance and Neutron)."""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import parse_qs, urlparse

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.network import DistributedVirtualPortgroup
from nova_vsphere_driver.simulator.objects.nfc_lease import HttpNfcLease, disk_content
from tests.unit.simulator import stream_vmdk
from tests.unit.simulator.helpers import wait_until

GIB = 1024
MIB = 1024 * 1024
#: Image data without zero grains (a stream-optimized VMDK leaves those
#: out): every byte is checked on its way through snapshot and import.
PATTERN = bytes(range(1, 256)) * (MIB // 255 + 1)
NOVNC_BASE = "https://console.example.org:6080/vnc_auto.html"
#: Nova's power_state codes as the API shows them.
RUNNING, SUSPENDED = 1, 7

STACK_OPTIONS = {"conf": {"vnc.novncproxy_base_url": NOVNC_BASE}}

Dev = vim.vm.device


def _flavor(stack, name: str) -> str:
    return stack.create_flavor(name, 1, 1 * GIB, root_gb=1)


def _disks(vm) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk)]


def _nics(vm) -> list:
    return [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualEthernetCard)]


def _extra(vm) -> dict:
    return {o.key: o.value for o in vm.config.extraConfig or []}


def _console_log(stack, vm) -> str:
    """What the VM's serial port wrote to its file in the simulator's datastore."""
    [port] = [d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualSerialPort)]
    ds, rel = port.backing.fileName[1:].split("] ", 1)
    return (stack.sim.files.get(ds, rel).data or b"").decode()


def _portgroup(stack, nic) -> str:
    """The name of the distributed port group a NIC is backed by."""
    port = nic.backing.port
    for group in stack.sim.registry.find(DistributedVirtualPortgroup):
        if group.key == port.portgroupKey and group.switch.uuid == port.switchUuid:
            return group.name
    raise AssertionError(f"NIC {nic.macAddress}: no port group with key {port.portgroupKey}")


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    wait_until(predicate, timeout=timeout, interval=0.05, what=what)


# -- snapshot -----------------------------------------------------------------------------


def test_snapshot_uploads_the_root_disk_and_the_image_boots(stack):
    base = stack.add_image(str(uuid.uuid4()), "patterned", PATTERN)
    flavor = _flavor(stack, "snap")
    sid = stack.boot("snap-source", flavor, image_ref=base)["id"]
    vm = stack.sim_vm(sid)
    booted = vm.boot_time
    leases = set(stack.sim.registry.find(HttpNfcLease))

    image_id = stack.api.post_server_action(sid, {"createImage": {"name": "snap-1"}})["image_id"]
    server = stack.wait_for_server(sid)  # task_state None: the upload is over

    image = stack.glance.show(None, image_id)
    data = stack.image_data(image_id)
    assert data, "the driver uploaded nothing to Glance"
    assert (image["status"], image["size"]) == ("active", len(data))
    assert (image["disk_format"], image["container_format"]) == ("vmdk", "bare")
    props = image["properties"]
    assert props["vmware_disktype"] == "streamOptimized"  # the base image was preallocated
    assert props["vmware_adaptertype"] == "lsiLogic"
    assert (props["image_type"], props["instance_uuid"]) == ("snapshot", sid)
    # What the simulator exported, byte for byte, through one lease now ended.
    [lease] = [lease for lease in stack.sim.registry.find(HttpNfcLease) if lease not in leases]
    assert lease.state == "done"
    [served] = [d for d in lease.disks if d.served]
    assert served.served == (len(data), hashlib.sha1(data).hexdigest())
    assert served.key.startswith(f"/{vm.moid}/")
    disk = stream_vmdk.parse(data)
    assert disk.capacity_sectors == 2 * MIB  # the 1 GiB root disk
    assert disk.content(len(PATTERN)) == PATTERN
    # The running server was snapshotted, not stopped, and kept no VM snapshot.
    assert vm.snapshots == [] and vm.get_property("snapshot") is None
    assert (vm.power_state, vm.boot_time) == ("poweredOn", booted)
    assert server["OS-EXT-STS:power_state"] == RUNNING
    with stack.microversion("2.35"):  # Nova's image API proxy (gone after 2.35)
        shown = stack.api.get_image(image_id)
    assert shown["status"] == "ACTIVE" and shown["metadata"]["vmware_disktype"] == \
        "streamOptimized"

    imports = stack.sim.request_counts.get("ImportVApp", 0)
    clone = stack.boot("snap-clone", flavor, image_ref=image_id)
    clone_vm = stack.sim_vm(clone["id"])
    assert clone_vm.power_state == "poweredOn"
    # The image cache imported the stream-optimized image (vCenter cannot
    # copy a streamOptimized file); the clone's root disk holds its data.
    assert stack.sim.request_counts.get("ImportVApp", 0) == imports + 1
    root = _disks(clone_vm)[0]
    assert disk_content(stack.sim, root.backing) == PATTERN


def test_snapshot_of_a_stopped_server_exports_the_vm(stack):
    flavor = _flavor(stack, "snap-off")
    sid = stack.boot("snap-stopped", flavor)["id"]
    stack.action(sid, "os-stop", status="SHUTOFF")
    vm = stack.sim_vm(sid)
    exports = stack.sim.request_counts.get("ExportVm", 0)
    image_id = stack.api.post_server_action(sid, {"createImage": {"name": "snap-2"}})["image_id"]
    stack.wait_for_server(sid, "SHUTOFF")
    assert stack.sim.request_counts.get("ExportVm", 0) == exports + 1
    image = stack.glance.show(None, image_id)
    assert image["status"] == "active" and image["size"] == len(stack.image_data(image_id))
    assert image["properties"]["vmware_disktype"] == "streamOptimized"
    assert vm.power_state == "poweredOff" and vm.snapshots == []


# -- suspend / resume, rescue / unrescue ---------------------------------------------------


def test_suspend_and_resume(stack):
    sid = stack.boot("suspend-1", _flavor(stack, "susp"))["id"]
    vm = stack.sim_vm(sid)
    boots = _console_log(stack, vm).count("Power on:")

    server = stack.action(sid, "suspend", status="SUSPENDED")
    assert server["OS-EXT-STS:power_state"] == SUSPENDED
    assert vm.power_state == "suspended"

    server = stack.action(sid, "resume")
    assert server["OS-EXT-STS:power_state"] == RUNNING
    assert vm.power_state == "poweredOn"
    assert stack.sim_vm(sid) is vm
    # Resuming restores the guest's memory: no new boot in its console log.
    assert _console_log(stack, vm).count("Power on:") == boots


def test_rescue_then_unrescue(stack):
    sid = stack.boot("rescue-1", _flavor(stack, "resc"))["id"]
    vm = stack.sim_vm(sid)
    [root] = _disks(vm)
    rescue_name = f"{sid}-rescue.vmdk"

    server = stack.action(sid, "rescue", {}, status="RESCUE")
    assert server["OS-EXT-STS:vm_state"] == "rescued"
    disks = _disks(vm)
    rescue = [d for d in disks if d.backing.fileName.endswith(f"/{rescue_name}")]
    assert len(rescue) == 1, [d.backing.fileName for d in disks]
    # The original root disk stays attached, behind the rescue disk in the boot order.
    assert root.backing.fileName in [d.backing.fileName for d in disks]
    order = [entry.deviceKey for entry in vm.config.bootOptions.bootOrder]
    assert order[0] == rescue[0].key
    assert vm.power_state == "poweredOn"
    assert stack.sim_files(rescue_name)

    server = stack.action(sid, "unrescue")
    assert server["OS-EXT-STS:power_state"] == RUNNING
    assert [d.backing.fileName for d in _disks(vm)] == [root.backing.fileName]
    assert stack.sim_files(rescue_name) == []  # the rescue disk's file is deleted too
    assert [entry.deviceKey for entry in vm.config.bootOptions.bootOrder][0] == \
        _disks(vm)[0].key
    assert vm.power_state == "poweredOn"


# -- network interfaces ----------------------------------------------------------------------


def test_attach_and_detach_a_port(stack):
    sid = stack.boot("iface-1", _flavor(stack, "iface"))["id"]
    vm = stack.sim_vm(sid)
    [boot_nic] = _nics(vm)
    assert _portgroup(stack, boot_nic) == "br-int"
    port = stack.create_port(bridge="public")

    attached = stack.api.attach_interface(
        sid, {"interfaceAttachment": {"port_id": port["id"]}}).body["interfaceAttachment"]

    assert (attached["port_id"], attached["mac_addr"]) == (port["id"], port["mac_address"])
    nics = {n.macAddress: n for n in _nics(vm)}
    assert sorted(nics) == sorted([boot_nic.macAddress, port["mac_address"]])
    assert _portgroup(stack, nics[port["mac_address"]]) == "public"
    assert "public" in [n.name for n in vm.networks]
    assert port["id"] in _extra(vm).values()  # the port's id, for the NIC's binding
    listed = {i["port_id"] for i in stack.api.get_port_interfaces(sid)}
    assert port["id"] in listed and len(listed) == 2
    assert vm.power_state == "poweredOn"  # hot-plugged

    stack.api.detach_interface(sid, port["id"])  # a cast: wait for the VM to change
    _wait(lambda: len(_nics(vm)) == 1, f"the NIC of port {port['id']} is still on the VM")
    [left] = _nics(vm)
    assert left.macAddress == boot_nic.macAddress
    assert _portgroup(stack, left) == "br-int"
    assert port["id"] not in _extra(vm).values()
    _wait(lambda: {i["port_id"] for i in stack.api.get_port_interfaces(sid)} ==
          listed - {port["id"]}, "Nova still lists the detached port")
    assert stack.wait_for_server(sid)["status"] == "ACTIVE"


def test_ports_bound_by_neutrons_vsphere_dvs_backend(stack):
    """Neutron's DVS backend binds ports as vif type dvs: by port group name with the
    distributed port it reserved for the port, or by switch UUID and port group key."""
    public = stack.sim.find_entity("public", "DistributedVirtualPortgroup")
    reserved = public.ports()[-1].key
    port = stack.create_port(vif_type="dvs", vif_details={
        "dvs_port_group_name": "public", "dvs_port_key": reserved})
    sid = stack.boot("dvs-1", _flavor(stack, "dvs"), networks=[{"port": port["id"]}])["id"]
    vm = stack.sim_vm(sid)
    [nic] = _nics(vm)
    assert (nic.macAddress, _portgroup(stack, nic), nic.backing.port.portKey) == \
        (port["mac_address"], "public", reserved)
    br_int = stack.sim.find_entity("br-int", "DistributedVirtualPortgroup")
    second = stack.create_port(vif_type="dvs", vif_details={
        "dvs_id": br_int.switch.uuid, "pg_id": br_int.key})
    stack.api.attach_interface(sid, {"interfaceAttachment": {"port_id": second["id"]}})
    nics = {n.macAddress: n for n in _nics(vm)}
    assert _portgroup(stack, nics[second["mac_address"]]) == "br-int"
    assert sorted(n.name for n in vm.networks) == ["br-int", "public"]


# -- consoles and diagnostics ----------------------------------------------------------------


def test_console_output_is_the_serial_log(stack):
    sid = stack.boot("console-1", _flavor(stack, "cons"))["id"]
    vm = stack.sim_vm(sid)
    stack.action(sid, "reboot", {"type": "HARD"})

    output = stack.api.post_server_action(sid, {"os-getConsoleOutput": {}})["output"]

    assert output == _console_log(stack, vm)
    assert f"Power on: {vm.name} on {vm.host.name}" in output
    assert output.index("Power on:") < output.index("Reset:")
    assert output.rstrip().endswith(f"{vm.name} login:")
    tail = stack.api.post_server_action(sid, {"os-getConsoleOutput": {"length": 2}})["output"]
    # Nova's tail: the last ``length`` pieces between newlines (the log ends
    # with one, so its last piece is empty).
    assert tail == "\n".join(output.split("\n")[-2:])
    assert tail.strip() == f"{vm.name} login:"


def test_vnc_console_urls_lead_to_the_vms_host_and_port(stack):
    sid = stack.boot("vnc-1", _flavor(stack, "vnc"))["id"]
    vm = stack.sim_vm(sid)

    with stack.microversion("2.5"):  # the action; later versions have remote-consoles
        legacy = stack.api.post_server_action(
            sid, {"os-getVNCConsole": {"type": "novnc"}})["console"]
    current = stack.api.api_post(f"/servers/{sid}/remote-consoles", {
        "remote_console": {"protocol": "vnc", "type": "novnc"}}).body["remote_console"]

    port = int(_extra(vm)["RemoteDisplay.vnc.port"])
    assert _extra(vm)["RemoteDisplay.vnc.enabled"] == "true"
    for url in (legacy["url"], current["url"]):
        assert url.startswith(NOVNC_BASE + "?"), url
        query = parse_qs(urlparse(url).query)
        token = query["token"][0] if "token" in query else \
            parse_qs(urlparse(query["path"][0]).query)["token"][0]
        console = stack.api.api_get(f"/os-console-auth-tokens/{token}").body["console"]
        assert (console["instance_uuid"], console["host"], console["port"]) == \
            (sid, vm.host.name, port)


def test_diagnostics_are_the_vms(stack):
    flavor = stack.create_flavor("diag", 2, 2 * GIB, root_gb=1)
    sid = stack.boot("diag-1", flavor)["id"]
    vm = stack.sim_vm(sid)

    with stack.microversion("2.48"):
        diags = stack.api.get_server_diagnostics(sid)

    assert (diags["driver"], diags["hypervisor"], diags["hypervisor_os"]) == \
        ("vmwareapi", "vmware", "esxi")
    assert diags["state"] == "running" and diags["config_drive"] is False
    assert diags["num_cpus"] == 2 and len(diags["cpu_details"]) == 2
    assert diags["memory_details"]["maximum"] == 2 * GIB
    assert diags["num_nics"] == 1
    assert [n["mac_address"] for n in diags["nic_details"]] == [n.macAddress for n in _nics(vm)]
    assert diags["num_disks"] == len(_disks(vm)) == 1
    assert 0 <= diags["uptime"] < 600

    with stack.microversion("2.47"):  # before 2.48: the driver's own keys
        legacy = stack.api.get_server_diagnostics(sid)
    assert legacy["vmware:numCpu"] == 2 and legacy["vmware:memorySizeMB"] == 2 * GIB
    assert legacy["vmware:powerState"] == "poweredOn"
    assert legacy["vmware:instanceUuid"] == sid


# -- image pre-caching -----------------------------------------------------------------------


def test_aggregate_image_precache_fills_every_datastore_and_boots_need_no_download(stack):
    image_id = stack.add_image(str(uuid.uuid4()), "precached", PATTERN)
    cached = f"_nova_image_cache/{image_id}/{image_id}.vmdk"
    aggregate = stack.api.post_aggregate({"aggregate": {"name": "vsphere-precache"}})
    stack.api.add_host_to_aggregate(aggregate["id"], stack.compute_host)
    with stack.microversion("2.81"):
        response = stack.api.api_post(f"/os-aggregates/{aggregate['id']}/images",
                                      {"cache": [{"id": image_id}]})
    assert response.status == 202
    # A cast through the conductor: wait for nova-compute's driver to finish.
    wait_until(lambda: len(stack.sim_files(cached)) == 3, timeout=60, interval=0.1,
               what=f"image {image_id} cached on every datastore")
    assert stack.sim_files(cached) == [f"[{ds}] {cached}"
                                       for ds in ("shared-a", "shared-all", "shared-b")]
    assert [i for i in stack.glance.downloads if i == image_id] == [image_id] * 3

    sid = stack.boot("precached-1", _flavor(stack, "pre"), image_ref=image_id)["id"]
    root = _disks(stack.sim_vm(sid))[0]
    # A linked clone of the cache's copy grown to the flavor's 1 GiB, made
    # from the pre-cached disk on the datastore the boot landed on.
    assert root.backing.parent.fileName.endswith(
        f"] _nova_image_cache/{image_id}/{image_id}.1.vmdk")
    assert disk_content(stack.sim, root.backing) == PATTERN
    # The boot read nothing from Glance.
    assert [i for i in stack.glance.downloads if i == image_id] == [image_id] * 3
