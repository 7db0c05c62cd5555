"""Storage policies (SPBM) through VSphereDriver, asserted in the simulator behind SOAP and
through its storage policy service: the flavor's or the default policy on the VM and its
disks, datastores limited to those compatible with it, and every refusal before anything
is made."""

from __future__ import annotations

import uuid

import pytest
from nova import exception, objects
from nova.network import model as network_model
from oslo_vmware import pbm as oslo_pbm

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator import inventory
from tests.driver.conftest import configure, make_instance, node_of
from tests.driver.guest_support import disks, sim_vm, spawn, vmdk_image
from tests.driver.test_live_migrate import NovaFlow
from tests.driver.test_migrate import _resize
from tests.fixtures import running_simulator


def _inventory() -> dict:
    data = inventory.default_inventory()
    data["storage_policies"] += [
        {"name": "nowhere-a", "description": "only cluster-b", "datastores": ["shared-b"]},
        {"name": "a-or-all", "datastores": ["shared-a", "shared-all"]}]
    return data


@pytest.fixture
def pbm_sim():
    with running_simulator(_inventory(), tls=True) as server:
        yield server


def _start(server, conf_overrides, clusters=("cluster-a",), **options):
    configure(conf_overrides, server, clusters=clusters, **options)
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    driver = vsphere_driver.VSphereDriver(None)
    driver.init_host("compute-1")
    return driver


@pytest.fixture
def drv(pbm_sim, conf_overrides, nova_db):
    driver = _start(pbm_sim, conf_overrides, pbm_enabled=True, pbm_default_policy="nfs")
    yield driver
    driver.cleanup_host("compute-1")


@pytest.fixture
def node(drv) -> str:
    return node_of(drv, "cluster-a")


def _policy_id(sim, name: str) -> str:
    return sim.storage_policies.named(name).profile_id


def _profiles(drv, vm_moid: str, disk_key: int | None = None) -> list[str]:
    """The policies SPBM associates with a VM (or one of its disks), as a client asks."""
    session = drv.services.session
    factory = session.pbm.client.factory
    entity = factory.create("ns0:PbmServerObjectRef")
    if disk_key is None:
        entity.objectType, entity.key = "virtualMachine", vm_moid
    else:
        entity.objectType, entity.key = "virtualDiskId", f"{vm_moid}:{disk_key}"
    found = session.invoke_api(session.pbm, "PbmQueryAssociatedProfile",
                               session.pbm.service_content.profileManager, entity=entity)
    return [p.uniqueId for p in found or []]


def _datastore(sim, instance) -> str:
    path = sim_vm(sim, instance).config.files.vmPathName
    return path[1:path.index("]")]


def test_default_policy_on_the_vm_and_its_root_disk_on_a_compatible_datastore(
        drv, ctx, node, pbm_sim, glance):
    sim = pbm_sim.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node, image_ref=image.id, root_gb=1)
    spawn(drv, ctx, instance, image_meta=image)
    vm = sim_vm(sim, instance)
    nfs = _policy_id(sim, "nfs")
    # shared-a has the most room in cluster-a; only shared-all is compatible with nfs.
    assert _datastore(sim, instance) == "shared-all"
    [root] = disks(sim, instance)
    assert root.backing.fileName.startswith(f"[shared-all] {instance.uuid}/")
    assert _profiles(drv, vm.moid) == [nfs]
    assert _profiles(drv, vm.moid, root.key) == [nfs]


@pytest.mark.parametrize("key", ["vsphere:storage_policy", "vmware:storage_policy"])
def test_the_flavors_policy_wins(drv, ctx, node, pbm_sim, key):
    sim = pbm_sim.simulator
    instance = make_instance(node, root_gb=1, extra_specs={key: "gold"})
    spawn(drv, ctx, instance)
    vm = sim_vm(sim, instance)
    assert _datastore(sim, instance) == "shared-a"  # gold: shared-a and shared-b; cluster-a
    assert _profiles(drv, vm.moid) == [_policy_id(sim, "gold")]
    [root] = disks(sim, instance)
    assert _profiles(drv, vm.moid, root.key) == [_policy_id(sim, "gold")]


def test_an_unknown_policy_is_refused_before_anything_is_made(drv, ctx, node, pbm_sim):
    sim = pbm_sim.simulator
    vms = len(sim.vms())
    instance = make_instance(node, extra_specs={"vsphere:storage_policy": "platinum"})
    with pytest.raises(exception.InvalidInput, match="platinum.*gold"):
        spawn(drv, ctx, instance)
    assert len(sim.vms()) == vms
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def test_no_compatible_datastore_in_the_cluster_is_no_room_here(drv, ctx, node, pbm_sim):
    sim = pbm_sim.simulator
    vms = len(sim.vms())
    instance = make_instance(node, extra_specs={"vsphere:storage_policy": "nowhere-a"})
    with pytest.raises(exception.ComputeResourcesUnavailable, match="nowhere-a"):
        spawn(drv, ctx, instance)
    assert len(sim.vms()) == vms
    assert instance.uuid not in drv.services.drs.claims(drv.services.nodes[node].moref)


