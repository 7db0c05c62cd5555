"""Nova's image cache API for the per-datastore image cache (vsphere/images.py).

* ``cache_image`` (``POST /os-aggregates/{id}/images``, API 2.81): the image
  into the cache of every datastore a spawn may use.
* ``manage_image_cache`` (nova-compute's image cache manager pass, every
  ``[image_cache] manager_interval``): cached images nothing uses any more
  are marked, then removed after ``remove_unused_original_minimum_age_seconds``
  (vsphere/image_aging.py), when ``remove_unused_base_images`` is set.
"""

from __future__ import annotations

import nova.conf
from nova import objects
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.datastore_selection import matching_datastores
from nova_vsphere_driver.ops.root_disk import RootDisks, image_disk, is_iso
from nova_vsphere_driver.services import Services
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.images import CachedImage
from nova_vsphere_driver.vsphere.session import TaskTimeout

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


class ImageCacheOps:
    """Nova's image cache API over the per-datastore caches (built once; holds no state)."""

    def __init__(self, services: Services, root_disks: RootDisks) -> None:
        self._images = services.images
        self._image_api = services.image_api
        self._states = services.states
        self._nodes = services.nodes
        self._root_disks = root_disks

    def precache(self, context, image_id: str) -> bool:
        """The image in the cache of every datastore a spawn may use.

        Spawn puts a root disk on whichever matching datastore has most room
        then, so the image goes into the cache of every datastore matching
        ``[vsphere] datastore_regex`` that a usable host of a managed cluster
        mounts (a datastore shared by clusters once): the next spawn anywhere
        finds it there, as the cache's own fetch would have made it (an ISO
        image as the ISO file its CD-ROM drives use). True when at least one
        copy was made, False when every datastore had it. ImageUnacceptable
        for an image vSphere cannot boot, before any copy.
        """
        image_meta = objects.ImageMeta.from_dict(self._image_api.get(context, image_id))
        iso = is_iso(image_meta)
        image = None if iso else image_disk(image_meta)
        made = False
        seen: set[str] = set()
        for nodename, ref in self._nodes.items():
            state = self._states.read(nodename)
            stores = [d for d in matching_datastores(state, CONF.vsphere.datastore_regex)
                      if d.moref not in seen]
            seen.update(d.moref for d in stores)
            for datastore in stores:
                if iso:
                    with errors.translated():
                        if self._images.iso_cached(ref.datacenter_path, datastore.name,
                                                   image_id):
                            continue
                    self._root_disks.iso_image(context, None, image_meta, ref, datastore)
                    made = True
                    continue
                with errors.translated():
                    found = self._images.lookup(ref.datacenter_path, datastore.name, image_id)
                if isinstance(found, CachedImage):
                    continue
                self._root_disks.cached_image(context, None, image, ref, datastore.name,
                                              datastore.moref)
                made = True
        return made

    def age_images(self, context, all_instances) -> dict[str, list[str]]:
        """One image cache manager pass over every datastore of the managed clusters.

        Images of ``all_instances`` (Nova's instances on this nova-compute) are
        kept whatever their disks point at. Returns what was done, by kind
        (``removed``, ``marked``, ``unmarked``, ``in_use``, ``failed``: lists of
        ``[ds] folder``).
        """
        done: dict[str, list[str]] = {"removed": [], "marked": [], "unmarked": [], "in_use": [],
                                      "failed": []}
        if not CONF.image_cache.remove_unused_base_images:
            return done
        keep = {i.image_ref for i in all_instances if i.image_ref}
        min_age = CONF.image_cache.remove_unused_original_minimum_age_seconds
        seen: set[str] = set()
        for nodename, ref in self._nodes.items():
            state = self._states.read(nodename)
            dc_ref = vim_util.get_moref(ref.datacenter, "Datacenter")
            # Every datastore the cluster's hosts mount, matching the regex or not:
            # caches made before a change of datastore_regex age out too.
            for datastore in state.datastores:
                if datastore.moref in seen or not datastore.accessible:
                    continue
                seen.add(datastore.moref)
                try:
                    report = self._images.age(dc_ref, vim_util.get_moref(datastore.moref,
                                                                        "Datastore"),
                                             datastore.name, keep, min_age)
                except (vexc.VimException, TaskTimeout) as exc:
                    LOG.warning("Image cache ageing on datastore %s failed: %s", datastore.name,
                                exc)
                    done["failed"].append(f"[{datastore.name}]")
                    continue
                for kind in done:
                    done[kind].extend(getattr(report, kind))
        if done["removed"] or done["marked"]:
            LOG.info("Image cache pass: %d cached image(s) removed, %d newly unused",
                     len(done["removed"]), len(done["marked"]))
        return done
