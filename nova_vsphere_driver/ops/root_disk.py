"""spawn's root disk: the Glance image, cached per datastore, as the new VM's boot disk.

The image's ``vmware_disktype`` (Nova: ``hw_disk_type``) says how its bytes
become a disk (vsphere/images.py); ``vmware_adaptertype`` (Nova:
``hw_disk_bus`` and ``hw_scsi_model``) which controller the root disk goes
on; ``vmware_ostype`` the guest type (ops/guest_os.py). Anything vSphere
cannot boot is refused with ImageUnacceptable before anything is created.
The root disk is then a linked clone -- a delta disk of its parent's
capacity, which is the cached disk or, for a bigger flavor, the cache's
copy of it extended to the flavor's size -- or (``[vsphere]
use_linked_clone = False``) a thin full copy grown to the flavor's size.
Rescue (ops/guest.py) gets its image through the same typed cache.

An ISO image (``disk_format = iso``) is cached per datastore as
``<id>/<id>.iso`` and boots from a CD-ROM drive; the root disk is then a
blank thin disk of the flavor's size (none for a flavor without one).
"""

from __future__ import annotations

import math

import nova.conf
from nova import exception
from oslo_utils import units
from oslo_vmware import vim_util

from nova_vsphere_driver.ops.guest_os import GuestTypes
from nova_vsphere_driver.ops.vm_folders import VmFolders
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.images import (
    DEFAULT_DISK_TYPE,
    DISK_TYPES,
    FLAT_TYPES,
    CachedImage,
    ImageDisk,
    ImportTarget,
    InvalidImage,
    vdm_adapter_type,
)
from nova_vsphere_driver.vsphere.vm import DEFAULT_ADAPTER_TYPE, RootDisk

CONF = nova.conf.CONF
ISO = "iso"

#: Nova's hw_scsi_model values (from vmware_adaptertype) -> our adapter types.
SCSI_MODELS = {
    "lsilogic": "lsiLogic",
    "lsisas1068": "lsiLogicsas",
    "buslogic": "busLogic",
    "vmpvscsi": "paraVirtual",
}


def _prop(props, name: str):
    # Unset fields of Nova's image objects raise on getattr; .get does not.
    return props.get(name, None) if props is not None else None


def adapter_type(image_id: str, props) -> str:
    """The root disk's adapter type the image asks for (lsiLogic when it says nothing)."""
    bus = _prop(props, "hw_disk_bus")
    model = _prop(props, "hw_scsi_model")
    if bus == "ide":
        return "ide"
    if bus not in (None, "scsi"):
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"disk bus {bus!r} is not available on vSphere "
            "(use ide or scsi)")
    if model is None:
        return DEFAULT_ADAPTER_TYPE
    try:
        return SCSI_MODELS[model]
    except KeyError:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"SCSI controller {model!r} is not available on "
            f"vSphere (use one of {', '.join(sorted(SCSI_MODELS))})") from None


def is_iso(image_meta) -> bool:
    """Whether the image is an ISO 9660 image (booted from a CD-ROM drive)."""
    return image_meta is not None and image_meta.obj_attr_is_set("disk_format") and \
        image_meta.disk_format == ISO


def image_props(image_meta):
    return image_meta.properties if image_meta.obj_attr_is_set("properties") else None


def image_disk(image_meta) -> ImageDisk:
    """What the image is, from its properties; ImageUnacceptable when vSphere cannot boot it."""
    image_id = image_meta.id
    disk_format = getattr(image_meta, "disk_format", None)
    if disk_format != "vmdk":
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"disk format {disk_format!r} is not supported here; "
            "the vSphere driver boots VMDK and ISO images (ISO images not as rescue images)")
    if getattr(image_meta, "container_format", None) == "ova":
        # Nova's in-tree driver unpacked OVAs; read as a disk, one would boot garbage.
        raise exception.ImageUnacceptable(
            image_id=image_id, reason="OVA images (container_format ova) are not supported; "
            "upload the VMDK inside the OVA as its own image")
    props = image_meta.properties if image_meta.obj_attr_is_set("properties") else None
    disk_type = _prop(props, "hw_disk_type") or DEFAULT_DISK_TYPE
    if disk_type not in DISK_TYPES:
        raise exception.ImageUnacceptable(
            image_id=image_id, reason=f"vmware_disktype {disk_type!r} is not supported; "
            f"use one of {', '.join(DISK_TYPES)}")
    size = int(getattr(image_meta, "size", 0) or 0)
    if size <= 0:
        raise exception.ImageUnacceptable(image_id=image_id, reason="the image has no data")
    return ImageDisk(image_id=image_id, size=size, disk_type=disk_type,
                     adapter_type=adapter_type(image_id, props))


def datastore_named(state, ds_name: str):
    """The DatastoreState named ``ds_name`` in a cluster's ``state``."""
    found = next((d for d in state.datastores if d.name == ds_name), None)
    if found is None:
        raise exception.ComputeResourcesUnavailable(
            reason=f"cluster {state.ref.name} has no datastore {ds_name}")
    return found


