"""HostSystem: an ESXi host with CPU/memory capacity that powered-on VMs use."""

from __future__ import annotations

import datetime
import time
import uuid
from typing import TYPE_CHECKING, Any

from pyVmomi import vim

from nova_vsphere_driver.simulator import esxi_versions, ha_admission
from nova_vsphere_driver.simulator.objects.base import CallContext, ManagedEntity, monotonic_at

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource
    from nova_vsphere_driver.simulator.objects.datastore import Datastore
    from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine
    from nova_vsphere_driver.simulator.service import Simulator

CONNECTED = vim.HostSystem.ConnectionState.connected
MB = 1024 * 1024

#: CPU feature name -> the cpuid feature capability key vCenter reports.
CPU_FEATURE_KEYS = {
    "sse4_1": "cpuid.SSE41", "sse4_2": "cpuid.SSE42", "aes": "cpuid.AES",
    "avx": "cpuid.AVX", "avx2": "cpuid.AVX2", "avx512f": "cpuid.AVX512F",
    "fma": "cpuid.FMA", "bmi1": "cpuid.BMI1", "bmi2": "cpuid.BMI2",
    "sha": "cpuid.SHA", "f16c": "cpuid.F16C", "popcnt": "cpuid.POPCNT",
    "ssse3": "cpuid.SSSE3", "rdrand": "cpuid.RDRAND", "pclmulqdq": "cpuid.PCLMULQDQ",
    "vmx": "cpuid.VMX", "xsave": "cpuid.XSAVE", "mpx": "cpuid.MPX", "svm": "cpuid.SVM",
}


