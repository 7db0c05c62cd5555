"""Instance lifecycle through VSphereDriver, asserted in the simulator behind SOAP."""

from __future__ import annotations

import io
import threading
import uuid

import pytest
from nova import exception
from nova.compute import power_state
from nova.network import model as network_model
from pyVmomi import vim

from tests.driver.conftest import make_instance

MB = 1024 * 1024



def _vm(sim, instance):
    """The simulator's VM object of an instance (VMs are named by instance UUID)."""
    return sim.vm(instance.uuid)


def _vifs(*bridges: str) -> network_model.NetworkInfo:
    vifs = []
    for i, bridge in enumerate(bridges):
        vifs.append(network_model.VIF(
            id=str(uuid.uuid4()), address=f"fa:16:3e:00:00:{i:02x}",
            network=network_model.Network(id=f"net-{i}", bridge=bridge, label=bridge)))
    return network_model.NetworkInfo(vifs)


def _cached_images(sim) -> list[tuple[str, str]]:
    found = []
    for ds in sim.datastores:
        try:
            entries = sim.files.listdir(ds, "_nova_image_cache", recursive=True)
        except vim.fault.FileNotFound:
            continue
        found += [(ds, e.path) for e in entries if e.path.endswith(".vmdk")]
    return found


def _spawn(drv, ctx, instance, image_meta=None, network_info=None, power_on=True):
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=network_info or [],
              power_on=power_on)


def test_spawn_places_a_vm_sized_by_the_flavor(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, vcpus=4, memory_mb=8192, name="web-1")
    _spawn(drv, ctx, instance, network_info=_vifs("br-int", "VM Network"))
    vm = _vm(sim, instance)
    config = vm.get_property("config")
    assert config.hardware.numCPU == 4
    assert config.hardware.memoryMB == 8192
    assert config.instanceUuid == instance.uuid
    assert config.managedBy.extensionKey == "org.openstack.compute"
    assert "name:web-1" in config.annotation
    assert vm.get_property("runtime.powerState") == "poweredOn"
    host = vm.get_property("runtime.host")
    cluster = sim.cluster("cluster-a")
    assert host._moId in {h.moid for h in cluster.hosts}
    # The host accounts for the running VM.
    host_obj = sim.registry.get(host._moId)
    assert host_obj.get_property("summary.quickStats.overallMemoryUsage") >= 8192
    nics = [d for d in config.hardware.device if hasattr(d, "macAddress")]
    assert sorted(n.macAddress for n in nics) == ["fa:16:3e:00:00:00", "fa:16:3e:00:00:01"]
    backings = {type(n.backing).__name__ for n in nics}
    assert backings == {"vim.vm.device.VirtualEthernetCard.DistributedVirtualPortBackingInfo",
                        "vim.vm.device.VirtualEthernetCard.NetworkBackingInfo"}
    disks = [d for d in config.hardware.device if type(d).__name__ == "vim.vm.device.VirtualDisk"]
    assert [d.capacityInKB for d in disks] == [10 * MB]
    info = drv.get_info(instance)
    assert info.state == power_state.RUNNING
    assert drv.instance_exists(instance)
    assert instance.uuid in drv.list_instance_uuids()
    assert instance.uuid in drv.list_instances()


def test_unknown_network_is_refused_and_leaves_nothing(vsphere, ctx, node_a):
    drv, server = vsphere
    instance = make_instance(node_a)
    with pytest.raises(exception.NetworkNotFoundForBridge):
        _spawn(drv, ctx, instance, network_info=_vifs("no-such-portgroup"))
    assert not drv.instance_exists(instance)
    assert instance.uuid not in [v.name for v in server.simulator.vms()]


def test_flavor_extra_specs_set_limits_reservations_and_shares(vsphere, ctx, node_a):
    drv, server = vsphere
    instance = make_instance(node_a, extra_specs={
        "vsphere:cpu_limit": "4000", "vsphere:cpu_reservation": "1000",
        "vsphere:memory_reservation": "2048", "vsphere:memory_shares_level": "high",
        "quota:cpu_shares_level": "custom", "quota:cpu_shares_share": "3000"})
    _spawn(drv, ctx, instance)
    config = _vm(server.simulator, instance).get_property("config")
    assert config.cpuAllocation.limit == 4000
    assert config.cpuAllocation.reservation == 1000
    assert config.cpuAllocation.shares.level == "custom"
    assert config.cpuAllocation.shares.shares == 3000
    assert config.memoryAllocation.reservation == 2048
    assert config.memoryAllocation.shares.level == "high"


