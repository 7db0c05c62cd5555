"""OvfManager: OVF descriptors to import specs (and VMs back to descriptors).

What ``govc import.ovf``/``export.ovf`` and Terraform's OVF deploys use:

* ``ParseDescriptor`` and ``ValidateHost`` read a descriptor's name,
  annotation, networks and sizes.
* ``CreateImportSpec`` turns the descriptor's first VirtualSystem into a
  ``VirtualMachineImportSpec`` for ``ResourcePool.ImportVApp``: CPUs,
  memory, hardware version, guest OS, controllers, disks (thin unless
  ``diskProvisioning`` says otherwise) and network adapters on the mapped
  networks; and one ``fileItem`` per disk file, whose ``deviceId`` is the
  import lease's ``importKey`` of that disk (/<name>/<controller><bus>:<unit>).
* ``CreateDescriptor`` writes a VM's descriptor, naming the disk files a
  client downloaded through an export lease (their ``deviceId`` is the
  lease's device URL key).

A descriptor that is not OVF (not XML, no Envelope or VirtualSystem) gives
a result whose ``error`` says so, as vCenter answers, not a fault.
Limitations: vApps (VirtualSystemCollection), deployment options, OVF
properties and EULAs are not modelled; CD-ROM and floppy items are left out
with a warning.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

from pyVmomi import vim

from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedObject

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.service import Simulator

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
Dev = vim.vm.device
Ovf = vim.OvfManager

#: OVF SCSI controller subtypes -> the device type vCenter makes.
_SCSI = {"lsilogic": Dev.VirtualLsiLogicController, "lsilogicsas": Dev.VirtualLsiLogicSASController,
         "virtualscsi": Dev.ParaVirtualSCSIController, "buslogic": Dev.VirtualBusLogicController}
_NICS = {"vmxnet3": Dev.VirtualVmxnet3, "e1000": Dev.VirtualE1000, "e1000e": Dev.VirtualE1000e,
         "pcnet32": Dev.VirtualPCNet32, "vmxnet2": Dev.VirtualVmxnet2}
_UNITS = re.compile(r"byte\s*(?:\*\s*2\s*\^\s*(\d+))?\s*$")
#: Default device keys of a new VM's IDE controllers (virtual_machine._default_devices).
_IDE_KEYS = {0: 200, 1: 201}


class OvfError(Exception):
    """The descriptor is not OVF the simulator can read; the message says why."""


def _multiplier(units: str | None) -> int:
    """``byte * 2^20`` -> 1048576 (OVF's allocation units for sizes)."""
    match = _UNITS.match((units or "byte").strip())
    if match is None:
        raise OvfError(f"unknown allocation units {units!r}")
    return 1 << int(match.group(1) or 0)


def _text(item: ET.Element, name: str) -> str | None:
    child = item.find(f"{{{RASD}}}{name}")
    return child.text.strip() if child is not None and child.text else None


class Descriptor:
    """What the simulator reads of an OVF descriptor."""

    def __init__(self, text: str) -> None:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise OvfError(f"the descriptor is not XML: {exc}") from None
        if root.tag != f"{{{OVF}}}Envelope":
            raise OvfError("the descriptor has no OVF Envelope")
        self.files = {f.get(f"{{{OVF}}}id"): (f.get(f"{{{OVF}}}href"),
                                              int(f.get(f"{{{OVF}}}size") or 0))
                      for f in root.iter(f"{{{OVF}}}File")}
        self.disks: dict[str, tuple[str | None, int]] = {}
        for disk in root.iter(f"{{{OVF}}}Disk"):
            capacity = int(disk.get(f"{{{OVF}}}capacity") or 0)
            units = _multiplier(disk.get(f"{{{OVF}}}capacityAllocationUnits"))
            self.disks[disk.get(f"{{{OVF}}}diskId")] = (disk.get(f"{{{OVF}}}fileRef"),
                                                        capacity * units)
        self.networks = [(n.get(f"{{{OVF}}}name"),
                          (n.findtext(f"{{{OVF}}}Description") or "").strip())
                         for n in root.iter(f"{{{OVF}}}Network")]
        system = root.find(f".//{{{OVF}}}VirtualSystem")
        if system is None:
            raise OvfError("the descriptor has no VirtualSystem")
        self.name = (system.findtext(f"{{{OVF}}}Name") or system.get(f"{{{OVF}}}id")
                     or "vm").strip()
        self.annotation = (system.findtext(f".//{{{OVF}}}AnnotationSection/{{{OVF}}}Annotation")
                           or "").strip()
        os_section = system.find(f"{{{OVF}}}OperatingSystemSection")
        self.guest_id = os_section.get(f"{{{VMW}}}osType") if os_section is not None else None
        hardware = system.find(f"{{{OVF}}}VirtualHardwareSection")
        if hardware is None:
            raise OvfError(f"the VirtualSystem {self.name} has no VirtualHardwareSection")
        system_type = hardware.findtext(f".//{{{VSSD}}}VirtualSystemType")
        self.version = system_type.split()[0] if system_type else None
        self.items = [item for item in hardware if item.tag.endswith("Item")]

    def download_size(self) -> int:
        return sum(size for _, size in self.files.values())

    def capacity(self) -> int:
        return sum(size for _, size in self.disks.values())


def _error(message: str) -> vim.fault.OvfXmlFormat:
    return vim.fault.OvfXmlFormat(lineNumber=0, description=message,
                                  msg=f"The OVF descriptor is not valid: {message}")


class OvfManager(ManagedObject):
    vim_type = vim.OvfManager

    def __init__(self, sim: Simulator) -> None:
        super().__init__(sim, "OvfManager")

    def _get_ovfImportOption(self):  # noqa: N802
        return []

    def _get_ovfExportOption(self):  # noqa: N802
        return []

    # -- reading -------------------------------------------------------------------------

    def ParseDescriptor(self, ctx: CallContext, ovfDescriptor: str, pdp):  # noqa: N802,N803
        try:
            ovf = Descriptor(ovfDescriptor)
        except OvfError as exc:
            return Ovf.ParseDescriptorResult(annotation="", defaultEntityName="", virtualApp=False,
                                             defaultDeploymentOption="", error=[_error(str(exc))])
        return Ovf.ParseDescriptorResult(
            network=[Ovf.NetworkInfo(name=n, description=d) for n, d in ovf.networks],
            annotation=ovf.annotation, approximateDownloadSize=ovf.download_size(),
            approximateFlatDeploymentSize=ovf.capacity(),
            approximateSparseDeploymentSize=ovf.download_size(),
            defaultEntityName=ovf.name, virtualApp=False, defaultDeploymentOption="",
            eula=[], property=[], deploymentOption=[], entityName=[], error=[], warning=[])

    def ValidateHost(self, ctx: CallContext, ovfDescriptor: str, host, vhp):  # noqa: N802,N803
        self.sim.registry.lookup(host)
        try:
            ovf = Descriptor(ovfDescriptor)
        except OvfError as exc:
            return Ovf.ValidateHostResult(error=[_error(str(exc))])
        return Ovf.ValidateHostResult(
            downloadSize=ovf.download_size(), flatDeploymentSize=ovf.capacity(),
            sparseDeploymentSize=ovf.download_size(), error=[], warning=[],
            supportedDiskProvisioning=["monolithicSparse", "monolithicFlat", "thin", "thick",
                                       "eagerZeroedThick"])

    # -- import ------------------------------------------------------------------------

    def CreateImportSpec(self, ctx: CallContext, ovfDescriptor: str, resourcePool,  # noqa: N802,N803
                         datastore, cisp):
        registry = self.sim.registry
        with registry.lock:
            pool = registry.lookup(resourcePool)
            ds = registry.lookup(datastore)
            host = registry.lookup(cisp.hostSystem) if cisp.hostSystem is not None else None
            try:
                ovf = Descriptor(ovfDescriptor)
                return self._import_spec(ovf, pool, ds, host, cisp)
            except OvfError as exc:
                return Ovf.CreateImportSpecResult(error=[_error(str(exc))], warning=[])

    def _import_spec(self, ovf: Descriptor, pool: Any, ds: Any, host: Any, cisp):
        name = cisp.entityName or ovf.name
        thin = (cisp.diskProvisioning or "thin") in ("thin", "monolithicSparse")
        networks = {m.name: self.sim.registry.lookup(m.network) for m in cisp.networkMapping or ()}
        hosts = [host] if host is not None else pool.owner.usable_hosts()
        spec = vim.vm.ConfigSpec(name=name, guestId=ovf.guest_id or "otherGuest64",
                                 version=ovf.version, annotation=ovf.annotation,
                                 files=vim.vm.FileInfo(vmPathName=f"[{ds.name}]"),
                                 numCPUs=1, memoryMB=128, deviceChange=[])
        # InstanceID -> (device key, device type, bus number)
        controllers: dict[str, tuple[int, Any, int]] = {}
        disks, warnings, items = [], [], []
        next_key = -100
        for item in ovf.items:
            kind = int(_text(item, "ResourceType") or 0)
            quantity = int(_text(item, "VirtualQuantity") or 0)
            instance = _text(item, "InstanceID") or ""
            subtype = (_text(item, "ResourceSubType") or "").lower()
            if kind == 3:
                spec.numCPUs = quantity or 1
            elif kind == 4:
                spec.memoryMB = quantity * _multiplier(_text(item, "AllocationUnits")) // 2 ** 20
            elif kind in (5, 6, 20):
                dtype = _controller_type(kind, subtype)
                bus = int(_text(item, "Address")
                          or sum(1 for _, t, _ in controllers.values() if t is dtype))
                if dtype is Dev.VirtualIDEController:
                    controllers[instance] = (_IDE_KEYS.get(bus, 200), dtype, bus)
                    continue
                controllers[instance] = (next_key, dtype, bus)
                device = dtype(key=next_key, busNumber=bus)
                if issubclass(dtype, Dev.VirtualSCSIController):
                    device.sharedBus = "noSharing"
                spec.deviceChange.append(Dev.VirtualDeviceSpec(operation="add", device=device))
                next_key -= 1
            elif kind == 17:
                items.append(item)
            elif kind == 10:
                connection = _text(item, "Connection") or ""
                network = networks.get(connection)
                if network is None:
                    network = next((n for h in hosts for n in h.networks
                                    if n.name == connection), None)
                if network is None and hosts and hosts[0].networks:
                    network = hosts[0].networks[0]
                    warnings.append(f"network {connection!r} is not mapped: using "
                                    f"{network.name}")
                nic = _NICS.get(subtype, Dev.VirtualVmxnet3)(key=next_key,
                                                              addressType="generated")
                next_key -= 1
                nic.backing = _nic_backing(network)
                spec.deviceChange.append(Dev.VirtualDeviceSpec(operation="add", device=nic))
            elif kind in (14, 15, 16):
                warnings.append(f"{_text(item, 'ElementName') or 'a removable device'} is "
                                "left out (CD-ROM and floppy drives are not imported)")
        for item in items:
            parent = controllers.get(_text(item, "Parent") or "")
            if parent is None:
                raise OvfError(f"disk {_text(item, 'ElementName')} names no controller")
            key, dtype, bus = parent
            unit = int(_text(item, "AddressOnParent") or 0)
            resource = (_text(item, "HostResource") or "").rpartition("/")[2]
            file_ref, capacity = ovf.disks.get(resource, (None, 0))
            disk = Dev.VirtualDisk(
                key=next_key, controllerKey=key, unitNumber=unit,
                capacityInKB=max(capacity // 1024, 1),
                backing=Dev.VirtualDisk.FlatVer2BackingInfo(
                    fileName=f"[{ds.name}]", diskMode="persistent", thinProvisioned=thin,
                    eagerlyScrub=cisp.diskProvisioning == "eagerZeroedThick"))
            next_key -= 1
            spec.deviceChange.append(Dev.VirtualDeviceSpec(operation="add",
                                                           fileOperation="create", device=disk))
            if file_ref in ovf.files:
                href, size = ovf.files[file_ref]
                disks.append(Ovf.FileItem(
                    deviceId=f"/{name}/{dtype.__name__.rpartition('.')[2]}{bus}:{unit}",
                    path=href, size=size, cimType=17, create=False))
        return Ovf.CreateImportSpecResult(
            importSpec=vim.vm.VmImportSpec(configSpec=spec, resPoolEntity=pool.ref),
            fileItem=disks, error=[],
            warning=[vim.fault.OvfUnsupportedElement(name=w, lineNumber=0, msg=w)
                     for w in warnings])

    # -- export ------------------------------------------------------------------------

    def CreateDescriptor(self, ctx: CallContext, obj, cdp):  # noqa: N802
        with self.sim.registry.lock:
            vm = self.sim.registry.lookup(obj)
            if vm.kind != "VirtualMachine":
                raise vim.fault.InvalidState(msg="The simulator describes virtual machines only")
            return Ovf.CreateDescriptorResult(ovfDescriptor=describe(vm, cdp), error=[],
                                              warning=[])


def _controller_type(kind: int, subtype: str) -> type:
    if kind == 5:
        return Dev.VirtualIDEController
    if kind == 20:
        return Dev.VirtualAHCIController
    return _SCSI.get(subtype, Dev.VirtualLsiLogicController)


def _nic_backing(network: Any) -> Any:
    if network is not None and network.kind == "DistributedVirtualPortgroup":
        return Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo(
            port=vim.dvs.PortConnection(switchUuid=network.switch.uuid,
                                        portgroupKey=network.key))
    return Dev.VirtualEthernetCard.NetworkBackingInfo(
        deviceName=network.name if network is not None else "VM Network")


def describe(vm: Any, cdp) -> str:
    """An OVF descriptor of ``vm``; disk files as ``cdp.ovfFiles`` name them."""
    config = vm.config
    devices = {d.key: d for d in config.hardware.device}
    files = {f.deviceId: f for f in cdp.ovfFiles or ()}
    refs, disks, items, networks = [], [], [], []
    instance = 0

    def item(kind: int, name: str, **fields: Any) -> None:
        nonlocal instance
        instance += 1
        body = "".join(f"<rasd:{k}>{escape(str(v))}</rasd:{k}>" for k, v in fields.items())
        items.append(f"<Item><rasd:ElementName>{escape(name)}</rasd:ElementName>"
                     f"<rasd:InstanceID>{instance}</rasd:InstanceID>{body}"
                     f"<rasd:ResourceType>{kind}</rasd:ResourceType></Item>")

    item(3, f"{config.hardware.numCPU} virtual CPU(s)", VirtualQuantity=config.hardware.numCPU)
    item(4, f"{config.hardware.memoryMB}MB of memory", AllocationUnits="byte * 2^20",
         VirtualQuantity=config.hardware.memoryMB)
    controller_ids = {}
    for device in config.hardware.device:
        label = device.deviceInfo.label if device.deviceInfo else type(device).__name__
        if isinstance(device, Dev.VirtualSCSIController):
            subtype = next((k for k, t in _SCSI.items() if isinstance(device, t)), "lsilogic")
            item(6, label, Address=device.busNumber, ResourceSubType=subtype)
            controller_ids[device.key] = instance
        elif isinstance(device, Dev.VirtualIDEController):
            item(5, label, Address=device.busNumber)
            controller_ids[device.key] = instance
    for device in config.hardware.device:
        label = device.deviceInfo.label if device.deviceInfo else type(device).__name__
        if isinstance(device, Dev.VirtualDisk):
            controller = devices.get(device.controllerKey)
            disk_id = f"vmdisk{len(disks) + 1}"
            key = f"/{vm.moid}/{type(controller).__name__.rpartition('.')[2]}" \
                  f"{controller.busNumber}:{device.unitNumber}" if controller else ""
            exported = files.get(key)
            file_ref = ""
            if exported is not None:
                file_id = f"file{len(refs) + 1}"
                refs.append(f"<File ovf:href={quoteattr(exported.path)} ovf:id=\"{file_id}\" "
                            f"ovf:size=\"{exported.size}\"/>")
                file_ref = f' ovf:fileRef="{file_id}"'
            disks.append(f'<Disk ovf:capacity="{device.capacityInKB or 0}" '
                         f'ovf:capacityAllocationUnits="byte * 2^10" ovf:diskId="{disk_id}"'
                         f'{file_ref} ovf:format="http://www.vmware.com/interfaces/'
                         'specifications/vmdk.html#streamOptimized"/>')
            item(17, label, AddressOnParent=device.unitNumber,
                 HostResource=f"ovf:/disk/{disk_id}",
                 Parent=controller_ids.get(device.controllerKey, 0))
        elif isinstance(device, Dev.VirtualEthernetCard):
            network = getattr(device.backing, "deviceName", None) or "VM Network"
            if network not in networks:
                networks.append(network)
            subtype = next((k for k, t in _NICS.items() if type(device) is t), "vmxnet3")
            item(10, label, AutomaticAllocation="true", Connection=network,
                 ResourceSubType=subtype.capitalize() if subtype != "vmxnet3" else "VmxNet3")
    name = cdp.name or vm.name
    network_section = "".join(f"<Network ovf:name={quoteattr(n)}><Description>The {escape(n)} "
                              "network</Description></Network>" for n in networks)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Envelope xmlns="{OVF}" xmlns:ovf="{OVF}" xmlns:rasd="{RASD}" xmlns:vssd="{VSSD}" '
        f'xmlns:vmw="{VMW}">'
        f"<References>{''.join(refs)}</References>"
        "<DiskSection><Info>Virtual disk information</Info>" + "".join(disks) + "</DiskSection>"
        "<NetworkSection><Info>The list of logical networks</Info>" + network_section +
        "</NetworkSection>"
        f"<VirtualSystem ovf:id={quoteattr(name)}><Info>A virtual machine</Info>"
        f"<Name>{escape(name)}</Name>"
        f"<AnnotationSection><Info>A human-readable annotation</Info><Annotation>"
        f"{escape(cdp.description or config.annotation or '')}</Annotation></AnnotationSection>"
        f"<OperatingSystemSection ovf:id=\"1\" vmw:osType={quoteattr(config.guestId)}>"
        "<Info>The kind of installed guest operating system</Info></OperatingSystemSection>"
        "<VirtualHardwareSection><Info>Virtual hardware requirements</Info><System>"
        "<vssd:ElementName>Virtual Hardware Family</vssd:ElementName>"
        "<vssd:InstanceID>0</vssd:InstanceID>"
        f"<vssd:VirtualSystemIdentifier>{escape(name)}</vssd:VirtualSystemIdentifier>"
        f"<vssd:VirtualSystemType>{escape(config.version or 'vmx-19')}</vssd:VirtualSystemType>"
        "</System>" + "".join(items) + "</VirtualHardwareSection></VirtualSystem></Envelope>")