class HostSystem(ManagedEntity):
    vim_type = vim.HostSystem
    moid_prefix = "host"
    #: The ESXi release (what a state saved before hosts had one loads as).
    esxi_version: str = esxi_versions.DEFAULT_ESXI_VERSION

    def __init__(self, sim: Simulator, name: str, parent: ClusterComputeResource, *,
                 cores: int, threads: int | None = None, mhz: int = 2400,
                 memory_mb: int, sockets: int = 2, cpu_model: str = "Intel(R) Xeon(R) Gold",
                 vendor: str = "Dell Inc.", model: str = "PowerEdge R650",
                 cpu_features: list[str] | None = None,
                 esxi_version: str = esxi_versions.DEFAULT_ESXI_VERSION) -> None:
        super().__init__(sim, name, parent)
        # Checked now: it says which VMs the host can create.
        esxi_versions.newest_hardware_version(esxi_version)
        self.esxi_version = esxi_version
        self.cores = cores
        self.threads = threads or cores * 2
        self.mhz = mhz
        self.memory_mb = memory_mb
        self.sockets = sockets
        self.cpu_model = cpu_model
        self.vendor = vendor
        self.model = model
        self.cpu_features = list(cpu_features or ["sse4_1", "sse4_2", "aes", "avx", "avx2"])
        self.uuid = str(uuid.uuid4())
        self.connection_state = CONNECTED
        self.in_maintenance = False
        self.entering_maintenance = False
        self.boot_time = datetime.datetime.now(datetime.timezone.utc)
        self._boot_monotonic = time.monotonic()
        self.vms: list[VirtualMachine] = []
        self.datastores: list[Datastore] = []
        self.networks: list = []
        #: The host's advanced settings (an OptionManager made with it).
        self.advanced_options: Any = None

    transient = ManagedEntity.transient | {"_boot_monotonic"}

    def restored(self) -> None:
        super().restored()
        self._boot_monotonic = monotonic_at(self.boot_time)
        if getattr(self, "advanced_options", None) is None:
            # A state saved before hosts had advanced settings: their defaults.
            self.advanced_options = self.sim.factory.host_settings(self)

    # -- accounting -------------------------------------------------------------

    @property
    def cluster(self) -> ClusterComputeResource:
        return self.parent  # type: ignore[return-value]

    def dependents(self):
        # The cluster's summary and the root pool's runtime sum the usable hosts.
        cluster = self.cluster
        return (cluster, getattr(cluster, "resource_pool", None))

    def powered_on_vms(self) -> list[VirtualMachine]:
        return [vm for vm in self.vms if vm.powered_on]

    def used_memory_mb(self) -> int:
        return sum(vm.memory_mb for vm in self.powered_on_vms())

    def used_cpu_mhz(self) -> int:
        demand = sum(vm.cpu_usage_mhz() for vm in self.powered_on_vms())
        return min(demand, self.cpu_capacity_mhz())

    def cpu_capacity_mhz(self) -> int:
        return self.cores * self.mhz

    def usable(self) -> bool:
        """Can take new or migrated VMs."""
        return (self.connection_state == CONNECTED and not self.in_maintenance
                and not self.entering_maintenance)

    def check_admission(self, vm: VirtualMachine, memory_mb: int | None = None,
                        vcpus: int | None = None) -> None:
        """Raise the fault vCenter gives when this host cannot run ``vm``."""
        if self.connection_state != CONNECTED:
            raise vim.fault.InvalidHostConnectionState(
                host=self.ref, msg=f"The host {self.name} is {self.connection_state}")
        if self.in_maintenance or self.entering_maintenance:
            raise vim.fault.InvalidHostState(
                host=self.ref, msg=f"The operation is not allowed: host {self.name} is in "
                "maintenance mode")
        vcpus = vcpus if vcpus is not None else vm.num_cpus
        memory_mb = memory_mb if memory_mb is not None else vm.memory_mb
        if vcpus > self.threads:
            raise vim.fault.NotEnoughCpus(
                numCpuDest=self.threads, numCpuVm=vcpus,
                msg=f"The virtual machine has {vcpus} vCPUs, more than the {self.threads} "
                f"logical processors of host {self.name}")
        # One pass over the host's VMs for both sums (a host runs hundreds).
        others = reserved = 0
        for other in self.vms:
            if other is not vm and other.powered_on:
                others += other.memory_mb
                reserved += other.cpu_reservation_mhz()
        limit = self.memory_mb * self.sim.memory_overcommit
        if others + memory_mb > limit:
            # An InsufficientResourcesFault; its sizes are in bytes.
            free_mb = int(max(limit - others, 0))
            raise vim.fault.InsufficientHostMemoryCapacityFault(
                host=self.ref, unreserved=free_mb * MB, requested=memory_mb * MB,
                msg=f"Insufficient memory resources on host {self.name}: "
                f"{memory_mb} MB requested, {free_mb} MB available")
        # CPU admission is by reservation, as vSphere does: vCPUs themselves
        # may be overcommitted freely.
        if reserved + vm.cpu_reservation_mhz() > self.cpu_capacity_mhz():
            raise vim.fault.InsufficientHostCpuCapacityFault(
                host=self.ref, unreserved=max(self.cpu_capacity_mhz() - reserved, 0),
                requested=vm.cpu_reservation_mhz(),
                msg=f"Insufficient CPU resources on host {self.name}: "
                f"{vm.cpu_reservation_mhz()} MHz reservation requested, "
                f"{self.cpu_capacity_mhz() - reserved} MHz unreserved")
        # vSphere HA admission control, cluster-wide.
        ha_admission.check(self.cluster, vm, self, memory_mb)

    def set_connection_state(self, state) -> None:
        with self.sim.registry.lock:
            if state != self.connection_state:
                self.sim.events.post(vim.event.HostConnectedEvent if state == CONNECTED
                                     else vim.event.HostDisconnectedEvent, about=self)
            self.connection_state = state
            # The VMs' runtime.connectionState follows their host's.
            self.sim.registry.touch(self, *self.vms)

    # -- properties ---------------------------------------------------------------

    def _get_runtime(self):
        return vim.host.RuntimeInfo(
            connectionState=self.connection_state,
            powerState=vim.HostSystem.PowerState.poweredOn,
            inMaintenanceMode=self.in_maintenance,
            inQuarantineMode=False,
            standbyMode="none",
            bootTime=self.boot_time,
        )

    def _hardware_summary(self):
        return vim.host.Summary.HardwareSummary(
            vendor=self.vendor, model=self.model, uuid=self.uuid,
            memorySize=self.memory_mb * MB, cpuModel=self.cpu_model, cpuMhz=self.mhz,
            numCpuPkgs=self.sockets, numCpuCores=self.cores, numCpuThreads=self.threads,
            numNics=4, numHBAs=2,
        )

    def _quick_stats(self):
        return vim.host.Summary.QuickStats(
            overallCpuUsage=self.used_cpu_mhz() if self.connection_state == CONNECTED else 0,
            overallMemoryUsage=self.used_memory_mb() if self.connection_state == CONNECTED else 0,
            distributedCpuFairness=0, distributedMemoryFairness=0,
            uptime=int(time.monotonic() - self._boot_monotonic),
        )

    def _product(self):
        version = self.esxi_version
        return vim.AboutInfo(
            name="VMware ESXi", fullName=f"VMware ESXi {version} build-20513097",
            vendor="VMware, Inc.", version=version, build="20513097", osType="vmnix-x86",
            productLineId="embeddedEsx", apiType="HostAgent",
            apiVersion=".".join((version.split(".") + ["0", "0"])[:3]) + ".0",
        )

    def _get_summary(self):
        return vim.host.Summary(
            host=self.ref,
            hardware=self._hardware_summary(),
            runtime=self._get_runtime(),
            quickStats=self._quick_stats(),
            overallStatus=vim.ManagedEntity.Status.green,
            rebootRequired=False,
            managementServerIp="127.0.0.1",
            config=vim.host.Summary.ConfigSummary(
                name=self.name, port=443, product=self._product(), vmotionEnabled=True,
                faultToleranceEnabled=False),
        )

    def _get_hardware(self):
        per_pkg = max(self.threads // max(self.sockets, 1), 1)
        return vim.host.HardwareInfo(
            systemInfo=vim.host.SystemInfo(vendor=self.vendor, model=self.model, uuid=self.uuid),
            cpuInfo=vim.host.CpuInfo(numCpuPackages=self.sockets, numCpuCores=self.cores,
                                     numCpuThreads=self.threads, hz=self.mhz * 1000 * 1000),
            memorySize=self.memory_mb * MB,
            cpuPkg=[vim.host.CpuPackage(index=i, vendor="intel", hz=self.mhz * 1000 * 1000,
                                        busHz=100 * 1000 * 1000, description=self.cpu_model,
                                        threadId=list(range(i * per_pkg, (i + 1) * per_pkg)))
                    for i in range(self.sockets)],
        )

    def feature_capabilities(self):
        return [vim.host.FeatureCapability(key=CPU_FEATURE_KEYS.get(f, "cpuid." + f.upper()),
                                           featureName=f.upper(), value="1")
                for f in self.cpu_features]

    def _get_config(self):
        return vim.host.ConfigInfo(host=self.ref, product=self._product(),
                                   featureCapability=self.feature_capabilities())

    def _get_vm(self):
        return [vm.ref for vm in self.vms]

    def _get_datastore(self):
        return [ds.ref for ds in self.datastores]

    def _get_network(self):
        return [n.ref for n in self.networks]

    def _get_datastoreBrowser(self):  # noqa: N802
        return self.datastores[0].browser.ref if self.datastores else None

    def _get_configManager(self):  # noqa: N802
        return vim.host.ConfigManager(advancedOption=self.advanced_options.ref)

    def _get_capability(self):
        return vim.host.Capability(maxRunningVMs=1024, maxSupportedVcpus=768,
                                   vmotionSupported=True, maintenanceModeSupported=True,
                                   rebootSupported=True, shutdownSupported=True)

    # -- removal ----------------------------------------------------------------------

    def destroy(self) -> None:
        """Remove the host from the inventory (Destroy_Task), as vCenter allows it: in
        maintenance mode or disconnected; the VMs registered on it go with it."""
        if self.connection_state == CONNECTED and not self.in_maintenance:
            raise vim.fault.InvalidState(
                msg=f"Host {self.name} must be in maintenance mode or disconnected to be "
                "removed")
        if any(vm.powered_on for vm in self.vms):
            raise vim.fault.InvalidState(msg=f"Host {self.name} still runs virtual machines")
        registry = self.sim.registry
        for vm in list(self.vms):
            vm.unregister()
        cluster = self.cluster
        registry.touch(self, *self.datastores, *self.networks)
        cluster.hosts.remove(self)
        for ds in self.datastores:
            ds.hosts.remove(self)
        for net in self.networks:
            if self in net.hosts:
                net.hosts.remove(self)
        cluster.forget_host(self)
        registry.remove(self.moid)

    # -- maintenance ----------------------------------------------------------------

    def EnterMaintenanceMode_Task(self, ctx: CallContext, timeout: int = 0,  # noqa: N802
                                  evacuatePoweredOffVms: bool | None = None,  # noqa: N803
                                  maintenanceSpec=None):  # noqa: N803
        registry = self.sim.registry
        with registry.lock:
            if self.connection_state != CONNECTED:
                raise vim.fault.InvalidState(msg=f"Host {self.name} is not connected")

        def work(task):
            if self.in_maintenance:
                raise vim.fault.InvalidState(
                    msg=f"Host {self.name} is already in maintenance mode")
            self.entering_maintenance = True
            registry.touch(self)
            self.sim.events.post(vim.event.EnteringMaintenanceModeEvent, about=self)
            # timeout <= 0 means "no timeout" on vCenter; the simulator still
            # bounds the wait by its maintenance_timeout.
            wait = float(timeout) if timeout and timeout > 0 else self.sim.maintenance_timeout
            deadline = time.monotonic() + wait
            try:
                while True:
                    task.check_cancelled()
                    if self.connection_state != CONNECTED:
                        raise vim.fault.InvalidHostConnectionState(
                            host=self.ref, msg=f"Host {self.name} lost its connection")
                    cluster = self.cluster
                    running = [vm for vm in self.vms if vm.powered_on]
                    # evacuatePoweredOffVms: without DRS, powered-off VMs must be
                    # moved away by the client too; with DRS, vCenter moves them
                    # and one it cannot place may stay (as documented).
                    parked = [vm for vm in self.vms if not vm.powered_on] \
                        if evacuatePoweredOffVms else []
                    if cluster.drs_enabled and cluster.drs_automated:
                        # Fully automated vCenter DRS moves the VMs itself;
                        # otherwise somebody else (our DRS) must.
                        if cluster.vcenter_drs_evacuate(self, running + parked):
                            continue
                        blocking = running
                    else:
                        blocking = running + parked
                    if not blocking:
                        break
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise vim.fault.Timedout(
                            msg=f"Host {self.name} still has {len(blocking)} virtual "
                            "machine(s) to evacuate; they must be migrated or powered off "
                            "first")
                    registry.changed.wait(min(remaining, 0.5))
                self.in_maintenance = True
                self.sim.events.post(vim.event.EnteredMaintenanceModeEvent, about=self)
            finally:
                self.entering_maintenance = False
                registry.touch(self)
            return None

        return self.sim.tasks.start(ctx, self, "EnterMaintenanceMode_Task", work,
                                    pass_task=True, waits=True)

    def ExitMaintenanceMode_Task(self, ctx: CallContext, timeout: int = 0):  # noqa: N802
        def work():
            if not self.in_maintenance:
                raise vim.fault.InvalidState(msg=f"Host {self.name} is not in maintenance mode")
            self.in_maintenance = False
            self.sim.registry.touch(self)
            self.sim.events.post(vim.event.ExitMaintenanceModeEvent, about=self)

        return self.sim.tasks.start(ctx, self, "ExitMaintenanceMode_Task", work)

    def DisconnectHost_Task(self, ctx: CallContext):  # noqa: N802
        def work():
            self.set_connection_state(vim.HostSystem.ConnectionState.disconnected)

        return self.sim.tasks.start(ctx, self, "DisconnectHost_Task", work)

    def ReconnectHost_Task(self, ctx: CallContext, cnxSpec=None, reconnectSpec=None):  # noqa: N802,N803
        def work():
            self.set_connection_state(CONNECTED)

        return self.sim.tasks.start(ctx, self, "ReconnectHost_Task", work)

    # -- boot time (runtime.bootTime, summary.quickStats.uptime) -------------------------

    def booted_at(self, when: datetime.datetime) -> None:
        """Pretend the host booted at ``when``: bootTime and uptime both follow."""
        if when.tzinfo is None:
            raise ValueError("boot time must be timezone-aware")
        with self.sim.registry.lock:
            ago = (datetime.datetime.now(datetime.timezone.utc) - when).total_seconds()
            self.boot_time = when
            self._boot_monotonic = time.monotonic() - max(ago, 0.0)
            self.sim.registry.touch(self)