def test_a_policy_deleted_and_made_again_is_looked_up_again(drv, ctx, node, pbm_sim):
    sim = pbm_sim.simulator
    first = make_instance(node, root_gb=1, extra_specs={"vsphere:storage_policy": "gold"})
    spawn(drv, ctx, first)
    old = sim.storage_policies.named("gold")
    with sim.registry.lock:
        del sim.storage_policies.policies[old.profile_id]
        sim.storage_policies.add("gold", datastores=["shared-a", "shared-b"],
                                 profile_id=str(uuid.uuid4()))
    second = make_instance(node, root_gb=1, extra_specs={"vsphere:storage_policy": "gold"})
    spawn(drv, ctx, second)
    assert _profiles(drv, sim_vm(sim, second).moid) == [_policy_id(sim, "gold")] != \
        [old.profile_id]


def test_without_storage_policies_only_the_in_tree_key_is_ignored(pbm_sim, conf_overrides,
                                                                  nova_db, ctx):
    sim = pbm_sim.simulator
    driver = _start(pbm_sim, conf_overrides)
    try:
        node = node_of(driver, "cluster-a")
        ignored = make_instance(node, root_gb=1,
                                extra_specs={"vmware:storage_policy": "gold"})
        spawn(driver, ctx, ignored)
        assert sim_vm(sim, ignored).storage_profiles == {}
        refused = make_instance(node, extra_specs={"vsphere:storage_policy": "gold"})
        with pytest.raises(exception.InvalidInput, match="pbm_enabled"):
            spawn(driver, ctx, refused)
        assert not driver.instance_exists(refused)
    finally:
        driver.cleanup_host("compute-1")


@pytest.mark.parametrize("options,error", [
    ({"pbm_enabled": True}, r"\[vsphere\] pbm_default_policy is required"),
    ({"pbm_enabled": True, "pbm_default_policy": "platinum"},
     r"\[vsphere\] pbm_default_policy='platinum'.*gold"),
    ({"pbm_enabled": True, "pbm_default_policy": "gold",
      "pbm_wsdl_location": "file:///no/such/pbmService.wsdl"},
     r"\[vsphere\] pbm_wsdl_location='file:///no/such/pbmService.wsdl'"),
])
def test_init_host_names_the_storage_policy_option_at_fault(pbm_sim, conf_overrides, nova_db,
                                                            options, error):
    configure(conf_overrides, pbm_sim, clusters=("cluster-a",), **options)
    driver = vsphere_driver.VSphereDriver(None)
    with pytest.raises(vsphere_driver.ConfigurationError, match=error):
        driver.init_host("compute-1")
    # No session left behind.
    assert not pbm_sim.simulator.sessions


def test_the_wsdl_the_simulator_serves_works_as_pbm_wsdl_location(pbm_sim, conf_overrides,
                                                                  nova_db, ctx):
    url = f"https://127.0.0.1:{pbm_sim.port}/pbm/pbmService.wsdl"
    driver = _start(pbm_sim, conf_overrides, pbm_enabled=True, pbm_default_policy="gold",
                    pbm_wsdl_location=url)
    try:
        policy = driver.services.spbm.policy("gold")
        stores = {d.name: d.moid for d in pbm_sim.simulator.datastores.values()}
        assert driver.services.spbm.matching(policy, stores.values()) == \
            (policy, {stores["shared-a"], stores["shared-b"]})
        assert oslo_pbm.get_profile_id_by_name(driver.services.session, "nfs") is not None
    finally:
        driver.cleanup_host("compute-1")


# -- moves between clusters --------------------------------------------------------------


def test_cold_migration_moves_storage_only_to_compatible_datastores(pbm_sim, conf_overrides,
                                                                    nova_db, ctx):
    """cluster-b does not mount shared-a: the VM's files move, to the datastore the policy
    allows (shared-all), not the roomiest one (shared-b)."""
    sim = pbm_sim.simulator
    driver = _start(pbm_sim, conf_overrides, clusters=("cluster-a", "cluster-b"),
                    pbm_enabled=True, pbm_default_policy="a-or-all")
    try:
        instance = make_instance(node_of(driver, "cluster-a"), root_gb=1)
        spawn(driver, ctx, instance)
        assert _datastore(sim, instance) == "shared-a"
        _resize(driver, ctx, instance, instance.flavor, node_of(driver, "cluster-b"))
        assert sim_vm(sim, instance).cluster.name == "cluster-b"
        assert _datastore(sim, instance) == "shared-all"
        assert _profiles(driver, sim_vm(sim, instance).moid) == [_policy_id(sim, "a-or-all")]
    finally:
        driver.cleanup_host("compute-1")


