"""Resize and cold migration through VSphereDriver, in the order Nova's compute manager
calls it, asserted on the VM in the simulator (size, host, cluster, datastore, disk,
power state, DRS rules) after each step. An image-backed instance's root disk is a
linked clone of the cached image, which vCenter never grows: a resize that grows it
unlinks it first (PromoteDisks_Task), keeping its data."""

from __future__ import annotations

import json
import uuid

import pytest
from nova import exception, objects
from nova.compute import power_state, task_states

from nova_vsphere_driver import driver as vsphere_driver
from nova_vsphere_driver.simulator.objects.nfc_lease import disk_content
from tests.driver.conftest import make_instance, node_of, vmdk_image
from tests.driver.test_drs import _add_host_group, _group, _rules
from tests.fixtures import connect
from tests.unit.simulator.helpers import create_vm

GB_KB = 1024 * 1024  # KB in a GB
RECORD = "nova.resize."
#: An image's data, without zero bytes: every byte is checked on the way through.
IMAGE_DATA = bytes(range(1, 256)) * 4096



def _flavor(vcpus: int, memory_mb: int, root_gb: int, flavorid: str = "2",
            extra_specs: dict | None = None) -> objects.Flavor:
    return objects.Flavor(name=f"f{vcpus}-{memory_mb}-{root_gb}", vcpus=vcpus,
                          memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=0, swap=0,
                          flavorid=flavorid, extra_specs=extra_specs or {})


def _spawn(drv, ctx, instance, power_on: bool = True):
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[], power_on=power_on)


def _set_flavor(instance, flavor) -> None:
    # What Nova's ComputeManager._set_instance_info does.
    instance.flavor = flavor
    instance.vcpus, instance.memory_mb = flavor.vcpus, flavor.memory_mb
    instance.root_gb = flavor.root_gb


def _start(drv, ctx, instance, flavor, dest_node: str, **kw) -> tuple:
    """prep_resize and resize_instance: migrate_disk_and_power_off on the source."""
    migration = objects.Migration(
        uuid=str(uuid.uuid4()), instance_uuid=instance.uuid, source_compute=instance.host,
        dest_compute="compute-1", source_node=instance.node, dest_node=dest_node,
        migration_type="migration" if flavor.flavorid == instance.flavor.flavorid else "resize",
        status="migrating")
    instance.new_flavor = flavor
    disk_info = drv.migrate_disk_and_power_off(ctx, instance, "192.0.2.2", flavor, [], None,
                                               kw.get("timeout", 0), kw.get("retry_interval", 0))
    instance.node = dest_node
    instance.old_flavor = instance.flavor
    return migration, disk_info


def _finish(drv, ctx, instance, migration, disk_info, power_on: bool = True) -> None:
    """_finish_resize on the destination (Nova puts the old flavor back if it fails)."""
    old = instance.old_flavor
    _set_flavor(instance, instance.new_flavor)
    try:
        drv.finish_migration(ctx, migration, instance, disk_info, [],
                             objects.ImageMeta.from_dict({}),
                             old.root_gb != instance.flavor.root_gb, {}, None, power_on)
    except Exception:
        _set_flavor(instance, old)
        raise


def _resize(drv, ctx, instance, flavor, dest_node: str, power_on: bool = True):
    migration, disk_info = _start(drv, ctx, instance, flavor, dest_node)
    _finish(drv, ctx, instance, migration, disk_info, power_on)
    return migration


def _revert(drv, ctx, instance, migration, power_on: bool = True, dest_driver=None) -> None:
    """revert_resize on the destination (destroy), then finish_revert_resize on the source."""
    instance.task_state = task_states.RESIZE_REVERTING
    (dest_driver or drv).destroy(ctx, instance, [], None, True)
    _set_flavor(instance, instance.old_flavor)
    instance.node = migration.source_node
    drv.finish_revert_migration(ctx, instance, [], migration, None, power_on)
    instance.task_state = None


