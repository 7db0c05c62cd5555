"""A fault is an error: a refused property read never reads as "no VMs, no capacity".

vCenter answers a read it refuses on a valid session with SecurityError or
NotAuthenticated (a missing privilege, a vCenter in trouble); oslo.vmware
reports both as NotAuthenticated, and used to hand back an empty answer that
the driver took for an empty cluster. A genuinely empty answer (a read that
selects nothing) must stay empty, without a re-login.
"""

from __future__ import annotations

import pytest
from nova import exception
from nova.compute import power_state
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import TASK_POLL_ATTEMPTS, CallRefused
from tests.driver.conftest import make_instance, new_tree, node_of

REFUSALS = ["SecurityError", "NotAuthenticated"]

# The reads refused here are RetrievePropertiesEx: every read without the
# cluster cache. The cache's reads (WaitForUpdatesEx): the tests at the end.
pytestmark = pytest.mark.vsphere_conf(cluster_cache=False)


def _spawn(drv, ctx, instance) -> None:
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])


def _refuse_next_read(sim, fault: str, count: int = 1) -> None:
    sim.faults.fail_next("RetrievePropertiesEx", fault, count=count)


@pytest.fixture
def booted(vsphere, ctx, node_a):
    """(driver, simulator, node, a running instance)."""
    drv, server = vsphere
    instance = make_instance(node_a)
    _spawn(drv, ctx, instance)
    return drv, server.simulator, node_a, instance


@pytest.mark.parametrize("fault", REFUSALS)
def test_capacity_never_drops_because_a_read_was_refused(booted, fault):
    drv, sim, node, _ = booted
    logins = sim.request_counts["Login"]
    good = drv.get_available_resource(node)
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    inventory = tree.data(node).inventory

    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException) as err:
        drv.get_available_resource(node)
    assert fault in str(err.value) and "refused" in str(err.value)
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.update_provider_tree(tree, node)
    # Placement keeps what it had: no totals of 0 or 1.
    assert tree.data(node).inventory == inventory
    assert inventory["MEMORY_MB"]["total"] == sum(h.memory_mb for h in
                                                  sim.cluster("cluster-a").hosts)
    # The session was valid: nobody logged in again, and the next read is whole.
    assert sim.request_counts["Login"] == logins
    assert drv.get_available_resource(node) == good


@pytest.mark.parametrize("fault", REFUSALS)
def test_instances_never_vanish_because_a_read_was_refused(booted, fault):
    drv, sim, _, instance = booted
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.list_instance_uuids()
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.list_instances()
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.get_info(instance)
    assert drv.list_instance_uuids() == [instance.uuid]
    assert drv.get_info(instance).state == power_state.RUNNING


@pytest.mark.parametrize("fault", REFUSALS)
def test_a_refused_task_read_is_an_error_in_the_task_wait(booted, fault):
    drv, sim, _, instance = booted
    # PowerOffVM_Task starts; every read of its info is refused (one refused
    # read is polled again: tests/driver/test_reliability.py).
    _refuse_next_read(sim, fault, count=TASK_POLL_ATTEMPTS)
    with pytest.raises(exception.NovaException) as err:
        drv.power_off(instance)
    assert fault in str(err.value)
    assert not isinstance(err.value.__cause__, AttributeError)


@pytest.mark.parametrize("fault", REFUSALS)
def test_a_refused_read_in_a_drs_pass_or_spawn_claims_and_moves_nothing(booted, ctx, fault):
    drv, sim, node, _ = booted
    vms = {v.moid: v.get_property("runtime.host")._moId for v in sim.vms()}
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.run_drs_pass(node, force_balance=True)
    other = make_instance(node)
    _refuse_next_read(sim, fault)
    with pytest.raises(exception.NovaException):
        _spawn(drv, ctx, other)
    assert other.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)
    assert {v.moid: v.get_property("runtime.host")._moId for v in sim.vms()} == vms


def test_a_refusal_on_every_read_is_raised_not_retried_forever(booted):
    drv, sim, node, _ = booted
    _refuse_next_read(sim, "SecurityError", count=1000)
    calls = sim.request_counts["RetrievePropertiesEx"]
    with pytest.raises(exception.NovaException):
        drv.get_available_resource(node)
    sim.faults.clear()
    assert sim.request_counts["RetrievePropertiesEx"] - calls == 1


def test_refusal_carries_the_fault_vcenter_sent(booted):
    drv, sim, _, _ = booted
    session = drv.services.session
    _refuse_next_read(sim, "SecurityError")
    with pytest.raises(CallRefused) as err:
        session.call("get_object_property", session.content.rootFolder, "name")
    assert err.value.fault_list == ["SecurityError"]


