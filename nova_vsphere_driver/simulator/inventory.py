"""Inventories: load a simulated vCenter from YAML/JSON, and the default one.

Schema (all sizes in the units named; every key but ``name`` optional)::

    datacenters:
      - name: dc1
        folder: emea/west      # folders (under the root folder) holding it; made as needed
        datastores:            # capacity_gb, type (VMFS|NFS|vsan), hosts (default: all)
          - {name: shared-1, capacity_gb: 8192}
        networks: ["VM Network"]          # standard port groups on every host
        opaque_networks:                  # NSX logical switches (NIC backing by id)
          - {name: nsx-web, id: 5f0c..., type: nsx.LogicalSwitch}
        distributed_switches:
          - name: dvs-01
            # VmwareDistributedVirtualSwitch (default), or DistributedVirtualSwitch as
            # vCenter types a switch it does not implement (NSX N-VDS, third parties)
            type: VmwareDistributedVirtualSwitch
            portgroups:                   # static binding; ports: how many (default 8)
              - {name: br-int, vlan: 0, ports: 8}
              # an NSX segment on the switch (config.backingType nsx)
              - {name: seg-db, nsx_logical_switch_id: 9a1e..., nsx_segment_id: /infra/..}
        clusters:
          - name: cluster-a
            drs: {enabled: false, behavior: fullyAutomated}
            # vSphere HA and its admission control (simulator/ha_admission.py):
            # policy failover_hosts (failover_level: N, the N largest hosts),
            # percentage (cpu_percent, memory_percent) or dedicated (hosts: [...])
            ha: {enabled: true, admission: {policy: failover_hosts, failover_level: 1}}
            hosts:
              - {name: esx-a1, cores: 16, threads: 32, mhz: 2600, memory_mb: 262144,
                 sockets: 2, cpu_features: [avx2, aes], datastores: [local-a1],
                 esxi_version: "8.0.2"}   # says which hardware versions it creates
        vms:
          - {name: legacy-1, cluster: cluster-a, host: esx-a1, cpus: 2, memory_mb: 4096,
             disk_gb: 20, datastore: shared-1, network: VM Network, power: "on"}

A host's ``datastores`` adds to the datacenter datastores that list no
``hosts`` (those are mounted everywhere).

Storage policies (vCenter's storage policy service, SPBM) are vCenter-wide,
next to ``datacenters``; each is a tag-based policy whose compatible
datastores are listed (every datastore when ``datastores`` is left out)::

    storage_policies:
      - {name: gold, description: Replicated flash, datastores: [shared-a, shared-b]}
      - {name: bronze}
"""

from __future__ import annotations

import copy
import json
import os
from typing import TYPE_CHECKING, Any

import yaml
from pyVmomi import vim

from nova_vsphere_driver.simulator import esxi_versions, ha_admission

if TYPE_CHECKING:
    from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource
    from nova_vsphere_driver.simulator.objects.datastore import Datastore
    from nova_vsphere_driver.simulator.objects.host import HostSystem
    from nova_vsphere_driver.simulator.service import Simulator


#: Distributed switch types (``type`` of a distributed_switches entry); the first is
#: the default.
SWITCH_TYPES = ("VmwareDistributedVirtualSwitch", "DistributedVirtualSwitch")


class InventoryError(ValueError):
    """The inventory file is invalid; the message says where."""


