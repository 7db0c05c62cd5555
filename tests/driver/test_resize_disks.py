"""Resize and cold migration of instances with ephemeral and swap disks and Cinder
volumes, in the order Nova's compute manager calls the driver, asserted on the
simulator's devices and files."""

from __future__ import annotations

import pytest
from nova import exception, objects

from tests.driver.conftest import make_instance, node_of
from tests.driver.test_migrate import _finish, _resize, _revert, _start
from tests.driver.volume_support import make_volume, volume_path
from tests.fixtures import connect
from tests.unit.simulator.helpers import Dev

GB_KB = 1024 * 1024
MB_KB = 1024


@pytest.fixture
def si(vsphere):
    return connect(vsphere[1])


def _flavor(root_gb: int, ephemeral_gb: int, swap: int, flavorid: str = "2",
            vcpus: int = 2, memory_mb: int = 4096) -> objects.Flavor:
    return objects.Flavor(name=f"f-{root_gb}-{ephemeral_gb}-{swap}-{vcpus}", vcpus=vcpus,
                          memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=ephemeral_gb,
                          swap=swap, flavorid=flavorid, extra_specs={})


def _disks(sim, instance) -> dict[str, object]:
    """The VM's disks by file name."""
    return {d.backing.fileName.rsplit("/", 1)[1]: d
            for d in sim.vm(instance.uuid).config.hardware.device
            if isinstance(d, Dev.VirtualDisk)}


def _exists(sim, path: str) -> bool:
    return sim.files.exists(*path[1:].split("] "))


def test_resize_grows_the_ephemeral_disk_and_makes_swap_anew_then_reverts(vsphere, ctx,
                                                                          node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor = _flavor(1, 1, 256, flavorid="1")
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    before = _disks(sim, instance)
    eph_path = before["ephemeral_0.vmdk"].backing.fileName

    migration = _resize(drv, ctx, instance, _flavor(1, 3, 512), node_a)

    now = _disks(sim, instance)
    assert now["ephemeral_0.vmdk"].backing.fileName == eph_path
    assert now["ephemeral_0.vmdk"].capacityInKB == 3 * GB_KB
    assert now["swap.vmdk"].capacityInKB == 512 * MB_KB
    assert now[f"{instance.uuid}.vmdk"].capacityInKB == 1 * GB_KB
    backup = eph_path.replace("ephemeral_0.vmdk",
                              f"ephemeral_0-pre-resize-{migration.uuid[:8]}.vmdk")
    assert _exists(sim, backup)
    assert sim.vm(instance.uuid).power_state == "poweredOn"

    _revert(drv, ctx, instance, migration)

    reverted = _disks(sim, instance)
    [eph] = [d for name, d in reverted.items() if name.startswith("ephemeral_0")]
    assert eph.capacityInKB == 1 * GB_KB
    assert eph.backing.fileName == backup
    assert not _exists(sim, eph_path)
    assert reverted["swap.vmdk"].capacityInKB == 256 * MB_KB
    assert len(reverted) == 3
    # A later resize finds its ephemeral disk under the copy's name.
    migration = _resize(drv, ctx, instance, _flavor(1, 2, 0, flavorid="3"), node_a)
    grown = _disks(sim, instance)
    assert [d.capacityInKB for n, d in grown.items() if n.startswith("ephemeral_0")] == \
        [2 * GB_KB]
    assert "swap.vmdk" not in grown
    drv.confirm_migration(ctx, migration, instance, [])
    second_backup = backup.rsplit("/", 1)[0] + \
        f"/ephemeral_0-pre-resize-{migration.uuid[:8]}.vmdk"
    assert not _exists(sim, second_backup)


def test_resize_adds_an_ephemeral_disk_and_revert_removes_it(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor = _flavor(1, 0, 0, flavorid="1")
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])

    migration = _resize(drv, ctx, instance, _flavor(1, 2, 128), node_a)

    now = _disks(sim, instance)
    assert now["ephemeral_0.vmdk"].capacityInKB == 2 * GB_KB
    assert now["swap.vmdk"].capacityInKB == 128 * MB_KB
    units = sorted(d.unitNumber for d in now.values())
    assert units == [0, 1, 2]
    eph_path = now["ephemeral_0.vmdk"].backing.fileName

    _revert(drv, ctx, instance, migration)

    assert list(_disks(sim, instance)) == [f"{instance.uuid}.vmdk"]
    assert not _exists(sim, eph_path)


