"""Nova's fake Glance, keeping what is uploaded to it as Glance does.

Call :func:`nova_vsphere_driver.testing.nova_env.prepare` (or
``nova.monkey_patch.patch()``) before importing this module: it imports
Nova's test fixtures.
"""

from __future__ import annotations

from nova.tests import fixtures as nova_fixtures

#: The chunk size of Glance's client (what a download iterates by).
CHUNK = 64 * 1024


class UploadKeepingGlanceFixture(nova_fixtures.GlanceFixture):
    """Nova's fake Glance, keeping what is uploaded to an image as Glance does.

    Nova's fixture drops the data of ``update``; Glance stores it and sets
    the image's size and status from what it received. A download into
    neither a file nor a stream returns the data as chunks, as Nova's Glance
    client does (Nova's in-tree VMware driver reads images that way). ``downloads`` lists
    the image ids whose data was read, in order (a test sees which boots
    found the image cached).
    """

    def setUp(self) -> None:
        super().setUp()
        self.downloads: list[str] = []

    def download(self, context, image_id, data=None, dst_path=None, trusted_certs=None):
        self.downloads.append(image_id)
        if data is None and dst_path is None:
            # As Nova's Glance client: the image's data, as an iterator of chunks.
            self.show(context, image_id)
            content = self._imagedata.get(image_id, b"")
            return iter([content[i:i + CHUNK] for i in range(0, len(content), CHUNK)])
        return super().download(context, image_id, data=data, dst_path=dst_path,
                                trusted_certs=trusted_certs)

    def update(self, context, image_id, metadata, data=None, purge_props=False):
        image = super().update(context, image_id, metadata, purge_props=purge_props)
        if data is not None:
            # Glance's client reads the upload in chunks (64 KiB by default).
            received = b"".join(iter(lambda: data.read(64 * 1024), b""))
            self._imagedata[image_id] = received
            image.update(size=len(received), status="active")
        return image


class StoringGlanceFixture(UploadKeepingGlanceFixture):
    """Glance as above, whose images created without data are ``queued`` too.

    Nova's fixture makes every new image ``active`` at once. Glance makes an
    image created without data ``queued`` and only an upload makes it
    ``active`` with its size: an instance snapshot (``createImage``) is then
    checked by what the driver really uploaded. The images Nova's fixture
    creates for itself at set-up are left as Nova makes them.
    """

    def setUp(self) -> None:
        super().setUp()
        self._glance_like = True

    def create(self, context, metadata, data=None):
        if getattr(self, "_glance_like", False) and data is None \
                and "status" not in metadata:
            metadata = {**metadata, "status": "queued"}
        return super().create(context, metadata, data=data)


__all__ = ["StoringGlanceFixture", "UploadKeepingGlanceFixture"]
