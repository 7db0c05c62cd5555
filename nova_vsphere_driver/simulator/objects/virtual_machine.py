"""VirtualMachine: config from ConfigSpecs, power, placement, disks, snapshots."""

from __future__ import annotations

import datetime
import functools
import itertools
import posixpath
import random
import threading
import time
import uuid
from typing import TYPE_CHECKING

from pyVmomi import vim, vmodl

from nova_vsphere_driver.simulator import delta_disks, esxi_versions, storage_policies
from nova_vsphere_driver.simulator.datastore_files import parse_datastore_path
from nova_vsphere_driver.simulator.disk_files import disk_data
from nova_vsphere_driver.simulator.objects import boot_options, consoles, serial_console
from nova_vsphere_driver.simulator.objects.base import (
    CallContext,
    ManagedEntity,
    ManagedObject,
    monotonic_at,
)
from nova_vsphere_driver.simulator.vim_data import clone, data_object
from nova_vsphere_driver.simulator.vim_faults import check_entity_name, invalid_argument

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.cluster import ResourcePool
    from nova_vsphere_driver.simulator.objects.datastore import Datastore
    from nova_vsphere_driver.simulator.objects.folder import Folder
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.service import Simulator

POWERED_ON = vim.VirtualMachine.PowerState.poweredOn
POWERED_OFF = vim.VirtualMachine.PowerState.poweredOff
SUSPENDED = vim.VirtualMachine.PowerState.suspended
_POWER_EVENTS = {POWERED_ON: vim.event.VmPoweredOnEvent, POWERED_OFF: vim.event.VmPoweredOffEvent,
                 SUSPENDED: vim.event.VmSuspendedEvent}
Dev = vim.vm.device
#: Guest shutdown is asynchronous on vCenter: the call returns, the guest
#: powers off a little later.
GUEST_SHUTDOWN_SECONDS = 0.05
_MAC_RANDOM = random.Random()
#: Initial size of a linked-clone delta disk.
DELTA_DISK_BYTES = 16 * 1024 * 1024
#: The guest OS types vCenter knows (CreateVM refuses any other guestId).
GUEST_IDS = frozenset(vim.vm.GuestOsDescriptor.GuestOsIdentifier.values)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _default_devices() -> list:
    """The controllers and devices vCenter adds to every new VM (a VM's own copy)."""
    return clone(_default_device_template())


@functools.cache
def _default_device_template() -> list:
    return [
        Dev.VirtualIDEController(key=200, busNumber=0, device=[],
                                 deviceInfo=vim.Description(label="IDE 0", summary="IDE 0")),
        Dev.VirtualIDEController(key=201, busNumber=1, device=[],
                                 deviceInfo=vim.Description(label="IDE 1", summary="IDE 1")),
        Dev.VirtualPS2Controller(key=300, busNumber=0, device=[600, 700],
                                 deviceInfo=vim.Description(label="PS2 controller 0",
                                                            summary="PS2 controller 0")),
        Dev.VirtualPCIController(key=100, busNumber=0, device=[500],
                                 deviceInfo=vim.Description(label="PCI controller 0",
                                                            summary="PCI controller 0")),
        Dev.VirtualSIOController(key=400, busNumber=0, device=[],
                                 deviceInfo=vim.Description(label="SIO controller 0",
                                                            summary="SIO controller 0")),
        Dev.VirtualKeyboard(key=600, controllerKey=300, unitNumber=0,
                            deviceInfo=vim.Description(label="Keyboard", summary="Keyboard")),
        Dev.VirtualPointingDevice(key=700, controllerKey=300, unitNumber=1,
                                  deviceInfo=vim.Description(label="Pointing device",
                                                             summary="Pointing device"),
                                  backing=Dev.VirtualPointingDevice.DeviceBackingInfo(
                                      deviceName="", hostPointingDevice="autodetect")),
        Dev.VirtualVideoCard(key=500, controllerKey=100, unitNumber=0, videoRamSizeInKB=4096,
                                    numDisplays=1, useAutoDetect=False, enable3DSupport=False,
                                    deviceInfo=vim.Description(label="Video card",
                                                               summary="Video card")),
    ]


#: vCenter's device kinds: (type, label, first key, labelled by bus number).
#: Keys are vCenter's per kind (NICs from 4000, disks from 2000, SCSI
#: controller n is 1000 + n); controllers are labelled by their bus
#: ("SCSI controller 0"), other devices by their rank ("Hard disk 1").
_DEVICE_KINDS = (
    (Dev.VirtualSCSIController, "SCSI controller", 1000, True),
    (Dev.VirtualAHCIController, "SATA controller", 15000, True),
    (Dev.VirtualNVMEController, "NVME controller", 31000, True),
    (Dev.VirtualIDEController, "IDE", 200, True),
    (Dev.VirtualPCIController, "PCI controller", 100, True),
    (Dev.VirtualPS2Controller, "PS2 controller", 300, True),
    (Dev.VirtualSIOController, "SIO controller", 400, True),
    (Dev.VirtualUSBXHCIController, "USB xHCI controller", 14000, False),
    (Dev.VirtualUSBController, "USB controller", 7000, False),
    (Dev.VirtualDisk, "Hard disk", 2000, False),
    (Dev.VirtualCdrom, "CD/DVD drive", 3000, False),
    (Dev.VirtualEthernetCard, "Network adapter", 4000, False),
    (Dev.VirtualSoundCard, "Sound card", 5000, False),
    (Dev.VirtualFloppy, "Floppy drive", 8000, False),
    (Dev.VirtualSerialPort, "Serial port", 9000, False),
    (Dev.VirtualParallelPort, "Parallel port", 10000, False),
    (Dev.VirtualTPM, "Virtual TPM", 11000, False),
    (Dev.VirtualPCIPassthrough, "PCI device", 13000, False),
    (Dev.VirtualVideoCard, "Video card", 500, False),
)
_SCSI_SUMMARIES = {
    Dev.ParaVirtualSCSIController: "VMware paravirtual SCSI",
    Dev.VirtualLsiLogicSASController: "LSI Logic SAS",
    Dev.VirtualLsiLogicController: "LSI Logic",
    Dev.VirtualBusLogicController: "BusLogic",
}


#: The key of every VM's PCI controller, and the first of its slots NICs take.
_PCI_KEY = 100
_FIRST_NIC_UNIT = 7


def _kind(device) -> tuple[str, int, bool]:
    for dtype, label, base, by_bus in _DEVICE_KINDS:
        if isinstance(device, dtype):
            return label, base, by_bus
    return type(device).__name__, 20000, False


def _new_key(device, used: dict) -> int:
    """The key vCenter gives a new device: its kind's first free key (a controller's: by bus)."""
    _, base, by_bus = _kind(device)
    key = base + int(device.busNumber or 0) if by_bus else base
    while key in used:
        key += 1
    return key


def _describe(device, devices: list) -> vim.Description:
    """vCenter's label and summary for a new ``device`` among ``devices`` (it ignores a spec's)."""
    label, _, by_bus = _kind(device)
    if by_bus:
        label = f"{label} {int(device.busNumber or 0)}"
    else:
        taken = {d.deviceInfo.label for d in devices if d.deviceInfo is not None}
        rank = 1 + sum(_kind(d)[0] == label for d in devices if d is not device)
        while f"{label} {rank}" in taken:
            rank += 1
        label = f"{label} {rank}"
    summary = label
    if isinstance(device, Dev.VirtualSCSIController):
        summary = next((text for dtype, text in _SCSI_SUMMARIES.items()
                        if isinstance(device, dtype)), label)
    elif isinstance(device, Dev.VirtualDisk):
        summary = f"{int(device.capacityInKB or 0):,} KB"
    elif isinstance(device, Dev.VirtualEthernetCard):
        backing = device.backing
        if isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            summary = f"DVSwitch: {backing.port.switchUuid}"
        else:
            summary = getattr(backing, "deviceName", None) or label
    return vim.Description(label=label, summary=summary)


class VirtualMachineSnapshot(ManagedObject):
    vim_type = vim.vm.Snapshot
    moid_prefix = "snapshot"

    def __init__(self, sim: Simulator, vm: VirtualMachine, name: str, description: str,
                 parent: VirtualMachineSnapshot | None) -> None:
        super().__init__(sim)
        self.vm = vm
        self.name = name
        self.description = description or ""
        self.parent = parent
        self.children: list[VirtualMachineSnapshot] = []
        self.created = _now()
        self.state = vm.power_state
        self.config = clone(vm.config)
        self.key = int(self.moid.split("-")[-1])

    def tree(self) -> vim.vm.SnapshotTree:
        return vim.vm.SnapshotTree(
            snapshot=self.ref, vm=self.vm.ref, name=self.name, description=self.description,
            id=self.key, createTime=self.created, state=self.state, quiesced=False,
            childSnapshotList=[c.tree() for c in self.children])

    def _get_config(self):
        return self.config

    def _get_vm(self):
        return self.vm.ref

    def dependents(self):
        # The VM's snapshot and rootSnapshot list its snapshots.
        return (self.vm,)

    def _get_childSnapshot(self):  # noqa: N802
        return [c.ref for c in self.children]

    def RemoveSnapshot_Task(self, ctx: CallContext, removeChildren: bool,  # noqa: N802,N803
                            consolidate: bool | None = None):
        def work():
            self.vm.remove_snapshot(self, removeChildren)

        return self.sim.tasks.start(ctx, self.vm, "RemoveSnapshot_Task", work)

    def RevertToSnapshot_Task(self, ctx: CallContext, host=None,  # noqa: N802
                              suppressPowerOn: bool | None = None):  # noqa: N803
        def work():
            vm = self.vm
            if vm.power_state != POWERED_OFF and self.state == POWERED_OFF:
                vm.set_power(POWERED_OFF)
            vm.config = clone(self.config)
            vm.current_snapshot = self
            vm.sim.registry.touch(vm)

        return self.sim.tasks.start(ctx, self.vm, "RevertToSnapshot_Task", work)

    def ExportSnapshot(self, ctx: CallContext):  # noqa: N802
        """An export lease on the disks as of this snapshot (any power state: API 5.5)."""
        with self.sim.registry.lock:
            self.vm._require_connected()
            return self.sim.factory.export_lease(self.vm, self.config.hardware.device).ref


