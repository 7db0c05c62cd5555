"""Our driver's lifecycle on VMware's vcsim: a vCenter implementation nobody here wrote.

Everything is asserted through vcsim's own API (pyVmomi), never through our
simulator. vcsim lacks some methods vCenter has (FindAllByUuid, RebootGuest);
the driver falls back to their older equivalents there. What cannot work on
vcsim is listed in the README's simulator section.
"""

from __future__ import annotations

import ssl
import uuid

import pytest
from nova import objects
from nova.compute import power_state
from nova.network import model as network_model
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator import vmdk_stream
from tests.driver.conftest import (  # noqa: F401  (fixtures)
    conf_overrides,
    ctx,
    glance,
    make_instance,
    new_tree,
    nova_db,
    vmdk_image,
)
from tests.driver.test_live_migrate import NovaFlow
from tests.interop.vcsim import Vcsim, VcsimInventory
from tests.unit.simulator import sparse_vmdk

CLUSTER = "DC0_C0"
MiB = 1024 * 1024
GiB_KB = 1024 * 1024
#: Image data without zero grains.
DATA = bytes(range(1, 256)) * (2 * MiB // 255)


def _configure(override, server: Vcsim, wsdl_file: str, cluster: str) -> None:
    override("vsphere", host_ip="127.0.0.1", host_port=server.port,
             host_username=server.username, host_password=server.password,
             ca_file=server.ca_file, cluster_names=[cluster], task_poll_interval=0.05,
             api_retry_count=1, cluster_read_max_age=0,
             # vcsim serves no WSDL; suds (oslo.vmware) reads ours.
             wsdl_location=wsdl_file)
    override("vsphere_drs", poll_interval=3600, balance_interval=0)


@pytest.fixture
def on_vcsim(vcsim_binary, conf_overrides, nova_db, wsdl_file):  # noqa: F811
    """(driver, vcsim) with init_host done against vcsim's 3-host cluster."""
    with Vcsim(vcsim_binary, VcsimInventory(hosts_per_cluster=3, vms=2)) as server:
        _configure(conf_overrides, server, wsdl_file, CLUSTER)
        drv = vsphere_driver.VSphereDriver(None)
        drv.init_host("compute-1")
        yield drv, server
        drv.cleanup_host("compute-1")


@pytest.fixture
def vcsim_si(on_vcsim):
    """pyVmomi logged in to the same vcsim: the test's own view of it."""
    server = on_vcsim[1]
    si = SmartConnect(host="127.0.0.1", port=server.port, user=server.username,
                      pwd=server.password,
                      sslContext=ssl.create_default_context(cafile=server.ca_file))
    yield si
    Disconnect(si)


def _clusters(si) -> list[vim.ClusterComputeResource]:
    content = si.RetrieveContent()
    return list(content.viewManager.CreateContainerView(
        content.rootFolder, [vim.ClusterComputeResource], True).view)


def _cluster(si) -> vim.ClusterComputeResource:
    return next(c for c in _clusters(si) if c.name == CLUSTER)


def _vm(si, instance) -> vim.VirtualMachine | None:
    return si.RetrieveContent().searchIndex.FindByUuid(None, instance.uuid, True, True)


def _spawn(drv, ctx, instance, image_meta=None) -> None:  # noqa: F811
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=[])


def _disks(vm) -> list[vim.vm.device.VirtualDisk]:
    return [d for d in vm.config.hardware.device if isinstance(d, vim.vm.device.VirtualDisk)]