def test_a_genuinely_empty_answer_stays_empty(booted):
    drv, sim, _, _ = booted
    session = drv.services.session
    logins = sim.request_counts["Login"]
    checks = sim.request_counts.get("SessionIsActive", 0)
    dc_ref = vim_util.get_moref(drv.services.nodes[node_of(drv, "cluster-a")].datacenter,
                                "Datacenter")
    network_folder = session.call("get_object_property", dc_ref, "networkFolder")
    view = session.invoke("CreateContainerView", session.content.viewManager,
                          container=network_folder, type=["VirtualMachine"], recursive=True)
    try:
        factory = session.vim.client.factory
        spec = vim_util.build_property_filter_spec(
            factory, [vim_util.build_property_spec(factory, "VirtualMachine", ["name"])],
            [vim_util.build_object_spec(factory, view, [vim_util.build_traversal_spec(
                factory, "view", "ContainerView", "view", False, [])])])
        # (suds leaves an empty RetrieveOptions out, and vCenter refuses a call
        # without its required options: "Required parameter options is missing".)
        options = session.factory("RetrieveOptions")
        options.maxObjects = 100
        answer = session.invoke("RetrievePropertiesEx", session.content.propertyCollector,
                                specSet=[spec], options=options)
        assert list(answer.objects) == []
        # The same through oslo.vmware's helpers: a reference of type Task to an
        # object that is no task selects nothing either.
        not_a_task = vim_util.get_moref(sim.vms()[0].moid, "Task")
        assert session.call("get_object_property", not_a_task, "info") is None
    finally:
        session.invoke("DestroyView", view)
    assert sim.request_counts["Login"] == logins  # an empty answer is no expired session
    assert sim.request_counts.get("SessionIsActive", 0) == checks + 2


def test_an_empty_task_info_is_a_clear_error(booted):
    drv, sim, _, instance = booted
    session = drv.services.session
    # A reference of type Task to an object that is no task: vCenter's
    # property collector selects nothing for it.
    not_a_task = vim_util.get_moref(sim.vm(instance.uuid).moid, "Task")
    with pytest.raises(vexc.VimException, match="no info for task"):
        session.wait_for_task(not_a_task, timeout=5)


# -- the cluster cache's reads --------------------------------------------------------------
# With [vsphere] cluster_cache (the default) a cluster read is one of the
# cache's WaitForUpdatesEx calls, its first one the full read: a refusal of it
# is an error just the same, never an empty or an old cluster.

cache_on = pytest.mark.vsphere_conf(cluster_cache=True)


def _refuse_next_update(sim, fault: str, count: int = 1) -> None:
    sim.faults.fail_next("WaitForUpdatesEx", fault, count=count)


@cache_on
@pytest.mark.parametrize("fault", REFUSALS)
def test_a_refused_cache_update_loses_no_capacity_and_no_instance(booted, fault):
    drv, sim, node, instance = booted
    logins = sim.request_counts["Login"]
    good = drv.get_available_resource(node)
    tree = new_tree(node)
    drv.update_provider_tree(tree, node)
    inventory = tree.data(node).inventory

    _refuse_next_update(sim, fault)
    with pytest.raises(exception.NovaException) as err:
        drv.get_available_resource(node)
    assert fault in str(err.value) and "refused" in str(err.value)
    _refuse_next_update(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.update_provider_tree(tree, node)
    assert tree.data(node).inventory == inventory
    _refuse_next_update(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.list_instance_uuids()
    assert sim.request_counts["Login"] == logins
    assert drv.get_available_resource(node) == good
    assert drv.list_instance_uuids() == [instance.uuid]


@cache_on
@pytest.mark.parametrize("fault", REFUSALS)
def test_a_refused_cache_update_in_a_drs_pass_or_spawn_claims_and_moves_nothing(
        booted, ctx, fault):
    drv, sim, node, _ = booted
    vms = {v.moid: v.get_property("runtime.host")._moId for v in sim.vms()}
    _refuse_next_update(sim, fault)
    with pytest.raises(exception.NovaException):
        drv.run_drs_pass(node, force_balance=True)
    other = make_instance(node)
    _refuse_next_update(sim, fault)
    with pytest.raises(exception.NovaException):
        _spawn(drv, ctx, other)
    assert other.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)
    assert {v.moid: v.get_property("runtime.host")._moId for v in sim.vms()} == vms


@cache_on
def test_a_refusal_of_every_cache_update_is_raised_not_retried_forever(booted):
    drv, sim, node, _ = booted
    _refuse_next_update(sim, "SecurityError", count=1000)
    calls = sim.request_counts["WaitForUpdatesEx"]
    with pytest.raises(exception.NovaException):
        drv.get_available_resource(node)
    sim.faults.clear()
    assert sim.request_counts["WaitForUpdatesEx"] - calls == 1
