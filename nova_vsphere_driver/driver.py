"""VSphereDriver: each vSphere cluster is one Nova compute node.

Nova's words (instances, flavors, provider trees) are mapped here onto the
vCenter client layer (``vsphere/``) and host placement inside each cluster
(``cluster_drs``, on top of the pure ``drs`` module).
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

import nova.conf
from nova import exception, objects
from nova.compute import power_state
from nova.image import glance
from nova.virt import driver, hardware
from oslo_log import log as logging
from oslo_utils import units
from oslo_vmware import exceptions as vexc
from oslo_vmware import vim_util

from nova_vsphere_driver import HYPERVISOR_TYPE, drs, extra_specs
from nova_vsphere_driver import conf as vsphere_conf
from nova_vsphere_driver.cluster import build_inventory, datastores_with_room, matching_datastores
from nova_vsphere_driver.cluster_drs import ClusterDrs, DrsSettings, PassReport, PassSchedule
from nova_vsphere_driver.ops import console as console_ops
from nova_vsphere_driver.ops import guest as guest_ops
from nova_vsphere_driver.ops import volumes as volume_ops
from nova_vsphere_driver.ops.console import Consoles
from nova_vsphere_driver.ops.diagnostics import Diagnostics
from nova_vsphere_driver.ops.guest import GuestOps
from nova_vsphere_driver.vsphere import errors
from nova_vsphere_driver.vsphere.images import ImageCache
from nova_vsphere_driver.vsphere.inventory import (
    ClusterRef,
    ClusterState,
    HostState,
    InventoryReader,
)
from nova_vsphere_driver.vsphere.rules import ClusterRules, server_group_rule_name
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.vm import (
    POWERED_OFF,
    POWERED_ON,
    Nic,
    ResourceSettings,
    RootDisk,
    VmOperations,
    VmSpec,
    build_config_spec,
)

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
vsphere_conf.register_opts(CONF)

#: Namespace for the compute node UUIDs derived from node names.
NODE_UUID_NAMESPACE = uuid.UUID("4e9a4f5c-3f0b-4f57-9b2a-5d1b5a8d7f21")

POWER_STATES = {
    POWERED_ON: power_state.RUNNING,
    POWERED_OFF: power_state.SHUTDOWN,
    "suspended": power_state.SUSPENDED,
}

#: How old a cluster read by get_available_resource may be for
#: update_provider_tree to use it instead of reading again.
RESOURCE_STATE_REUSE_SECONDS = 2.0
#: Tries, and seconds between them (growing), to remove what a failed spawn made.
CLEANUP_ATTEMPTS = 3
CLEANUP_RETRY_SECONDS = 0.5
#: Nova server group policy -> (affinity, mandatory) of its DRS VM-VM rule.
GROUP_POLICIES = {
    "anti-affinity": (False, True),
    "soft-anti-affinity": (False, False),
    "affinity": (True, True),
    "soft-affinity": (True, False),
}


class ConfigurationError(exception.NovaException):
    msg_fmt = "Invalid vSphere driver configuration: %(reason)s"


def flavor_settings(flavor) -> extra_specs.FlavorSettings:
    """The flavor's ``vsphere:`` (and in-tree ``quota:``) extra specs, validated."""
    try:
        return extra_specs.parse(dict(getattr(flavor, "extra_specs", None) or {}))
    except extra_specs.InvalidExtraSpec as exc:
        raise exception.InvalidRequest(str(exc)) from None


def resource_settings(settings: extra_specs.FlavorSettings) -> ResourceSettings:
    return ResourceSettings(
        cpu_limit=settings.cpu_limit, cpu_reservation=settings.cpu_reservation,
        cpu_shares_level=settings.cpu_shares_level, cpu_shares=settings.cpu_shares_share,
        memory_limit=settings.memory_limit, memory_reservation=settings.memory_reservation,
        memory_shares_level=settings.memory_shares_level,
        memory_shares=settings.memory_shares_share)


