"""Config drives: Nova's instance metadata on an ISO 9660 image, on a CD-ROM drive.

When Nova wants one (as ``nova.virt.configdrive.required_by`` says: the server's
``config_drive`` flag, ``[DEFAULT] force_config_drive``, or the image's
``img_config_drive = mandatory``), spawn builds the drive in this process:
the files of Nova's ``InstanceMetadata`` (``openstack/<version>/
meta_data.json``, ``user_data``, ``network_data.json``, ``vendor_data*.json``,
the ``ec2`` tree, injected files) on an ISO 9660 image with Rock Ridge and
Joliet names and the volume label ``config-2`` that cloud-init looks for --
what Nova's ``ConfigDriveBuilder`` makes with genisoimage, made here with
pycdlib, so the compute host needs no genisoimage binary.

The image is uploaded as ``configdrive.iso`` into the instance's folder
(the in-tree driver's name and place) before the VM is created, and the VM
is created with a CD-ROM drive on it. It lives in the VM's folder, so it
moves with the VM's files (cold and live migration, storage vMotion), stays
through rescue (rescue adds a disk), and goes with the VM.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable

import nova.conf
import pycdlib
from nova import exception, version
from nova.api.metadata import base as instance_metadata
from nova.objects import fields
from oslo_config import cfg
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.cluster_state import ClusterRef
from nova_vsphere_driver.vsphere.image_import import DatastoreUpload

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF

#: The drive's file in the instance's folder, as the in-tree driver names it.
FILE_NAME = "configdrive.iso"
#: The volume label cloud-init (and every other consumer) finds the drive by.
VOLUME_LABEL = "config-2"


def build_iso(files: Iterable[tuple[str, bytes | str]], volume_label: str = VOLUME_LABEL,
              publisher: str = "") -> bytes:
    """An ISO 9660 image holding ``files`` ((relative path, data) pairs).

    ISO 9660:1999 names (interchange level 4: lowercase, dots and long names
    as they are, like genisoimage's ``-l -allow-lowercase -allow-multidot``),
    with Rock Ridge (``-r``) and Joliet (``-J``) names too.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=volume_label,
            pub_ident_str=publisher[:128])
    made: set[str] = set()
    try:
        for path, data in files:
            if isinstance(data, str):
                data = data.encode("utf-8")
            parts = [p for p in path.strip("/").split("/") if p]
            for depth in range(1, len(parts)):
                folder = "/" + "/".join(parts[:depth])
                if folder not in made:
                    iso.add_directory(folder, rr_name=parts[depth - 1], joliet_path=folder)
                    made.add(folder)
            target = "/" + "/".join(parts)
            iso.add_fp(io.BytesIO(data), len(data), target, rr_name=parts[-1],
                       joliet_path=target)
        out = io.BytesIO()
        iso.write_fp(out)
        return out.getvalue()
    finally:
        iso.close()


def publisher() -> str:
    """What genisoimage's ``-publisher`` says for Nova's config drives."""
    try:
        return f"{version.product_string()} {version.version_string_with_package()}"
    except cfg.NotInitializedError:
        # Nova reads its release file next to a parsed configuration; a
        # process without one (a library user) gets the built-in names.
        return f"{version.NOVA_PRODUCT} {version.version_info.version_string()}"


class ConfigDrives:
    """Config drives of new VMs (built once; holds no state)."""

    def __init__(self, services: Services) -> None:
        self._session = services.session
        self._images = services.images

    @staticmethod
    def required(instance, image_meta) -> bool:
        """Whether Nova wants a config drive for ``instance`` booted from ``image_meta``.

        ``nova.virt.configdrive.required_by``'s rule, read from the image the
        spawn was given, and from the instance's fields only where they are set
        (an unset one would be loaded from the database).
        """
        def field(name: str):
            return getattr(instance, name) if instance.obj_attr_is_set(name) else None

        policy = None
        if image_meta is not None and image_meta.obj_attr_is_set("properties"):
            policy = image_meta.properties.get("img_config_drive", None)
        return bool(field("config_drive")) or \
            bool(CONF.force_config_drive and not field("launched_at")) or \
            policy == fields.ConfigDrivePolicy.MANDATORY

    @staticmethod
    def build(instance, network_info, injected_files, admin_password) -> bytes:
        """The config drive's ISO image for ``instance``."""
        if CONF.config_drive_format != "iso9660":
            # vfat needs mkfs and a loop mount as root on the compute host.
            raise exception.ConfigDriveUnsupportedFormat(format=CONF.config_drive_format)
        extra_md = {"admin_pass": admin_password} if admin_password else {}
        metadata = instance_metadata.InstanceMetadata(
            instance, content=injected_files or [], extra_md=extra_md,
            network_info=network_info)
        return build_iso(metadata.metadata_for_config_drive(), publisher=publisher())

    def upload(self, instance, ref: ClusterRef, ds_name: str, data: bytes) -> str:
        """Put the drive into the instance's folder (made here); returns its "[ds] path"."""
        session = self._session
        folder = f"[{ds_name}] {instance.uuid}"
        dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
        with errors.translated(instance):
            try:
                session.invoke("MakeDirectory", session.content.fileManager, name=folder,
                               datacenter=dc_ref, createParentDirectories=True)
            except vexc.FileAlreadyExistsException:
                LOG.debug("%s exists already (an earlier attempt)", folder, instance=instance)
            rel = posixpath.join(instance.uuid, FILE_NAME)
            upload = DatastoreUpload(session, ref.datacenter_path, ds_name, rel, len(data),
                                     scheme=self._images.scheme, verify=self._images.verify)
            try:
                upload.write(data)
                upload.finish()
            except BaseException:
                upload.close()
                raise
        LOG.info("Config drive uploaded to [%s] %s (%d bytes)", ds_name, rel, len(data),
                 instance=instance)
        return f"[{ds_name}] {rel}"