def test_live_migration_moves_storage_only_to_compatible_datastores(pbm_sim, conf_overrides,
                                                                    nova_db, ctx):
    sim = pbm_sim.simulator
    options = {"pbm_enabled": True, "pbm_default_policy": "a-or-all"}
    src = _start(pbm_sim, conf_overrides, **options)
    configure(conf_overrides, pbm_sim, clusters=("cluster-b",), **options)
    dst = vsphere_driver.VSphereDriver(None)
    dst.init_host("compute-2")
    try:
        instance = make_instance(node_of(src, "cluster-a"), root_gb=1, memory_mb=2048)
        instance.info_cache = objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo())
        spawn(src, ctx, instance)
        assert _datastore(sim, instance) == "shared-a"
        assert NovaFlow(ctx, src, dst).run(instance) == [("post", "compute-2")]
        assert sim_vm(sim, instance).cluster.name == "cluster-b"
        assert _datastore(sim, instance) == "shared-all"
    finally:
        dst.cleanup_host("compute-2")
        src.cleanup_host("compute-1")


def test_the_rescue_disk_gets_the_instances_policy(drv, ctx, node, pbm_sim, glance):
    sim = pbm_sim.simulator
    image = vmdk_image(ctx, glance)
    instance = make_instance(node, image_ref=image.id, root_gb=1,
                             extra_specs={"vsphere:storage_policy": "gold"})
    spawn(drv, ctx, instance, image_meta=image)
    [root] = disks(sim, instance)
    drv.power_off(instance)
    drv.rescue(ctx, instance, [], image, None, {})
    rescue = next(d for d in disks(sim, instance) if d.key != root.key)
    vm = sim_vm(sim, instance)
    assert _profiles(drv, vm.moid, rescue.key) == [_policy_id(sim, "gold")]
    drv.unrescue(ctx, instance)
    assert _profiles(drv, vm.moid, rescue.key) == []  # the disk is gone, and its association
    assert _profiles(drv, vm.moid, root.key) == [_policy_id(sim, "gold")]


def test_ephemeral_and_swap_disks_get_the_policy_at_spawn_and_resize(drv, ctx, node,
                                                                     pbm_sim):
    sim = pbm_sim.simulator
    nfs = _policy_id(sim, "nfs")

    def flavor(ephemeral_gb: int, swap: int, flavorid: str) -> objects.Flavor:
        return objects.Flavor(name=f"f-{ephemeral_gb}-{swap}", vcpus=2, memory_mb=4096,
                              root_gb=1, ephemeral_gb=ephemeral_gb, swap=swap,
                              flavorid=flavorid, extra_specs={})

    def by_file() -> dict:
        return {d.backing.fileName.rsplit("/", 1)[1]: d for d in disks(sim, instance)}

    instance = make_instance(node, root_gb=1, task_state=None)
    instance.flavor = flavor(1, 256, "1")
    spawn(drv, ctx, instance)
    vm = sim_vm(sim, instance)
    made = by_file()
    assert sorted(made) == sorted([f"{instance.uuid}.vmdk", "ephemeral_0.vmdk", "swap.vmdk"])
    for disk in made.values():
        assert _profiles(drv, vm.moid, disk.key) == [nfs]
    # A resize makes the swap disk anew: with the policy too.
    migration = _resize(drv, ctx, instance, flavor(1, 512, "2"), node)
    swap = by_file()["swap.vmdk"]
    assert swap.capacityInKB == 512 * 1024  # made anew, at the new flavor's size
    assert _profiles(drv, vm.moid, swap.key) == [nfs]
    drv.confirm_migration(ctx, migration, instance, [])


def test_a_warm_spawn_asks_spbm_once(drv, ctx, node, pbm_sim):
    """Policy ids are kept: a spawn after the first asks SPBM only which datastores match."""
    sim = pbm_sim.simulator
    spawn(drv, ctx, make_instance(node, root_gb=1))
    before = dict(sim.request_counts)
    spawn(drv, ctx, make_instance(node, root_gb=1))
    asked = {m: n - before.get(m, 0) for m, n in sim.request_counts.items()
             if m.startswith("Pbm") and n != before.get(m, 0)}
    assert asked == {"PbmQueryMatchingHub": 1}