class VSphereDriver(driver.ComputeDriver):
    """Nova compute driver for vCenter clusters (one node per cluster)."""

    capabilities = dict(driver.ComputeDriver.capabilities)
    capabilities.update({
        # Cached images age out in Nova's image cache manager pass (ops/image_cache.py).
        "has_imagecache": True,
        "supports_evacuate": False,
        "supports_migrate_to_same_host": True,
        "supports_image_type_vmdk": True,
        "supports_image_type_iso": False,
        # NIC hot-plug (ops/guest.py); no device tags on vSphere NICs.
        "supports_attach_interface": True,
        # Rescue (ops/guest.py) is for image-backed instances; a volume root
        # disk's boot order and stable-device rescue are not handled.
        "supports_bfv_rescue": False,
        # Attached VMDK volumes grow in place (ops/volumes.py).
        "supports_extend_volume": True,
    })

    def __init__(self, virtapi, read_only: bool = False) -> None:
        super().__init__(virtapi)
        self._session: VSphereSession | None = None
        self._reader: InventoryReader | None = None
        self._vmops: VmOperations | None = None
        self._images: ImageCache | None = None
        self._drs: ClusterDrs | None = None
        self._rules: ClusterRules | None = None
        self._schedule = PassSchedule(0)
        self._drs_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: nodename -> (when, state) read by get_available_resource, for the
        #: update_provider_tree call that follows it.
        self._fresh_states: dict[str, tuple[float, ClusterState]] = {}
        #: nodename -> (when the read started, state) of the newest cluster read.
        self._recent_states: dict[str, tuple[float, ClusterState]] = {}
        self._states_lock = threading.Lock()
        self._nodes: dict[str, ClusterRef] = {}
        self._vcenter_uuid: str | None = None
        self._vm_refs: dict[str, object] = {}
        self._folders: dict[str, object] = {}
        self._switch_uuids: dict[str, str] = {}
        self._lock = threading.Lock()
        self._image_api = glance.API()

    # -- configuration and start-up ------------------------------------------------

    def _check_config(self) -> None:
        opts = CONF.vsphere
        for name in ("host_ip", "host_username", "host_password"):
            if not getattr(opts, name):
                raise ConfigurationError(reason=f"[vsphere] {name} is required")
        if not opts.cluster_names:
            raise ConfigurationError(reason="[vsphere] cluster_names must name at least one "
                                     "cluster")
        if opts.ca_file and not os.path.isfile(opts.ca_file):
            raise ConfigurationError(reason=f"[vsphere] ca_file={opts.ca_file!r}: no such file")
        if opts.datastore_regex:
            try:
                re.compile(opts.datastore_regex)
            except re.error as exc:
                raise ConfigurationError(
                    reason=f"[vsphere] datastore_regex={opts.datastore_regex!r} is not a "
                    f"valid regular expression: {exc}") from exc
        try:
            drs.load_policy(CONF.vsphere_drs.policy)
        except ValueError as exc:
            raise ConfigurationError(
                reason=f"[vsphere_drs] policy={CONF.vsphere_drs.policy!r}: {exc}") from None
        if opts.insecure:
            LOG.warning("[vsphere] insecure = True: vCenter's certificate is NOT verified. "
                        "Use this only for tests.")

    def _connect(self) -> VSphereSession:
        opts = CONF.vsphere
        try:
            return VSphereSession(
                opts.host_ip, opts.host_port, opts.host_username, opts.host_password,
                scheme="https",
                ca_file=opts.ca_file, insecure=opts.insecure, wsdl_location=opts.wsdl_location,
                api_retry_count=opts.api_retry_count, task_poll_interval=opts.task_poll_interval,
                pool_size=opts.connection_pool_size, api_timeout=opts.api_timeout)
        except vexc.VimFaultException as exc:
            if "InvalidLogin" in (exc.fault_list or []):
                raise ConfigurationError(
                    reason=f"[vsphere] host_username={opts.host_username!r}: vCenter refused "
                    "the credentials (check host_username and host_password)") from None
            raise ConfigurationError(reason=f"[vsphere] host_ip={opts.host_ip!r}: {exc}") from None
        except vexc.VMwareDriverException as exc:
            cause = getattr(exc, "cause", None) or exc
            text = str(cause)
            if "CERTIFICATE" in text.upper():
                raise ConfigurationError(
                    reason=f"[vsphere] ca_file={opts.ca_file!r}: TLS verification of "
                    f"{opts.host_ip}:{opts.host_port} failed: {text}") from None
            if "SSL" in text.upper():
                # Not a certificate problem: e.g. host_port is not an HTTPS port.
                raise ConfigurationError(
                    reason=f"[vsphere] host_ip={opts.host_ip!r} host_port={opts.host_port}: "
                    f"no TLS handshake with vCenter (is this its HTTPS port?): {text}") from None
            raise ConfigurationError(
                reason=f"[vsphere] host_ip={opts.host_ip!r} host_port={opts.host_port}: "
                f"cannot reach vCenter: {text}") from None

    def init_host(self, host: str) -> None:
        self._check_config()
        self._session = self._connect()
        try:
            self._start(host)
        except Exception:
            # A configuration error found after login: leave no session behind.
            try:
                self._session.logout()
            except Exception as exc:  # the original error matters more
                LOG.debug("Logout after a failed start failed: %s", exc)
            raise

    def _start(self, host: str) -> None:
        opts = CONF.vsphere
        self._reader = InventoryReader(self._session, page_size=opts.maximum_objects)
        self._vmops = VmOperations(self._session)
        verify: str | bool = opts.ca_file or (not opts.insecure)
        self._images = ImageCache(self._session, opts.image_cache_subdirectory_name,
                                  scheme="https", verify=verify,
                                  page_size=opts.maximum_objects)
        self._vcenter_uuid = self._session.content.about.instanceUuid
        clusters = {c.name: c for c in self._reader.find_clusters()}
        missing = [n for n in opts.cluster_names if n not in clusters]
        if missing:
            raise ConfigurationError(
                reason=f"[vsphere] cluster_names: no cluster named {', '.join(missing)} in "
                f"vCenter {opts.host_ip}; clusters there: "
                f"{', '.join(sorted(clusters)) or '(none)'}")
        nodes = {}
        for name in opts.cluster_names:
            ref = clusters[name]
            nodes[self._nodename(ref)] = ref
            state = self._reader.cluster_state(ref)
            if not matching_datastores(state, opts.datastore_regex, list(state.hosts)):
                raise ConfigurationError(
                    reason=f"[vsphere] datastore_regex={opts.datastore_regex!r} matches no "
                    f"accessible datastore of cluster {name} (it has: "
                    f"{', '.join(d.name for d in state.datastores) or 'none'})")
            if CONF.vsphere_drs.mode == "vcenter" and not state.vcenter_drs:
                LOG.warning("[vsphere_drs] mode = vcenter but vCenter DRS is not enabled on "
                            "cluster %s: vCenter cannot place instances there", name)
        self._nodes = nodes
        drs_opts = CONF.vsphere_drs
        self._drs = ClusterDrs(self._session, DrsSettings(
            policy=drs_opts.policy, migration_threshold=drs_opts.migration_threshold,
            max_moves_per_pass=drs_opts.max_moves_per_pass, make_room=drs_opts.make_room,
            max_room_moves=drs_opts.max_room_moves,
            max_vmotions_per_host=drs_opts.max_vmotions_per_host,
            reserved_host_cpus=opts.reserved_host_cpus,
            reserved_host_memory_mb=opts.reserved_host_memory_mb))
        self._rules = ClusterRules(self._session)
        self._schedule = PassSchedule(drs_opts.balance_interval)
        if not CONF.workarounds.disable_group_policy_check_upcall:
            LOG.warning("Nova checks server group policies per nova-compute service, which "
                        "here manages whole clusters; this driver enforces them per ESXi host "
                        "with DRS rules. Set [workarounds] disable_group_policy_check_upcall "
                        "= True here, and load nova_vsphere_driver.scheduler_filters."
                        "ServerGroupAntiAffinityFilter into nova-scheduler after Nova's "
                        "filters, or anti-affinity groups will fail beyond one member.")
        if len(nodes) > 1 and not CONF.allow_resize_to_same_host:
            LOG.warning("This nova-compute manages %d clusters: a resize to another of them "
                        "is a resize to the same nova-compute host, which Nova allows only "
                        "with [DEFAULT] allow_resize_to_same_host = True", len(nodes))
        LOG.info("vSphere driver manages %d cluster(s): %s", len(nodes),
                 ", ".join(f"{r.name} ({n})" for n, r in nodes.items()))
        if drs_opts.mode == "builtin":
            self._drs_thread = threading.Thread(target=self._drs_loop, name="vsphere-drs",
                                                daemon=True)
            self._drs_thread.start()

    def cleanup_host(self, host: str) -> None:
        self._stopping.set()
        if self._drs_thread is not None:
            self._drs_thread.join(timeout=30)
        if self._session is not None:
            self._session.logout()

    # -- DRS passes ------------------------------------------------------------------------

    def _drs_loop(self) -> None:
        """Evacuate hosts entering maintenance; balance each cluster when due."""
        while not self._stopping.wait(CONF.vsphere_drs.poll_interval):
            for nodename in list(self._nodes):
                if self._stopping.is_set():
                    return
                try:
                    self.run_drs_pass(nodename)
                except Exception:  # keep the loop alive; the next pass retries
                    LOG.exception("DRS pass on %s failed", self._nodes[nodename].name)

    def run_drs_pass(self, nodename: str, force_balance: bool = False) -> list[PassReport]:
        """One DRS round for a cluster: maintenance evacuation, then balancing if due."""
        reports = []
        state = self._state(nodename)
        limits = self._drs.limits(self._get_allocation_ratios({}))
        evacuation = self._drs.evacuate(state, limits)
        if evacuation is not None:
            reports.append(evacuation)
            state = self._state(nodename)
        if force_balance or self._schedule.due(state.ref.moref):
            reports.append(self._drs.balance(state, limits,
                                             apply=not CONF.vsphere_drs.dry_run))
        return reports

    def balance_cluster(self, nodename: str, dry_run: bool = False) -> PassReport:
        """One balancing pass over the cluster of ``nodename``, now."""
        state = self._state(nodename)
        limits = self._drs.limits(self._get_allocation_ratios({}))
        return self._drs.balance(state, limits, apply=not dry_run)

    def _nodename(self, ref: ClusterRef) -> str:
        # The moref and vCenter UUID, not the name: unique across vCenters
        # and unchanged when an operator renames the cluster.
        return f"{ref.moref}.{self._vcenter_uuid}"

    def _node(self, nodename: str) -> ClusterRef:
        try:
            return self._nodes[nodename]
        except KeyError:
            raise exception.NovaException(
                message=f"node {nodename} is not managed by this nova-compute") from None

    def _state(self, nodename: str) -> ClusterState:
        started = time.monotonic()
        with errors.translated():
            state = self._reader.cluster_state(self._node(nodename))
        with self._states_lock:
            newest = self._recent_states.get(nodename)
            if newest is None or newest[0] < started:
                self._recent_states[nodename] = (started, state)
        return state

    def _reusable_state(self, nodename: str) -> ClusterState:
        """A cluster read update_provider_tree may use (see cluster_read_max_age)."""
        now = time.monotonic()
        paired = self._fresh_states.pop(nodename, None)
        if paired is not None and now - paired[0] <= RESOURCE_STATE_REUSE_SECONDS:
            return paired[1]
        with self._states_lock:
            recent = self._recent_states.get(nodename)
        if recent is not None and now - recent[0] <= CONF.vsphere.cluster_read_max_age:
            return recent[1]
        return self._state(nodename)

    # -- nodes and resources ----------------------------------------------------------

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return list(self._nodes)

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return {str(uuid.uuid5(NODE_UUID_NAMESPACE, n)): n for n in self._nodes}

    def node_is_available(self, nodename: str) -> bool:
        return nodename in self._nodes

    def _inventory(self, state: ClusterState, ratios: dict):
        opts = CONF.vsphere
        # What one host can take now -- or, with make_room, after DRS has
        # moved a few VMs aside -- never the cluster's total.
        best = self._drs.max_unit(state, self._drs.limits(ratios),
                                  make_room=CONF.vsphere_drs.mode == "builtin")
        return build_inventory(
            state, host_max_vcpus=best.vcpus, host_max_memory_mb=best.memory_mb,
            reserved_host_cpus=opts.reserved_host_cpus,
            reserved_host_memory_mb=opts.reserved_host_memory_mb,
            reserved_disk_gb=self._get_reserved_host_disk_gb_from_config(),
            datastore_regex=opts.datastore_regex)

    def update_provider_tree(self, provider_tree, nodename: str, allocations=None) -> None:
        # Nova's resource tracker calls get_available_resource and then this,
        # back to back: one read of the cluster serves both.
        state = self._reusable_state(nodename)
        ratios = self._get_allocation_ratios(provider_tree.data(nodename).inventory)
        inv = self._inventory(state, ratios)
        if not inv.schedulable:
            LOG.warning("Cluster %s (%s) has no usable host: all its capacity is reserved "
                        "until a host is connected and out of maintenance", state.ref.name,
                        nodename)
        provider_tree.update_inventory(nodename, inv.to_placement(ratios))
        from nova_vsphere_driver.cluster import CPU_TRAITS

        managed = set(CPU_TRAITS.values()) | {"HW_ARCH_X86_64"}
        traits = {t for t in provider_tree.data(nodename).traits if t not in managed}
        provider_tree.update_traits(nodename, traits | set(inv.traits))

    def get_available_resource(self, nodename: str) -> dict:
        state = self._state(nodename)
        self._fresh_states[nodename] = (time.monotonic(), state)
        ratios = self._get_allocation_ratios({})
        inv = self._inventory(state, ratios)
        about = self._session.content.about
        version = [int(p) for p in (about.version or "0").split(".")[:3]]
        while len(version) < 3:
            version.append(0)
        return {
            "vcpus": inv.vcpus,
            "memory_mb": inv.memory_mb,
            "local_gb": inv.disk_gb,
            "vcpus_used": inv.vcpus_used,
            "memory_mb_used": inv.memory_mb_used,
            "local_gb_used": inv.disk_gb_used,
            "hypervisor_type": HYPERVISOR_TYPE,
            "hypervisor_version": version[0] * 1000000 + version[1] * 1000 + version[2],
            "hypervisor_hostname": nodename,
            # Per-node UUID (as get_nodenames_by_uuid): without it Nova gives
            # every node this host's one local UUID and the nodes clobber
            # each other's compute node record and resource provider.
            "uuid": str(uuid.uuid5(NODE_UUID_NAMESPACE, nodename)),
            "cpu_info": None,
            "numa_topology": None,
            "supported_instances": [("x86_64", "vmware", "hvm"), ("i686", "vmware", "hvm")],
        }

    # -- instance lookup ---------------------------------------------------------------

    def _vm_ref(self, instance, required: bool = True):
        """The VM of ``instance`` (cached by UUID, re-found when it moved or vanished)."""
        cached = self._vm_refs.get(instance.uuid)
        if cached is not None:
            return cached
        with errors.translated(instance):
            ref = self._vmops.find_by_uuid(instance.uuid)
        if ref is None:
            if required:
                raise exception.InstanceNotFound(instance_id=instance.uuid)
            return None
        self._vm_refs[instance.uuid] = ref
        return ref

    def _with_vm(self, instance, fn, required: bool = True):
        """Run ``fn(vm_ref)``; if the cached reference went stale, look up once more."""
        ref = self._vm_ref(instance, required)
        if ref is None:
            return None
        try:
            with errors.translated(instance):
                return fn(ref)
        except exception.InstanceNotFound:
            self._vm_refs.pop(instance.uuid, None)
            ref = self._vm_ref(instance, required)
            if ref is None:
                return None
            with errors.translated(instance):
                return fn(ref)

    def instance_exists(self, instance) -> bool:
        self._vm_refs.pop(instance.uuid, None)
        return self._vm_ref(instance, required=False) is not None

    def get_info(self, instance, use_cache: bool = True):
        props = self._with_vm(instance, lambda ref: self._vmops.properties(
            ref, ["runtime.powerState", "runtime.connectionState"]))
        if str(props.get("runtime.connectionState", "connected")) != "connected":
            # The host is unreachable: the VM is neither gone nor known to run.
            return hardware.InstanceInfo(state=power_state.NOSTATE)
        return hardware.InstanceInfo(
            state=POWER_STATES.get(str(props.get("runtime.powerState")), power_state.NOSTATE))

    def _managed_vms(self):
        for nodename in self._nodes:
            for vm in self._state(nodename).vms:
                if vm.managed_by_nova and vm.instance_uuid:
                    yield vm

    def list_instances(self) -> list[str]:
        return [vm.name for vm in self._managed_vms()]

    def list_instance_uuids(self) -> list[str]:
        return [vm.instance_uuid for vm in self._managed_vms()]

    def get_host_ip_addr(self) -> str:
        return CONF.vsphere.host_ip

    # -- spawn ---------------------------------------------------------------------------

    @staticmethod
    def _pick_datastore(stores, host):
        """The matching datastore with most free space (mounted by ``host`` if given)."""
        if host is not None:
            mounted = [d for d in stores if d.moref in host.datastores]
            stores = mounted or stores
        return max(stores, key=lambda d: (d.free_bytes, d.name))

    def _nics(self, state: ClusterState, host, network_info) -> tuple[Nic, ...]:
        """NICs on the port groups the VIFs name, as seen from ``host`` (None: any host)."""
        nics = []
        hosts = [host] if host is not None else state.usable_hosts()
        reachable = {n for h in hosts for n in h.networks}
        by_name = {n.name: n for n in state.networks if n.moref in reachable}
        for vif in network_info or []:
            network = vif.get("network") or {}
            names = [network.get("bridge"), network.get("label"), network.get("id")]
            match = next((by_name[n] for n in names if n and n in by_name), None)
            if match is None:
                raise exception.NetworkNotFoundForBridge(bridge=names[0] or names[1])
            switch_uuid = None
            if match.portgroup_key is not None:
                switch_uuid = self._switch_uuid(match.switch)
            nics.append(Nic(network=match, mac_address=vif.get("address"),
                            iface_id=vif.get("id") or "", switch_uuid=switch_uuid))
        return tuple(nics)

    def _switch_uuid(self, switch_moref: str) -> str:
        cached = self._switch_uuids.get(switch_moref)
        if cached is None:
            ref = vim_util.get_moref(switch_moref, "VmwareDistributedVirtualSwitch")
            cached = self._session.call("get_object_property", ref, "uuid")
            self._switch_uuids[switch_moref] = cached
        return cached

    def _vm_folder(self, ref: ClusterRef):
        """The instances' folder in the cluster's datacenter, created when missing."""
        with self._lock:
            folder = self._folders.get(ref.datacenter)
            if folder is not None:
                return folder
            parent = vim_util.get_moref(ref.vm_folder, "Folder")
            name = CONF.vsphere.vm_folder
            if not name:
                self._folders[ref.datacenter] = parent
                return parent
            found = self._session.invoke("FindChild", self._session.content.searchIndex,
                                         entity=parent, name=name)
            if found is None:
                try:
                    found = self._session.invoke("CreateFolder", parent, name=name)
                except vexc.DuplicateName:
                    found = self._session.invoke("FindChild", self._session.content.searchIndex,
                                                 entity=parent, name=name)
            self._folders[ref.datacenter] = found
            return found

    def _root_disk(self, context, instance, image_meta, ref: ClusterRef,
                   datastore) -> RootDisk | None:
        """The image (cached per datastore, whatever its VMDK type) as the root disk."""
        from nova_vsphere_driver.ops import root_disk as root_disk_ops

        return root_disk_ops.root_disk(self, context, instance, image_meta, ref, datastore)

    def cache_image(self, context, image_id: str) -> bool:
        """The image in the cache of every datastore a spawn may use (True: copies made)."""
        from nova_vsphere_driver.ops import image_cache

        return image_cache.precache(self, context, image_id)

    def manage_image_cache(self, context, all_instances) -> None:
        """Age out cached images no VM and no instance of this host uses."""
        from nova_vsphere_driver.ops import image_cache

        image_cache.age_images(self, context, all_instances)

    def _guest_id(self, context, image_meta) -> str:
        """The guest OS type the image asks for (its vmware_ostype; ops/guest_os.py)."""
        from nova_vsphere_driver.ops import guest_os

        return guest_os.guest_id(self, context, image_meta)

    def _server_group(self, context, instance):
        """The instance's Nova server group, or None."""
        try:
            return objects.InstanceGroup.get_by_instance_uuid(context, instance.uuid)
        except exception.InstanceGroupNotFound:
            return None

    def _place(self, state: ClusterState, instance, group, stores,
               host_group: str | None) -> HostState:
        """The ESXi host for a new instance, chosen (and claimed) by our DRS."""
        flavor = instance.flavor
        rules = ()
        if group is not None and group.policy in GROUP_POLICIES:
            affinity, mandatory = GROUP_POLICIES[group.policy]
            others = frozenset(set(group.members or ()) - {instance.uuid})
            rules = (drs.RequestRule(others, affinity, mandatory,
                                     name=server_group_rule_name(group.uuid)),)
        request = drs.PlacementRequest(
            instance_id=instance.uuid, vcpus=int(flavor.vcpus), memory_mb=int(flavor.memory_mb),
            rules=rules, host_group=host_group,
            any_datastore=frozenset(d.moref for d in stores),
            name=instance.display_name or instance.uuid)
        limits = self._drs.limits(self._get_allocation_ratios({}))
        result = self._drs.place(state, request, limits)
        if not result.ok:
            raise exception.ComputeResourcesUnavailable(
                reason=f"cluster {state.ref.name}: {result.reason}")
        LOG.info("Placing instance on ESXi host %s: %s", result.host_name, result.reason,
                 instance=instance)
        return state.host(result.host_id)

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None,
              share_info=None) -> None:
        ref = self._node(instance.node)
        flavor = instance.flavor
        settings = flavor_settings(flavor)
        group = self._server_group(context, instance)
        state = self._state(instance.node)
        need_bytes = int(flavor.root_gb or 0) * units.Gi
        stores = datastores_with_room(state, CONF.vsphere.datastore_regex, need_bytes)
        # builtin: our DRS picks the host; vcenter: CreateVM_Task gets none and
        # vCenter's DRS decides.
        host = self._place(state, instance, group, stores, settings.host_group) \
            if CONF.vsphere_drs.mode == "builtin" else None
        vm_ref = None
        datastore = self._pick_datastore(stores, host)
        try:
            root = self._root_disk(context, instance, image_meta, ref, datastore)
            spec = VmSpec(
                name=instance.uuid, instance_uuid=instance.uuid, vcpus=int(flavor.vcpus),
                memory_mb=int(flavor.memory_mb),
                # The image's vmware_ostype (ops/guest_os.py; _root_disk checked it).
                guest_id=self._guest_id(context, image_meta),
                datastore_name=datastore.name,
                annotation=f"name:{instance.display_name}\nuuid:{instance.uuid}\n"
                f"project:{instance.project_id}\nflavor:{flavor.name}",
                resources=resource_settings(settings), root_disk=root,
                nics=self._nics(state, host, network_info), hw_version=settings.hw_version)
            with errors.translated(instance):
                config = build_config_spec(self._session, spec)
                host_ref = vim_util.get_moref(host.moref, "HostSystem") if host else None
                pool_ref = vim_util.get_moref(ref.resource_pool, "ResourcePool")
                vm_ref = self._vmops.create(self._vm_folder(ref), pool_ref, host_ref, config)
                self._vm_refs[instance.uuid] = vm_ref
                if group is not None and group.policy in GROUP_POLICIES:
                    affinity, mandatory = GROUP_POLICIES[group.policy]
                    # Before power-on, so that vCenter's DRS and HA honour it too.
                    self._rules.sync_server_group(
                        ref, group.uuid, set(group.members or ()) | {instance.uuid}, affinity,
                        mandatory, self._reader.cluster_state)
                if settings.host_group:
                    self._pin(ref, settings, vm_ref)
                if power_on:
                    self._vmops.power_on(vm_ref)
        except Exception:
            self._drs.release(ref.moref, instance.uuid)
            self._cleanup_failed_spawn(instance, vm_ref, ref, datastore)
            raise

    def _pin(self, ref: ClusterRef, settings: extra_specs.FlavorSettings, vm_ref) -> None:
        """Keep the VM on its flavor's host group with a VM-Host rule in vCenter."""
        try:
            self._rules.pin_to_host_group(ref, settings.host_group,
                                          vim_util.get_moref_value(vm_ref),
                                          mandatory=settings.host_group_rule != "should")
        except LookupError as exc:
            raise exception.ComputeResourcesUnavailable(reason=str(exc)) from None

    def _cleanup_failed_spawn(self, instance, vm_ref, ref: ClusterRef, datastore) -> None:
        """No orphans: remove whatever the failed spawn created (VM, disks, rule entries)."""
        self._vm_refs.pop(instance.uuid, None)
        for attempt in range(1, CLEANUP_ATTEMPTS + 1):
            # vCenter may refuse for a moment (a task still running on the VM,
            # a dropped connection): try again rather than leave an orphan.
            try:
                if vm_ref is None:
                    vm_ref = self._vmops.find_by_uuid(instance.uuid)
                if vm_ref is not None:
                    self._vmops.destroy(vm_ref)
                    self._prune_rules(ref, vim_util.get_moref_value(vm_ref))
                break
            except vexc.ManagedObjectNotFoundException:
                break
            except Exception as exc:
                if attempt == CLEANUP_ATTEMPTS:
                    LOG.error("Could not remove the VM of failed spawn (%d attempts): %s; "
                              "deleting the instance will", attempt, exc, instance=instance)
                else:
                    LOG.warning("Removing the VM of failed spawn failed (%s); retrying", exc,
                                instance=instance)
                    time.sleep(CLEANUP_RETRY_SECONDS * attempt)
        if not CONF.vsphere.use_linked_clone:
            # A full copy of the image may have been made before CreateVM.
            try:
                self._session.delete_datastore_file(
                    f"[{datastore.name}] {instance.uuid}",
                    vim_util.get_moref(ref.datacenter, "Datacenter"))
            except Exception as exc:
                LOG.warning("Could not remove [%s] %s: %s", datastore.name, instance.uuid, exc)

    def _prune_rules(self, ref: ClusterRef, vm_moref: str) -> None:
        """The VM is gone: drop it from our DRS rules (a rule goes with its last member)."""
        try:
            self._rules.prune(ref, {vm_moref})
        except Exception as exc:  # the VM is gone; a stale rule is fixed next time
            LOG.warning("Could not update the DRS rules of cluster %s: %s", ref.name, exc)

    # -- lifecycle -----------------------------------------------------------------------

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True) -> None:
        """Remove the VM; a VM that is already gone is not an error."""
        if self._kept_for_revert(instance):
            # Nova's revert_resize destroys the destination's copy first;
            # ours is the one VM, which finish_revert_migration moves back.
            return
        self._vm_refs.pop(instance.uuid, None)
        ref = self._nodes.get(instance.node)
        vm_ref = self._vm_ref(instance, required=False)
        if vm_ref is None:
            LOG.info("Instance has no VM in vCenter; nothing to destroy", instance=instance)
            if ref is not None:
                self._drs.release(ref.moref, instance.uuid)
            return
        try:
            # Destroy_Task deletes every disk attached to the VM: Cinder
            # volumes come off first.
            volume_ops.detach_all(self, context, instance, block_device_info)
            with errors.translated(instance):
                if destroy_disks:
                    self._vmops.destroy(vm_ref)
                else:
                    self._vmops.unregister(vm_ref)
        except exception.InstanceNotFound:
            LOG.info("VM vanished while being destroyed", instance=instance)
        finally:
            self._vm_refs.pop(instance.uuid, None)
            if ref is not None:
                self._drs.release(ref.moref, instance.uuid)
        if ref is not None:
            self._prune_rules(ref, vim_util.get_moref_value(vm_ref))

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True) -> None:
        """Whatever destroy left: a VM still registered is removed."""
        self.destroy(context, instance, network_info, block_device_info, destroy_disks)

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None) -> None:
        def do(ref):
            state = self._vmops.properties(ref, ["runtime.powerState"]).get(
                "runtime.powerState")
            if str(state) != POWERED_ON:
                self._vmops.power_on(ref)
                return
            if reboot_type == "SOFT":
                try:
                    self._vmops.reboot_guest(ref)
                    return
                except (vexc.ToolsUnavailableException, vexc.VimFaultException) as exc:
                    LOG.info("Soft reboot not possible (%s); resetting", exc,
                             instance=instance)
            self._vmops.reset(ref)

        self._with_vm(instance, do)

    def power_off(self, instance, timeout: int = 0, retry_interval: int = 0) -> None:
        def do(ref):
            if timeout and self._vmops.shutdown_guest(ref, timeout, retry_interval or 1):
                return
            self._vmops.power_off(ref)

        self._with_vm(instance, do)

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None) -> None:
        def do(ref):
            state = self._vmops.properties(ref, ["runtime.powerState"]).get(
                "runtime.powerState")
            if str(state) != POWERED_ON:
                self._vmops.power_on(ref)

        self._with_vm(instance, do)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  block_device_info=None, share_info=None) -> None:
        """After nova-compute restarts: an instance that should run is powered on."""
        self.power_on(context, instance, network_info, block_device_info)


    # == Operations implemented in nova_vsphere_driver/ops/ ==================================
    # Each section below delegates to one module; keep the logic in the module.

    # -- resize and cold migration (ops/migrate.py) ------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0,
                                   retry_interval=0) -> str:
        from nova_vsphere_driver.ops import migrate

        return migrate.migrate_disk_and_power_off(self, context, instance, dest, flavor,
                                                  network_info, block_device_info, timeout,
                                                  retry_interval)

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance, allocations, block_device_info=None,
                         power_on=True, share_info=None) -> None:
        from nova_vsphere_driver.ops import migrate

        migrate.finish_migration(self, context, migration, instance, disk_info, network_info,
                                 image_meta, resize_instance, allocations, block_device_info,
                                 power_on)

    def confirm_migration(self, context, migration, instance, network_info) -> None:
        from nova_vsphere_driver.ops import migrate

        migrate.confirm_migration(self, context, migration, instance, network_info)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True,
                                share_info=None) -> None:
        from nova_vsphere_driver.ops import migrate

        migrate.finish_revert_migration(self, context, instance, network_info, migration,
                                        block_device_info, power_on)

    def _kept_for_revert(self, instance) -> bool:
        """destroy() during a resize revert: the VM is the source's too (ops/migrate.py)."""
        from nova_vsphere_driver.ops import migrate

        return migrate.kept_for_revert(instance)

    # -- live migration and host operations (ops/live_migrate.py, ops/host.py) ---------------

    def _live_migrations(self):
        """The driver's live-migration state (in-flight vMotions), made on first use."""
        from nova_vsphere_driver.ops.live_migrate import LiveMigrations

        with self._lock:
            ops = self.__dict__.get("_live_migration_ops")
            if ops is None:
                ops = self.__dict__["_live_migration_ops"] = LiveMigrations(self)
            return ops

    def _host_operations(self):
        from nova_vsphere_driver.ops.host import HostOperations

        return HostOperations(self)

    def check_can_live_migrate_destination(self, context, instance, src_compute_info,
                                           dst_compute_info, block_migration=False,
                                           disk_over_commit=False):
        return self._live_migrations().check_destination(context, instance, src_compute_info,
                                                         dst_compute_info)

    def cleanup_live_migration_destination_check(self, context, dest_check_data) -> None:
        self._live_migrations().cleanup_destination_check(dest_check_data)

    def check_source_migrate_data_at_dest(self, ctxt, instance, migrate_data, migration,
                                          limits, allocs):
        return self._live_migrations().check_at_dest(instance, migrate_data, allocs)

    def check_can_live_migrate_source(self, context, instance, dest_check_data,
                                      block_device_info=None):
        return self._live_migrations().check_source(instance, dest_check_data,
                                                    block_device_info)

    def pre_live_migration(self, context, instance, block_device_info, network_info,
                           disk_info, migrate_data):
        return self._live_migrations().pre_live_migration(context, instance, network_info,
                                                          migrate_data)

    def live_migration(self, context, instance, dest, post_method, recover_method,
                       block_migration=False, migrate_data=None) -> None:
        self._live_migrations().live_migration(context, instance, dest, post_method,
                                               recover_method, block_migration, migrate_data)

    def live_migration_abort(self, instance) -> None:
        self._live_migrations().abort(instance)

    def live_migration_force_complete(self, instance) -> None:
        from nova_vsphere_driver.ops.live_migrate import force_complete_unsupported

        force_complete_unsupported(instance)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None) -> None:
        self._live_migrations().post_at_source_cleanup(instance, migrate_data)

    def post_live_migration_at_source(self, context, instance, network_info) -> None:
        self._live_migrations().prune_source_rules(instance)

    def post_live_migration_at_destination(self, context, instance, network_info,
                                           block_migration=False,
                                           block_device_info=None) -> None:
        self._live_migrations().post_at_destination(context, instance)

    def rollback_live_migration_at_destination(self, context, instance, network_info,
                                               block_device_info, destroy_disks=True,
                                               migrate_data=None) -> None:
        self._live_migrations().rollback_at_destination(instance, migrate_data)

    def host_maintenance_mode(self, host: str, mode: bool) -> str:
        return self._host_operations().maintenance_mode(host, mode)

    def set_host_enabled(self, enabled: bool) -> str:
        from nova_vsphere_driver.ops.host import set_host_enabled_unsupported

        return set_host_enabled_unsupported(enabled)

    def get_host_uptime(self) -> str:
        return self._host_operations().uptime()

    # -- snapshots and volumes (ops/snapshot.py, ops/volumes.py) -----------------------------

    def snapshot(self, context, instance, image_id, update_task_state) -> None:
        from nova_vsphere_driver.ops import snapshot as snapshot_ops

        snapshot_ops.snapshot(self, context, instance, image_id, update_task_state)

    def get_volume_connector(self, instance) -> dict:
        return volume_ops.get_volume_connector(self, instance)

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None) -> None:
        volume_ops.attach_volume(self, context, connection_info, instance, mountpoint,
                                 disk_bus, device_type, encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None) -> None:
        volume_ops.detach_volume(self, context, connection_info, instance, mountpoint,
                                 encryption)

    def extend_volume(self, context, connection_info, instance, requested_size) -> None:
        volume_ops.extend_volume(self, context, connection_info, instance, requested_size)

    def swap_volume(self, context, old_connection_info, new_connection_info, instance,
                    mountpoint, resize_to) -> None:
        # Swapping needs the guest's data copied from disk to disk while it
        # runs (libvirt's blockRebase); vSphere has no per-disk live copy
        # between two existing VMDKs that this driver could drive.
        raise NotImplementedError("swap_volume is not supported by the vSphere driver: "
                                  "detach the old volume and attach the new one instead")

    # -- interfaces, rescue, suspend/pause, password, consoles, diagnostics (ops/guest.py,
    #    ops/console.py, ops/diagnostics.py) ------------------------------------------------

    def attach_interface(self, context, instance, image_meta, vif) -> None:
        GuestOps(self).attach_interface(context, instance, image_meta, vif)

    def detach_interface(self, context, instance, vif) -> None:
        GuestOps(self).detach_interface(context, instance, vif)

    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info=None) -> None:
        GuestOps(self).rescue(context, instance, network_info, image_meta, rescue_password,
                              block_device_info, share_info)

    def unrescue(self, context, instance) -> None:
        GuestOps(self).unrescue(context, instance)

    def suspend(self, context, instance) -> None:
        GuestOps(self).suspend(context, instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None) -> None:
        GuestOps(self).resume(context, instance, network_info, block_device_info, share_info)

    def pause(self, instance) -> None:
        raise NotImplementedError(guest_ops.PAUSE_UNSUPPORTED)

    def unpause(self, instance) -> None:
        raise NotImplementedError(guest_ops.PAUSE_UNSUPPORTED)

    def set_admin_password(self, instance, new_pass) -> None:
        raise NotImplementedError(guest_ops.SET_PASSWORD_UNSUPPORTED)

    def get_vnc_console(self, context, instance):
        return Consoles(self).vnc(context, instance)

    def get_mks_console(self, context, instance):
        return Consoles(self).mks(context, instance)

    def get_serial_console(self, context, instance):
        raise NotImplementedError(console_ops.SERIAL_UNSUPPORTED)

    def get_console_output(self, context, instance) -> bytes:
        return Consoles(self).output(context, instance)

    def get_diagnostics(self, instance) -> dict:
        return Diagnostics(self).legacy(instance)

    def get_instance_diagnostics(self, instance):
        return Diagnostics(self).instance(instance)
