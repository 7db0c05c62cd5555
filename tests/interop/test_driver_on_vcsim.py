"""Our driver's lifecycle on VMware's vcsim: a vCenter implementation nobody here wrote.

Everything is asserted through vcsim's own API (pyVmomi), never through our
simulator. vcsim lacks some methods vCenter has (FindAllByUuid, RebootGuest);
the driver falls back to their older equivalents there. What cannot work on
vcsim is listed in the README's simulator section.
"""

from __future__ import annotations

import ssl

import pytest
from nova.compute import power_state
from pyVim.connect import Disconnect, SmartConnect
from pyVim.task import WaitForTask
from pyVmomi import vim

from nova_vsphere_driver import driver as vsphere_driver
from tests.driver.conftest import (  # noqa: F401  (fixtures)
    conf_overrides,
    ctx,
    make_instance,
    new_tree,
    nova_db,
)
from tests.interop.vcsim import Vcsim, VcsimInventory

CLUSTER = "DC0_C0"
MiB = 1024 * 1024


@pytest.fixture
def on_vcsim(vcsim_binary, conf_overrides, nova_db, wsdl_file):  # noqa: F811
    """(driver, vcsim) with init_host done against vcsim's 3-host cluster."""
    with Vcsim(vcsim_binary, VcsimInventory(hosts_per_cluster=3, vms=2)) as server:
        conf_overrides("vsphere", host_ip="127.0.0.1", host_port=server.port,
                       host_username=server.username, host_password=server.password,
                       ca_file=server.ca_file, cluster_names=[CLUSTER],
                       task_poll_interval=0.05, api_retry_count=1, cluster_read_max_age=0,
                       # vcsim serves no WSDL; suds (oslo.vmware) reads ours.
                       wsdl_location=wsdl_file)
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
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


def _cluster(si) -> vim.ClusterComputeResource:
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder,
                                                   [vim.ClusterComputeResource], True)
    return next(c for c in view.view if c.name == CLUSTER)


def _vm(si, instance) -> vim.VirtualMachine | None:
    return si.RetrieveContent().searchIndex.FindByUuid(None, instance.uuid, True, True)


def _spawn(drv, ctx, instance) -> None:  # noqa: F811
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


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
    _spawn(drv, ctx, instance)
    vm = _vm(vcsim_si, instance)
    assert vm is not None and vm.name == instance.uuid
    assert (vm.config.hardware.numCPU, vm.config.hardware.memoryMB) == (1, 512)
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