class RootDisks:
    """Root disks of new VMs and images in the per-datastore cache (built once; no state)."""

    def __init__(self, services: Services, folders: VmFolders,
                 guest_types: GuestTypes) -> None:
        self._session = services.session
        self._images = services.images
        self._image_api = services.image_api
        self._states = services.states
        self._folders = folders
        self._guest_types = guest_types

    def _import_target(self, ref, ds_name: str):
        """Where a stream-optimized image's temporary VM goes: a usable host mounting the store."""
        def target() -> ImportTarget:
            state = self._states.read_cluster(ref)
            datastore = datastore_named(state, ds_name)
            hosts = sorted((h for h in state.usable_hosts() if datastore.moref in h.datastores),
                           key=lambda h: h.name)
            if not hosts and not state.vcenter_drs:
                raise exception.ComputeResourcesUnavailable(
                    reason=f"cluster {ref.name}: no usable host mounts datastore {ds_name} "
                    "to import the image on")
            host_ref = vim_util.get_moref(hosts[0].moref, "HostSystem") if hosts else None
            return ImportTarget(pool_ref=vim_util.get_moref(ref.resource_pool, "ResourcePool"),
                                folder_ref=self._folders.folder(ref), host_ref=host_ref)

        return target

    def cached_image(self, context, instance, image: ImageDisk, ref, ds_name: str,
                     ds_moref: str) -> CachedImage:
        """``image`` as a disk in the image cache of datastore ``ds_name`` (made if needed)."""
        def download(writer) -> None:
            self._image_api.download(context, image.image_id, data=writer)

        dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
        try:
            with errors.translated(instance):
                return self._images.fetch(
                    dc_ref, ref.datacenter_path, ds_name, image, download,
                    self._import_target(ref, ds_name),
                    ds_ref=vim_util.get_moref(ds_moref, "Datastore"))
        except InvalidImage as exc:
            raise exception.ImageUnacceptable(image_id=image.image_id, reason=str(exc)) from None

    def iso_image(self, context, instance, image_meta, ref, datastore) -> str:
        """The ISO image in the cache of ``datastore`` ("[ds] path.iso"), uploaded if needed."""
        image_id = image_meta.id
        size = int(getattr(image_meta, "size", 0) or 0)
        if size <= 0:
            raise exception.ImageUnacceptable(image_id=image_id, reason="the image has no data")
        adapter_type(image_id, image_props(image_meta))  # the blank disk's bus, checked now

        def download(writer) -> None:
            self._image_api.download(context, image_id, data=writer)

        dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
        try:
            with errors.translated(instance):
                return self._images.fetch_iso(
                    dc_ref, ref.datacenter_path, datastore.name, image_id, size, download,
                    ds_ref=vim_util.get_moref(datastore.moref, "Datastore"))
        except InvalidImage as exc:
            raise exception.ImageUnacceptable(image_id=image_id, reason=str(exc)) from None

    def blank_root_disk(self, instance, image_meta) -> RootDisk | None:
        """An ISO-booted VM's root disk: blank, thin, of the flavor's size (None for 0 GB)."""
        flavor_kb = int(instance.flavor.root_gb or 0) * units.Mi
        if not flavor_kb:
            return None
        return RootDisk(capacity_kb=flavor_kb,
                        adapter_type=adapter_type(image_meta.id, image_props(image_meta)))

    def root_disk(self, context, instance, image_meta, ref, datastore) -> RootDisk | None:
        """The new VM's root disk on ``datastore`` (None: no image and no root disk)."""
        # Checked first, so that a guest type vSphere does not know creates nothing.
        self._guest_types.guest_id(context, image_meta)
        root_gb = int(instance.flavor.root_gb or 0)
        flavor_kb = root_gb * units.Mi
        image_id = getattr(image_meta, "id", None) if image_meta is not None else None
        if not image_id or not instance.image_ref:
            return RootDisk(capacity_kb=flavor_kb) if flavor_kb > 0 else None
        image = image_disk(image_meta)
        if image.disk_type in FLAT_TYPES and flavor_kb and \
                flavor_kb < math.ceil(image.size / units.Ki):
            # A flat image's size is its disk's: refuse before downloading it.
            raise exception.FlavorDiskSmallerThanImage(flavor_size=flavor_kb * units.Ki,
                                                       image_size=image.size)
        cached = self.cached_image(context, instance, image, ref, datastore.name, datastore.moref)
        if flavor_kb and flavor_kb < cached.capacity_kb:
            raise exception.FlavorDiskSmallerThanImage(flavor_size=flavor_kb * units.Ki,
                                                       image_size=cached.capacity_kb * units.Ki)
        dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
        if CONF.vsphere.use_linked_clone:
            parent = cached
            if flavor_kb > cached.capacity_kb:
                # vCenter makes a delta disk only of its parent's capacity.
                with errors.translated(instance):
                    parent = self._images.sized(dc_ref, ref.datacenter_path,
                                                         datastore.name, image, cached, root_gb)
            return RootDisk(capacity_kb=parent.capacity_kb, parent_path=parent.path,
                            adapter_type=image.adapter_type)
        capacity_kb = max(flavor_kb, cached.capacity_kb)
        target = f"[{datastore.name}] {instance.uuid}/{instance.uuid}.vmdk"
        session = self._session
        spec = session.factory("VirtualDiskSpec")
        spec.diskType = "thin"
        spec.adapterType = vdm_adapter_type(image.adapter_type)
        with errors.translated(instance):
            session.invoke("MakeDirectory", session.content.fileManager,
                           name=f"[{datastore.name}] {instance.uuid}", datacenter=dc_ref,
                           createParentDirectories=True)
            session.run_task("CopyVirtualDisk_Task", session.content.virtualDiskManager,
                             sourceName=cached.path, sourceDatacenter=dc_ref, destName=target,
                             destDatacenter=dc_ref, destSpec=spec)
            if capacity_kb > cached.capacity_kb:
                session.run_task("ExtendVirtualDisk_Task", session.content.virtualDiskManager,
                                 name=target, datacenter=dc_ref, newCapacityKb=capacity_kb,
                                 eagerZero=False)
        return RootDisk(capacity_kb=capacity_kb, existing_path=target,
                        adapter_type=image.adapter_type)