def test_bad_extra_spec_is_refused_before_anything_is_created(vsphere, ctx, node_a):
    drv, server = vsphere
    before = len(server.simulator.vms())
    requests = server.simulator.request_count
    instance = make_instance(node_a, extra_specs={"vsphere:cpu_limit": "lots"})
    with pytest.raises(exception.Invalid) as err:
        _spawn(drv, ctx, instance)
    assert "vsphere:cpu_limit" in str(err.value) and "lots" in str(err.value)
    assert len(server.simulator.vms()) == before
    assert server.simulator.request_count == requests  # not a single SOAP call


def test_failed_power_on_leaves_no_orphan_vm_disk_or_claim(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    vms_before = {v.moid for v in sim.vms()}
    sim.faults.fail_next("PowerOnVM_Task", "InsufficientResourcesFault")
    instance = make_instance(node_a, memory_mb=16384)
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _spawn(drv, ctx, instance)
    assert {v.moid for v in sim.vms()} == vms_before
    for ds in ("shared-a", "shared-all"):
        assert not [e for e in sim.files.listdir(ds, "") if e.path.startswith(instance.uuid)]
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node_a].moref)


def test_failed_create_is_translated_and_releases_the_claim(vsphere, ctx, node_a):
    drv, server = vsphere
    server.simulator.faults.fail_next("CreateVM_Task", "InvalidArgument")
    instance = make_instance(node_a)
    with pytest.raises(exception.NovaException):
        _spawn(drv, ctx, instance)
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node_a].moref)
    assert not drv.instance_exists(instance)