def _where(sim, instance) -> dict:
    """Size and place of the instance's VM, read from the simulator."""
    vm = sim.vm(instance.uuid)
    config = vm.get_property("config")
    disks = [d for d in config.hardware.device if type(d).__name__.endswith("VirtualDisk")]
    return {
        "vcpus": config.hardware.numCPU, "memory_mb": config.hardware.memoryMB,
        "disk_kb": [d.capacityInKB for d in disks],
        "disks": [d.backing.fileName for d in disks],
        "host": vm.host.name, "cluster": vm.cluster.name,
        "pool": vm.get_property("resourcePool")._moId,
        "vmx": config.files.vmPathName,
        "power": vm.get_property("runtime.powerState"),
        "record": {o.key: o.value for o in config.extraConfig or []
                   if o.key.startswith(RECORD)},
    }


def _vmdks(sim, instance) -> list[str]:
    """Every virtual disk file under the instance's directories, on any datastore."""
    found = []
    for ds in ("shared-a", "shared-b", "shared-all"):
        if sim.files.exists(ds, instance.uuid):
            found += [f"[{ds}] {e.path}" for e in sim.files.listdir(ds, instance.uuid, True)
                      if e.path.endswith(".vmdk")]
    return sorted(found)


def _fail_nth(drv, sim, method: str, n: int, fault: str) -> None:
    """Make the ``n``-th ``method`` task from now fail in the simulator."""
    session = drv.services.session
    original = session.run_task
    calls = {"n": 0}

    def run_task(called, moref, /, timeout=None, **kwargs):
        if called == method:
            calls["n"] += 1
            if calls["n"] == n:
                sim.faults.fail_next(method, fault)
        return original(called, moref, timeout, **kwargs)

    session.run_task = run_task


@pytest.fixture
def nodes(vsphere):
    drv, _ = vsphere
    return node_of(drv, "cluster-a"), node_of(drv, "cluster-b")


# -- within one cluster -----------------------------------------------------------------------


def test_resize_in_place_grows_the_vm_and_confirm_drops_the_old_disk(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=10,
                             extra_specs={"vsphere:cpu_limit": "3000"})
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    assert before["disk_kb"] == [10 * GB_KB] and before["power"] == "poweredOn"
    flavor = _flavor(4, 8192, 20, extra_specs={"vsphere:memory_reservation": "2048"})

    migration, disk_info = _start(drv, ctx, instance, flavor, node_a)
    mid = _where(sim, instance)
    assert mid["power"] == "poweredOff"
    assert (mid["vcpus"], mid["memory_mb"], mid["disk_kb"]) == (2, 4096, [10 * GB_KB])
    assert json.loads(disk_info) == [{"type": "root", "path": before["disks"][0],
                                      "datastore": before["vmx"][1:before["vmx"].index("]")],
                                      "capacity_kb": 10 * GB_KB}]

    _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (4, 8192, [20 * GB_KB])
    assert after["host"] == before["host"]  # the new size fits: nothing moved
    assert after["disks"] == before["disks"]  # grown in place
    assert after["power"] == "poweredOn"
    assert drv.get_info(instance).state == power_state.RUNNING
    config = sim.vm(instance.uuid).get_property("config")
    assert config.cpuAllocation.limit == -1  # the old flavor's limit went with it
    assert config.memoryAllocation.reservation == 2048
    assert config.annotation.endswith("flavor:f4-8192-20")
    record = after["record"]
    assert record[RECORD + "migration"] == migration.uuid
    assert record[RECORD + "host"] == sim.host(before["host"]).moid
    backup = record[RECORD + "disk_backup"]
    assert _vmdks(sim, instance) == sorted([before["disks"][0], backup])

    drv.confirm_migration(ctx, migration, instance, [])
    confirmed = _where(sim, instance)
    assert confirmed["record"] == {}
    assert _vmdks(sim, instance) == before["disks"]  # the copy of the old disk is gone
    assert (confirmed["vcpus"], confirmed["disk_kb"]) == (4, [20 * GB_KB])
    assert confirmed["power"] == "poweredOn"


def test_resize_that_no_longer_fits_the_host_moves_the_vm_within_the_cluster(
        vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=1)
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    host = sim.host(before["host"])
    # Another VM takes all but 6 GB of the host: the instance cannot grow to 16 GB there.
    filler_mb = host.memory_mb - 4096 - 6144
    create_vm(connect(server), sim, "filler", host.name, memory_mb=filler_mb, power_on=True)

    migration = _resize(drv, ctx, instance, _flavor(4, 16384, 1), node_a)
    after = _where(sim, instance)
    assert after["host"] != before["host"]
    assert after["cluster"] == "cluster-a" and after["pool"] == before["pool"]
    assert (after["vcpus"], after["memory_mb"], after["power"]) == (4, 16384, "poweredOn")
    assert after["vmx"] == before["vmx"]  # storage stays
    assert after["record"][RECORD + "host"] == host.moid  # where a revert goes back to

    _revert(drv, ctx, instance, migration)
    reverted = _where(sim, instance)
    # Back at 4 GB the old host has room again.
    assert reverted["host"] == before["host"]
    assert (reverted["vcpus"], reverted["memory_mb"]) == (2, 4096)
    assert reverted["record"] == {} and reverted["power"] == "poweredOn"


