"""The new VM's guest OS type (vCenter's ``guestId``), from the image's ``vmware_ostype``.

Nova reads the legacy ``vmware_ostype`` image property into
``ImageMetaProps.os_distro``, which is also Glance's generic distro name
("ubuntu", "windows") -- and when an image has both, ``os_distro`` wins.
So: an ``os_distro`` that is a vSphere guest OS identifier is the guest
type; any other value sends us to the image's own ``vmware_ostype`` in
Glance. A ``vmware_ostype`` vSphere does not know is refused before
anything is created (vCenter would fail CreateVM with "A specified
parameter was not correct" at the end); an image without one boots as
``otherGuest64``, as with Nova's in-tree driver. The identifiers are
pyVmomi's: a guest type newer than the installed pyVmomi is refused until
pyVmomi is upgraded.
"""

from __future__ import annotations

import difflib

from nova import exception
from oslo_log import log as logging
from pyVmomi import vim

LOG = logging.getLogger(__name__)

#: vSphere's guest OS identifiers (vim.vm.GuestOsDescriptor.GuestOsIdentifier).
GUEST_IDS = frozenset(vim.vm.GuestOsDescriptor.GuestOsIdentifier.values)
DEFAULT_GUEST_ID = "otherGuest64"
#: The image property Nova's in-tree driver and our snapshots use.
OSTYPE_PROPERTY = "vmware_ostype"


def _os_distro(image_meta) -> str | None:
    if image_meta is None or not image_meta.obj_attr_is_set("properties"):
        return None
    # Unset fields of Nova's image objects raise on getattr; .get does not.
    return image_meta.properties.get("os_distro", None)


def _unknown(image_id: str | None, value: str) -> exception.ImageUnacceptable:
    close = difflib.get_close_matches(value, sorted(GUEST_IDS), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return exception.ImageUnacceptable(
        image_id=image_id or "(none)",
        reason=f"vmware_ostype {value!r} is not a vSphere guest OS identifier{hint}")


class GuestTypes:
    """The guest type of new VMs, from their images (built once; holds no state)."""

    def __init__(self, image_api) -> None:
        self._image_api = image_api

    def _glance_ostype(self, context, image_id: str | None) -> str | None:
        """The image's own vmware_ostype in Glance (None: not set, or no such image)."""
        if not image_id:
            return None
        try:
            image = self._image_api.get(context, image_id)
        except (exception.ImageNotFound, exception.ImageNotAuthorized):
            return None
        value = (image.get("properties") or {}).get(OSTYPE_PROPERTY)
        return str(value) if value else None

    def guest_id(self, context, image_meta) -> str:
        """The guestId the image asks for; ImageUnacceptable when vSphere does not know it."""
        distro = _os_distro(image_meta)
        if distro is None:
            return DEFAULT_GUEST_ID
        if distro in GUEST_IDS:
            return distro
        image_id = getattr(image_meta, "id", None) if image_meta.obj_attr_is_set("id") else None
        ostype = self._glance_ostype(context, image_id)
        if ostype is None:
            # A distro name ("ubuntu"), or -- with no image to ask (a volume's
            # image metadata without its id) -- possibly a wrong vmware_ostype,
            # which cannot be told apart from a distro name: no guest type.
            LOG.warning("Image %s: os_distro %r is no vSphere guest OS identifier and no "
                        "vmware_ostype says one; the guest type is %s", image_id, distro,
                        DEFAULT_GUEST_ID)
            return DEFAULT_GUEST_ID
        if ostype not in GUEST_IDS:
            raise _unknown(image_id, ostype)
        return ostype