def test_destroy_removes_vm_and_files_and_is_idempotent(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    vmx = _vm(sim, instance).get_property("config.files.vmPathName")
    ds = vmx[1:vmx.index("]")]
    assert [e for e in sim.files.listdir(ds, "") if e.path.startswith(instance.uuid)]
    drv.destroy(ctx, instance, [])
    assert not drv.instance_exists(instance)
    assert not [e for e in sim.files.listdir(ds, "") if e.path.startswith(instance.uuid)]
    drv.destroy(ctx, instance, [])  # already gone: no error
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(instance)


def test_power_off_power_on_and_states(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    # Clean shutdown through the guest (tools run in the simulator).
    drv.power_off(instance, timeout=10, retry_interval=1)
    assert drv.get_info(instance).state == power_state.SHUTDOWN
    assert sim.request_counts.get("ShutdownGuest", 0) == 1
    drv.power_on(ctx, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING
    # Without a timeout: hard power off.
    before = sim.request_counts.get("PowerOffVM_Task", 0)
    drv.power_off(instance)
    assert sim.request_counts["PowerOffVM_Task"] == before + 1
    assert drv.get_info(instance).state == power_state.SHUTDOWN
    drv.resume_state_on_host_boot(ctx, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING


def test_power_off_without_tools_falls_back_to_hard_power_off(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    _vm(sim, instance).tools_installed = False
    drv.power_off(instance, timeout=5, retry_interval=1)
    assert drv.get_info(instance).state == power_state.SHUTDOWN


def test_reboot_soft_uses_the_guest_and_hard_resets(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    drv.reboot(ctx, instance, [], "SOFT")
    assert sim.request_counts.get("RebootGuest", 0) == 1
    assert sim.request_counts.get("ResetVM_Task", 0) == 0
    drv.reboot(ctx, instance, [], "HARD")
    assert sim.request_counts["ResetVM_Task"] == 1
    assert drv.get_info(instance).state == power_state.RUNNING
    # A soft reboot without guest tools is a reset.
    _vm(sim, instance).tools_installed = False
    drv.reboot(ctx, instance, [], "SOFT")
    assert sim.request_counts["ResetVM_Task"] == 2
    # Rebooting a stopped instance starts it.
    drv.power_off(instance)
    drv.reboot(ctx, instance, [], "HARD")
    assert drv.get_info(instance).state == power_state.RUNNING


def test_unmanaged_vms_are_not_instances(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    names = {v.name for v in sim.vms()}
    assert len(names) > 1 or names == {instance.uuid}
    assert drv.list_instance_uuids() == [instance.uuid]
    other = make_instance(node_a)
    assert not drv.instance_exists(other)
    with pytest.raises(exception.InstanceNotFound):
        drv.get_info(other)


def test_host_disconnect_reports_no_state_not_deleted(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    host = sim.registry.get(_vm(sim, instance).get_property("runtime.host")._moId)
    sim.disconnect_host(host.name)
    assert drv.get_info(instance).state == power_state.NOSTATE
    assert drv.instance_exists(instance)
    sim.reconnect_host(host.name)
    assert drv.get_info(instance).state == power_state.RUNNING


def test_concurrent_spawns_never_oversubscribe_a_host(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    # 12 x 96 GiB into cluster-a (256+256+384+128 GiB): at most 10 fit.
    instances = [make_instance(node_a, vcpus=2, memory_mb=96 * 1024, root_gb=1,
                               name=f"big-{i}") for i in range(12)]
    errors: dict[str, Exception] = {}

    def boot(inst):
        try:
            _spawn(drv, ctx, inst)
        except Exception as exc:  # recorded and checked below
            errors[inst.uuid] = exc

    threads = [threading.Thread(target=boot, args=(i,)) for i in instances]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    booted = [i for i in instances if i.uuid not in errors]
    assert all(isinstance(e, exception.ComputeResourcesUnavailable) for e in errors.values())
    assert len(booted) >= 8
    for host in sim.cluster("cluster-a").hosts:
        used = sum(v.get_property("config.hardware.memoryMB") for v in sim.vms()
                   if v.get_property("runtime.host")._moId == host.moid
                   and v.get_property("runtime.powerState") == "poweredOn")
        assert used <= host.memory_mb
    # Failed boots left no VM behind.
    names = {v.name for v in sim.vms()}
    assert not {u for u in errors} & names


def test_spawn_from_a_vmdk_image_caches_it_once(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    image_id = str(uuid.uuid4())
    data = b"KDMV" + b"\0" * (3 * MB)
    glance.create(None, {"id": image_id, "name": "cirros-vmdk", "status": "active",
                         "disk_format": "vmdk", "container_format": "bare", "size": len(data),
                         "properties": {}}, data=io.BytesIO(data))
    from nova import objects

    meta = objects.ImageMeta.from_dict(glance.show(ctx, image_id))
    first = make_instance(node_a, image_ref=image_id)
    _spawn(drv, ctx, first, image_meta=meta)
    # One base disk, plus one per root-disk size bigger than the image: the 10 GiB
    # parent of the linked clone (a delta disk has its parent's capacity).
    cached = _cached_images(sim)
    [ds] = {d for d, _ in cached}
    folder = f"_nova_image_cache/{image_id}"
    assert sorted(p for _, p in cached) == [f"{folder}/{image_id}.10.vmdk",
                                            f"{folder}/{image_id}.vmdk"]
    disk = next(d for d in _vm(sim, first).get_property("config.hardware.device")
                if type(d).__name__ == "vim.vm.device.VirtualDisk")
    assert disk.backing.parent.fileName == f"[{ds}] {folder}/{image_id}.10.vmdk"
    assert disk.capacityInKB == 10 * MB
    # A warm spawn reuses the cached copies and stays within the SOAP budget.
    second = make_instance(node_a, image_ref=image_id)
    before = sim.request_count
    _spawn(drv, ctx, second, image_meta=meta)
    assert sim.request_count - before <= 8
    assert _cached_images(sim) == cached
    # Another size adds its own parent; the base disk is never copied twice for one size.
    third = make_instance(node_a, image_ref=image_id, root_gb=20)
    _spawn(drv, ctx, third, image_meta=meta)
    assert sorted(p for _, p in _cached_images(sim)) == [
        f"{folder}/{image_id}.10.vmdk", f"{folder}/{image_id}.20.vmdk",
        f"{folder}/{image_id}.vmdk"]
    assert sim.request_counts["CopyVirtualDisk_Task"] == 2


def test_non_vmdk_images_are_refused(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    from nova import objects

    image = glance.show(ctx, "155d900f-4e14-4e4c-a73d-069cbf4541e6")  # qcow2/raw fixture image
    meta = objects.ImageMeta.from_dict(image)
    instance = make_instance(node_a, image_ref=image["id"])
    with pytest.raises(exception.ImageUnacceptable):
        _spawn(drv, ctx, instance, image_meta=meta)
    assert not drv.instance_exists(instance)