def test_resize_in_place_then_revert_restores_size_disk_and_limits(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=10,
                             extra_specs={"vsphere:cpu_limit": "3000"})
    _spawn(drv, ctx, instance, power_on=False)  # a stopped instance stays stopped
    before = _where(sim, instance)
    migration = _resize(drv, ctx, instance, _flavor(8, 16384, 40), node_a, power_on=False)
    resized = _where(sim, instance)
    assert (resized["vcpus"], resized["disk_kb"], resized["power"]) == \
        (8, [40 * GB_KB], "poweredOff")

    _revert(drv, ctx, instance, migration, power_on=False)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [10 * GB_KB])
    assert after["host"] == before["host"] and after["vmx"] == before["vmx"]
    assert after["power"] == "poweredOff" and after["record"] == {}
    assert sim.vm(instance.uuid).get_property("config.cpuAllocation").limit == 3000
    # The grown disk is gone; the copy of the original is the root disk now.
    assert _vmdks(sim, instance) == after["disks"]
    assert after["disks"] != before["disks"]
    assert drv.instance_exists(instance)  # destroy during the revert left it alone
    drv.power_on(ctx, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING


def test_refused_or_failed_power_off_rolls_back_with_nothing_changed(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, root_gb=20)
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    counts = dict(sim.request_counts)
    with pytest.raises(exception.InstanceFaultRollback) as err:
        drv.migrate_disk_and_power_off(ctx, instance, "192.0.2.2", _flavor(2, 4096, 10), [])
    assert isinstance(err.value.inner_exception, exception.ResizeError)
    assert "cannot shrink" in str(err.value.inner_exception)
    assert _where(sim, instance) == before
    for method in ("ReconfigVM_Task", "PowerOffVM_Task", "ShutdownGuest", "RelocateVM_Task"):
        assert sim.request_counts.get(method, 0) == counts.get(method, 0), method
    # vCenter refuses the power-off: Nova rolls back, the VM still runs.
    sim.faults.fail_next("PowerOffVM_Task", "TaskInProgress")
    with pytest.raises(exception.InstanceFaultRollback) as err:
        drv.migrate_disk_and_power_off(ctx, instance, "192.0.2.2", _flavor(4, 4096, 20), [])
    assert isinstance(err.value.inner_exception, exception.InstanceInvalidState)
    assert _where(sim, instance) == before


def test_failed_reconfigure_leaves_the_vm_as_it_was(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, root_gb=10)
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 30), node_a)
    # The first ReconfigVM records the VM's place; the second resizes it.
    _fail_nth(drv, sim, "ReconfigVM_Task", 2, "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [10 * GB_KB])
    assert after["host"] == before["host"] and after["disks"] == before["disks"]
    assert after["record"] == {}
    assert after["power"] == "poweredOff"  # as it was when finish_migration started
    assert _vmdks(sim, instance) == before["disks"]  # no copy left behind
    drv.power_on(ctx, instance, [])  # the instance is usable
    assert drv.get_info(instance).state == power_state.RUNNING


# -- across clusters ----------------------------------------------------------------------------


def test_cold_migration_to_another_cluster_moves_vm_rules_and_storage(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, node_b = nodes
    x, y = (make_instance(node_a, memory_mb=2048, root_gb=5, name=f"sg-{i}") for i in "xy")
    z = make_instance(node_b, memory_mb=2048, root_gb=5, name="sg-z")
    group = _group(ctx, "anti-affinity", [x, y, z])
    rule = f"nova-sg-{group.uuid}"
    for inst in (x, y, z):
        _spawn(drv, ctx, inst)
    assert rule in _rules(sim, "cluster-a") and rule not in _rules(sim, "cluster-b")
    before = _where(sim, x)
    assert before["vmx"].startswith("[shared-a]")  # not mounted in cluster-b

    migration = _resize(drv, ctx, x, x.flavor, node_b)  # same flavor: a cold migration
    after = _where(sim, x)
    assert after["cluster"] == "cluster-b"
    assert after["pool"] == sim.cluster("cluster-b").resource_pool.moid
    assert after["host"] != _where(sim, z)["host"]  # the group's rule holds there too
    assert not after["vmx"].startswith("[shared-a]")
    assert not sim.files.exists("shared-a", x.uuid)  # the files moved with it
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 2048, [5 * GB_KB])
    assert after["power"] == "poweredOn"
    assert RECORD + "disk_backup" not in after["record"]  # no disk growth, no copy
    # The rule left with one member in cluster-a is gone; cluster-b got one for x and z.
    assert rule not in _rules(sim, "cluster-a")
    assert {v._moId for v in _rules(sim, "cluster-b")[rule].vm} == \
        {sim.vm(x.uuid).moid, sim.vm(z.uuid).moid}
    assert x.uuid in drv.list_instance_uuids()

    drv.confirm_migration(ctx, migration, x, [])
    confirmed = _where(sim, x)
    assert confirmed["record"] == {} and confirmed["cluster"] == "cluster-b"
    assert confirmed["power"] == "poweredOn"


def test_cross_cluster_resize_by_another_nova_compute_then_revert(
        vsphere, ctx, nodes, conf_overrides):
    """The destination's nova-compute manages only cluster-b; the source reverts."""
    drv, server = vsphere  # manages cluster-a (and cluster-b): the source
    sim = server.simulator
    node_a, node_b = nodes
    conf_overrides("vsphere", cluster_names=["cluster-b"])
    dest = vsphere_driver.VSphereDriver(None)
    dest.init_host("compute-2")
    try:
        assert dest.get_available_nodes() == [node_b]
        _add_host_group(server, "cluster-a", "fast", ["esx-a3"])
        members = [make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=10, name=f"m{i}",
                                 extra_specs={"vsphere:host_group": "fast"})
                   for i in range(3)]
        group = _group(ctx, "soft-anti-affinity", members)
        for inst in members:
            _spawn(drv, ctx, inst)
        instance = members[0]
        before = _where(sim, instance)
        assert before["host"] == "esx-a3"
        moref = sim.vm(instance.uuid).moid
        pin, rule = "nova-hg-fast", f"nova-sg-{group.uuid}"
        in_rule = {sim.vm(m.uuid).moid for m in members}
        assert {v._moId for v in _rules(sim, "cluster-a")[rule].vm} == in_rule

        migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 20), node_b)
        _finish(dest, ctx, instance, migration, disk_info)
        resized = _where(sim, instance)
        assert resized["cluster"] == "cluster-b" and resized["host"].startswith("esx-b")
        assert (resized["vcpus"], resized["memory_mb"], resized["disk_kb"]) == \
            (4, 8192, [20 * GB_KB])
        assert resized["power"] == "poweredOn"
        backup = resized["record"][RECORD + "disk_backup"]
        assert _vmdks(sim, instance) == sorted(resized["disks"] + [backup])
        # vCenter took the VM out of cluster-a's rule and pin group.
        assert moref not in {v._moId for v in _rules(sim, "cluster-a")[rule].vm}
        groups = {g.name: g for g in sim.cluster("cluster-a").groups}
        assert moref not in {v._moId for v in groups[pin].vm or []}

        # revert_resize runs on the destination (destroy), the rest on the source.
        _revert(drv, ctx, instance, migration, dest_driver=dest)
        after = _where(sim, instance)
        assert after["cluster"] == "cluster-a" and after["host"] == "esx-a3"
        assert after["pool"] == before["pool"] and after["vmx"] == before["vmx"]
        assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == \
            (2, 4096, [10 * GB_KB])
        assert after["power"] == "poweredOn" and after["record"] == {}
        assert _vmdks(sim, instance) == after["disks"]  # the grown disk is gone
        assert not sim.files.exists("shared-b", instance.uuid)
        groups = {g.name: g for g in sim.cluster("cluster-a").groups}
        assert moref in {v._moId for v in groups[pin].vm}  # pinned again
        assert {v._moId for v in _rules(sim, "cluster-a")[rule].vm} == in_rule
        assert drv.get_info(instance).state == power_state.RUNNING
    finally:
        dest.cleanup_host("compute-2")


