"""Read a cluster's state from vCenter: where the clusters are, and what each holds.

A full read of a cluster costs a constant number of round trips: one
RetrievePropertiesEx through a (cached) ContainerView over the cluster,
traversing to the hosts' datastores, networks and running tasks in the same
call, in pages of ``maximum_objects``; sent and decoded by pyVmomi
(:mod:`vim_client`), several times faster than suds for large clusters.

The same property values, arriving from vCenter's update stream, keep the
incremental cache of :mod:`cluster_cache` current. Both feed
:class:`ClusterContents`, which turns property values into states, so a
cached state and a fresh read of the same vCenter are equal.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from oslo_log import log as logging
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util
from pyVmomi import vim, vmodl

from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.suds_values import items
from nova_vsphere_driver.vsphere.vim_client import VimClient

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
#: An opaque network's summary is an OpaqueNetworkSummary (its id and type).
OPAQUE_PROPS = ["name", "summary"]
TASK_PROPS = ["info.descriptionId", "info.state", "info.entity"]


def moref_value(ref: Any) -> str:
    """The moref id of a suds or pyVmomi managed object reference."""
    moid = getattr(ref, "_moId", None)
    return moid if moid is not None else vim_util.get_moref_value(ref)


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
    #: A dedicated failover host of vSphere HA: kept free, never a target.
    failover: bool = False

    @property
    def usable(self) -> bool:
        """Can take instances: connected, not in or entering maintenance, and not a
        dedicated HA failover host."""
        return (self.connected and not self.in_maintenance and not self.entering_maintenance
                and not self.failover)


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
    """A network of the cluster's hosts: a standard port group, a distributed port group
    (``portgroup_key`` set) or an NSX opaque network (``opaque_id`` set)."""

    moref: str
    name: str
    #: For distributed port groups: the port group's key and its switch, whose
    #: reference keeps the type vCenter gave it (``VmwareDistributedVirtualSwitch``,
    #: or ``DistributedVirtualSwitch`` for others' switches, and vcsim's).
    portgroup_key: str | None = None
    switch: str | None = None
    switch_type: str = "VmwareDistributedVirtualSwitch"
    #: For opaque networks: the id and type NSX gave them.
    opaque_id: str | None = None
    opaque_type: str | None = None

    @property
    def kind(self) -> str:
        """"portgroup" (distributed), "opaque" (NSX) or "network" (standard)."""
        if self.portgroup_key is not None:
            return "portgroup"
        return "opaque" if self.opaque_id is not None else "network"


@dataclasses.dataclass(frozen=True, slots=True)
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
class HaAdmission:
    """vSphere HA admission control of a cluster: the capacity it holds back.

    ``policy`` is "failover_hosts" (the ``failover_level`` largest hosts'
    capacity), "percentage" (``cpu_percent`` and ``memory_percent`` of the
    cluster's) or "dedicated" (``failover_hosts``, which take no VM).
    """

    policy: str
    failover_level: int = 0
    cpu_percent: int = 0
    memory_percent: int = 0
    failover_hosts: tuple[str, ...] = ()


def parse_ha(config) -> HaAdmission | None:
    """The HA admission control a cluster's configurationEx enforces, or None."""
    das = getattr(config, "dasConfig", None)
    if das is None or not getattr(das, "enabled", False) or \
            not getattr(das, "admissionControlEnabled", False):
        return None
    policy = getattr(das, "admissionControlPolicy", None)
    kind = _type_name(policy) if policy is not None else ""
    level = int(getattr(policy, "failoverLevel", None) or getattr(das, "failoverLevel", None)
                or 1)
    if kind == "ClusterFailoverHostAdmissionControlPolicy":
        return HaAdmission("dedicated", failover_level=level, failover_hosts=tuple(
            moref_value(h) for h in items(getattr(policy, "failoverHosts", None))))
    if kind == "ClusterFailoverResourcesAdmissionControlPolicy" and \
            not getattr(policy, "autoComputePercentages", False):
        return HaAdmission(
            "percentage",
            cpu_percent=int(getattr(policy, "cpuFailoverResourcesPercent", 0) or 0),
            memory_percent=int(getattr(policy, "memoryFailoverResourcesPercent", 0) or 0))
    if kind in ("ClusterFailoverLevelAdmissionControlPolicy",
                "ClusterFailoverResourcesAdmissionControlPolicy"):
        return HaAdmission("failover_hosts", failover_level=level)
    return None  # another policy (none, slots of a newer vSphere): nothing held back here


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
    #: Its automation level (drsConfig.defaultVmBehavior: "manual",
    #: "partiallyAutomated", "fullyAutomated"); "" when DRS is off.
    vcenter_drs_behavior: str = ""
    #: vSphere HA admission control (None: nothing held back).
    ha: HaAdmission | None = None

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


def _type_name(value: Any) -> str:
    """The vim25 type name of a suds or pyVmomi data object."""
    return getattr(type(value), "_wsdlName", None) or type(value).__name__


_RULE_KINDS = {"ClusterAffinityRuleSpec": "affinity",
               "ClusterAntiAffinityRuleSpec": "anti-affinity",
               "ClusterVmHostRuleInfo": "vm-host"}


def parse_rules(config) -> tuple[RuleState, ...]:
    out = []
    for rule in getattr(config, "rule", None) or []:
        kind = _RULE_KINDS.get(_type_name(rule))
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
        kind = {"ClusterVmGroup": "vm", "ClusterHostGroup": "host"}.get(_type_name(group))
        if kind is None:
            continue
        members = getattr(group, "vm" if kind == "vm" else "host", None)
        out.append(GroupState(name=str(group.name), kind=kind,
                              members=tuple(moref_value(m) for m in items(members))))
    return tuple(out)


# -- property values -> states -------------------------------------------------------------
#
# Each watched property maps to the state fields it sets: ``convert(value,
# moid)`` returns them, and with ``value`` None (a property unset or removed)
# the fields' defaults. Converters see pyVmomi values.

def _intern(value: Any) -> str:
    # Hosts, datastores, power states repeat across thousands of VMs: one copy each.
    return sys.intern(str(value))


def _moids(value: Any) -> tuple[str, ...]:
    return tuple(_intern(moref_value(v)) for v in items(value))


def _int(value: Any) -> int:
    return int(value or 0)


Converter = Callable[[Any, str], dict[str, Any]]


def _field(name: str, convert: Callable[[Any], Any], default: Any = None) -> Converter:
    def one(value: Any, moid: str) -> dict[str, Any]:
        if value is None:
            return {name: moid if default is _MOID else default}
        return {name: convert(value)}
    return one


#: Default meaning "the object's own moref" (a nameless object shows its moref).
_MOID = object()

_VM_FIELDS: dict[str, Converter] = {
    "name": _field("name", str, _MOID),
    "config.instanceUuid": _field("instance_uuid", str),
    "config.hardware.numCPU": _field("vcpus", int, 0),
    "config.hardware.memoryMB": _field("memory_mb", int, 0),
    "config.managedBy": _field(
        "managed_by_nova",
        lambda v: getattr(v, "extensionKey", None) == NOVA_EXTENSION_KEY, False),
    "runtime.host": _field("host", lambda v: _intern(moref_value(v))),
    "runtime.powerState": _field("power_state", _intern, "poweredOff"),
    "runtime.connectionState": _field("connected", lambda v: str(v) == "connected", True),
    "summary.quickStats.overallCpuUsage": _field("cpu_usage_mhz", _int, 0),
    "summary.quickStats.guestMemoryUsage": _field("memory_active_mb", _int, 0),
    "datastore": _field("datastores", _moids, ()),
}


def _hardware(value: Any, moid: str) -> dict[str, Any]:
    return {"cores": _int(getattr(value, "numCpuCores", 0)),
            "threads": _int(getattr(value, "numCpuThreads", 0)),
            "mhz": _int(getattr(value, "cpuMhz", 0)),
            "memory_mb": _int(getattr(value, "memorySize", 0)) // MB}


def _host_stats(value: Any, moid: str) -> dict[str, Any]:
    return {"cpu_used_mhz": _int(getattr(value, "overallCpuUsage", 0)),
            "memory_used_mb": _int(getattr(value, "overallMemoryUsage", 0))}


_HOST_FIELDS: dict[str, Converter] = {
    "name": _field("name", str, _MOID),
    "summary.hardware": _hardware,
    "summary.quickStats": _host_stats,
    "runtime.connectionState": _field("connected", lambda v: str(v) == "connected", False),
    "runtime.inMaintenanceMode": _field("in_maintenance", bool, False),
    "config.featureCapability": _field("cpu_features", lambda v: _feature_names(items(v)),
                                       frozenset()),
    "datastore": _field("datastores", _moids, ()),
    "network": _field("networks", _moids, ()),
}

_DS_FIELDS: dict[str, Converter] = {
    "summary.name": _field("name", str, _MOID),
    "summary.capacity": _field("capacity_bytes", _int, 0),
    "summary.freeSpace": _field("free_bytes", _int, 0),
    "summary.accessible": _field("accessible", bool, False),
    "summary.type": _field("type", str, ""),
}

_NET_FIELDS: dict[str, Converter] = {
    "name": _field("name", str, _MOID),
    "key": _field("portgroup_key", str),
    "config.distributedVirtualSwitch": lambda value, moid: {
        "switch": moref_value(value) if value is not None else None,
        # VMware's own switches are VmwareDistributedVirtualSwitch, others
        # (and vcsim's) not: the type vCenter gives is kept.
        "switch_type": object_kind(value) if value is not None
        else NetworkState.switch_type},
    # Opaque networks (NSX): the id and type NSX gave them.
    "summary": lambda value, moid: {
        "opaque_id": getattr(value, "opaqueNetworkId", None),
        "opaque_type": getattr(value, "opaqueNetworkType", None)},
}


def _cluster_config(value: Any, moid: str) -> dict[str, Any]:
    drs = getattr(value, "drsConfig", None)
    enabled = bool(getattr(drs, "enabled", False))
    return {"rules": parse_rules(value), "groups": parse_groups(value),
            "vcenter_drs": enabled,
            "vcenter_drs_behavior": str(getattr(drs, "defaultVmBehavior", "") or "")
            if enabled else "",
            "ha": parse_ha(value)}


_CLUSTER_FIELDS: dict[str, Converter] = {"configurationEx": _cluster_config}


_TASK_FIELDS: dict[str, Converter] = {
    "info.descriptionId": _field("description", str),
    "info.state": _field("state", str),
    "info.entity": _field("entity", lambda v: _intern(moref_value(v))),
}


def _natural(moid: str) -> tuple[str, int, str]:
    """Moref ids in creation order: ``vm-9`` before ``vm-10``."""
    prefix, _, number = moid.rpartition("-")
    return (prefix, int(number), "") if number.isdigit() else (moid, -1, moid)


def _new(kind: type, moid: str, fields: dict[str, Converter], **known: Any):
    values = {"moref": moid, **known}
    for convert in fields.values():
        for name, value in convert(None, moid).items():
            values.setdefault(name, value)
    return kind(**values)


class ClusterContents:
    """One cluster's objects as property values arrive, and the ClusterState they make.

    A full read ``put``\\ s each object with all its properties; the update
    stream ``put``\\ s an object entering, ``update``\\ s the properties that
    changed (None: removed) and ``drop``\\ s one leaving. ``state()`` returns
    the same ClusterState object until something changes. Not thread-safe:
    its owner serialises access.
    """

    def __init__(self, ref: ClusterRef) -> None:
        self.ref = ref
        self._vms: dict[str, VmState] = {}
        self._vms_in_order = True
        self._hosts: dict[str, EsxiHostState] = {}
        self._datastores: dict[str, DatastoreState] = {}
        self._networks: dict[str, NetworkState] = {}
        #: Task moid -> {"description", "state", "entity"}.
        self._tasks: dict[str, dict[str, Any]] = {}
        self._config: dict[str, Any] = {"rules": (), "groups": (), "vcenter_drs": False,
                                        "vcenter_drs_behavior": "", "ha": None}
        self._state: ClusterState | None = None

    def __len__(self) -> int:
        return (len(self._vms) + len(self._hosts) + len(self._datastores) + len(self._networks)
                + len(self._tasks))

    def _table(self, kind: str) -> tuple[dict | None, dict[str, Converter], type | None]:
        if kind == "VirtualMachine":
            return self._vms, _VM_FIELDS, VmState
        if kind == "HostSystem":
            return self._hosts, _HOST_FIELDS, EsxiHostState
        if kind == "Datastore":
            return self._datastores, _DS_FIELDS, DatastoreState
        if kind in ("Network", "DistributedVirtualPortgroup", "OpaqueNetwork"):
            return self._networks, _NET_FIELDS, NetworkState
        if kind == "Task":
            return self._tasks, _TASK_FIELDS, None
        if kind == "ClusterComputeResource":
            return None, _CLUSTER_FIELDS, None
        return None, {}, None  # not part of the state

    def put(self, kind: str, moid: str, changes: Iterable[tuple[str, Any]]) -> None:
        """An object with these properties (any earlier copy of it replaced)."""
        self._set(kind, moid, changes, fresh=True)

    def update(self, kind: str, moid: str, changes: Iterable[tuple[str, Any]]) -> None:
        """Some properties of a known object changed (value None: unset)."""
        self._set(kind, moid, changes, fresh=False)

    def _set(self, kind: str, moid: str, changes: Iterable[tuple[str, Any]],
             fresh: bool) -> None:
        table, converters, state_type = self._table(kind)
        fields: dict[str, Any] = {}
        for path, value in changes:
            convert = converters.get(path)
            if convert is not None:
                fields.update(convert(value, moid))
        self._state = None
        if kind == "ClusterComputeResource":
            if moid == self.ref.moref:
                self._config.update(fields)
            return
        if table is None:
            return
        if kind == "Task":
            task = {} if fresh else dict(self._tasks.get(moid, {}))
            task.update(fields)
            table[moid] = task
            return
        current = None if fresh else table.get(moid)
        if current is None:
            if kind == "VirtualMachine" and self._vms and moid not in table and \
                    _natural(moid) < _natural(next(reversed(self._vms))):
                self._vms_in_order = False
            table[moid] = _new(state_type, moid, converters, **_known(state_type, fields))
        elif fields:
            table[moid] = dataclasses.replace(current, **fields)

    def drop(self, moid: str) -> None:
        """An object left the cluster (or was destroyed)."""
        for table in (self._vms, self._hosts, self._datastores, self._networks, self._tasks):
            if table.pop(moid, None) is not None:
                self._state = None
                return

    def state(self) -> ClusterState:
        if self._state is not None:
            return self._state
        if not self._vms_in_order:
            self._vms = dict(sorted(self._vms.items(), key=lambda item: _natural(item[0])))
            self._vms_in_order = True
        entering = {t.get("entity") for t in self._tasks.values()
                    if t.get("description") == ENTER_MAINTENANCE
                    and t.get("state") in ("queued", "running")}
        config = self._config
        failover = set(config["ha"].failover_hosts) if config["ha"] is not None else set()
        hosts = [dataclasses.replace(h, entering_maintenance=h.moref in entering,
                                     failover=h.moref in failover)
                 if h.moref in entering or h.moref in failover else h
                 for h in self._hosts.values()]
        self._state = ClusterState(
            ref=self.ref, hosts=tuple(sorted(hosts, key=lambda h: h.name)),
            vms=tuple(self._vms.values()),
            datastores=tuple(sorted(self._datastores.values(), key=lambda d: d.name)),
            networks=tuple(sorted(self._networks.values(), key=lambda n: _natural(n.moref))),
            rules=config["rules"], groups=config["groups"], vcenter_drs=config["vcenter_drs"],
            vcenter_drs_behavior=config["vcenter_drs_behavior"], ha=config["ha"])
        return self._state


def _known(state_type: type, fields: dict[str, Any]) -> dict[str, Any]:
    if state_type is EsxiHostState:
        return {"entering_maintenance": False, **fields}
    return fields


def object_kind(ref: Any) -> str:
    """The vim25 type name of a pyVmomi (or suds) managed object reference."""
    return getattr(type(ref), "_wsdlName", None) or vim_util.get_moref_type(ref)


PC = vmodl.query.PropertyCollector


class ClusterStateReader:
    """Finds clusters and reads their state in full, caching ContainerViews."""

    def __init__(self, session: VSphereSession, page_size: int = 1000,
                 client: VimClient | None = None) -> None:
        self.session = session
        self.page_size = page_size
        self._client = client
        self._views: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def client(self) -> VimClient:
        """The pyVmomi client on the session's login (made at first use)."""
        with self._lock:
            if self._client is None:
                self._client = VimClient(self.session)
            return self._client

    def service(self, kind: str) -> Any:
        """A service content manager (``propertyCollector``, ``viewManager``), pyVmomi-bound."""
        content = self.session.content
        name = kind[0].lower() + kind[1:]
        return self.client.managed(kind, moref_value(getattr(content, name)))

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

    def new_view(self, cluster: ClusterRef) -> Any:
        """A ContainerView of the cluster's hosts and VMs (it lives as long as the session)."""
        manager = self.service("ViewManager")
        container = self.client.managed("ClusterComputeResource", cluster.moref)
        return self.client.call(lambda: manager.CreateContainerView(
            container, [vim.HostSystem, vim.VirtualMachine], True), "CreateContainerView")

    def _view(self, cluster: ClusterRef, refresh: bool = False):
        with self._lock:
            view = self._views.get(cluster.moref)
        if view is None or refresh:
            view = self.new_view(cluster)
            with self._lock:
                self._views[cluster.moref] = view
        return view

    def state_spec(self, cluster: ClusterRef, view: Any) -> PC.FilterSpec:
        """What a cluster's state is read from: its configuration, and through the
        view its hosts and VMs, the hosts' datastores, networks and running tasks."""
        def follow(name: str, kind: type, path: str, then=()) -> PC.TraversalSpec:
            return PC.TraversalSpec(name=name, type=kind, path=path, skip=False,
                                    selectSet=list(then))

        from_hosts = [follow("hostDs", vim.HostSystem, "datastore"),
                      follow("hostNet", vim.HostSystem, "network"),
                      follow("hostTask", vim.HostSystem, "recentTask")]
        return PC.FilterSpec(
            objectSet=[
                PC.ObjectSpec(obj=view, skip=True, selectSet=[
                    follow("view", vim.view.ContainerView, "view", from_hosts)]),
                PC.ObjectSpec(obj=self.client.managed("ClusterComputeResource",
                                                      cluster.moref), skip=False)],
            propSet=[PC.PropertySpec(type=kind, pathSet=paths) for kind, paths in (
                (vim.ClusterComputeResource, CLUSTER_PROPS), (vim.HostSystem, HOST_PROPS),
                (vim.VirtualMachine, VM_PROPS), (vim.Datastore, DS_PROPS),
                (vim.dvs.DistributedVirtualPortgroup, PG_PROPS),
                (vim.OpaqueNetwork, OPAQUE_PROPS), (vim.Network, NET_PROPS),
                (vim.Task, TASK_PROPS))])

    def cluster_state(self, cluster: ClusterRef) -> ClusterState:
        """One consistent read of the cluster (re-creating a view lost to re-login)."""
        try:
            contents = self._read(cluster, self._view(cluster))
        except vexc.ManagedObjectNotFoundException:
            # Views belong to a session; after a re-login the old one is gone.
            contents = self._read(cluster, self._view(cluster, refresh=True))
        return contents.state()

    def _read(self, cluster: ClusterRef, view: Any) -> ClusterContents:
        collector = self.service("PropertyCollector")
        spec = self.state_spec(cluster, view)
        contents = ClusterContents(cluster)
        options = PC.RetrieveOptions(maxObjects=self.page_size)
        result = self.client.call(lambda: collector.RetrievePropertiesEx([spec], options),
                                  "RetrievePropertiesEx")
        while result is not None:
            for obj in result.objects:
                contents.put(object_kind(obj.obj), obj.obj._moId,
                             [(p.name, p.val) for p in obj.propSet])
            token = result.token
            if not token:
                break
            result = self.client.call(lambda t=token: collector.ContinueRetrievePropertiesEx(t),
                                      "ContinueRetrievePropertiesEx")
        return contents

#: config.managedBy.extensionKey of instances this driver created.
NOVA_EXTENSION_KEY = "org.openstack.compute"
