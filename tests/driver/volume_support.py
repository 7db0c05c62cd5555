"""Cinder VMDK volumes as Cinder's VMware driver makes them, for the driver tests."""

from __future__ import annotations

import uuid

from tests.unit.simulator.helpers import Dev, create_volume_backing


def make_volume(si, sim, size_gb: int = 1, controller=Dev.VirtualLsiLogicController,
                datastore: str = "shared-a", host: str = "esx-a1") -> dict:
    """A Cinder VMDK volume: a backing VM named after it, its instance UUID the volume ID;
    returns its connection_info."""
    volume_id = str(uuid.uuid4())
    backing = create_volume_backing(si, sim.host(host), volume_id, size_gb, datastore, controller)
    return {"driver_volume_type": "vmdk",
            "data": {"volume": backing._moId, "volume_id": volume_id,
                     "name": f"volume-{volume_id}", "profile_id": None}}


def backing_vm(sim, info: dict):
    """The simulator's backing VM of a volume."""
    return sim.registry.get(info["data"]["volume"])


def volume_path(sim, info: dict) -> str:
    """The volume's disk file as its backing VM has it now."""
    [disk] = [d for d in backing_vm(sim, info).config.hardware.device
              if isinstance(d, Dev.VirtualDisk)]
    return disk.backing.fileName