def test_failed_relocate_leaves_the_vm_in_its_cluster(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, node_b = nodes
    instance = make_instance(node_a, root_gb=5)
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 10), node_b)
    sim.faults.fail_next("RelocateVM_Task", "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert {k: v for k, v in after.items() if k != "power"} == \
        {k: v for k, v in before.items() if k != "power"}
    assert after["power"] == "poweredOff"
    assert _vmdks(sim, instance) == before["disks"]


def test_failed_power_on_after_a_cross_cluster_resize_undoes_all_of_it(vsphere, ctx, nodes):
    drv, server = vsphere
    sim = server.simulator
    node_a, node_b = nodes
    instance = make_instance(node_a, root_gb=10)
    _spawn(drv, ctx, instance)
    before = _where(sim, instance)
    migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 30), node_b)
    sim.faults.fail_next("PowerOnVM_Task", "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert after["cluster"] == "cluster-a" and after["host"] == before["host"]
    assert after["pool"] == before["pool"] and after["vmx"] == before["vmx"]
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [10 * GB_KB])
    assert after["record"] == {} and after["power"] == "poweredOff"
    assert _vmdks(sim, instance) == after["disks"]  # no grown disk, no copy
    assert not sim.files.exists("shared-b", instance.uuid)
    # No claim left on the target.
    assert not drv.services.drs.claims(drv.services.nodes[node_b].moref)


