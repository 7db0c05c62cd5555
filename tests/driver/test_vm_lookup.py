"""Finding an instance's VM: FindAllByUuid on vCenter, FindByUuid where it is missing, and
references that find their VM again when vCenter forgets them.

Against our simulator, which has every method vCenter has: a missing
FindAllByUuid (as on VMware's vcsim, see tests/interop) is injected.
"""

from __future__ import annotations

import threading

import pytest
from nova import exception
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import StableMoRef, VSphereSession
from nova_vsphere_driver.vsphere.vm import VmOperations
from tests.driver.conftest import WSDL_LOCATION, make_instance


def _spawn(drv, ctx, instance) -> None:
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


def _counts(sim) -> tuple[int, int]:
    return sim.request_counts.get("FindAllByUuid", 0), sim.request_counts.get("FindByUuid", 0)


def test_vcenter_lookups_use_find_all_by_uuid(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    find_all, find = _counts(sim)
    assert drv.instance_exists(instance)
    assert not drv.instance_exists(make_instance(node_a))
    assert _counts(sim) == (find_all + 2, find)


def test_lookups_fall_back_to_find_by_uuid_where_find_all_is_missing(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    sim.faults.fail_next("FindAllByUuid", "MethodNotFound", count=100)
    find_all, find = _counts(sim)
    assert drv.instance_exists(instance)
    assert not drv.instance_exists(make_instance(node_a))
    drv.power_off(instance)
    assert sim.vm(instance.uuid).get_property("runtime.powerState") == "poweredOff"
    # Asked once; FindByUuid from then on.
    assert _counts(sim) == (find_all + 1, find + 2)


def test_other_faults_of_find_all_by_uuid_are_errors(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    sim.faults.fail_next("FindAllByUuid", "RuntimeFault")
    find = _counts(sim)[1]
    with pytest.raises(exception.NovaException, match="vCenter error"):
        drv.instance_exists(instance)
    assert _counts(sim)[1] == find
    assert drv.instance_exists(instance)  # and FindAllByUuid is still used
    assert _counts(sim)[1] == find


@pytest.fixture
def vmops(tls_sim):
    sim = tls_sim.simulator
    session = VSphereSession("127.0.0.1", tls_sim.port, sim.username, sim.password,
                             ca_file=tls_sim.ca_file, wsdl_location=WSDL_LOCATION[-1],
                             api_retry_count=0, task_poll_interval=0.05)
    yield VmOperations(session)
    session.logout()


def _lost(vmops, instance_uuid: str) -> StableMoRef:
    """A reference to the VM of ``instance_uuid`` that vCenter no longer knows.

    As after the VM was unregistered and registered again under a new
    reference (which our simulator cannot do; tests/interop does it on vcsim).
    """
    return vmops.reference(vim_util.get_moref("vm-forgotten", "VirtualMachine"), instance_uuid)


def test_a_lost_reference_finds_its_vm_again_once(vsphere, vmops, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, name="lost")
    _spawn(drv, ctx, instance)
    ref = _lost(vmops, instance.uuid)
    finds = _counts(sim)[0]
    assert vmops.properties(ref, ["name"]) == {"name": instance.uuid}
    assert vim_util.get_moref_value(ref) == sim.vm(instance.uuid).moid
    vmops.power_off(ref)  # keyword and positional calls, tasks too
    assert sim.vm(instance.uuid).get_property("runtime.powerState") == "poweredOff"
    assert _counts(sim)[0] == finds + 1


def test_threads_sharing_a_lost_reference_find_it_again_once(vsphere, vmops, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    ref = _lost(vmops, instance.uuid)
    finds = _counts(sim)[0]
    results, errors = [], []

    def read():
        try:
            results.append(vmops.properties(ref, ["runtime.powerState"]))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert [str(r["runtime.powerState"]) for r in results] == ["poweredOn"] * 4
    assert _counts(sim)[0] == finds + 1


def test_a_reference_to_a_deleted_vm_stays_not_found(vsphere, vmops, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    ref = vmops.find_by_uuid(instance.uuid)
    drv.destroy(ctx, instance, [])
    finds = _counts(sim)[0]
    with pytest.raises(vexc.ManagedObjectNotFoundException):
        vmops.power_on(ref)
    assert _counts(sim)[0] == finds + 1
    # The driver reports the instance gone, as before.
    with pytest.raises(exception.InstanceNotFound):
        drv.power_on(ctx, instance, [])
