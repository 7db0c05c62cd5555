"""What real clients rely on that the type model and vCenter's behaviour decide.

Wire types come from the vim25 type model, unset properties come back
unset, device keys and labels are vCenter's, linked clones keep their
parent chain, templates, PowerOnMultiVM_Task and ESX service tickets.
"""

from __future__ import annotations

import re
import time

import pytest
import requests
from pyVmomi import vim, vmodl

from tests.unit.simulator.helpers import (
    Dev,
    bind,
    create_vm,
    dc1,
    fault_of,
    run,
    wait_until,
)

NS = 'xmlns="urn:vim25" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'


def _soap(server, body: str, cookie: str | None = None) -> requests.Response:
    envelope = ('<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                f"<soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>")
    return requests.post(f"http://127.0.0.1:{server.port}/sdk", data=envelope.encode(),
                         cookies={"vmware_soap_session": cookie} if cookie else None,
                         headers={"Content-Type": "text/xml"}, timeout=30)


def _cookie(si) -> str:
    return re.search(r'vmware_soap_session="?([^";]+)', si._stub.cookie).group(1)


def _retrieve(obj_type: str, moid: str, *paths: str) -> str:
    props = "".join(f"<pathSet>{p}</pathSet>" for p in paths)
    return (f'<RetrievePropertiesEx {NS}><_this type="PropertyCollector">propertyCollector</_this>'
            f"<specSet><propSet><type>{obj_type}</type>{props}</propSet>"
            f'<objectSet><obj type="{obj_type}">{moid}</obj></objectSet></specSet>'
            "<options/></RetrievePropertiesEx>")


def _wire_type(text: str, name: str) -> str:
    match = re.search(rf"<name>{re.escape(name)}</name><val xsi:type=\"([^\"]+)\"", text)
    assert match, text[:1000]
    return match.group(1)


# -- wire types from the type model --------------------------------------------------


def test_property_values_carry_their_declared_wire_types(si, sim, sim_server):
    cluster = sim.cluster("cluster-a")
    vm = create_vm(si, sim, "typed", power_on=True)
    cookie = _cookie(si)
    text = _soap(sim_server, _retrieve("ClusterComputeResource", cluster.moid,
                                       "summary.totalMemory", "summary.numCpuCores",
                                       "disabledMethod"), cookie).text
    # xsd:long, not xsd:int: a Go client would overflow an int32.
    assert _wire_type(text, "summary.totalMemory") == "xsd:long"
    total = re.search(r"<name>summary.totalMemory</name><val [^>]*>(\d+)<", text).group(1)
    assert int(total) == sum(h.memory_mb for h in cluster.hosts) * 2 ** 20 > 2 ** 31
    assert _wire_type(text, "summary.numCpuCores") == "xsd:short"
    # An array of method names is an ArrayOfString, even when empty.
    assert _wire_type(text, "disabledMethod") == "ArrayOfString"
    text = _soap(sim_server, _retrieve("VirtualMachine", vm._moId, "runtime.powerState",
                                       "datastore", "summary.storage.committed"), cookie).text
    assert "VirtualMachinePowerState" in text
    assert _wire_type(text, "runtime.powerState") == "VirtualMachinePowerState"
    assert _wire_type(text, "datastore") == "ArrayOfManagedObjectReference"
    assert _wire_type(text, "summary.storage.committed") == "xsd:long"


def test_current_session_reads_unset_without_a_session(si, sim, sim_server):
    """The usual 'is my session alive' check: unset, not NotAuthenticated."""
    resp = _soap(sim_server, _retrieve("SessionManager", "SessionManager", "currentSession"))
    assert resp.status_code == 200, resp.text
    assert "<propSet>" not in resp.text and "currentSession" not in resp.text.split("Body")[1]
    # Anything else still needs a session.
    resp = _soap(sim_server, _retrieve("SessionManager", "SessionManager", "sessionList"))
    assert resp.status_code == 500 and "NotAuthenticated" in resp.text
    resp = _soap(sim_server, _retrieve("HostSystem", sim.host("esx-a1").moid, "name"))
    assert "NotAuthenticated" in resp.text
    # pyVmomi's own read after the session expired.
    assert si.content.sessionManager.currentSession is not None
    sim.expire_sessions()
    assert si.content.sessionManager.currentSession is None


def test_a_distributed_switch_keeps_its_create_time(si, sim):
    [switch] = sim.registry.all("VmwareDistributedVirtualSwitch")
    first = bind(si, switch).config.createTime
    time.sleep(0.01)
    sim.registry.touch()  # no cached value: read again
    assert bind(si, switch).config.createTime == first


def test_vm_layout_storage_resource_config_and_browser_are_set_parent_vapp_unset(si, sim):
    vm = create_vm(si, sim, "described", disk_gb=1)
    disk = next(d for d in vm.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    layout = vm.layout
    assert [(d.key, list(d.diskFile)) for d in layout.disk] == \
        [(disk.key, ["[shared-a] described/described.vmdk"])]
    [usage] = vm.storage.perDatastoreUsage
    assert usage.datastore._moId == sim.datastores["shared-a"].moid
    assert usage.committed == sim.vm("described").committed_bytes()
    config = vm.resourceConfig
    assert config.entity._moId == vm._moId
    assert config.memoryAllocation.limit == -1
    assert vm.parentVApp is None
    # Its environment browser is its cluster's, as vCenter (and vcsim) give it.
    cluster = bind(si, sim.vm("described").cluster)
    assert vm.environmentBrowser._moId == cluster.environmentBrowser._moId
    assert vm.environmentBrowser.QueryConfigOptionDescriptor()


# -- device keys and labels --------------------------------------------------------------


def test_new_devices_get_vcenters_keys_and_labels(si, sim):
    vm = create_vm(si, sim, "keyed", disk_gb=1, network="VM Network")
    devices = {d.deviceInfo.label: d for d in vm.config.hardware.device}
    assert devices["SCSI controller 0"].key == 1000
    assert devices["SCSI controller 0"].deviceInfo.summary == "LSI Logic"
    assert devices["Hard disk 1"].key == 2000
    assert devices["Hard disk 1"].deviceInfo.summary == f"{1024 * 1024:,} KB"
    assert devices["Network adapter 1"].key == 4000
    assert devices["Network adapter 1"].deviceInfo.summary == "VM Network"
    assert all(d.key > 0 for d in vm.config.hardware.device)
    assert devices["Hard disk 1"].controllerKey == 1000
    # More devices: keys and ranks go on; a controller is named by its bus.
    spec = vim.vm.ConfigSpec(deviceChange=[
        Dev.VirtualDeviceSpec(operation="add", device=Dev.ParaVirtualSCSIController(
            key=-7, busNumber=1, sharedBus="noSharing")),
        Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualVmxnet3(
            key=-8, addressType="generated",
            deviceInfo=vim.Description(label="my label", summary="mine"),
            backing=Dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"))),
    ])
    # govmomi's temporary keys are random, of either sign: vCenter's replace them.
    spec.deviceChange.append(Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualE1000(
        key=1697971134, addressType="generated",
        backing=Dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network"))))
    run(vm.ReconfigVM_Task(spec))
    devices = {d.deviceInfo.label: d for d in vm.config.hardware.device}
    assert devices["Network adapter 3"].key == 4002
    # NICs sit on the PCI bus from slot 7 (govmomi names them ethernet-<slot - 7>).
    assert [(devices[f"Network adapter {n}"].controllerKey,
             devices[f"Network adapter {n}"].unitNumber) for n in (1, 2, 3)] == \
        [(100, 7), (100, 8), (100, 9)]
    assert devices["SCSI controller 1"].key == 1001
    assert devices["SCSI controller 1"].deviceInfo.summary == "VMware paravirtual SCSI"
    assert devices["Network adapter 2"].key == 4001  # vCenter ignores a spec's label
    assert "my label" not in devices
    assert not [d.key for d in vm.config.hardware.device if d.key < 0]


# -- linked clones ---------------------------------------------------------------------


def _clone_spec(si, sim, **location):
    return vim.vm.CloneSpec(location=vim.vm.RelocateSpec(
        pool=bind(si, sim.cluster("cluster-a").resource_pool), **location),
        powerOn=False, template=False)


def test_a_linked_clone_is_a_delta_disk_over_the_source_disk(si, sim):
    source = create_vm(si, sim, "golden", disk_gb=1)
    snap = run(source.CreateSnapshot_Task("base", "", False, False))
    spec = _clone_spec(si, sim, diskMoveType="createNewChildDiskBacking")
    spec.snapshot = snap
    clone = run(source.CloneVM_Task(dc1(si).vmFolder, "linked", spec))
    [disk] = [d for d in clone.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    assert disk.backing.parent.fileName == "[shared-a] golden/golden.vmdk"
    assert disk.backing.fileName == "[shared-a] linked/linked.vmdk"
    assert disk.capacityInKB == 1024 * 1024
    assert list(clone.layout.disk[0].diskFile) == [
        "[shared-a] linked/linked.vmdk", "[shared-a] golden/golden.vmdk"]
    # A delta takes little space; the parent's file stays where it was.
    assert sim.files.get("shared-a", "linked/linked.vmdk").parent == \
        "[shared-a] golden/golden.vmdk"
    assert sim.files.get("shared-a", "linked/linked.vmdk").size < 1024 ** 3


def test_a_full_clone_copies_the_chains_data_and_config_changes_apply(si, sim):
    source = create_vm(si, sim, "full-src", disk_gb=1)
    sim.files.get("shared-a", "full-src/full-src.vmdk").extent = b"guest data"
    spec = _clone_spec(si, sim)
    spec.config = vim.vm.ConfigSpec(numCPUs=2, annotation="copy", deviceChange=[
        Dev.VirtualDeviceSpec(operation="add", device=Dev.VirtualVmxnet3(
            key=-1, addressType="generated",
            backing=Dev.VirtualEthernetCard.NetworkBackingInfo(deviceName="VM Network")))])
    clone = run(source.CloneVM_Task(dc1(si).vmFolder, "full-copy", spec))
    [disk] = [d for d in clone.config.hardware.device if isinstance(d, Dev.VirtualDisk)]
    source_disk = next(d for d in source.config.hardware.device if isinstance(d, Dev.VirtualDisk))
    assert disk.key == source_disk.key  # devices keep their keys
    assert disk.backing.parent is None
    assert sim.files.get("shared-a", "full-copy/full-copy.vmdk").extent == b"guest data"
    assert clone.config.hardware.numCPU == 2 and clone.config.annotation == "copy"
    assert [d.deviceInfo.label for d in clone.config.hardware.device
            if isinstance(d, Dev.VirtualEthernetCard)] == ["Network adapter 1"]


def test_a_clone_whose_config_fails_leaves_nothing(si, sim):
    source = create_vm(si, sim, "half-src", disk_gb=1)
    spec = _clone_spec(si, sim)
    spec.config = vim.vm.ConfigSpec(numCPUs=1000)
    error = fault_of(source.CloneVM_Task(dc1(si).vmFolder, "half", spec))
    assert isinstance(error, vim.fault.NotEnoughCpus)
    with pytest.raises(KeyError):
        sim.vm("half")
    assert not sim.files.exists("shared-a", "half")


# -- templates -------------------------------------------------------------------------


def test_mark_as_template_and_back(si, sim):
    vm = create_vm(si, sim, "tmpl", disk_gb=1, power_on=True)
    with pytest.raises(vim.fault.InvalidPowerState):
        vm.MarkAsTemplate()
    run(vm.PowerOffVM_Task())
    vm.MarkAsTemplate()
    assert vm.config.template is True and vm.summary.config.template is True
    assert vm.resourcePool is None
    assert vm not in bind(si, sim.cluster("cluster-a").resource_pool).vm
    error = fault_of(vm.PowerOnVM_Task())
    assert isinstance(error, vmodl.fault.NotSupported)
    # Templates are cloned from.
    clone = run(vm.CloneVM_Task(dc1(si).vmFolder, "from-tmpl", _clone_spec(si, sim)))
    assert clone.config.template is False
    with pytest.raises(vim.fault.InvalidState):
        vm.MarkAsTemplate()
    vm.MarkAsVirtualMachine(bind(si, sim.cluster("cluster-a").resource_pool),
                            bind(si, sim.host("esx-a2")))
    assert vm.config.template is False
    assert vm.runtime.host._moId == sim.host("esx-a2").moid
    assert vm.resourcePool._moId == sim.cluster("cluster-a").resource_pool.moid
    run(vm.PowerOnVM_Task())


# -- PowerOnMultiVM_Task -----------------------------------------------------------------


def test_power_on_multi_vm_reports_what_it_attempted(si, sim):
    off_1 = create_vm(si, sim, "multi-1")
    off_2 = create_vm(si, sim, "multi-2", "esx-a2")
    on = create_vm(si, sim, "multi-3", power_on=True)
    result = run(dc1(si).PowerOnMultiVM_Task([off_1, off_2, on]))
    assert isinstance(result, vim.cluster.PowerOnVmResult)
    assert sorted(a.vm._moId for a in result.attempted) == sorted([off_1._moId, off_2._moId])
    [skipped] = result.notAttempted
    assert skipped.vm._moId == on._moId
    assert isinstance(skipped.fault, vim.fault.InvalidPowerState)
    for attempt in result.attempted:
        run(vim.Task(attempt.task._moId, si._stub))
    wait_until(lambda: sim.vm("multi-1").powered_on and sim.vm("multi-2").powered_on)


# -- ESX service tickets (Nova's in-tree image upload) ------------------------------------


def test_a_generic_service_ticket_admits_one_upload_to_the_esx_hosts_datastore(si, sim,
                                                                            sim_server):
    base = f"http://127.0.0.1:{sim_server.port}"
    path = "/folder/tickets/image-flat.vmdk?dcPath=ha-datacenter&dsName=shared-a"
    si.content.fileManager.MakeDirectory("[shared-a] tickets", dc1(si), True)
    spec = vim.SessionManager.HttpServiceRequestSpec(method="httpPut",
                                                     url=f"https://esx-a1{path}")
    ticket = si.content.sessionManager.AcquireGenericServiceTicket(spec)
    assert ticket.hostName == "esx-a1" and ticket.sslThumbprint
    cookie = {"vmware_cgi_ticket": ticket.id}
    # Another method or URL is refused; the ticket is not used up by that.
    assert requests.get(base + path, cookies=cookie, timeout=10).status_code == 401
    other = path.replace("image-flat", "other")
    assert requests.put(base + other, data=b"x", cookies=cookie, timeout=10).status_code == 401
    assert requests.put(base + path, data=b"image bytes", cookies=cookie,
                        timeout=10).status_code == 201
    assert sim.files.get("shared-a", "tickets/image-flat.vmdk").data == b"image bytes"
    # Once only.
    assert requests.put(base + path, data=b"again", cookies=cookie, timeout=10).status_code == 401
    # An ESX host serves only the datastores it mounts.
    elsewhere = "/folder/x.vmdk?dcPath=ha-datacenter&dsName=shared-b"
    ticket = si.content.sessionManager.AcquireGenericServiceTicket(
        vim.SessionManager.HttpServiceRequestSpec(method="PUT", url=f"https://esx-a1{elsewhere}"))
    assert requests.put(base + elsewhere, data=b"x", cookies={"vmware_cgi_ticket": ticket.id},
                        timeout=10).status_code == 404


def test_service_tickets_are_for_datastore_urls_only(si):
    with pytest.raises(vmodl.fault.InvalidArgument):
        si.content.sessionManager.AcquireGenericServiceTicket(
            vim.SessionManager.HttpServiceRequestSpec(method="httpGet",
                                                      url="https://esx-a1/sdk"))