def test_ephemeral_disks_cannot_shrink(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor = _flavor(1, 2, 0, flavorid="1")
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    with pytest.raises(exception.InstanceFaultRollback) as err:
        _start(drv, ctx, instance, _flavor(1, 1, 0), node_a)
    assert "ephemeral" in str(err.value.inner_exception)
    assert sim.vm(instance.uuid).power_state == "poweredOn"
    assert _disks(sim, instance)["ephemeral_0.vmdk"].capacityInKB == 2 * GB_KB


def test_a_volume_backed_instance_resizes_and_migrates_with_its_volume(vsphere, ctx,
                                                                       node_a, si):
    drv, server = vsphere
    sim = server.simulator
    node_b = node_of(drv, "cluster-b")
    # shared-all is mounted in both clusters; the VM's own folder goes to shared-a.
    root = make_volume(si, sim, size_gb=2, datastore="shared-all")
    path = volume_path(sim, root)
    instance = make_instance(node_a, root_gb=0, image_ref="", task_state=None)
    instance.flavor = _flavor(0, 0, 0, flavorid="1")
    bdi = {"block_device_mapping": [{"connection_info": root, "mount_device": "/dev/sda",
                                     "boot_index": 0}]}
    drv.spawn(ctx, instance, objects.ImageMeta.from_dict({"properties": {}}), [], None, {},
              network_info=[], block_device_info=bdi)
    assert sim.vm(instance.uuid).config.files.vmPathName.startswith("[shared-a] ")

    # A resize to a flavor with a root disk leaves the volume as it is.
    migration, disk_info = _start(drv, ctx, instance,
                                  _flavor(20, 0, 0, vcpus=4, memory_mb=8192), node_b)
    _finish(drv, ctx, instance, migration, disk_info)

    vm = sim.vm(instance.uuid)
    assert vm.cluster.name == "cluster-b"
    assert vm.config.hardware.numCPU == 4
    # The VM's folder moved to a datastore of cluster-b; the volume stayed.
    assert not vm.config.files.vmPathName.startswith("[shared-a] ")
    [disk] = _disks(sim, instance).values()
    assert disk.backing.fileName == path
    assert disk.capacityInKB == 2 * GB_KB
    assert volume_path(sim, root) == path and _exists(sim, path)
    assert "shared-all" in {d.name for d in vm.host.datastores}

    _revert(drv, ctx, instance, migration)

    vm = sim.vm(instance.uuid)
    assert vm.cluster.name == "cluster-a"
    assert vm.config.files.vmPathName.startswith("[shared-a] ")
    assert [d.backing.fileName for d in _disks(sim, instance).values()] == [path]

    drv.destroy(ctx, instance, [], block_device_info=bdi)
    assert _exists(sim, path)


def test_a_cold_migration_moves_ephemeral_and_swap_disks_with_the_vm(vsphere, ctx, node_a):
    drv, server = vsphere
    sim = server.simulator
    instance = make_instance(node_a, root_gb=1, task_state=None)
    instance.flavor = _flavor(1, 1, 256, flavorid="1")
    drv.spawn(ctx, instance, None, [], None, {}, network_info=[])
    before = {n: d.backing.fileName for n, d in _disks(sim, instance).items()}

    migration = _resize(drv, ctx, instance, _flavor(1, 1, 256, flavorid="1"),
                        node_of(drv, "cluster-b"))

    vm = sim.vm(instance.uuid)
    assert vm.cluster.name == "cluster-b"
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    after = {n: d.backing.fileName for n, d in _disks(sim, instance).items()}
    assert after == {n: f"[{ds}] {p.split('] ')[1]}" for n, p in before.items()}
    assert all(_exists(sim, p) for p in after.values())
    assert not any(_exists(sim, p) for p in before.values())
    drv.confirm_migration(ctx, migration, instance, [])