def test_start_reports_the_cluster_as_vcsim_describes_it(on_vcsim, vcsim_si):
    drv, _ = on_vcsim
    hosts = _cluster(vcsim_si).host
    (node,) = drv.get_available_nodes()
    resources = drv.get_available_resource(node)
    assert resources["vcpus"] == sum(h.summary.hardware.numCpuThreads for h in hosts)
    assert resources["memory_mb"] == sum(h.summary.hardware.memorySize // MiB for h in hosts)
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    inventory = tree.data(node).inventory
    assert inventory["VCPU"]["total"] == resources["vcpus"]
    assert inventory["MEMORY_MB"]["total"] == resources["memory_mb"]
    # One host must fit what placement may send here.
    assert inventory["MEMORY_MB"]["max_unit"] <= max(
        h.summary.hardware.memorySize // MiB for h in hosts)
    assert inventory["DISK_GB"]["total"] > 0


def test_spawn_power_reboot_and_destroy(on_vcsim, vcsim_si, ctx):  # noqa: F811
    drv, _ = on_vcsim
    (node,) = drv.get_available_nodes()
    instance = make_instance(node, vcpus=1, memory_mb=512, root_gb=1)
    vifs = network_model.NetworkInfo([
        network_model.VIF(id=str(uuid.uuid4()), address=f"fa:16:3e:00:00:0{i}",
                          network=network_model.Network(id=f"net-{i}", bridge=name,
                                                        label=name))
        for i, name in enumerate(("VM Network", "DC0_DVPG0"))])
    drv.spawn(ctx, instance, None, [], None, {}, network_info=vifs)
    vm = _vm(vcsim_si, instance)
    assert vm is not None and vm.name == instance.uuid
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (1, 512)
    nics = {d.macAddress: d.backing for d in vm.config.hardware.device
            if isinstance(d, vim.vm.device.VirtualEthernetCard)}
    assert nics["fa:16:3e:00:00:00"].deviceName == "VM Network"
    portgroup = next(n for n in vm.runtime.host.network if n.name == "DC0_DVPG0")
    port = nics["fa:16:3e:00:00:01"].port
    assert port.portgroupKey == portgroup.key
    assert port.switchUuid == portgroup.config.distributedVirtualSwitch.uuid
    assert vm.runtime.host in _cluster(vcsim_si).host  # the host our DRS picked
    assert vm.runtime.powerState == "poweredOn"
    assert drv.get_info(instance).state == power_state.RUNNING

    drv.power_off(instance)
    assert vm.runtime.powerState == "poweredOff"
    assert drv.get_info(instance).state == power_state.SHUTDOWN
    drv.power_on(ctx, instance, [])
    assert vm.runtime.powerState == "poweredOn"
    # vcsim has no RebootGuest: a soft reboot becomes a reset, as without VMware Tools.
    drv.reboot(ctx, instance, [], "SOFT")
    drv.reboot(ctx, instance, [], "HARD")
    assert vm.runtime.powerState == "poweredOn"
    assert drv.get_info(instance).state == power_state.RUNNING

    drv.destroy(ctx, instance, [])
    assert _vm(vcsim_si, instance) is None
    assert not drv.instance_exists(instance)


def test_a_re_registered_vm_is_found_again(on_vcsim, vcsim_si, ctx):  # noqa: F811
    drv, _ = on_vcsim
    (node,) = drv.get_available_nodes()
    instance = make_instance(node, vcpus=1, memory_mb=512, root_gb=1)
    _spawn(drv, ctx, instance)
    drv.power_off(instance)
    # An operator unregisters the VM and registers it again: same VM, new
    # managed object reference -- the driver's is stale now.
    old = _vm(vcsim_si, instance)
    path, folder, pool, host = (old.config.files.vmPathName, old.parent, old.resourcePool,
                                old.runtime.host)
    old.UnregisterVM()
    task = folder.RegisterVM_Task(path=path, name=instance.uuid, asTemplate=False, pool=pool,
                                  host=host)
    WaitForTask(task)
    new = task.info.result
    # vCenter keeps the instance UUID in the .vmx; vcsim makes a new one.
    WaitForTask(new.ReconfigVM_Task(vim.vm.ConfigSpec(instanceUuid=instance.uuid)))
    assert new._moId != old._moId

    assert drv.get_info(instance).state == power_state.SHUTDOWN
    drv.power_on(ctx, instance, [])
    assert new.runtime.powerState == "poweredOn"
    drv.reboot(ctx, instance, [], "HARD")
    drv.destroy(ctx, instance, [])
    assert _vm(vcsim_si, instance) is None


def test_drs_pass_spreads_vms_piled_on_one_host(on_vcsim, vcsim_si, ctx):  # noqa: F811
    drv, _ = on_vcsim
    (node,) = drv.get_available_nodes()
    instances = [make_instance(node, vcpus=1, memory_mb=1024, root_gb=1, name=f"w-{i}")
                 for i in range(3)]
    for instance in instances:
        _spawn(drv, ctx, instance)
    first = _cluster(vcsim_si).host[0]
    for instance in instances:
        vm = _vm(vcsim_si, instance)
        if vm.runtime.host != first:
            WaitForTask(vm.RelocateVM_Task(vim.vm.RelocateSpec(host=first)))
    assert {_vm(vcsim_si, i).runtime.host for i in instances} == {first}
    # vcsim's ContainerView of a cluster never shows VMs created after the
    # view (README: what cannot work on vcsim): a nova-compute started now
    # sees them, as it would see them on vCenter at any time.
    drv.cleanup_host("compute-1")
    drv.init_host("compute-1")
    assert sorted(drv.list_instance_uuids()) == sorted(i.uuid for i in instances)

    reports = drv.run_drs_pass(node, force_balance=True)
    (balance,) = [r for r in reports if r.kind == "balance"]
    assert balance.moves and balance.applied and not balance.failed
    assert balance.imbalance_after < balance.imbalance_before
    vms = {vm._moId: vm for vm in (_vm(vcsim_si, i) for i in instances)}
    for move in balance.moves:
        assert vms[move.vm].runtime.host._moId == move.target
    assert len({vm.runtime.host for vm in vms.values()}) > 1
    for instance in instances:
        drv.destroy(ctx, instance, [])
    assert all(_vm(vcsim_si, i) is None for i in instances)


def test_spawn_from_each_vmdk_type(on_vcsim, vcsim_si, ctx, glance):  # noqa: F811
    drv, _ = on_vcsim
    (node,) = drv.get_available_nodes()
    images = {"thin": DATA, "preallocated": DATA,
              "sparse": sparse_vmdk.monolithic_sparse(32 * MiB, DATA),
              "streamOptimized": b"".join(vmdk_stream.stream_optimized(32 * 1024, DATA))}
    for disk_type, data in images.items():
        image = vmdk_image(glance, ctx, data, vmware_disktype=disk_type)
        instance = make_instance(node, vcpus=1, memory_mb=256, root_gb=1)
        _spawn(drv, ctx, instance, image)
        vm = _vm(vcsim_si, instance)
        assert vm.runtime.powerState == "poweredOn", disk_type
        [root] = _disks(vm)
        assert root.capacityInKB == GiB_KB, disk_type
        drv.destroy(ctx, instance, [])
        assert _vm(vcsim_si, instance) is None


def test_suspend_rescue_and_resize_in_place(on_vcsim, vcsim_si, ctx, glance):  # noqa: F811
    drv, _ = on_vcsim
    (node,) = drv.get_available_nodes()
    instance = make_instance(node, vcpus=1, memory_mb=512, root_gb=1)
    _spawn(drv, ctx, instance)
    vm = _vm(vcsim_si, instance)
    drv.suspend(ctx, instance)
    assert vm.runtime.powerState == "suspended"
    assert drv.get_info(instance).state == power_state.SUSPENDED
    drv.resume(ctx, instance, [])
    assert vm.runtime.powerState == "poweredOn"

    rescue_image = vmdk_image(glance, ctx, DATA, vmware_disktype="thin")
    drv.rescue(ctx, instance, [], rescue_image, "password", None)
    assert len(_disks(vm)) == 2 and vm.runtime.powerState == "poweredOn"
    drv.unrescue(ctx, instance)
    assert len(_disks(vm)) == 1 and vm.runtime.powerState == "poweredOn"

    flavor = objects.Flavor(name="f2", vcpus=2, memory_mb=1024, root_gb=2, ephemeral_gb=0,
                            swap=0, flavorid="2", extra_specs={})
    migration = objects.Migration(source_node=node, dest_node=node, source_compute="compute-1",
                                  dest_compute="compute-1", migration_type="resize", id=1,
                                  uuid=str(uuid.uuid4()))
    drv.migrate_disk_and_power_off(ctx, instance, "compute-1", flavor, [])
    instance.flavor, instance.vcpus, instance.memory_mb, instance.root_gb = flavor, 2, 1024, 2
    drv.finish_migration(ctx, migration, instance, {}, [], objects.ImageMeta.from_dict({}),
                         True, None, True)
    drv.confirm_migration(ctx, migration, instance, [])
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (2, 1024)
    assert [d.capacityInKB for d in _disks(vm)] == [2 * GiB_KB]
    assert vm.runtime.powerState == "poweredOn"
    drv.destroy(ctx, instance, [])


def test_live_and_cold_migration_between_clusters(vcsim_binary, conf_overrides,  # noqa: F811
                                                  nova_db, wsdl_file, ctx):  # noqa: F811
    inventory = VcsimInventory(clusters=2, hosts_per_cluster=2, standalone_hosts=0, vms=1)
    with Vcsim(vcsim_binary, inventory) as server:
        drivers = []
        for host, cluster in (("compute-1", "DC0_C0"), ("compute-2", "DC0_C1")):
            _configure(conf_overrides, server, wsdl_file, cluster)
            drivers.append(vsphere_driver.VSphereDriver(None))
            drivers[-1].init_host(host)
        src, dst = drivers
        si = SmartConnect(host="127.0.0.1", port=server.port, user=server.username,
                          pwd=server.password,
                          sslContext=ssl.create_default_context(cafile=server.ca_file))
        try:
            clusters = {c.name: c for c in _clusters(si)}
            (node,) = src.get_available_nodes()
            instance = make_instance(node, vcpus=1, memory_mb=512, root_gb=1)
            instance.info_cache = objects.InstanceInfoCache(
                network_info=network_model.NetworkInfo())
            _spawn(src, ctx, instance)
            assert NovaFlow(ctx, src, dst).run(instance) == [("post", "compute-2")]
            vm = _vm(si, instance)
            assert vm.runtime.host in clusters["DC0_C1"].host
            assert vm.runtime.powerState == "poweredOn"
            # And back, cold, by the other nova-compute.
            migration = objects.Migration(source_node=instance.node, dest_node=node,
                                          source_compute="compute-2",
                                          dest_compute="compute-1", migration_type="migration",
                                          id=2, uuid=str(uuid.uuid4()))
            dst.migrate_disk_and_power_off(ctx, instance, "compute-1", instance.flavor, [])
            src.finish_migration(ctx, migration, instance, {}, [],
                                 objects.ImageMeta.from_dict({}), False, None, True)
            dst.confirm_migration(ctx, migration, instance, [])
            instance.host, instance.node = "compute-1", node
            assert vm.runtime.host in clusters["DC0_C0"].host
            assert vm.runtime.powerState == "poweredOn"
            src.destroy(ctx, instance, [])
            assert _vm(si, instance) is None
        finally:
            Disconnect(si)
            for drv in drivers:
                drv.cleanup_host("compute")