# -- image-backed instances: the root disk is a linked clone of the cached image ----------------


@pytest.fixture
def image(vsphere, glance, ctx):
    """A Glance image (a thin VMDK) that spawn caches and links root disks to."""
    return vmdk_image(glance, ctx, IMAGE_DATA, vmware_disktype="thin")


def _spawn_image(drv, ctx, instance, image_meta, power_on: bool = True) -> None:
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=[], power_on=power_on)


def _root(sim, instance):
    [disk] = sim.vm(instance.uuid).disks()
    return disk


def _file(sim, path: str):
    ds, rel = path[1:].split("] ", 1)
    return sim.files.get(ds, rel)


def _linked(sim, instance) -> str | None:
    """The parent of the instance's root disk (None: a standalone disk)."""
    parent = _root(sim, instance).backing.parent
    return parent.fileName if parent is not None else None


def test_growing_a_linked_clone_unlinks_it_with_its_data_and_confirm_drops_the_copy(
        vsphere, ctx, nodes, image):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=1, image_ref=image.id)
    _spawn_image(drv, ctx, instance, image)
    before = _where(sim, instance)
    parent = _linked(sim, instance)
    assert parent is not None and before["disk_kb"] == [GB_KB]
    assert disk_content(sim, _root(sim, instance).backing) == IMAGE_DATA

    migration = _resize(drv, ctx, instance, _flavor(2, 4096, 3), node_a)
    after = _where(sim, instance)
    root = _root(sim, instance)
    assert root.backing.parent is None  # standalone now: vCenter grows no delta disk
    assert after["disk_kb"] == [3 * GB_KB] and after["power"] == "poweredOn"
    assert after["disks"] == before["disks"] and after["host"] == before["host"]
    entry = _file(sim, root.backing.fileName)
    assert entry.parent is None and entry.disk_capacity_kb == 3 * GB_KB
    assert disk_content(sim, root.backing) == IMAGE_DATA  # the guest's data came along
    # The copy kept for a revert holds the disk as it was: 1 GB, the image's data.
    backup = after["record"][RECORD + "disk_backup"]
    copy = _file(sim, backup)
    assert copy.disk_capacity_kb == GB_KB and copy.extent == IMAGE_DATA
    assert _vmdks(sim, instance) == sorted([before["disks"][0], backup])
    # The image cache's disk, which other instances link to, is as it was.
    cached = _file(sim, parent)
    assert cached.disk_capacity_kb == GB_KB and cached.extent == IMAGE_DATA

    drv.confirm_migration(ctx, migration, instance, [])
    confirmed = _where(sim, instance)
    assert confirmed["record"] == {} and confirmed["disk_kb"] == [3 * GB_KB]
    assert _vmdks(sim, instance) == before["disks"]  # the copy is gone
    assert disk_content(sim, _root(sim, instance).backing) == IMAGE_DATA
    assert sim.files.exists(*parent[1:].split("] ", 1))


