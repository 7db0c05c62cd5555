"""Helpers shared by the guest-operation, console and diagnostics driver tests."""

from __future__ import annotations

import io
import uuid

from nova import objects
from nova.network import model as network_model
from pyVmomi import vim

MB = 1024 * 1024
Dev = vim.vm.device



def vif(bridge: str, index: int) -> network_model.VIF:
    return network_model.VIF(
        id=str(uuid.uuid4()), address=f"fa:16:3e:00:01:{index:02x}",
        network=network_model.Network(id=f"net-{bridge}", bridge=bridge, label=bridge))


def vifs(*bridges: str) -> network_model.NetworkInfo:
    return network_model.NetworkInfo([vif(b, i) for i, b in enumerate(bridges)])


def spawn(drv, ctx, instance, image_meta=None, network_info=None, power_on=True) -> None:
    drv.spawn(ctx, instance, image_meta, [], None, {}, network_info=network_info or [],
              power_on=power_on)


def vmdk_image(ctx, glance, name: str = "rescue-vmdk", size_mb: int = 2) -> objects.ImageMeta:
    """A VMDK image in Nova's fake Glance, as ImageMeta."""
    image_id = str(uuid.uuid4())
    data = b"KDMV" + b"\0" * (size_mb * MB)
    glance.create(None, {"id": image_id, "name": name, "status": "active",
                         "disk_format": "vmdk", "container_format": "bare", "size": len(data),
                         "properties": {}}, data=io.BytesIO(data))
    return objects.ImageMeta.from_dict(glance.show(ctx, image_id))


def sim_vm(sim, instance):
    """The simulator's VM of an instance (VMs are named by instance UUID)."""
    return sim.vm(instance.uuid)


def nics(sim, instance) -> list:
    return [d for d in sim_vm(sim, instance).config.hardware.device
            if isinstance(d, Dev.VirtualEthernetCard)]


def disks(sim, instance) -> list:
    return [d for d in sim_vm(sim, instance).config.hardware.device
            if isinstance(d, Dev.VirtualDisk)]


def extra_config(sim, instance) -> dict[str, str]:
    return {o.key: o.value for o in sim_vm(sim, instance).config.extraConfig or []}


def boot_order(sim, instance) -> list[int]:
    boot = sim_vm(sim, instance).config.bootOptions
    return [e.deviceKey for e in (boot.bootOrder if boot is not None else [])]


def power(sim, instance) -> str:
    return str(sim_vm(sim, instance).power_state)


def move_to_host(sim, instance, host_name: str) -> None:
    """vMotion behind the driver's back (as vCenter's own DRS or an operator would)."""
    vm = sim_vm(sim, instance)
    with sim.registry.lock:
        vm.move_to_host(sim.host(host_name))