class VirtualMachine(ManagedEntity):
    vim_type = vim.VirtualMachine
    moid_prefix = "vm"

    def __init__(self, sim: Simulator, name: str, folder: Folder, pool: ResourcePool,
                 host: HostSystem, config: vim.vm.ConfigInfo) -> None:
        super().__init__(sim, name, folder)
        self.pool = pool
        self.host = host
        self.config = config
        self.power_state = POWERED_OFF
        self.boot_time: datetime.datetime | None = None
        self._boot_monotonic: float | None = None
        self.tools_installed = True
        #: CPU demand as a fraction of the VM's vCPUs at the host's core speed.
        self.cpu_demand_fraction = 0.5
        #: Active memory as a fraction of configured memory.
        self.memory_active_fraction = 0.3
        self.snapshots: list[VirtualMachineSnapshot] = []
        self.current_snapshot: VirtualMachineSnapshot | None = None
        self.ip_address: str | None = None
        self.datastores = _datastores_of(self)
        self.networks = _networks_of(config, sim, host)
        #: Storage policy associations (SPBM): "vm" (the VM's home) or a disk's key -> the
        #: policy's id (simulator/storage_policies.py).
        self.storage_profiles: dict[str, str] = {}

    transient = ManagedEntity.transient | {"_boot_monotonic"}

    def restored(self) -> None:
        super().restored()
        # The guest kept running on its host while vCenter restarted.
        self._boot_monotonic = monotonic_at(self.boot_time) if self.powered_on else None
        if not hasattr(self, "storage_profiles"):  # a state saved before policies were kept
            self.storage_profiles = {}

    # -- derived state ----------------------------------------------------------

    @property
    def powered_on(self) -> bool:
        return self.power_state == POWERED_ON

    @property
    def is_template(self) -> bool:
        return bool(self.config.template)

    @property
    def memory_mb(self) -> int:
        return int(self.config.hardware.memoryMB)

    @property
    def num_cpus(self) -> int:
        return int(self.config.hardware.numCPU)

    def cpu_usage_mhz(self) -> int:
        if not self.powered_on:
            return 0
        demand = int(self.num_cpus * self.host.mhz * self.cpu_demand_fraction)
        limit = self.config.cpuAllocation.limit if self.config.cpuAllocation else None
        if limit is not None and limit >= 0:
            demand = min(demand, limit)
        return demand

    def cpu_reservation_mhz(self) -> int:
        alloc = self.config.cpuAllocation
        return int(alloc.reservation or 0) if alloc is not None else 0

    def disks(self) -> list:
        return [d for d in self.config.hardware.device if isinstance(d, Dev.VirtualDisk)]

    def disk_files(self) -> list[str]:
        return [d.backing.fileName for d in self.disks() if getattr(d.backing, "fileName", None)]

    @property
    def cluster(self):
        return self.pool.owner

    def child_entities(self) -> list[ManagedEntity]:
        return []

    def dependents(self):
        # The host's quickStats and vm list, the pool's runtime and vm list,
        # the cluster's usage, the datastores' and networks' vm lists and
        # free space all follow the VM.
        return (self.host, self.pool, self.pool.owner, *self.datastores, *self.networks)

    def guest_state(self) -> str:
        return "running" if self.powered_on and self.tools_installed else "notRunning"

    def tools_running(self) -> str:
        return "guestToolsRunning" if self.guest_state() == "running" else "guestToolsNotRunning"

    # -- properties ------------------------------------------------------------------

    def _get_config(self):
        return self.config

    def _runtime(self):
        connected = self.host.connection_state == vim.HostSystem.ConnectionState.connected
        return vim.vm.RuntimeInfo(
            host=self.host.ref,
            connectionState="connected" if connected else "disconnected",
            powerState=self.power_state,
            faultToleranceState="notConfigured",
            toolsInstallerMounted=False,
            bootTime=self.boot_time if self.powered_on else None,
            maxCpuUsage=self.num_cpus * self.host.mhz,
            maxMemoryUsage=self.memory_mb,
            suspendInterval=0,
            consolidationNeeded=False,
            onlineStandby=False,
            recordReplayState="inactive",
            numMksConnections=0,
        )

    def _get_runtime(self):
        return self._runtime()

    def _guest(self):
        return vim.vm.GuestInfo(
            toolsStatus="toolsOk" if self.tools_running() == "guestToolsRunning"
            else "toolsNotRunning",
            toolsRunningStatus=self.tools_running(),
            toolsVersionStatus2="guestToolsCurrent",
            guestId=self.config.guestId, guestFullName=self.config.guestFullName,
            guestState=self.guest_state(), ipAddress=self.ip_address if self.powered_on else None,
            hostName=self.name if self.powered_on else None,
            guestOperationsReady=self.powered_on, interactiveGuestOperationsReady=False,
            guestStateChangeSupported=True, appHeartbeatStatus="appStatusGray",
        )

    def _get_guest(self):
        return self._guest()

    def _get_guestHeartbeatStatus(self):  # noqa: N802
        return vim.ManagedEntity.Status.green if self.powered_on else vim.ManagedEntity.Status.gray

    def _quick_stats(self):
        up = int(time.monotonic() - self._boot_monotonic) \
            if self.powered_on and self._boot_monotonic else 0
        return vim.vm.Summary.QuickStats(
            overallCpuUsage=self.cpu_usage_mhz(),
            overallCpuDemand=self.cpu_usage_mhz(),
            guestMemoryUsage=int(self.memory_mb * self.memory_active_fraction)
            if self.powered_on else 0,
            hostMemoryUsage=self.memory_mb if self.powered_on else 0,
            uptimeSeconds=up,
            staticCpuEntitlement=self.num_cpus * self.host.mhz if self.powered_on else 0,
            staticMemoryEntitlement=self.memory_mb if self.powered_on else 0,
            balloonedMemory=0, swappedMemory=0, compressedMemory=0,
            consumedOverheadMemory=0, privateMemory=self.memory_mb if self.powered_on else 0,
            sharedMemory=0, ftLogBandwidth=-1, ftSecondaryLatency=-1, ftLatencyStatus="gray",
            guestHeartbeatStatus=self._get_guestHeartbeatStatus(),
        )

    def committed_bytes(self) -> int:
        total = 0
        for path in [self.config.files.vmPathName, *self.disk_files()]:
            try:
                ds, rel = parse_datastore_path(path)
                total += self.sim.files.get(ds, rel).size
            except vim.fault.VimFault:
                continue
        return total

    def _get_summary(self):
        c = self.config
        return vim.vm.Summary(
            vm=self.ref,
            runtime=self._runtime(),
            guest=vim.vm.Summary.GuestSummary(
                guestId=c.guestId, guestFullName=c.guestFullName,
                toolsStatus=self._guest().toolsStatus,
                toolsRunningStatus=self.tools_running(),
                hostName=self.name if self.powered_on else None,
                ipAddress=self.ip_address if self.powered_on else None),
            config=vim.vm.Summary.ConfigSummary(
                name=self.name, template=bool(c.template), vmPathName=c.files.vmPathName,
                memorySizeMB=self.memory_mb, numCpu=self.num_cpus,
                cpuReservation=c.cpuAllocation.reservation if c.cpuAllocation else 0,
                memoryReservation=c.memoryAllocation.reservation if c.memoryAllocation else 0,
                numEthernetCards=sum(isinstance(d, Dev.VirtualEthernetCard)
                                     for d in c.hardware.device),
                numVirtualDisks=len(self.disks()), uuid=c.uuid, instanceUuid=c.instanceUuid,
                guestId=c.guestId, guestFullName=c.guestFullName, annotation=c.annotation,
                product=None, installBootRequired=False, managedBy=c.managedBy,
                hwVersion=c.version),
            storage=vim.vm.Summary.StorageSummary(committed=self.committed_bytes(),
                                                  uncommitted=0, unshared=self.committed_bytes(),
                                                  timestamp=_now()),
            quickStats=self._quick_stats(),
            overallStatus=vim.ManagedEntity.Status.green,
        )

    def _get_resourcePool(self):  # noqa: N802
        return None if self.is_template else self.pool.ref

    def _get_environmentBrowser(self):  # noqa: N802
        # As on vCenter: its compute resource's (what it can be reconfigured to).
        browser = self.cluster.environment_browser
        return browser.ref if browser is not None else None

    def _get_resourceConfig(self):  # noqa: N802
        config = self.config
        return vim.ResourceConfigSpec(entity=self.ref, changeVersion=config.changeVersion,
                                      lastModified=config.modified,
                                      cpuAllocation=config.cpuAllocation,
                                      memoryAllocation=config.memoryAllocation)

    def _get_layout(self):
        """The deprecated FileLayout, which clients still read: files by role, disks' chains."""
        disks = [vim.vm.FileLayout.DiskLayout(key=d.key,
                                              diskFile=delta_disks.backing_chain(d.backing))
                 for d in self.disks() if getattr(d.backing, "fileName", None)]
        return vim.vm.FileLayout(configFile=[], logFile=["vmware.log"], disk=disks,
                                 snapshot=[], swapFile=None)

    def _get_storage(self):
        usage = {}
        for path in [self.config.files.vmPathName, *self.disk_files()]:
            try:
                ds_name, rel = parse_datastore_path(path)
                size = self.sim.files.get(ds_name, rel).size
            except vim.fault.VimFault:
                continue
            usage[ds_name] = usage.get(ds_name, 0) + size
        per_ds = []
        for ds_name, committed in usage.items():
            ds = self.sim.datastore_by_name(ds_name)
            if ds is not None:
                per_ds.append(vim.vm.StorageInfo.UsageOnDatastore(
                    datastore=ds.ref, committed=committed, uncommitted=0, unshared=committed))
        return vim.vm.StorageInfo(perDatastoreUsage=per_ds, timestamp=_now())

    def _get_datastore(self):
        return [ds.ref for ds in self.datastores]

    def _get_network(self):
        return [n.ref for n in self.networks]

    def _get_snapshot(self):
        if not self.snapshots:
            return None
        roots = [s for s in self.snapshots if s.parent is None]
        return vim.vm.SnapshotInfo(currentSnapshot=self.current_snapshot.ref
                                   if self.current_snapshot else None,
                                   rootSnapshotList=[r.tree() for r in roots])

    def _get_rootSnapshot(self):  # noqa: N802
        return [s.ref for s in self.snapshots if s.parent is None]

    def _get_layoutEx(self):  # noqa: N802
        files = []
        for key, path in enumerate([self.config.files.vmPathName, *self.disk_files()]):
            try:
                ds, rel = parse_datastore_path(path)
                size = self.sim.files.get(ds, rel).size
            except vim.fault.VimFault:
                size = 0
            files.append(vim.vm.FileLayoutEx.FileInfo(
                key=key, name=path, type="config" if key == 0 else "diskDescriptor",
                size=size, uniqueSize=size, accessible=True))
        return vim.vm.FileLayoutEx(file=files, timestamp=_now())

    def _get_capability(self):
        return vim.vm.Capability(snapshotOperationsSupported=True, multipleSnapshotsSupported=True,
                                 poweredOffSnapshotsSupported=True, memorySnapshotsSupported=True,
                                 revertToSnapshotSupported=True, quiescedSnapshotsSupported=True,
                                 consolePreferencesSupported=True, cpuFeatureMaskSupported=True,
                                 s1AcpiManagementSupported=True,
                                 settingScreenResolutionSupported=True,
                                 toolsAutoUpdateSupported=True, vmNpivWwnSupported=True,
                                 npivWwnOnNonRdmVmSupported=True, swapPlacementSupported=True,
                                 toolsSyncTimeSupported=True, virtualMmuUsageSupported=True,
                                 diskSharesSupported=True, bootOptionsSupported=True,
                                 settingVideoRamSizeSupported=True)

    # -- state changes ------------------------------------------------------------------

    def set_power(self, state) -> None:
        cold_boot = state == POWERED_ON and self.power_state == POWERED_OFF
        if state == POWERED_ON and self.power_state != POWERED_ON:
            self.boot_time = _now()
            self._boot_monotonic = time.monotonic()
        changed = state != self.power_state
        self.power_state = state
        self.sim.registry.touch(self)
        if changed:
            events = self.sim.events
            if state == POWERED_ON:
                events.post(vim.event.VmStartingEvent, about=self)
            events.post(_POWER_EVENTS[state], about=self)
        if cold_boot:  # a resume from suspend does not boot the guest again
            self.booted("Power on")

    def renamed_to(self, name: str, old_name: str) -> None:
        self.config.name = name
        self.sim.events.post(vim.event.VmRenamedEvent, about=self, oldName=old_name,
                             newName=name)

    def move_to_host(self, host: HostSystem) -> None:
        if host is self.host:
            return
        left = self.host
        if self in left.vms:
            left.vms.remove(self)
        host.vms.append(self)
        self.host = host
        if self.powered_on:
            host.cluster.num_vmotions += 1
        self.sim.registry.touch(self, left, left.cluster)

    def _require_power(self, *states) -> None:
        if self.power_state not in states:
            raise vim.fault.InvalidPowerState(
                requestedState=states[0], existingState=self.power_state,
                msg=f"The attempted operation cannot be performed in the current state "
                f"({'Powered on' if self.powered_on else self.power_state})")

    def _require_connected(self) -> None:
        if self.host.connection_state != vim.HostSystem.ConnectionState.connected:
            raise vim.fault.InvalidState(msg=f"The host of {self.name} is not connected")

    def _require_tools(self) -> None:
        if self.guest_state() != "running":
            raise vim.fault.ToolsUnavailable(
                msg=f"Cannot complete operation because VMware Tools is not running in this "
                f"virtual machine ({self.name})")

    def _require_not_template(self) -> None:
        if self.is_template:
            raise vmodl.fault.NotSupported(
                msg=f"The operation is not supported on the object: {self.name} is a template")

    def PowerOnVM_Task(self, ctx: CallContext, host=None):  # noqa: N802
        def work():
            self._require_not_template()
            self._require_connected()
            if self.powered_on:
                self._require_power(POWERED_OFF, SUSPENDED)
            target = self.sim.registry.lookup(host) if host is not None else self.host
            if target is not self.host and target not in self.cluster.hosts:
                raise invalid_argument("host", f"host {target.name} is not in the VM's cluster")
            target.check_admission(self)
            self.move_to_host(target)
            self.set_power(POWERED_ON)

        return self.sim.tasks.start(ctx, self, "PowerOnVM_Task", work)

    def PowerOffVM_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self._require_connected()
            self._require_power(POWERED_ON, SUSPENDED)
            self.set_power(POWERED_OFF)

        return self.sim.tasks.start(ctx, self, "PowerOffVM_Task", work)

    def ResetVM_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self._require_connected()
            self._require_power(POWERED_ON)
            self.boot_time = _now()
            self._boot_monotonic = time.monotonic()
            self.sim.registry.touch(self)
            self.sim.events.post(vim.event.VmResettingEvent, about=self)
            self.booted("Reset")

        return self.sim.tasks.start(ctx, self, "ResetVM_Task", work)

    def SuspendVM_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self._require_connected()
            self._require_power(POWERED_ON)
            self.set_power(SUSPENDED)

        return self.sim.tasks.start(ctx, self, "SuspendVM_Task", work)

    def ShutdownGuest(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._require_connected()
            self._require_power(POWERED_ON)
            self._require_tools()
            self.sim.events.post(vim.event.VmGuestShutdownEvent, about=self)

        def shut_down():
            time.sleep(GUEST_SHUTDOWN_SECONDS)
            with self.sim.registry.lock:
                if self.powered_on:
                    self.set_power(POWERED_OFF)

        threading.Thread(target=shut_down, daemon=True).start()

    def RebootGuest(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._require_connected()
            self._require_power(POWERED_ON)
            self._require_tools()
            self.boot_time = _now()
            self._boot_monotonic = time.monotonic()
            self.sim.registry.touch(self)
            self.sim.events.post(vim.event.VmGuestRebootEvent, about=self)
            self.booted("Guest reboot")

    def StandbyGuest(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self._require_power(POWERED_ON)
            self._require_tools()
            self.set_power(SUSPENDED)

    # -- reconfiguration ---------------------------------------------------------------

    def ReconfigVM_Task(self, ctx: CallContext, spec):  # noqa: N802
        def work():
            self._require_connected()
            reconfigure(self, spec)
            self.sim.events.post(vim.event.VmReconfiguredEvent, about=self, configSpec=spec)

        return self.sim.tasks.start(ctx, self, "ReconfigVM_Task", work)

    # -- placement ------------------------------------------------------------------------

    def _relocate(self, host_ref=None, pool_ref=None, datastore_ref=None,
                  state=None, device_change=None, disk_locators=None) -> None:
        registry = self.sim.registry
        self._require_connected()
        if state is not None and state != self.power_state:
            self._require_power(state)
        pool = registry.lookup(pool_ref) if pool_ref is not None else None
        host = registry.lookup(host_ref) if host_ref is not None else None
        # Documented for RelocateSpec.pool and MigrateVM_Task: an unset pool
        # means the VM's current pool, so the host must be in that cluster.
        cluster = pool.owner if pool is not None else self.cluster
        target_ds = registry.lookup(datastore_ref) if datastore_ref is not None else None
        if host is None:
            if cluster is self.cluster:
                host = self.host
            elif cluster.drs_enabled:
                host = cluster.vcenter_drs_pick_host(
                    self, datastores=[target_ds] if target_ds is not None else None)
                if host is None:
                    raise vim.fault.InsufficientResourcesFault(
                        msg=f"No host in cluster {cluster.name} can run {self.name}")
            else:
                raise invalid_argument("host", f"DRS is disabled on cluster {cluster.name}: "
                                       "a target host is required")
        if host not in cluster.hosts:
            raise invalid_argument("host", f"host {host.name} is not in cluster {cluster.name}")
        disk_targets = {}
        for locator in disk_locators or []:
            disk_targets[locator.diskId] = registry.lookup(locator.datastore)
            if not any(d.key == locator.diskId for d in self.disks()):
                raise invalid_argument("spec.disk.diskId", f"no disk with key {locator.diskId}")
        needed = [target_ds, *disk_targets.values()] if target_ds is not None \
            else self.datastores
        for ds in dict.fromkeys(needed):
            if ds not in host.datastores:
                raise vim.fault.InvalidDatastore(
                    datastore=ds.ref, name=ds.name,
                    msg=f"Datastore {ds.name} is not accessible from host {host.name}")
        if host is not self.host:
            if self.powered_on:
                host.check_admission(self)
            elif not host.usable():
                raise vim.fault.InvalidHostState(host=host.ref,
                                                 msg=f"Host {host.name} cannot take VMs now")
        # NICs last among the checks: all of them pass before anything changes.
        nic_config = relocated_nics(self, host, device_change)
        source_host, source_ds = self.host, (self.datastores[0] if self.datastores else None)
        # What the VM leaves (host, pool, datastores, networks) changes too.
        registry.touch(self)
        if target_ds is not None and ([target_ds] != self.datastores or disk_targets):
            move_storage(self, target_ds, disk_targets)
        if nic_config is not None:
            self.config = nic_config
        self.networks = _networks_of(self.config, self.sim, host)
        if pool is not None and pool is not self.pool:
            if cluster is not self.cluster:
                self.cluster.forget_vm(self)
            self.pool.vms.remove(self)
            pool.vms.append(self)
            self.pool = pool
            registry.touch(self, membership=True)
        self.move_to_host(host)
        registry.touch(self)
        moved_storage = target_ds is not None and target_ds is not source_ds
        if moved_storage or host is not source_host:
            self.sim.events.post(
                vim.event.VmRelocatedEvent if moved_storage else vim.event.VmMigratedEvent,
                about=self, **self.sim.events.migration_source(source_host, source_ds))

    def RelocateVM_Task(self, ctx: CallContext, spec, priority=None):  # noqa: N802
        def work():
            # Storage policies for the VM's home and disks where they go, checked first.
            policies = self.sim.storage_policies
            profiles = dict(self.storage_profiles)
            home = policies.profile_of(spec.profile, "spec.profile")
            if home is not None:
                profiles[storage_policies.VM_HOME] = home
            for locator in spec.disk or []:
                found = policies.profile_of(locator.profile, "spec.disk.profile")
                if found is not None:
                    profiles[str(locator.diskId)] = found
            self._relocate(spec.host, spec.pool, spec.datastore,
                           device_change=spec.deviceChange, disk_locators=spec.disk)
            self.storage_profiles = storage_profiles_after(profiles, self.config)

        return self.sim.tasks.start(ctx, self, "RelocateVM_Task", work)

    def MigrateVM_Task(self, ctx: CallContext, pool=None, host=None, priority=None,  # noqa: N802
                       state=None):
        if pool is None and host is None:
            raise invalid_argument("host", "MigrateVM needs a pool or a host")

        def work():
            self._relocate(host, pool, None, state)

        return self.sim.tasks.start(ctx, self, "MigrateVM_Task", work)

    def CloneVM_Task(self, ctx: CallContext, folder, name: str, spec):  # noqa: N802
        registry = self.sim.registry
        with registry.lock:
            folder_obj = registry.lookup(folder)

        def work():
            pool, host, config, data = clone_plan(self, name, spec)
            self.sim.events.post(
                vim.event.VmBeingClonedEvent, about=self, destName=name,
                destFolder=vim.event.FolderEventArgument(folder=folder_obj.ref,
                                                         name=folder_obj.name),
                destHost=vim.event.HostEventArgument(host=host.ref, name=host.name))
            vm = self.sim.factory.vm(folder_obj, config, pool, host)
            try:
                for disk in vm.disks():
                    if data.get(disk.key) is not None:
                        ds_name, rel = parse_datastore_path(disk.backing.fileName)
                        self.sim.files.get(ds_name, rel).extent = data[disk.key]
                if spec.config is not None:
                    # As vCenter: the clone's config is then changed by the spec's.
                    reconfigure(vm, spec.config)
            except Exception:
                vm.destroy()  # a failed clone leaves no VM and no files behind
                raise
            self.sim.events.post(vim.event.VmClonedEvent, about=vm,
                                 sourceVm=vim.event.VmEventArgument(vm=self.ref, name=self.name))
            if spec.template:
                vm.config.template = True
            if spec.powerOn:
                host.check_admission(vm)
                vm.set_power(POWERED_ON)
            return vm.ref

        return self.sim.tasks.start(ctx, self, "CloneVM_Task", work)

    # -- lifecycle ------------------------------------------------------------------------

    def _detach(self) -> None:
        self.sim.registry.touch(self, self.parent)
        if self in self.host.vms:
            self.host.vms.remove(self)
        if self in self.pool.vms:
            self.pool.vms.remove(self)
        self.cluster.forget_vm(self)
        self.parent.remove_child(self)
        for snap in self.snapshots:
            self.sim.registry.remove(snap.moid)
        self.sim.registry.remove(self.moid)

    def destroy(self) -> None:
        self._require_power(POWERED_OFF, SUSPENDED)
        files = self.sim.files
        for path in self.disk_files():
            ds, rel = parse_datastore_path(path)
            if files.exists(ds, rel):
                files.delete(ds, rel)
        ds, rel = parse_datastore_path(self.config.files.vmPathName)
        directory = posixpath.dirname(rel)
        if directory and files.exists(ds, directory):
            files.delete(ds, directory)
        elif files.exists(ds, rel):
            files.delete(ds, rel)
        self._detach()

    def MarkAsTemplate(self, ctx: CallContext) -> None:  # noqa: N802
        """A powered-off VM becomes a template: no pool, no power-on, cloned from instead."""
        with self.sim.registry.lock:
            self._require_connected()
            if self.is_template:
                raise vim.fault.InvalidState(msg=f"{self.name} is already a template")
            self._require_power(POWERED_OFF)
            self.config = clone(self.config)
            self.config.template = True
            self.sim.registry.touch()

    def MarkAsVirtualMachine(self, ctx: CallContext, pool, host=None) -> None:  # noqa: N802
        """A template becomes a VM again, in ``pool`` (and on ``host``, else where it was)."""
        registry = self.sim.registry
        with registry.lock:
            if not self.is_template:
                raise vim.fault.InvalidState(msg=f"{self.name} is not a template")
            target_pool = registry.lookup(pool)
            target_host = registry.lookup(host) if host is not None else None
            cluster = target_pool.owner
            if target_host is None:
                target_host = self.host if self.host in cluster.hosts else \
                    cluster.vcenter_drs_pick_host(self)
                if target_host is None:
                    raise invalid_argument("host", f"a host of cluster {cluster.name} is "
                                           "required")
            if target_host not in cluster.hosts:
                raise invalid_argument("host", f"host {target_host.name} is not in the pool's "
                                       f"cluster {cluster.name}")
            for ds in self.datastores:
                if ds not in target_host.datastores:
                    raise vim.fault.InvalidDatastore(
                        datastore=ds.ref, name=ds.name,
                        msg=f"Datastore {ds.name} is not accessible from host "
                        f"{target_host.name}")
            if target_pool is not self.pool:
                if cluster is not self.cluster:
                    self.cluster.forget_vm(self)
                self.pool.vms.remove(self)
                target_pool.vms.append(self)
                self.pool = target_pool
            self.move_to_host(target_host)
            self.config = clone(self.config)
            self.config.template = False
            registry.touch()

    def UnregisterVM(self, ctx: CallContext) -> None:  # noqa: N802
        with self.sim.registry.lock:
            self.unregister()

    def unregister(self) -> None:
        """Leave the inventory, keeping the files (UnregisterVM, its host removed)."""
        self._require_power(POWERED_OFF, SUSPENDED)
        self.sim.events.post(vim.event.VmRemovedEvent, about=self)
        self._detach()

    def Destroy_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self.destroy()
            self.sim.events.post(vim.event.VmRemovedEvent, about=self)

        return self.sim.tasks.start(ctx, self, "Destroy_Task", work)

    def CreateSnapshot_Task(self, ctx: CallContext, name: str, description: str | None = None,  # noqa: N802
                            memory: bool = False, quiesce: bool = False):
        def work():
            if quiesce and self.powered_on:
                self._require_tools()
            return self.sim.factory.snapshot(self, name, description or "").ref

        return self.sim.tasks.start(ctx, self, "CreateSnapshot_Task", work)

    def remove_snapshot(self, snap: VirtualMachineSnapshot, remove_children: bool) -> None:
        doomed = [snap]
        if remove_children:
            stack = list(snap.children)
            while stack:
                child = stack.pop()
                doomed.append(child)
                stack.extend(child.children)
        else:
            for child in snap.children:
                child.parent = snap.parent
                if snap.parent is not None:
                    snap.parent.children.append(child)
        if snap.parent is not None:
            snap.parent.children.remove(snap)
        for s in doomed:
            if s in self.snapshots:
                self.snapshots.remove(s)
            self.sim.registry.remove(s.moid)
        if self.current_snapshot in doomed:
            self.current_snapshot = snap.parent
        self.sim.registry.touch(self)

    def RemoveAllSnapshots_Task(self, ctx: CallContext, consolidate=None, spec=None):  # noqa: N802
        def work():
            for s in list(self.snapshots):
                self.sim.registry.remove(s.moid)
            self.snapshots = []
            self.current_snapshot = None
            self.sim.registry.touch(self)

        return self.sim.tasks.start(ctx, self, "RemoveAllSnapshots_Task", work)

    def AcquireTicket(self, ctx: CallContext, ticketType: str):  # noqa: N802,N803
        if ticketType not in ("mks", "webmks", "device", "guestControl", "dnd", "guestIntegrity"):
            raise invalid_argument("ticketType")
        with self.sim.registry.lock:
            self._require_connected()
            self._require_power(POWERED_ON)
            return consoles.ticket(self, ticketType)

    # -- guest consoles (simulator/objects/consoles.py, serial_console.py) ----------------

    def booted(self, reason: str) -> None:
        """The guest (re)started: file-backed serial ports log a boot banner."""
        serial_console.record_boot(self, reason)

    # -- disk export (simulator/objects/nfc_lease.py) -------------------------------------

    def ExportVm(self, ctx: CallContext):  # noqa: N802
        """An export lease on the VM's disks; vCenter refuses it for a running VM."""
        with self.sim.registry.lock:
            self._require_connected()
            self._require_power(POWERED_OFF)
            return self.sim.factory.export_lease(self, self.config.hardware.device).ref

    # -- linked clones: unlinking delta disks (simulator/delta_disks.py) ------------------

    def PromoteDisks_Task(self, ctx: CallContext, unlink: bool, disks=None):  # noqa: N802
        """Consolidate delta disks with their parents (unlink=True: the VM's own copy)."""
        def work():
            delta_disks.promote(self, list(disks or []), bool(unlink))

        return self.sim.tasks.start(ctx, self, "PromoteDisks_Task", work)


# -- config specs ------------------------------------------------------------------


def _allocation(spec_alloc, current=None) -> vim.ResourceAllocationInfo:
    alloc = clone(current) if current is not None else vim.ResourceAllocationInfo(
        reservation=0, expandableReservation=False, limit=-1,
        shares=vim.SharesInfo(level="normal", shares=1000))
    if spec_alloc is None:
        return alloc
    for field in ("reservation", "limit", "expandableReservation"):
        value = getattr(spec_alloc, field, None)
        if value is not None:
            setattr(alloc, field, value)
    if spec_alloc.shares is not None:
        alloc.shares = spec_alloc.shares
    if alloc.limit is not None and alloc.limit >= 0 and alloc.reservation \
            and alloc.reservation > alloc.limit:
        raise invalid_argument("cpuAllocation.reservation",
                               "The reservation exceeds the limit")
    return alloc


def _check_memory_reservation(config: vim.vm.ConfigInfo) -> None:
    """vCenter refuses to reserve more memory than the VM has."""
    alloc = config.memoryAllocation
    if alloc is not None and (alloc.reservation or 0) > config.hardware.memoryMB:
        raise invalid_argument("memoryAllocation.reservation",
                               f"The memory reservation ({alloc.reservation} MB) exceeds the "
                               f"virtual machine's memory ({config.hardware.memoryMB} MB)")


def _datastore_for(sim: Simulator, ds_name: str) -> Datastore:
    ds = sim.datastore_by_name(ds_name)
    if ds is None:
        raise vim.fault.InvalidDatastorePath(datastorePath=f"[{ds_name}]",
                                             msg=f"Datastore '{ds_name}' not found")
    return ds


def _apply_devices(vm_name: str, vm_dir: tuple[str, str], config: vim.vm.ConfigInfo,
                   changes, sim: Simulator, host: HostSystem,
                   created: list[tuple[str, str]],
                   profiles: dict[str, str] | None = None) -> None:
    """Apply deviceChange to ``config.hardware.device``.

    Files created on datastores are appended to ``created`` so the caller
    can roll them back if a later step fails. The storage policies the
    changes give disks go to ``profiles`` (disk key -> policy id, "" for
    none), when given.
    """
    devices = config.hardware.device
    by_key = {d.key: d for d in devices}
    # New devices' temporary (negative) keys -> the keys they were given.
    renumbered: dict[int, int] = {}
    added = []
    for change in changes or []:
        op = change.operation
        device = change.device
        if device is None:
            raise invalid_argument("deviceChange.device")
        if op == "remove":
            existing = by_key.pop(device.key, None)
            if existing is None:
                raise invalid_argument("deviceChange.device.key",
                                       f"no device with key {device.key}")
            devices.remove(existing)
            if change.fileOperation == "destroy" and isinstance(existing, Dev.VirtualDisk):
                ds_name, rel = parse_datastore_path(existing.backing.fileName)
                if sim.files.exists(ds_name, rel):
                    sim.files.delete(ds_name, rel)
            continue
        device = clone(device)
        if op == "edit":
            existing = by_key.get(device.key)
            if existing is None:
                raise invalid_argument("deviceChange.device.key",
                                       f"no device with key {device.key}")
            if isinstance(existing, Dev.VirtualDisk) and isinstance(device, Dev.VirtualDisk):
                _disk_profile(sim, change, device.key, profiles)
                _keep_parent(existing, device)
                new_kb = _edited_disk_kb(existing, device, changes.index(change))
                grow = (new_kb - (existing.capacityInKB or 0)) * 1024
                ds_name, rel = parse_datastore_path(existing.backing.fileName)
                if grow:
                    _datastore_for(sim, ds_name).ensure_space(grow)
                    sim.files.grow(ds_name, rel, grow, new_kb)
                device.capacityInKB = new_kb
                device.capacityInBytes = new_kb * 1024
            elif isinstance(device, Dev.VirtualEthernetCard):
                # A new backing (another network, another port).
                _check_nic(device, sim, host, config.instanceUuid, devices)
            # The label is vCenter's, whatever the spec says.
            device.deviceInfo = _describe(device, devices) if existing.deviceInfo is None \
                else vim.Description(label=existing.deviceInfo.label,
                                     summary=_describe(device, devices).summary)
            devices[devices.index(existing)] = device
            by_key[device.key] = device
            continue
        if op != "add":
            raise invalid_argument("deviceChange.operation", f"unknown operation {op!r}")
        # vCenter gives every new device its own key: the spec's (negative,
        # or govmomi's random one of either sign) only links devices of one
        # spec, e.g. a disk to the new controller it goes on.
        temporary = device.key
        device.key = _new_key(device, by_key)
        if temporary is not None:
            renumbered[temporary] = device.key
        if isinstance(device, Dev.VirtualDisk):
            _disk_profile(sim, change, device.key, profiles)
            _add_disk(vm_name, vm_dir, device, change.fileOperation, sim, host, created,
                      index=changes.index(change))
        elif isinstance(device, Dev.VirtualEthernetCard):
            _check_nic(device, sim, host, config.instanceUuid, devices)
        elif isinstance(device, Dev.VirtualCdrom):
            _check_cdrom(device, sim, host)
        elif isinstance(device, Dev.VirtualSCSIController) \
                and device.scsiCtlrUnitNumber is None:
            device.scsiCtlrUnitNumber = 7  # as vCenter: the controller's own unit on its bus
        device.deviceInfo = _describe(device, devices)
        devices.append(device)
        added.append(device)
        by_key[device.key] = device
    # As vCenter does, a new device placed on a new controller by the
    # controller's temporary key ends up on the controller's real key, and
    # one placed nowhere gets a slot: NICs go on the PCI bus from unit 7.
    for device in added:
        if device.controllerKey in renumbered:
            device.controllerKey = renumbered[device.controllerKey]
        if isinstance(device, Dev.VirtualEthernetCard):
            if device.controllerKey is None:
                device.controllerKey = _PCI_KEY
            if device.unitNumber is None:
                taken = {d.unitNumber for d in devices
                         if d is not device and d.controllerKey == device.controllerKey}
                device.unitNumber = next(u for u in itertools.count(_FIRST_NIC_UNIT)
                                         if u not in taken)
    # Keep controllers' device lists in step with their children.
    for dev in devices:
        if isinstance(dev, Dev.VirtualController):
            dev.device = [d.key for d in devices if d.controllerKey == dev.key]


def _disk_profile(sim: Simulator, change, key: int, profiles: dict[str, str] | None) -> None:
    """Note the storage policy a disk's change asks for (InvalidArgument if unknown)."""
    found = sim.storage_policies.profile_of(change.profile, "deviceChange.profile")
    if found is not None and profiles is not None:
        profiles[str(key)] = found


def storage_profiles_after(vm_profiles: dict[str, str], config) -> dict[str, str]:
    """A VM's policy associations without dropped ones and disks it no longer has."""
    disks = {str(d.key) for d in config.hardware.device if isinstance(d, Dev.VirtualDisk)}
    return {k: v for k, v in vm_profiles.items()
            if v and (k == storage_policies.VM_HOME or k in disks)}


def _keep_parent(existing, disk) -> None:
    """An edit neither links nor unlinks a disk: its parent is its file's, not the spec's.

    (PromoteDisks_Task is how a delta disk loses its parent.)
    """
    old, new = existing.backing, disk.backing
    if old is None or new is None or not hasattr(old, "parent") or not hasattr(new, "parent"):
        return
    if new.fileName in (None, old.fileName):
        new.parent = clone(old.parent)


def _edited_disk_kb(existing, disk, index: int) -> int:
    """The capacity (KB) an edit spec asks of ``existing``, as vCenter reads it.

    ``capacityInBytes`` (the current field) wins over the deprecated
    ``capacityInKB`` when both changed; a value equal to the current one is
    "unchanged". Disks cannot shrink: vCenter answers InvalidDeviceOperation.
    """
    old_kb = existing.capacityInKB or (existing.capacityInBytes or 0) // 1024
    old_bytes = existing.capacityInBytes or old_kb * 1024
    new_kb = old_kb
    if disk.capacityInBytes and disk.capacityInBytes != old_bytes:
        new_kb = disk.capacityInBytes // 1024
    elif disk.capacityInKB and disk.capacityInKB != old_kb:
        new_kb = disk.capacityInKB
    if new_kb < old_kb:
        raise vim.fault.InvalidDeviceOperation(
            deviceIndex=index, property="capacityInKB", badOp="edit",
            msg=f"Invalid operation for device '{index}': a virtual disk cannot shrink "
            f"({old_kb} KB to {new_kb} KB)")
    # A delta disk (linked clone) never outgrows its parent: clients unlink
    # it first (VirtualMachine.PromoteDisks_Task, simulator/delta_disks.py).
    if new_kb > old_kb and delta_disks.has_parent(existing):
        raise delta_disks.growth_refused(existing, index, old_kb, new_kb)
    return new_kb


def _delta_capacity_kb(capacity_kb: int, parent_kb: int, parent: str, index: int) -> int:
    """A new delta disk's capacity: its parent's, as vCenter allows no other.

    vCenter refuses a delta disk (a linked clone, a disk with a parent) that
    would be bigger or smaller than its parent -- "Invalid operation for
    device: disks with parents cannot be expanded" -- so clients extend a
    copy of the parent first (Nova's in-tree driver keeps such copies). A
    spec that gives no capacity gets the parent's.
    """
    if capacity_kb and capacity_kb != parent_kb:
        raise vim.fault.InvalidDeviceOperation(
            deviceIndex=index, badOp="add", badFileOp="create",
            msg=f"Invalid operation for device '{index}': disks with parents cannot be "
            f"expanded (the delta disk asks for {capacity_kb} KB, its parent {parent} has "
            f"{parent_kb} KB)")
    return parent_kb


def _add_disk(vm_name, vm_dir, disk, file_operation, sim, host, created, *,
              index: int = 0) -> None:
    backing = disk.backing
    if backing is None or not isinstance(backing, Dev.VirtualDevice.FileBackingInfo):
        raise invalid_argument("deviceChange.device.backing", "a disk needs a file backing")
    file_name = backing.fileName or f"[{vm_dir[0]}]"
    ds_name, rel = parse_datastore_path(file_name)
    ds = _datastore_for(sim, ds_name)
    if ds not in host.datastores:
        raise vim.fault.InvalidDatastore(datastore=ds.ref, name=ds.name,
                                         msg=f"Datastore {ds.name} is not mounted on {host.name}")
    capacity_kb = disk.capacityInKB or (disk.capacityInBytes or 0) // 1024
    if file_operation == "create":
        if not rel or rel.endswith("/"):
            base = vm_dir[1] or vm_name
            n = 0
            while True:
                candidate = f"{base}/{vm_name}{'' if n == 0 else f'_{n}'}.vmdk"
                if not sim.files.exists(ds_name, candidate):
                    rel = candidate
                    break
                n += 1
        if sim.files.exists(ds_name, rel):
            raise vim.fault.FileAlreadyExists(file=f"[{ds_name}] {rel}",
                                              msg=f"File [{ds_name}] {rel} already exists")
        size = capacity_kb * 1024
        parent = getattr(backing, "parent", None)
        if parent is not None and getattr(parent, "fileName", None):
            # A linked clone: a delta disk over an existing parent, which
            # takes little space until the guest writes.
            p_ds, p_rel = parse_datastore_path(parent.fileName)
            parent_entry = sim.files.get(p_ds, p_rel)  # FileNotFound if absent
            parent_kb = parent_entry.disk_capacity_kb or (parent_entry.size + 1023) // 1024
            capacity_kb = _delta_capacity_kb(capacity_kb, parent_kb, parent.fileName, index)
            size = DELTA_DISK_BYTES
        ds.ensure_space(size)
        entry = sim.files.write(ds_name, rel, None, size=size, disk_capacity_kb=capacity_kb,
                                thin=bool(getattr(backing, "thinProvisioned", False)),
                                overwrite=False, create_parents=True)
        if parent is not None and getattr(parent, "fileName", None):
            entry.parent = parent.fileName  # the delta's descriptor names its parent
        created.append((ds_name, rel))
    else:
        entry = sim.files.get(ds_name, rel)  # FileNotFound when it is not there
        if entry.disk_capacity_kb is None:
            # An uploaded (e.g. stream-optimized) image: its size is the disk's.
            entry.disk_capacity_kb = max(capacity_kb, (entry.size + 1023) // 1024)
        capacity_kb = capacity_kb or entry.disk_capacity_kb
    backing.fileName = f"[{ds_name}] {rel}"
    backing.datastore = ds.ref
    disk.capacityInKB = capacity_kb
    disk.capacityInBytes = capacity_kb * 1024
    # The UUID lives in the disk's descriptor: a disk attached again, or to
    # another VM as Cinder's volumes are, keeps the one it was created with.
    if entry.disk_uuid is None:
        entry.disk_uuid = backing.uuid or str(uuid.uuid4())
    backing.uuid = entry.disk_uuid


def _check_cdrom(cdrom, sim: Simulator, host: HostSystem) -> None:
    """An ISO-backed drive needs its file, on a datastore the VM's host mounts."""
    backing = cdrom.backing
    if not isinstance(backing, Dev.VirtualCdrom.IsoBackingInfo):
        return
    ds_name, rel = parse_datastore_path(backing.fileName or "")
    ds = _datastore_for(sim, ds_name)
    if ds not in host.datastores:
        raise vim.fault.InvalidDatastore(datastore=ds.ref, name=ds.name,
                                         msg=f"Datastore {ds.name} is not mounted on {host.name}")
    entry = sim.files.get(ds_name, rel)  # FileNotFound when it is not there
    if entry.is_dir:
        raise invalid_argument("deviceChange.device.backing.fileName",
                               f"[{ds_name}] {rel} is a folder, not an ISO file")
    backing.datastore = ds.ref


_NIC_BACKINGS = (Dev.VirtualEthernetCard.NetworkBackingInfo,
                 Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo,
                 Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo)


def _nic_network(backing, networks):
    """The network among ``networks`` a NIC backing names (None: not there)."""
    return next((n for n in networks if n.carries(backing)), None)


def _check_nic(nic, sim: Simulator, host: HostSystem, owner: str | None,
               devices: list) -> None:
    """Wire a NIC being added or edited to its network on ``host``; give it a MAC.

    ``owner`` is the VM's instance UUID and ``devices`` its devices: a
    distributed port may be held by one NIC only.
    """
    backing = nic.backing
    if not isinstance(backing, _NIC_BACKINGS):
        raise invalid_argument("deviceChange.device.backing", "unsupported NIC backing")
    if isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo) \
            and backing.port is None:
        raise invalid_argument("deviceChange.device.backing.port")
    network = _nic_network(backing, host.networks)
    if network is None:
        if isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
            what = f"Distributed port group '{backing.port.portgroupKey}' on switch " \
                f"'{backing.port.switchUuid}'"
        elif isinstance(backing, Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo):
            what = f"Opaque network '{backing.opaqueNetworkId}' of type " \
                f"'{backing.opaqueNetworkType}'"
        else:
            what = f"Network '{backing.deviceName}'"
        raise vim.fault.NotFound(msg=f"{what} is not available on host {host.name}")
    network.wire(nic, owner, [d for d in devices if d.key != nic.key])
    if nic.addressType in (None, "generated", "assigned") and not nic.macAddress:
        octets = [_MAC_RANDOM.randrange(256) for _ in range(3)]
        nic.macAddress = "00:50:56:" + ":".join(f"{o:02x}" for o in octets)
        nic.addressType = "assigned" if nic.addressType == "assigned" else "generated"


def _networks_of(config, sim: Simulator, host: HostSystem) -> list:
    nets = []
    for dev in config.hardware.device:
        if not isinstance(dev, Dev.VirtualEthernetCard):
            continue
        network = _nic_network(dev.backing, host.networks)
        if network is not None and network not in nets:
            nets.append(network)
    return nets


def _datastores_of(vm: VirtualMachine) -> list:
    # As vCenter's VirtualMachine.datastore: every datastore holding a file of
    # the VM, its disks' parents (a linked clone's base disk) and the ISO
    # files of its CD-ROM drives included.
    chains = []
    for disk in vm.disks():
        backing = disk.backing
        while backing is not None and getattr(backing, "fileName", None):
            chains.append(backing.fileName)
            backing = getattr(backing, "parent", None)
    for cdrom in vm.config.hardware.device:
        if isinstance(cdrom, Dev.VirtualCdrom) and \
                isinstance(cdrom.backing, Dev.VirtualCdrom.IsoBackingInfo) and \
                cdrom.backing.fileName:
            chains.append(cdrom.backing.fileName)
    names = []
    for path in [vm.config.files.vmPathName, *chains]:
        ds_name, _ = parse_datastore_path(path)
        if ds_name not in names:
            names.append(ds_name)
    return [vm.sim.datastore_by_name(n) for n in names if vm.sim.datastore_by_name(n)]


def _new_config(spec, name: str, vmx_path: str, default_version: str) -> vim.vm.ConfigInfo:
    # Built once per CreateVM_Task from checked values: without pyVmomi's
    # per-field checks (vim_data.data_object).
    instance_uuid = spec.instanceUuid or str(uuid.uuid4())
    now = _now()
    directory = vmx_path.rsplit("/", 1)[0]
    return data_object(
        vim.vm.ConfigInfo,
        changeVersion=now.isoformat(),
        modified=now,
        name=name,
        guestFullName=spec.guestId or "otherGuest64",
        version=spec.version or default_version,
        uuid=spec.uuid or str(uuid.uuid4()),
        instanceUuid=instance_uuid,
        template=False,
        guestId=spec.guestId or "otherGuest64",
        annotation=spec.annotation or "",
        files=data_object(vim.vm.FileInfo, vmPathName=vmx_path, logDirectory=directory,
                          snapshotDirectory=directory, suspendDirectory=directory),
        flags=data_object(vim.vm.FlagInfo),
        defaultPowerOps=data_object(vim.vm.DefaultPowerOpInfo),
        hardware=data_object(vim.vm.VirtualHardware, numCPU=spec.numCPUs or 1,
                             numCoresPerSocket=spec.numCoresPerSocket or 1,
                             memoryMB=spec.memoryMB or 128, device=_default_devices()),
        cpuAllocation=_allocation(spec.cpuAllocation),
        memoryAllocation=_allocation(spec.memoryAllocation),
        extraConfig=list(spec.extraConfig or []),
        managedBy=spec.managedBy,
        memoryHotAddEnabled=bool(spec.memoryHotAddEnabled),
        cpuHotAddEnabled=bool(spec.cpuHotAddEnabled),
        firmware=spec.firmware or "bios",
    )


def new_vm_config(sim: Simulator, folder: Folder, spec, pool: ResourcePool,
                  host: HostSystem | None, created: list[tuple[str, str]],
                  profiles: dict[str, str] | None = None,
                  ) -> tuple[HostSystem, vim.vm.ConfigInfo]:
    """CreateVM_Task's checks and files: the host and config of the new VM.

    Runs under the registry lock. Files it creates on datastores are
    appended to ``created``: the caller (factory.ObjectFactory.vm) removes
    them again when this or registering the VM fails. The storage policies
    the spec gives the VM and its disks go to ``profiles``.
    """
    home_profile = sim.storage_policies.profile_of(spec.vmProfile, "vmProfile")
    if home_profile and profiles is not None:
        profiles[storage_policies.VM_HOME] = home_profile
    cluster = pool.owner
    name = spec.name
    if name is None:
        raise invalid_argument("config.name", "A virtual machine name is required")
    check_entity_name(name)
    sibling = folder.child_named(name)
    if sibling is not None:
        raise vim.fault.DuplicateName(name=name, object=sibling.ref,
                                      msg=f"The name '{name}' already exists.")
    if host is None:
        if not cluster.drs_enabled:
            raise invalid_argument(
                "host", f"DRS is not enabled on cluster {cluster.name}: a host is required")
        probe = VirtualMachine.__new__(VirtualMachine)
        probe.datastores = []
        probe.config = vim.vm.ConfigInfo(hardware=vim.vm.VirtualHardware(
            numCPU=spec.numCPUs or 1, memoryMB=spec.memoryMB or 128))
        host = cluster.vcenter_drs_pick_host(probe)
        if host is None:
            raise vim.fault.InsufficientResourcesFault(
                msg=f"No host in cluster {cluster.name} has room for {name}")
    if host not in cluster.hosts:
        raise invalid_argument("host", f"host {host.name} is not in cluster {cluster.name}")
    if host.connection_state != vim.HostSystem.ConnectionState.connected:
        raise vim.fault.InvalidHostState(host=host.ref, msg=f"Host {host.name} is not connected")
    if host.in_maintenance:
        raise vim.fault.InvalidHostState(host=host.ref,
                                         msg=f"Host {host.name} is in maintenance mode")
    if spec.numCPUs and spec.numCPUs > host.threads:
        raise vim.fault.NotEnoughCpus(numCpuDest=host.threads, numCpuVm=spec.numCPUs,
                                      msg=f"{spec.numCPUs} vCPUs exceed the {host.threads} "
                                      f"logical processors of host {host.name}")
    if spec.guestId and spec.guestId not in GUEST_IDS:
        # vCenter's answer to a guest type it does not know.
        raise invalid_argument("configSpec.guestId")
    if spec.version and spec.version not in esxi_versions.hardware_versions(host.esxi_version):
        raise invalid_argument("configSpec.version",
                               f"Host {host.name} (ESXi {host.esxi_version}) cannot create "
                               f"virtual machines of hardware version {spec.version}")
    if spec.files is None or not spec.files.vmPathName:
        raise invalid_argument("config.files.vmPathName")
    ds_name, rel = parse_datastore_path(spec.files.vmPathName)
    ds = _datastore_for(sim, ds_name)
    if ds not in host.datastores:
        raise vim.fault.InvalidDatastore(datastore=ds.ref, name=ds.name,
                                         msg=f"Datastore {ds.name} is not mounted on {host.name}")
    if not rel or not rel.endswith(".vmx"):
        directory = rel.rstrip("/") or name
        rel = f"{directory}/{name}.vmx"
    directory = posixpath.dirname(rel)
    vmx_path = f"[{ds_name}] {rel}"
    if directory and not sim.files.exists(ds_name, directory):
        sim.files.mkdir(ds_name, directory, create_parents=True)
        created.append((ds_name, directory))
    if sim.files.exists(ds_name, rel):
        raise vim.fault.FileAlreadyExists(file=vmx_path, msg=f"File {vmx_path} already exists")
    sim.files.write(ds_name, rel, f'displayName = "{name}"\n'.encode(), overwrite=False)
    created.append((ds_name, rel))
    config = _new_config(spec, name, vmx_path,
                         esxi_versions.default_hardware_version(host.esxi_version))
    _check_memory_reservation(config)
    _apply_devices(name, (ds_name, directory), config, spec.deviceChange, sim, host,
                   created, profiles)
    return host, config


def reconfigure(vm: VirtualMachine, spec) -> None:
    sim = vm.sim
    profiles = dict(vm.storage_profiles)
    home_profile = sim.storage_policies.profile_of(spec.vmProfile, "vmProfile")
    if home_profile is not None:
        profiles[storage_policies.VM_HOME] = home_profile
    config = clone(vm.config)
    hw = config.hardware
    if spec.numCPUs is not None and spec.numCPUs != hw.numCPU:
        if vm.powered_on and not (config.cpuHotAddEnabled and spec.numCPUs > hw.numCPU):
            vm._require_power(POWERED_OFF)
        if spec.numCPUs < 1:
            raise invalid_argument("numCPUs")
        if spec.numCPUs > vm.host.threads:
            raise vim.fault.NotEnoughCpus(numCpuDest=vm.host.threads, numCpuVm=spec.numCPUs,
                                          msg=f"{spec.numCPUs} vCPUs exceed the host's "
                                          f"{vm.host.threads} logical processors")
        hw.numCPU = spec.numCPUs
    if spec.numCoresPerSocket is not None:
        hw.numCoresPerSocket = spec.numCoresPerSocket
    if spec.memoryMB is not None and spec.memoryMB != hw.memoryMB:
        if vm.powered_on:
            if not (config.memoryHotAddEnabled and spec.memoryMB > hw.memoryMB):
                vm._require_power(POWERED_OFF)
            vm.host.check_admission(vm, memory_mb=spec.memoryMB)
        if spec.memoryMB < 4:
            raise invalid_argument("memoryMB")
        hw.memoryMB = spec.memoryMB
    if spec.cpuAllocation is not None:
        config.cpuAllocation = _allocation(spec.cpuAllocation, config.cpuAllocation)
    if spec.memoryAllocation is not None:
        config.memoryAllocation = _allocation(spec.memoryAllocation, config.memoryAllocation)
    _check_memory_reservation(config)
    if spec.annotation is not None:
        config.annotation = spec.annotation
    if spec.guestId is not None:
        config.guestId = config.guestFullName = spec.guestId
    if spec.extraConfig:
        current = {o.key: o for o in config.extraConfig or []}
        for opt in spec.extraConfig:
            if opt.value in (None, ""):
                current.pop(opt.key, None)
            else:
                current[opt.key] = opt
        config.extraConfig = list(current.values())
    if spec.managedBy is not None:
        config.managedBy = spec.managedBy
    if spec.memoryHotAddEnabled is not None:
        config.memoryHotAddEnabled = spec.memoryHotAddEnabled
    if spec.cpuHotAddEnabled is not None:
        config.cpuHotAddEnabled = spec.cpuHotAddEnabled
    if spec.name is not None and spec.name != vm.name:
        clash = vm.parent.child_named(spec.name)
        if clash is not None:
            raise vim.fault.DuplicateName(name=spec.name, object=clash.ref,
                                          msg=f"The name '{spec.name}' already exists.")
        old_name, vm.name = vm.name, spec.name
        config.name = spec.name
        vm.parent.renamed(vm, old_name)
        sim.events.post(vim.event.VmRenamedEvent, about=vm, oldName=old_name,
                        newName=spec.name)
    ds_name, rel = parse_datastore_path(config.files.vmPathName)
    created: list[tuple[str, str]] = []
    try:
        _apply_devices(vm.name, (ds_name, posixpath.dirname(rel)), config, spec.deviceChange,
                       sim, vm.host, created, profiles)
        # After the device changes: the boot order names devices by key.
        boot_options.apply(config, spec.bootOptions)
    except Exception:
        for ds_n, path in reversed(created):
            if sim.files.exists(ds_n, path):
                sim.files.delete(ds_n, path)
        raise
    config.changeVersion = _now().isoformat()
    config.modified = _now()
    sim.registry.touch(vm)  # the datastores and networks it may leave
    vm.config = config
    vm.storage_profiles = storage_profiles_after(profiles, config)
    vm.datastores = _datastores_of(vm)
    vm.networks = _networks_of(config, sim, vm.host)
    sim.registry.touch(vm)


def move_storage(vm: VirtualMachine, target: Datastore,
                 disk_targets: dict[int, Datastore] | None = None) -> None:
    """Storage vMotion of the files of ``vm`` to ``target``.

    ``disk_targets`` (RelocateSpec.disk: device key -> datastore) sends a disk
    outside the VM's folder elsewhere, or keeps it where it is (a Cinder
    volume's); the folder and every other disk go to ``target``.
    """
    sim = vm.sim
    disk_targets = disk_targets or {}
    ds_name, rel = parse_datastore_path(vm.config.files.vmPathName)
    directory = posixpath.dirname(rel)
    # (datastore, path, where it goes) of what moves.
    moves = [(ds_name, directory or rel, target)]
    for disk in vm.disks():
        d_ds, d_rel = parse_datastore_path(disk.backing.fileName)
        if directory and d_rel.startswith(directory + "/") and d_ds == ds_name:
            continue  # moves with the folder
        moves.append((d_ds, d_rel, disk_targets.get(disk.key, target)))
    moves = [(d, p, t) for d, p, t in moves if d != t.name]
    need: dict[str, int] = {}
    for ds_n, path, dest in moves:
        entry = sim.files.get(ds_n, path)
        size = sum(e.size for e in sim.files.listdir(ds_n, path, True)) \
            if entry.is_dir else entry.size
        need[dest.name] = need.get(dest.name, 0) + size
    for dest_name, size in need.items():
        sim.datastore_by_name(dest_name).ensure_space(size)
    moved: dict[tuple[str, str], str] = {}
    for ds_n, path, dest in moves:
        # A disk outside the VM's folder (e.g. a Cinder volume's) keeps its path.
        parent = posixpath.dirname(path)
        if parent and not sim.files.exists(dest.name, parent):
            sim.files.mkdir(dest.name, parent, create_parents=True)
        sim.files.move(ds_n, path, dest.name, path, copy=False)
        moved[(ds_n, path)] = dest.name
    config = vm.config
    home = moved.get((ds_name, directory or rel), ds_name)
    config.files.vmPathName = f"[{home}] {rel}"
    for dev in config.hardware.device:
        backing = getattr(dev, "backing", None)
        if not isinstance(backing, Dev.VirtualDevice.FileBackingInfo) or not backing.fileName:
            continue
        f_ds, f_rel = parse_datastore_path(backing.fileName)
        dest_name = moved.get((f_ds, f_rel))
        if dest_name is None and f_ds == ds_name and directory \
                and f_rel.startswith(directory + "/"):
            # In the VM's folder (disks, the serial console log, a config drive).
            dest_name = home
        if dest_name is not None:
            backing.fileName = f"[{dest_name}] {f_rel}"
            if isinstance(dev, Dev.VirtualDisk):
                backing.datastore = sim.datastore_by_name(dest_name).ref
    # Where the moved files are now: the folder's datastore and each disk's (a
    # linked clone's parent chain is taken as moved along, as before).
    names = [home] + [parse_datastore_path(p)[0] for p in vm.disk_files()]
    vm.datastores = [sim.datastore_by_name(n) for n in dict.fromkeys(names)
                     if sim.datastore_by_name(n) is not None]


#: vCenter's default RelocateSpec.diskMoveType for a clone: full copies.
_DEFAULT_DISK_MOVE = "moveAllDiskBackingsAndDisallowSharing"


def clone_plan(source: VirtualMachine, name: str, spec
               ) -> tuple[ResourcePool, HostSystem, vim.vm.ConfigSpec, dict[int, bytes | None]]:
    """Where CloneVM_Task puts the clone (pool, host), the ConfigSpec it is made from, and
    the data each new disk starts with (by device key).

    Disks follow ``spec.location.diskMoveType`` (or a disk locator's):
    ``createNewChildDiskBacking`` makes a linked clone -- a delta disk whose
    parent is the source's disk (as of ``spec.snapshot``, if given), the
    source's chain kept behind it; ``moveChildMostDiskBacking`` copies the
    child-most disk and shares its parents; the ``moveAllDiskBackings*``
    kinds (vCenter's default) make a standalone copy of the whole chain.
    Devices keep their keys, as on vCenter, so ``spec.config`` may edit them.
    """
    sim = source.sim
    registry = sim.registry
    location = spec.location
    pool = registry.lookup(location.pool) if location.pool else source.pool
    host = registry.lookup(location.host) if location.host else None
    target_ds = registry.lookup(location.datastore) if location.datastore \
        else source.datastores[0]
    if host is None:
        host = source.host if source.host in pool.owner.hosts else \
            pool.owner.vcenter_drs_pick_host(source)
        if host is None:
            raise vim.fault.InsufficientResourcesFault(msg="No host can take the clone")
    devices = source.config.hardware.device
    if spec.snapshot is not None:
        snapshot = registry.lookup(spec.snapshot)
        if snapshot not in source.snapshots:
            raise invalid_argument("spec.snapshot", f"{snapshot.moid} is not a snapshot of "
                                   f"{source.name}")
        devices = snapshot.config.hardware.device
    config = vim.vm.ConfigSpec(
        name=name, guestId=source.config.guestId, numCPUs=source.num_cpus,
        numCoresPerSocket=source.config.hardware.numCoresPerSocket,
        memoryMB=source.memory_mb, annotation=source.config.annotation,
        files=vim.vm.FileInfo(vmPathName=f"[{target_ds.name}]"),
        extraConfig=list(source.config.extraConfig or []),
        cpuAllocation=source.config.cpuAllocation,
        memoryAllocation=source.config.memoryAllocation,
        firmware=source.config.firmware, version=source.config.version,
        deviceChange=[])
    locators = {loc.diskId: loc for loc in location.disk or []}
    data: dict[int, bytes | None] = {}
    for dev in devices:
        if isinstance(dev, Dev.VirtualDisk):
            locator = locators.get(dev.key)
            move = (locator.diskMoveType if locator is not None and locator.diskMoveType
                    else location.diskMoveType or _DEFAULT_DISK_MOVE)
            ds = registry.lookup(locator.datastore) if locator is not None else target_ds
            disk = clone(dev)
            disk.backing.fileName = f"[{ds.name}]"
            disk.backing.uuid = None
            if move == "createNewChildDiskBacking":
                disk.backing.parent = clone(dev.backing)  # shared, read-only
                data[dev.key] = None  # a new delta reads through to its parent
            elif move == "moveChildMostDiskBacking":
                ds_name, rel = parse_datastore_path(dev.backing.fileName)
                data[dev.key] = disk_data(sim.files.get(ds_name, rel))
            else:
                disk.backing.parent = None
                data[dev.key] = delta_disks.consolidated(
                    sim, delta_disks.backing_chain(dev.backing))
            config.deviceChange.append(Dev.VirtualDeviceSpec(operation="add",
                                                             fileOperation="create", device=disk))
        elif isinstance(dev, (Dev.VirtualEthernetCard, Dev.VirtualSCSIController,
                              Dev.VirtualAHCIController, Dev.VirtualNVMEController,
                              Dev.VirtualCdrom, Dev.VirtualSerialPort)):
            copy_dev = clone(dev)
            if isinstance(copy_dev, Dev.VirtualEthernetCard):
                copy_dev.macAddress = None
                copy_dev.addressType = "generated"
                if getattr(copy_dev.backing, "port", None) is not None:
                    copy_dev.backing.port.portKey = None  # the clone gets a port of its own
            config.deviceChange.append(Dev.VirtualDeviceSpec(operation="add", device=copy_dev))
    return pool, host, config, data


# -- relocation of network adapters (RelocateSpec.deviceChange) ---------------------


def _nic_reachable(nic, host: HostSystem) -> bool:
    """Whether the network ``nic`` is backed by is present on ``host``."""
    return _nic_network(nic.backing, host.networks) is not None


def _nic_backing_name(nic) -> str:
    backing = nic.backing
    if isinstance(backing, Dev.VirtualEthernetCard.DistributedVirtualPortBackingInfo):
        return f"port group {backing.port.portgroupKey} of switch {backing.port.switchUuid}"
    if isinstance(backing, Dev.VirtualEthernetCard.OpaqueNetworkBackingInfo):
        return f"opaque network {backing.opaqueNetworkId} ({backing.opaqueNetworkType})"
    return str(getattr(backing, "deviceName", None) or type(backing).__name__)


def relocated_nics(vm: VirtualMachine, host: HostSystem, changes) -> vim.vm.ConfigInfo | None:
    """Apply RelocateSpec.deviceChange to a copy of the VM's config; check the NICs.

    As documented for RelocateSpec.deviceChange, a relocation may only
    *edit* network adapters (to give them a backing that exists at the
    destination). Migration validation then fails with CannotAccessNetwork
    when a connected adapter of a running VM would lose its network on
    ``host``. Returns the new config, or None when there were no changes.
    """
    config = vm.config
    if changes:
        config = clone(vm.config)
        devices = config.hardware.device
        index = {d.key: i for i, d in enumerate(devices)}
        for change in changes:
            device = change.device
            if change.operation != "edit" or not isinstance(device, Dev.VirtualEthernetCard):
                raise invalid_argument("spec.deviceChange", "a relocation may only edit the "
                                       "backing of network adapters")
            if device.key not in index:
                raise invalid_argument("spec.deviceChange.device.key",
                                       f"no device with key {device.key}")
            device = clone(device)
            _check_nic(device, vm.sim, host, config.instanceUuid, devices)
            devices[index[device.key]] = device
    if vm.powered_on:
        for nic in config.hardware.device:
            if not isinstance(nic, Dev.VirtualEthernetCard):
                continue
            connected = nic.connectable.connected if nic.connectable is not None else True
            if connected and not _nic_reachable(nic, host):
                label = nic.deviceInfo.label if nic.deviceInfo else f"NIC {nic.key}"
                raise vim.fault.CannotAccessNetwork(
                    device=label, backing=_nic_backing_name(nic), connected=True,
                    msg=f"Currently connected network interface '{label}' uses network "
                    f"'{_nic_backing_name(nic)}', which is not accessible on host {host.name}")
    return config if changes else None