def test_revert_of_a_grown_linked_clone_restores_its_size_and_contents(
        vsphere, ctx, nodes, image):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=1, image_ref=image.id)
    _spawn_image(drv, ctx, instance, image)
    before = _where(sim, instance)
    migration = _resize(drv, ctx, instance, _flavor(4, 8192, 2), node_a)
    assert _where(sim, instance)["disk_kb"] == [2 * GB_KB]

    _revert(drv, ctx, instance, migration)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [GB_KB])
    assert after["power"] == "poweredOn" and after["record"] == {}
    assert after["host"] == before["host"] and after["vmx"] == before["vmx"]
    root = _root(sim, instance)
    # The copy is the root disk now: a standalone disk, not linked to the image again.
    assert root.backing.parent is None and _file(sim, root.backing.fileName).parent is None
    assert disk_content(sim, root.backing) == IMAGE_DATA
    assert _vmdks(sim, instance) == after["disks"]  # the grown disk is gone
    assert drv.get_info(instance).state == power_state.RUNNING


def test_a_failed_promotion_leaves_the_linked_clone_as_it_was(vsphere, ctx, nodes, image):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, root_gb=1, image_ref=image.id)
    _spawn_image(drv, ctx, instance, image)
    before = _where(sim, instance)
    parent = _linked(sim, instance)
    migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 2), node_a)
    sim.faults.fail_next("PromoteDisks_Task", "NoDiskSpace")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [GB_KB])
    assert _linked(sim, instance) == parent  # still a linked clone of the image
    assert _file(sim, after["disks"][0]).parent == parent
    assert after["disks"] == before["disks"] and after["host"] == before["host"]
    assert after["record"] == {}
    assert after["power"] == "poweredOff"  # as it was when finish_migration started
    assert _vmdks(sim, instance) == before["disks"]  # no copy left behind
    drv.power_on(ctx, instance, [])
    assert drv.get_info(instance).state == power_state.RUNNING
    assert disk_content(sim, _root(sim, instance).backing) == IMAGE_DATA


def test_a_failure_after_the_promotion_keeps_the_disks_size_and_data(vsphere, ctx, nodes, image):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, root_gb=1, image_ref=image.id)
    _spawn_image(drv, ctx, instance, image)
    before = _where(sim, instance)
    migration, disk_info = _start(drv, ctx, instance, _flavor(4, 8192, 2), node_a)
    # The first ReconfigVM records the VM's place; the second (after the promotion) resizes.
    _fail_nth(drv, sim, "ReconfigVM_Task", 2, "InsufficientResourcesFault")
    with pytest.raises(exception.ComputeResourcesUnavailable):
        _finish(drv, ctx, instance, migration, disk_info)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (2, 4096, [GB_KB])
    assert after["disks"] == before["disks"] and after["record"] == {}
    assert after["power"] == "poweredOff"
    assert _vmdks(sim, instance) == before["disks"]  # no copy left behind
    # vCenter does not link a disk again: it stays standalone, with the same contents.
    root = _root(sim, instance)
    assert root.backing.parent is None
    assert disk_content(sim, root.backing) == IMAGE_DATA


def test_a_resize_that_keeps_the_root_disks_size_keeps_the_linked_clone(
        vsphere, ctx, nodes, image):
    drv, server = vsphere
    sim = server.simulator
    node_a, _ = nodes
    instance = make_instance(node_a, vcpus=2, memory_mb=4096, root_gb=1, image_ref=image.id)
    _spawn_image(drv, ctx, instance, image)
    before = _where(sim, instance)
    parent = _linked(sim, instance)
    promotions = sim.request_counts.get("PromoteDisks_Task", 0)

    migration = _resize(drv, ctx, instance, _flavor(4, 8192, 1), node_a)
    after = _where(sim, instance)
    assert (after["vcpus"], after["memory_mb"], after["disk_kb"]) == (4, 8192, [GB_KB])
    assert _linked(sim, instance) == parent and after["disks"] == before["disks"]
    assert RECORD + "disk_backup" not in after["record"]  # no growth, no copy
    assert sim.request_counts.get("PromoteDisks_Task", 0) == promotions
    assert _vmdks(sim, instance) == before["disks"]
    drv.confirm_migration(ctx, migration, instance, [])
    assert _linked(sim, instance) == parent
