"""Cinder VMDK volumes as Cinder's VMware driver makes them, for the driver tests."""

from __future__ import annotations

import uuid

from pyVmomi import vim

from tests.unit.simulator.helpers import Dev, bind, run

KB_PER_GB = 1024 * 1024


def make_volume(si, sim, size_gb: int = 1, controller=Dev.VirtualLsiLogicController,
                datastore: str = "shared-a", host: str = "esx-a1") -> dict:
    """A Cinder VMDK volume: a backing VM named after it, its instance UUID the volume ID;
    returns its connection_info."""
    volume_id = str(uuid.uuid4())
    spec = vim.vm.ConfigSpec(
        name=f"volume-{volume_id}", instanceUuid=volume_id, numCPUs=1, memoryMB=128,
        guestId="otherGuest", files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
        deviceChange=[
            Dev.VirtualDeviceSpec(operation="add", device=controller(
                key=-100, busNumber=0, sharedBus="noSharing")),
            Dev.VirtualDeviceSpec(operation="add", fileOperation="create", device=Dev.VirtualDisk(
                key=-101, controllerKey=-100, unitNumber=0, capacityInKB=size_gb * KB_PER_GB,
                backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{datastore}]", diskMode="persistent", thinProvisioned=True)))])
    esx = sim.host(host)
    backing = run(bind(si, esx.datacenter().vm_folder).CreateVM_Task(
        spec, bind(si, esx.cluster.resource_pool), bind(si, esx)))
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
