"""Read a cluster's state from vCenter: where the clusters are, and what each holds.

A cluster's state costs a constant number of round trips: one
RetrievePropertiesEx through a (cached) ContainerView over the cluster,
traversing to the hosts' datastores, networks and running tasks in the same
call; further pages only for very large clusters.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.suds_values import items

LOG = logging.getLogger(__name__)
MB = 1024 * 1024
#: TaskInfo.descriptionId of a host entering maintenance mode.
ENTER_MAINTENANCE = "HostSystem.enterMaintenanceMode"

HOST_PROPS = ["name", "summary.hardware", "summary.quickStats", "runtime.connectionState",
              "runtime.inMaintenanceMode", "config.featureCapability", "datastore", "network",
              "recentTask"]
VM_PROPS = ["name", "config.instanceUuid", "config.hardware.numCPU",
            "config.hardware.memoryMB", "config.managedBy", "runtime.host",
            "runtime.powerState", "runtime.connectionState", "summary.quickStats.overallCpuUsage",
            "summary.quickStats.guestMemoryUsage", "datastore"]
CLUSTER_PROPS = ["configurationEx"]
DS_PROPS = ["summary.name", "summary.capacity", "summary.freeSpace", "summary.accessible",
            "summary.type"]
NET_PROPS = ["name"]
PG_PROPS = ["name", "key", "config.distributedVirtualSwitch"]
TASK_PROPS = ["info.descriptionId", "info.state", "info.entity"]


def moref_value(ref: Any) -> str:
    return vim_util.get_moref_value(ref)


@dataclasses.dataclass(frozen=True)
class EsxiHostState:
    moref: str
    name: str
    connected: bool
    in_maintenance: bool
    entering_maintenance: bool
    cores: int
    threads: int
    mhz: int
    memory_mb: int
    cpu_used_mhz: int
    memory_used_mb: int
    cpu_features: frozenset[str]
    datastores: tuple[str, ...]
    networks: tuple[str, ...]

    @property
    def usable(self) -> bool:
        """Can take instances: connected and not in or entering maintenance."""
        return self.connected and not self.in_maintenance and not self.entering_maintenance


@dataclasses.dataclass(frozen=True)
class DatastoreState:
    moref: str
    name: str
    capacity_bytes: int
    free_bytes: int
    accessible: bool
    type: str


@dataclasses.dataclass(frozen=True)
class NetworkState:
    moref: str
    name: str
    #: For distributed port groups: (switch moref, portgroup key).
    portgroup_key: str | None = None
    switch: str | None = None
    #: The switch's managed object type as vCenter names it: VMware's own
    #: switches are VmwareDistributedVirtualSwitch, others (and vcsim's) not.
    switch_type: str = "VmwareDistributedVirtualSwitch"


@dataclasses.dataclass(frozen=True)
class VmState:
    moref: str
    name: str
    instance_uuid: str | None
    host: str | None
    power_state: str
    connected: bool
    vcpus: int
    memory_mb: int
    cpu_usage_mhz: int
    memory_active_mb: int
    managed_by_nova: bool
    datastores: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RuleState:
    """A DRS rule of the cluster as vCenter reports it."""

    key: int
    name: str
    #: "affinity", "anti-affinity" or "vm-host".
    kind: str
    mandatory: bool
    enabled: bool
    vms: tuple[str, ...] = ()
    vm_group: str | None = None
    affine_host_group: str | None = None
    anti_affine_host_group: str | None = None


@dataclasses.dataclass(frozen=True)
class GroupState:
    """A DRS VM group or host group (``kind`` "vm" or "host") with member morefs."""

    name: str
    kind: str
    members: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ClusterRef:
    """Where a cluster is: found once, at start."""

    moref: str
    name: str
    datacenter: str
    datacenter_name: str
    resource_pool: str
    vm_folder: str
    #: The datacenter's inventory path: the folders holding it and its name,
    #: "/"-separated ("emea/dc1"); what vCenter's datastore HTTP interface
    #: takes as dcPath. vCenter writes a "/" within a name as "%2f".
    datacenter_path: str = ""

    def __post_init__(self) -> None:
        if not self.datacenter_path:
            object.__setattr__(self, "datacenter_path", self.datacenter_name)

    @property
    def path(self) -> str:
        """``<datacenter path>/<cluster name>``: unique in a vCenter, unlike the name."""
        return f"{self.datacenter_path}/{self.name}"

    def ref(self):
        return vim_util.get_moref(self.moref, "ClusterComputeResource")


@dataclasses.dataclass(frozen=True)
class ClusterState:
    ref: ClusterRef
    hosts: tuple[EsxiHostState, ...]
    vms: tuple[VmState, ...]
    datastores: tuple[DatastoreState, ...]
    networks: tuple[NetworkState, ...]
    rules: tuple[RuleState, ...] = ()
    groups: tuple[GroupState, ...] = ()
    #: vCenter's own DRS is enabled on the cluster.
    vcenter_drs: bool = False

    def usable_hosts(self) -> list[EsxiHostState]:
        return [h for h in self.hosts if h.usable]

    def host(self, moref: str) -> EsxiHostState | None:
        return next((h for h in self.hosts if h.moref == moref), None)

    def datastore(self, moref: str) -> DatastoreState | None:
        return next((d for d in self.datastores if d.moref == moref), None)


def _props(obj_content) -> dict[str, Any]:
    return {p.name: p.val for p in getattr(obj_content, "propSet", None) or []}


def retrieve(session: VSphereSession, spec, page_size: int) -> Iterator[Any]:
    """RetrievePropertiesEx with paging, yielding ObjectContent."""
    options = session.factory("RetrieveOptions")
    options.maxObjects = page_size
    pc = session.content.propertyCollector
    result = session.invoke("RetrievePropertiesEx", pc, specSet=[spec], options=options)
    while result:
        yield from getattr(result, "objects", None) or []
        token = getattr(result, "token", None)
        if not token:
            break
        result = session.invoke("ContinueRetrievePropertiesEx", pc, token=token)


def _feature_names(capabilities: Iterable) -> frozenset[str]:
    names = set()
    for cap in capabilities:
        key = getattr(cap, "key", "") or ""
        if key.startswith("cpuid.") and str(getattr(cap, "value", "")) not in ("0", ""):
            names.add(key[len("cpuid."):].upper())
    return frozenset(names)


_RULE_KINDS = {"ClusterAffinityRuleSpec": "affinity",
               "ClusterAntiAffinityRuleSpec": "anti-affinity",
               "ClusterVmHostRuleInfo": "vm-host"}


def parse_rules(config) -> tuple[RuleState, ...]:
    out = []
    for rule in getattr(config, "rule", None) or []:
        kind = _RULE_KINDS.get(type(rule).__name__)
        if kind is None:  # dependency rules and the like: not placement constraints
            continue
        out.append(RuleState(
            key=int(rule.key), name=str(rule.name), kind=kind,
            mandatory=bool(getattr(rule, "mandatory", False)),
            enabled=bool(getattr(rule, "enabled", True)),
            vms=tuple(moref_value(v) for v in items(getattr(rule, "vm", None))),
            vm_group=getattr(rule, "vmGroupName", None),
            affine_host_group=getattr(rule, "affineHostGroupName", None),
            anti_affine_host_group=getattr(rule, "antiAffineHostGroupName", None)))
    return tuple(out)


def parse_groups(config) -> tuple[GroupState, ...]:
    out = []
    for group in getattr(config, "group", None) or []:
        kind = {"ClusterVmGroup": "vm", "ClusterHostGroup": "host"}.get(type(group).__name__)
        if kind is None:
            continue
        members = getattr(group, "vm" if kind == "vm" else "host", None)
        out.append(GroupState(name=str(group.name), kind=kind,
                              members=tuple(moref_value(m) for m in items(members))))
    return tuple(out)


class ClusterStateReader:
    """Finds clusters and reads their state, caching ContainerViews."""

    def __init__(self, session: VSphereSession, page_size: int = 100) -> None:
        self.session = session
        self.page_size = page_size
        self._views: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------------

    def find_clusters(self) -> list[ClusterRef]:
        """Every cluster of the vCenter with its datacenter, root pool and VM folder."""
        s = self.session
        factory = s.vim.client.factory
        view = s.invoke("CreateContainerView", s.content.viewManager,
                        container=s.content.rootFolder,
                        type=["Datacenter", "ClusterComputeResource", "Folder"], recursive=True)
        try:
            traverse = vim_util.build_traversal_spec(factory, "view", "ContainerView", "view",
                                                     False, [])
            spec = vim_util.build_property_filter_spec(
                factory,
                [vim_util.build_property_spec(factory, "Datacenter",
                                              ["name", "vmFolder", "parent"]),
                 vim_util.build_property_spec(factory, "ClusterComputeResource",
                                              ["name", "parent", "resourcePool"]),
                 vim_util.build_property_spec(factory, "Folder", ["name", "parent"])],
                [vim_util.build_object_spec(factory, view, [traverse])])
            parents: dict[str, str] = {}
            folder_names: dict[str, str] = {}
            datacenters: dict[str, dict] = {}
            clusters: list[tuple[str, dict]] = []
            for obj in retrieve(s, spec, self.page_size):
                ref, props = moref_value(obj.obj), _props(obj)
                kind = vim_util.get_moref_type(obj.obj)
                if "parent" in props:
                    parents[ref] = moref_value(props["parent"])
                if kind == "Datacenter":
                    datacenters[ref] = props
                elif kind == "ClusterComputeResource":
                    clusters.append((ref, props))
                elif kind == "Folder":
                    folder_names[ref] = props.get("name", ref)
        finally:
            s.invoke("DestroyView", view)
        root = moref_value(s.content.rootFolder)

        def datacenter_path(dc_ref: str) -> str:
            names = [datacenters[dc_ref]["name"]]
            node = parents.get(dc_ref)
            while node is not None and node != root:  # the root folder is nameless in paths
                names.append(folder_names.get(node, node))
                node = parents.get(node)
            return "/".join(reversed(names))

        found = []
        for ref, props in clusters:
            node = parents.get(ref)
            while node is not None and node not in datacenters:
                node = parents.get(node)
            if node is None:
                continue
            dc = datacenters[node]
            found.append(ClusterRef(moref=ref, name=props["name"], datacenter=node,
                                    datacenter_name=dc["name"],
                                    resource_pool=moref_value(props["resourcePool"]),
                                    vm_folder=moref_value(dc["vmFolder"]),
                                    datacenter_path=datacenter_path(node)))
        return found

    # -- cluster state -----------------------------------------------------------------

    def _view(self, cluster: ClusterRef, refresh: bool = False):
        with self._lock:
            view = self._views.get(cluster.moref)
            if view is None or refresh:
                s = self.session
                view = s.invoke("CreateContainerView", s.content.viewManager,
                                container=cluster.ref(),
                                type=["HostSystem", "VirtualMachine"], recursive=True)
                self._views[cluster.moref] = view
            return view

    def _state_spec(self, cluster: ClusterRef, view):
        factory = self.session.vim.client.factory
        b = vim_util
        host_ds = b.build_traversal_spec(factory, "hostDs", "HostSystem", "datastore", False, [])
        host_net = b.build_traversal_spec(factory, "hostNet", "HostSystem", "network", False, [])
        host_task = b.build_traversal_spec(factory, "hostTask", "HostSystem", "recentTask",
                                           False, [])
        traverse = b.build_traversal_spec(factory, "view", "ContainerView", "view", False,
                                          [host_ds, host_net, host_task])
        return b.build_property_filter_spec(
            factory,
            [b.build_property_spec(factory, "ClusterComputeResource", CLUSTER_PROPS),
             b.build_property_spec(factory, "HostSystem", HOST_PROPS),
             b.build_property_spec(factory, "VirtualMachine", VM_PROPS),
             b.build_property_spec(factory, "Datastore", DS_PROPS),
             b.build_property_spec(factory, "DistributedVirtualPortgroup", PG_PROPS),
             b.build_property_spec(factory, "Network", NET_PROPS),
             b.build_property_spec(factory, "Task", TASK_PROPS)],
            [b.build_object_spec(factory, view, [traverse]),
             b.build_object_spec(factory, cluster.ref(), [])])

    def cluster_state(self, cluster: ClusterRef) -> ClusterState:
        """One consistent read of the cluster (re-creating a view lost to re-login)."""
        try:
            objects = list(retrieve(self.session, self._state_spec(cluster, self._view(cluster)),
                                    self.page_size))
        except vexc.ManagedObjectNotFoundException:
            # Views belong to a session; after a re-login the old one is gone.
            objects = list(retrieve(self.session,
                                    self._state_spec(cluster, self._view(cluster, refresh=True)),
                                    self.page_size))
        return self._build(cluster, objects)

    @staticmethod
    def _build(cluster: ClusterRef, objects: list) -> ClusterState:
        hosts_raw, vms, datastores, networks = [], [], [], []
        rules: tuple[RuleState, ...] = ()
        groups: tuple[GroupState, ...] = ()
        vcenter_drs = False
        entering: set[str] = set()
        for obj in objects:
            kind = vim_util.get_moref_type(obj.obj)
            ref, props = moref_value(obj.obj), _props(obj)
            if kind == "ClusterComputeResource":
                config = props.get("configurationEx")
                rules, groups = parse_rules(config), parse_groups(config)
                drs = getattr(config, "drsConfig", None)
                vcenter_drs = bool(getattr(drs, "enabled", False))
            elif kind == "HostSystem":
                hosts_raw.append((ref, props))
            elif kind == "VirtualMachine":
                managed = props.get("config.managedBy")
                host = props.get("runtime.host")
                vms.append(VmState(
                    moref=ref, name=props.get("name", ref),
                    instance_uuid=props.get("config.instanceUuid"),
                    host=moref_value(host) if host is not None else None,
                    power_state=str(props.get("runtime.powerState", "poweredOff")),
                    connected=str(props.get("runtime.connectionState", "connected"))
                    == "connected",
                    vcpus=int(props.get("config.hardware.numCPU", 0) or 0),
                    memory_mb=int(props.get("config.hardware.memoryMB", 0) or 0),
                    cpu_usage_mhz=int(props.get("summary.quickStats.overallCpuUsage", 0) or 0),
                    memory_active_mb=int(props.get("summary.quickStats.guestMemoryUsage", 0)
                                         or 0),
                    managed_by_nova=managed is not None
                    and getattr(managed, "extensionKey", None) == NOVA_EXTENSION_KEY,
                    datastores=tuple(moref_value(d) for d in items(props.get("datastore")))))
            elif kind == "Datastore":
                datastores.append(DatastoreState(
                    moref=ref, name=props.get("summary.name", ref),
                    capacity_bytes=int(props.get("summary.capacity", 0) or 0),
                    free_bytes=int(props.get("summary.freeSpace", 0) or 0),
                    accessible=bool(props.get("summary.accessible", False)),
                    type=str(props.get("summary.type", ""))))
            elif kind == "DistributedVirtualPortgroup":
                switch = props.get("config.distributedVirtualSwitch")
                networks.append(NetworkState(
                    moref=ref, name=props.get("name", ref), portgroup_key=props.get("key"),
                    switch=moref_value(switch) if switch is not None else None,
                    switch_type=vim_util.get_moref_type(switch) if switch is not None
                    else NetworkState.switch_type))
            elif kind == "Network":
                networks.append(NetworkState(moref=ref, name=props.get("name", ref)))
            elif kind == "Task":
                if props.get("info.descriptionId") == ENTER_MAINTENANCE and \
                        str(props.get("info.state")) in ("queued", "running"):
                    entity = props.get("info.entity")
                    if entity is not None:
                        entering.add(moref_value(entity))
        hosts = []
        for ref, props in hosts_raw:
            hw = props.get("summary.hardware")
            stats = props.get("summary.quickStats")
            hosts.append(EsxiHostState(
                moref=ref, name=props.get("name", ref),
                connected=str(props.get("runtime.connectionState")) == "connected",
                in_maintenance=bool(props.get("runtime.inMaintenanceMode", False)),
                entering_maintenance=ref in entering,
                cores=int(getattr(hw, "numCpuCores", 0) or 0),
                threads=int(getattr(hw, "numCpuThreads", 0) or 0),
                mhz=int(getattr(hw, "cpuMhz", 0) or 0),
                memory_mb=int(getattr(hw, "memorySize", 0) or 0) // MB,
                cpu_used_mhz=int(getattr(stats, "overallCpuUsage", 0) or 0),
                memory_used_mb=int(getattr(stats, "overallMemoryUsage", 0) or 0),
                cpu_features=_feature_names(items(props.get("config.featureCapability"))),
                datastores=tuple(moref_value(d) for d in items(props.get("datastore"))),
                networks=tuple(moref_value(n) for n in items(props.get("network")))))
        hosts.sort(key=lambda h: h.name)
        return ClusterState(ref=cluster, hosts=tuple(hosts), vms=tuple(vms),
                            datastores=tuple(sorted(datastores, key=lambda d: d.name)),
                            networks=tuple(networks), rules=rules, groups=groups,
                            vcenter_drs=vcenter_drs)


#: config.managedBy.extensionKey of instances this driver created.
NOVA_EXTENSION_KEY = "org.openstack.compute"