def read_file(path: str) -> dict:
    """Read an inventory from a YAML or JSON file."""
    if not os.path.exists(path):
        raise InventoryError(f"inventory file {path!r} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InventoryError(f"inventory file {path!r} is not valid YAML/JSON: {exc}") from exc
    if not isinstance(data, dict) or "datacenters" not in data:
        raise InventoryError(f"inventory file {path!r} must be a mapping with 'datacenters'")
    return data


def default_inventory() -> dict:
    """One datacenter, two clusters of four heterogeneous hosts, shared storage."""
    features_v3 = ["sse4_1", "sse4_2", "aes", "avx", "avx2", "fma", "bmi1", "bmi2", "popcnt"]
    features_v4 = [*features_v3, "avx512f", "sha"]
    return {
        # Tag-based storage policies (SPBM): gold on the clusters' own shared
        # datastores, nfs on the datastore both clusters mount.
        "storage_policies": [
            {"name": "gold", "description": "Shared flash of each cluster",
             "datastores": ["shared-a", "shared-b"]},
            {"name": "nfs", "description": "NFS reachable from every host",
             "datastores": ["shared-all"]},
        ],
        "datacenters": [{
            "name": "dc1",
            "datastores": [
                {"name": "shared-a", "capacity_gb": 8192, "hosts": ["esx-a1", "esx-a2",
                                                                    "esx-a3", "esx-a4"]},
                {"name": "shared-b", "capacity_gb": 8192, "hosts": ["esx-b1", "esx-b2",
                                                                    "esx-b3", "esx-b4"]},
                {"name": "shared-all", "capacity_gb": 4096, "type": "NFS"},
            ],
            "networks": ["VM Network"],
            "distributed_switches": [{"name": "dvs-01", "portgroups": [
                {"name": "br-int", "vlan": 0}, {"name": "public", "vlan": 100}]}],
            "clusters": [
                {"name": "cluster-a", "hosts": [
                    {"name": "esx-a1", "cores": 16, "mhz": 2600, "memory_mb": 262144,
                     "cpu_features": features_v3},
                    {"name": "esx-a2", "cores": 16, "mhz": 2600, "memory_mb": 262144,
                     "cpu_features": features_v3},
                    {"name": "esx-a3", "cores": 24, "mhz": 2200, "memory_mb": 393216,
                     "cpu_features": features_v4},
                    {"name": "esx-a4", "cores": 8, "mhz": 3000, "memory_mb": 131072,
                     "sockets": 1, "cpu_features": features_v3},
                ]},
                {"name": "cluster-b", "hosts": [
                    {"name": "esx-b1", "cores": 32, "mhz": 2100, "memory_mb": 524288,
                     "cpu_features": features_v4},
                    {"name": "esx-b2", "cores": 32, "mhz": 2100, "memory_mb": 524288,
                     "cpu_features": features_v4},
                    {"name": "esx-b3", "cores": 12, "mhz": 2900, "memory_mb": 196608,
                     "sockets": 1, "cpu_features": features_v4},
                    {"name": "esx-b4", "cores": 12, "mhz": 2900, "memory_mb": 196608,
                     "sockets": 1, "cpu_features": features_v4},
                ]},
            ],
        }],
    }


def _require(mapping: dict, key: str, where: str) -> Any:
    if key not in mapping:
        raise InventoryError(f"{where}: missing required key {key!r}")
    return mapping[key]


def _datacenter_folder(sim: Simulator, path: str | None, where: str):
    """The folder ``path`` ("a/b") under the root folder, made as needed (vCenter
    lets datacenters live in folders)."""
    folder = sim.root_folder
    for name in (path or "").split("/") if path else []:
        if not name:
            raise InventoryError(f"{where}: folder {path!r} has an empty part")
        child = folder.child_named(name)
        if child is None:
            child = sim.factory.folder(folder, name, child_types=("Folder", "Datacenter"))
        elif not isinstance(child, type(folder)):
            raise InventoryError(f"{where}: {name!r} in folder {path!r} is no folder")
        folder = child
    return folder


def load(sim: Simulator, data: dict) -> None:
    """Build the inventory described by ``data`` into ``sim``."""
    data = copy.deepcopy(data)
    make = sim.factory
    with sim.registry.lock, sim.events.quiet():
        policies = data.get("storage_policies") or []
        for dc_i, dc_data in enumerate(data.get("datacenters") or []):
            where = f"datacenters[{dc_i}]"
            dc = make.datacenter(_datacenter_folder(sim, dc_data.get("folder"), where),
                                 _require(dc_data, "name", where))
            datastores: dict[str, tuple[Datastore, list | None]] = {}
            for ds_data in dc_data.get("datastores") or []:
                name = _require(ds_data, "name", f"{where}.datastores")
                if name in datastores:
                    raise InventoryError(f"{where}: duplicate datastore {name!r}")
                ds = make.datastore(dc, name, capacity_gb=ds_data.get("capacity_gb", 1024),
                                    ds_type=ds_data.get("type", "VMFS"))
                datastores[name] = (ds, ds_data.get("hosts"))
            networks = [make.network(dc, net_name)
                        for net_name in dc_data.get("networks") or ["VM Network"]]
            for o_i, o_data in enumerate(dc_data.get("opaque_networks") or []):
                owhere = f"{where}.opaque_networks[{o_i}]"
                networks.append(make.opaque_network(
                    dc, _require(o_data, "name", owhere), str(_require(o_data, "id", owhere)),
                    str(o_data.get("type", "nsx.LogicalSwitch"))))
            for dvs_data in dc_data.get("distributed_switches") or []:
                switch_type = dvs_data.get("type", SWITCH_TYPES[0])
                if switch_type not in SWITCH_TYPES:
                    raise InventoryError(f"{where}: switch type {switch_type!r} is not one of "
                                         f"{', '.join(SWITCH_TYPES)}")
                dvs = make.distributed_switch(dc, _require(dvs_data, "name", where),
                                              vmware=switch_type == SWITCH_TYPES[0])
                for pg_data in dvs_data.get("portgroups") or []:
                    pwhere = f"{where}.portgroups"
                    extra = {}
                    if "ports" in pg_data:
                        ports = pg_data["ports"]
                        if not isinstance(ports, int) or ports < 0:
                            raise InventoryError(f"{pwhere}: ports must be a whole number "
                                                 f">= 0, not {ports!r}")
                        extra["ports"] = ports
                    networks.append(make.portgroup(
                        dc, dvs, _require(pg_data, "name", pwhere),
                        int(pg_data.get("vlan", 0)),
                        nsx_logical_switch_id=pg_data.get("nsx_logical_switch_id"),
                        nsx_segment_id=pg_data.get("nsx_segment_id"), **extra))
            all_hosts: dict[str, HostSystem] = {}
            clusters: dict[str, ClusterComputeResource] = {}
            for cl_i, cl_data in enumerate(dc_data.get("clusters") or []):
                cwhere = f"{where}.clusters[{cl_i}]"
                drs = cl_data.get("drs") or {}
                cluster = make.cluster(dc, _require(cl_data, "name", cwhere),
                                       drs_enabled=bool(drs.get("enabled", False)),
                                       drs_behavior=drs.get("behavior", "fullyAutomated"))
                clusters[cluster.name] = cluster
                for h_i, h in enumerate(cl_data.get("hosts") or []):
                    hwhere = f"{cwhere}.hosts[{h_i}]"
                    name = _require(h, "name", hwhere)
                    if name in all_hosts:
                        raise InventoryError(f"{hwhere}: duplicate host {name!r}")
                    try:
                        host = make.host(
                            cluster, name, cores=int(_require(h, "cores", hwhere)),
                            threads=h.get("threads"), mhz=int(h.get("mhz", 2400)),
                            memory_mb=int(_require(h, "memory_mb", hwhere)),
                            sockets=int(h.get("sockets", 2)),
                            cpu_model=h.get("cpu_model", "Intel(R) Xeon(R) Gold 6338"),
                            cpu_features=h.get("cpu_features"),
                            esxi_version=str(h.get("esxi_version",
                                                   esxi_versions.DEFAULT_ESXI_VERSION)))
                    except (TypeError, ValueError) as exc:
                        raise InventoryError(f"{hwhere}: {exc}") from exc
                    if h.get("connected") is False:
                        host.connection_state = vim.HostSystem.ConnectionState.disconnected
                    host.in_maintenance = bool(h.get("maintenance", False))
                    all_hosts[name] = host
                    host.networks = list(networks)
                    for ds_name in h.get("datastores") or []:
                        if ds_name not in datastores:
                            raise InventoryError(f"{hwhere}: unknown datastore {ds_name!r}")
                        host.datastores.append(datastores[ds_name][0])
            for ds, hosts in datastores.values():
                if hosts is None:
                    targets = list(all_hosts.values())
                else:
                    unknown = [n for n in hosts if n not in all_hosts]
                    if unknown:
                        raise InventoryError(f"{where}: datastore {ds.name!r} names unknown "
                                             f"hosts {unknown}")
                    targets = [all_hosts[n] for n in hosts]
                for host in targets:
                    if ds not in host.datastores:
                        host.datastores.append(ds)
            for host in all_hosts.values():
                for ds in host.datastores:
                    if host not in ds.hosts:
                        ds.hosts.append(host)
                for net in host.networks:
                    net.hosts.append(host)
            for vm_i, vm_data in enumerate(dc_data.get("vms") or []):
                _create_vm(sim, dc, clusters, vm_data, f"{where}.vms[{vm_i}]")
            # HA last: the inventory's VMs run already, whatever it would admit now.
            for cl_i, cl_data in enumerate(dc_data.get("clusters") or []):
                cluster = clusters[cl_data["name"]]
                try:
                    cluster.das_config = ha_admission.from_inventory(
                        cl_data.get("ha"), {h.name: h for h in cluster.hosts},
                        f"{where}.clusters[{cl_i}].ha")
                except (TypeError, ValueError) as exc:
                    raise InventoryError(str(exc)) from exc
        _load_policies(sim, policies)
        sim.registry.touch()


def _load_policies(sim: Simulator, policies: list) -> None:
    names = set()
    for p_i, p_data in enumerate(policies):
        where = f"storage_policies[{p_i}]"
        if not isinstance(p_data, dict):
            raise InventoryError(f"{where}: a storage policy is a mapping with a name")
        name = str(_require(p_data, "name", where))
        if name in names:
            raise InventoryError(f"{where}: duplicate storage policy {name!r}")
        names.add(name)
        stores = p_data.get("datastores")
        if stores is not None:
            unknown = [n for n in stores if n not in sim.datastores]
            if unknown:
                raise InventoryError(f"{where}: unknown datastores {unknown}")
        sim.storage_policies.add(name, description=str(p_data.get("description", "")),
                                 tag=p_data.get("tag"),
                                 datastores=list(stores) if stores is not None else None,
                                 profile_id=p_data.get("id"))


def _create_vm(sim: Simulator, dc, clusters: dict, vm_data: dict, where: str) -> None:
    name = _require(vm_data, "name", where)
    cluster_name = _require(vm_data, "cluster", where)
    cluster = clusters.get(cluster_name)
    if cluster is None:
        raise InventoryError(f"{where}: no cluster named {cluster_name!r}")
    host_name = vm_data.get("host")
    host = next((h for h in cluster.hosts if h.name == host_name), None) if host_name else \
        cluster.hosts[0] if cluster.hosts else None
    if host is None:
        raise InventoryError(f"{where}: no host {host_name!r} in cluster {cluster.name}")
    ds_name = vm_data.get("datastore") or (host.datastores[0].name if host.datastores else None)
    if ds_name is None:
        raise InventoryError(f"{where}: host {host.name} has no datastore")
    dev = vim.vm.device
    changes = [dev.VirtualDeviceSpec(operation="add", device=dev.VirtualLsiLogicController(
        key=-100, busNumber=0, sharedBus="noSharing"))]
    if vm_data.get("disk_gb"):
        changes.append(dev.VirtualDeviceSpec(
            operation="add", fileOperation="create",
            device=dev.VirtualDisk(key=-101, controllerKey=-100, unitNumber=0,
                                   capacityInKB=int(vm_data["disk_gb"]) * 1024 * 1024,
                                   backing=dev.VirtualDisk.FlatVer2BackingInfo(
                                       fileName=f"[{ds_name}]", diskMode="persistent",
                                       thinProvisioned=True))))
    net_name = vm_data.get("network")
    if net_name:
        changes.append(dev.VirtualDeviceSpec(operation="add", device=dev.VirtualVmxnet3(
            key=-102, backing=dev.VirtualEthernetCard.NetworkBackingInfo(deviceName=net_name),
            addressType="generated")))
    spec = vim.vm.ConfigSpec(
        name=name, numCPUs=int(vm_data.get("cpus", 1)),
        memoryMB=int(vm_data.get("memory_mb", 1024)), guestId=vm_data.get("guest_id",
                                                                          "otherGuest64"),
        files=vim.vm.FileInfo(vmPathName=f"[{ds_name}]"), deviceChange=changes,
        instanceUuid=vm_data.get("instance_uuid"))
    # The controller key must be known to the disk before keys are assigned.
    changes[0].device.key = 1000
    if len(changes) > 1 and isinstance(changes[1].device, dev.VirtualDisk):
        changes[1].device.controllerKey = 1000
    try:
        vm = sim.factory.vm(dc.vm_folder, spec, cluster.resource_pool, host)
    except vim.fault.VimFault as exc:
        raise InventoryError(f"{where}: {exc.msg}") from exc
    except Exception as exc:
        raise InventoryError(f"{where}: {getattr(exc, 'msg', exc)}") from exc
    if "cpu_demand" in vm_data:
        vm.cpu_demand_fraction = float(vm_data["cpu_demand"])
    if str(vm_data.get("power", "off")).lower() in ("on", "poweredon", "true"):
        try:
            host.check_admission(vm)
        except vim.fault.VimFault as exc:
            raise InventoryError(f"{where}: cannot power on: {exc.msg}") from exc
        vm.set_power(vim.VirtualMachine.PowerState.poweredOn)
