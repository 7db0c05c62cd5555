"""Cinder as its VMware VMDK driver presents volumes, for Nova's in-process services.

Cinder's VMDK backend keeps each volume as the one disk of a powered-off
"shadow" (backing) VM, whose instance UUID is the volume's ID, and answers
``initialize_connection`` / ``attachment_update`` with ``{"driver_volume_type":
"vmdk", "data": {"volume": <backing VM moref>, "volume_id": ..., "name": ...,
"profile_id": ...}}`` (the contract nova_vsphere_driver/ops/volumes.py
implements). :class:`VmdkCinderFixture` is Nova's ``CinderFixture`` (the
attachment bookkeeping Nova's compute manager talks to) answering so for the
volumes :func:`create_volume` makes in the simulator, as Cinder would.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid

from nova.tests.fixtures import cinder as nova_cinder

from tests.unit.simulator.helpers import Dev, create_volume_backing

KB_PER_GB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Volume:
    """A volume made in the simulator: its ID, backing VM (moref) and disk file."""

    volume_id: str
    backing_moid: str
    path: str  # "[datastore] folder/file.vmdk"
    disk_uuid: str
    capacity_kb: int

    @property
    def datastore(self) -> str:
        return self.path[1:].split("] ", 1)[0]

    @property
    def file(self) -> str:
        return self.path.split("] ", 1)[1]


class VmdkCinderFixture(nova_cinder.CinderFixture):
    """Nova's CinderFixture; the volumes of :meth:`add` connect as Cinder's VMDK driver's."""

    def __init__(self, test) -> None:
        super().__init__(test)
        self.vmdk: dict[str, Volume] = {}
        #: The connectors Nova passed to attachment_update (volume ID -> connector).
        self.connectors: dict[str, dict] = {}

    def add(self, volume: Volume) -> None:
        """Cinder knows the volume: available until Nova completes an attachment."""
        if volume.volume_id in self.vmdk:
            return
        self.vmdk[volume.volume_id] = volume
        self.volumes[volume.volume_id] = {
            "id": volume.volume_id, "display_name": f"volume-{volume.volume_id}",
            "display_description": "", "size": volume.capacity_kb // KB_PER_GB,
            "status": "available", "attach_status": "detached", "multiattach": False,
            "availability_zone": self.az}

    def _find_connection_info(self, volume_id, attachment_id):
        volume = self.vmdk.get(volume_id)
        if volume is None:
            return super()._find_connection_info(volume_id, attachment_id)
        return {"driver_volume_type": "vmdk",
                "data": {"volume": volume.backing_moid, "volume_id": volume_id,
                         "name": f"volume-{volume_id}", "profile_id": None,
                         "attachment_id": attachment_id}}

    def fake_attachment_update(self, context, attachment_id, connector, mountpoint=None):
        volume_id, _, _ = self._find_attachment(attachment_id)
        self.connectors[volume_id] = copy.deepcopy(connector)
        return super().fake_attachment_update(context, attachment_id, connector, mountpoint)

    def fake_attachment_delete(self, context, attachment_id):
        volume_id, _, attachments = self._find_attachment(attachment_id)
        super().fake_attachment_delete(context, attachment_id)
        if volume_id in self.volumes and not attachments:
            # As Cinder: a volume without attachments is available again.
            self.volumes[volume_id].update(status="available", attach_status="detached")

    def attached_to(self, volume_id: str) -> list[str]:
        """Instance UUIDs of the volume's attachments Cinder still has."""
        return [a["instance_uuid"] for a in self.volume_to_attachment[volume_id].values()]


def create_volume(stack, size_gb: int = 1, datastore: str = "shared-all",
                  host: str = "esx-a1") -> Volume:
    """A volume as Cinder's VMDK driver creates it: a powered-off VM with one thin disk."""
    volume_id = str(uuid.uuid4())
    backing = create_volume_backing(stack.pyvmomi(), stack.sim_host(host), volume_id, size_gb,
                                    datastore)
    [disk] = [d for d in stack.sim_vm_by_moid(backing._moId).config.hardware.device
              if isinstance(d, Dev.VirtualDisk)]
    return Volume(volume_id, backing._moId, disk.backing.fileName, disk.backing.uuid,
                  disk.capacityInKB)
