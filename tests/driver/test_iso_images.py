"""ISO images (disk_format = iso): cached per datastore, booted from a CD-ROM drive with a
blank root disk of the flavor's size, pre-cached and aged like VMDK images."""

from __future__ import annotations

import io
import uuid

import pytest
from nova import exception, objects

from nova_vsphere_driver.ops.config_drive import build_iso
from tests.driver.conftest import config_drive_instance, make_instance
from tests.unit.simulator.helpers import Dev

GB_KB = 1024 * 1024
CACHE = "_nova_image_cache"


INSTALLER = build_iso([("boot/isolinux.cfg", b"default live\n"),
                      ("README.txt", b"an installer")], volume_label="INSTALLER")


def iso_image(glance, ctx, data: bytes = INSTALLER) -> objects.ImageMeta:
    """An ISO image in Nova's fake Glance (an installer's files, made with pycdlib)."""
    image_id = str(uuid.uuid4())
    glance.create(None, {"id": image_id, "name": "installer", "status": "active",
                         "disk_format": "iso", "container_format": "bare", "size": len(data),
                         "properties": {}}, data=io.BytesIO(data))
    return objects.ImageMeta.from_dict(glance.show(ctx, image_id))


def _devices(sim, instance) -> list:
    return sim.vm(instance.uuid).config.hardware.device


def _by_type(sim, instance, kind) -> list:
    return [d for d in _devices(sim, instance) if isinstance(d, kind)]


def test_an_iso_image_boots_from_a_cdrom_with_a_blank_root_disk(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    assert drv.capabilities["supports_image_type_iso"] is True
    image = iso_image(glance, ctx)
    instance = make_instance(node_a, root_gb=3, image_ref=image.id, task_state=None)

    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])

    vm = sim.vm(instance.uuid)
    ds = vm.config.files.vmPathName[1:].split("]")[0]
    [cdrom] = _by_type(sim, instance, Dev.VirtualCdrom)
    cached = f"[{ds}] {CACHE}/{image.id}/{image.id}.iso"
    assert cdrom.backing.fileName == cached
    assert sim.files.get(ds, cached.split("] ")[1]).data == INSTALLER
    ide = next(d for d in _devices(sim, instance) if d.key == cdrom.controllerKey)
    assert isinstance(ide, Dev.VirtualIDEController)
    assert (ide.busNumber, cdrom.unitNumber) == (0, 0)
    [root] = _by_type(sim, instance, Dev.VirtualDisk)
    assert root.backing.fileName == f"[{ds}] {instance.uuid}/{instance.uuid}.vmdk"
    assert root.capacityInKB == 3 * GB_KB
    assert root.backing.thinProvisioned is True
    assert getattr(root.backing, "parent", None) is None
    assert vm.power_state == "poweredOn"
    # No temporary folders left in the cache.
    assert [e.path for e in sim.files.listdir(ds, CACHE)] == [f"{CACHE}/{image.id}"]

    # A second server of the image reads nothing from Glance.
    downloads = len(glance.downloads)
    other = make_instance(node_a, root_gb=0, image_ref=image.id, task_state=None)
    drv.spawn(ctx, other, image, [], None, {}, network_info=[])
    assert len(glance.downloads) == downloads
    assert _by_type(sim, other, Dev.VirtualDisk) == []  # a flavor without a root disk
    [other_cdrom] = _by_type(sim, other, Dev.VirtualCdrom)
    assert other_cdrom.backing.fileName == cached


def test_data_that_is_no_iso_is_refused_and_leaves_nothing(vsphere, ctx, node_a, glance):
    drv, server = vsphere
    sim = server.simulator
    image = iso_image(glance, ctx, data=b"KDMV" + b"\0" * 65536)
    instance = make_instance(node_a, root_gb=1, image_ref=image.id, task_state=None)
    with pytest.raises(exception.ImageUnacceptable) as err:
        drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    assert "ISO 9660" in str(err.value)
    assert not drv.instance_exists(instance)
    for ds in sim.datastores:
        assert not sim.files.exists(ds, instance.uuid)
        if sim.files.exists(ds, CACHE):
            assert sim.files.listdir(ds, CACHE) == []


def test_an_iso_image_is_precached_and_aged_out(vsphere, ctx, node_a, glance, conf_overrides):
    drv, server = vsphere
    sim = server.simulator
    image = iso_image(glance, ctx)
    rel = f"{CACHE}/{image.id}/{image.id}.iso"

    assert drv.cache_image(ctx, image.id) is True

    stores = {ds for ds in sim.datastores if sim.files.exists(ds, rel)}
    assert stores == {"shared-a", "shared-b", "shared-all"}
    assert drv.cache_image(ctx, image.id) is False

    instance = make_instance(node_a, root_gb=1, image_ref=image.id, task_state=None)
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    conf_overrides("image_cache", remove_unused_original_minimum_age_seconds=0)
    drv.manage_image_cache(ctx, [instance])
    # In use (its CD-ROM drive holds the file, and Nova lists the instance): kept.
    assert all(sim.files.exists(ds, rel) for ds in stores)

    drv.destroy(ctx, instance, [])
    drv.services.images._taken.clear()  # a later pass: no spawn of this process is in flight
    drv.manage_image_cache(ctx, [])  # marked unused
    assert all(sim.files.exists(ds, rel) for ds in stores)
    drv.manage_image_cache(ctx, [])  # unused for longer than the minimum age: removed
    assert not any(sim.files.exists(ds, f"{CACHE}/{image.id}") for ds in stores)


def test_the_iso_image_drive_comes_before_the_config_drive(vsphere, ctx, node_a, glance,
                                                           metadata_services):
    drv, server = vsphere
    sim = server.simulator
    image = iso_image(glance, ctx)
    instance = config_drive_instance(ctx, node_a, image_ref=image.id)
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    cdroms = sorted(_by_type(sim, instance, Dev.VirtualCdrom),
                    key=lambda d: (d.controllerKey, d.unitNumber))
    assert [c.backing.fileName.rsplit("/", 1)[1] for c in cdroms] == [
        f"{image.id}.iso", "configdrive.iso"]


@pytest.mark.parametrize("surplus", [-2048, 2048])
def test_an_iso_that_is_not_its_declared_size_is_refused_by_name(vsphere, ctx, node_a,
                                                                 glance, surplus):
    drv, server = vsphere
    sim = server.simulator
    image_id = str(uuid.uuid4())
    declared = len(INSTALLER) - surplus
    glance.create(None, {"id": image_id, "name": "lying", "status": "active",
                         "disk_format": "iso", "container_format": "bare", "size": declared,
                         "properties": {}}, data=io.BytesIO(INSTALLER))
    image = objects.ImageMeta.from_dict(glance.show(ctx, image_id))
    instance = make_instance(node_a, root_gb=1, image_ref=image.id, task_state=None)
    with pytest.raises(exception.ImageUnacceptable) as err:
        drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    assert image_id in str(err.value) and f"declares {declared} bytes" in str(err.value)
    assert not drv.instance_exists(instance)
    assert not [e for ds in sim.datastores if sim.files.exists(ds, CACHE)
                for e in sim.files.listdir(ds, CACHE, recursive=True)]
