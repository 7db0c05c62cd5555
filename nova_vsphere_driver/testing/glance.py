"""Nova's fake Glance, keeping what is uploaded to it as Glance does.

Call :func:`nova_vsphere_driver.testing.nova_env.prepare` (or
``nova.monkey_patch.patch()``) before importing this module: it imports
Nova's test fixtures.
"""

from __future__ import annotations

from nova.tests import fixtures as nova_fixtures


class UploadKeepingGlanceFixture(nova_fixtures.GlanceFixture):
    """Nova's fake Glance, keeping what is uploaded to an image as Glance does.

    Nova's fixture drops the data of ``update``; Glance stores it and sets
    the image's size and status from what it received. ``downloads`` lists
    the image ids whose data was read, in order (a test sees which boots
    found the image cached).
    """

    def setUp(self) -> None:
        super().setUp()
        self.downloads: list[str] = []

    def download(self, context, image_id, *args, **kwargs):
        self.downloads.append(image_id)
        return super().download(context, image_id, *args, **kwargs)

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
