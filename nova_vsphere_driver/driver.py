"""VSphereDriver: each vSphere cluster is one Nova compute node.

A thin front, as Nova's in-tree VMwareVCDriver: ``init_host`` checks the
configuration, logs in to vCenter, and builds once the shared clients
(:class:`~nova_vsphere_driver.services.Services`) and one object per group of
operations (``ops/``), each given exactly what it needs. Every ComputeDriver
call then goes to one of them; the driver passes itself to none.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
import unicodedata

import nova.conf
from nova import exception
from nova.image import glance
from nova.virt import driver
from oslo_log import log as logging
from oslo_vmware import exceptions as vexc

from nova_vsphere_driver import conf as vsphere_conf
from nova_vsphere_driver import drs
from nova_vsphere_driver.datastore_selection import matching_datastores
from nova_vsphere_driver.drs_runtime.controller import (
    ClusterDrs,
    DrsSettings,
    PassReport,
    PassSchedule,
)
from nova_vsphere_driver.ops.config_drive import ConfigDrives
from nova_vsphere_driver.ops.console import SERIAL_UNSUPPORTED, Consoles
from nova_vsphere_driver.ops.destroy import DestroyOps
from nova_vsphere_driver.ops.diagnostics import Diagnostics
from nova_vsphere_driver.ops.drs_passes import DrsPasses
from nova_vsphere_driver.ops.guest import PAUSE_UNSUPPORTED, SET_PASSWORD_UNSUPPORTED, GuestOps
from nova_vsphere_driver.ops.guest_os import GuestTypes
from nova_vsphere_driver.ops.host import SET_HOST_ENABLED_UNSUPPORTED, HostOperations
from nova_vsphere_driver.ops.host_selection import HostSelection
from nova_vsphere_driver.ops.image_cache import ImageCacheOps
from nova_vsphere_driver.ops.instance_rules import InstanceRules
from nova_vsphere_driver.ops.instance_snapshot import InstanceSnapshots
from nova_vsphere_driver.ops.instance_storage_policy import InstanceStoragePolicy
from nova_vsphere_driver.ops.live_migrate import FORCE_COMPLETE_UNSUPPORTED, LiveMigrations
from nova_vsphere_driver.ops.migrate import Migrations
from nova_vsphere_driver.ops.nics import NicResolver
from nova_vsphere_driver.ops.power import PowerOps
from nova_vsphere_driver.ops.resources import ResourceReports
from nova_vsphere_driver.ops.root_disk import RootDisks
from nova_vsphere_driver.ops.spawn import SpawnOps
from nova_vsphere_driver.ops.vm_folders import VmFolders
from nova_vsphere_driver.ops.volumes import Volumes
from nova_vsphere_driver.services import (
    ClusterStates,
    Nodes,
    Services,
    VmRefs,
)
from nova_vsphere_driver.vsphere import cluster_paths, soap_text
from nova_vsphere_driver.vsphere.cluster_cache import ClusterCache
from nova_vsphere_driver.vsphere.cluster_state import ClusterStateReader
from nova_vsphere_driver.vsphere.images import ImageCache
from nova_vsphere_driver.vsphere.rules import ClusterRules
from nova_vsphere_driver.vsphere.session import VSphereSession
from nova_vsphere_driver.vsphere.spbm import SpbmClient, UnknownStoragePolicy
from nova_vsphere_driver.vsphere.vm import VmOperations

LOG = logging.getLogger(__name__)
CONF = nova.conf.CONF
vsphere_conf.register_opts(CONF)


class ConfigurationError(exception.NovaException):
    msg_fmt = "Invalid vSphere driver configuration: %(reason)s"


#: vCenter's longest inventory entity name.
MAX_ENTITY_NAME = 80


def _entity_name_problem(name: str) -> str | None:
    """Why vCenter cannot take ``name`` as an inventory folder's name as it is (None: it can).

    vCenter stores "/", "\\" and "%" in a name escaped (%2f, %5c, %25): the
    folder would not be found again by the name it was created with; a
    control character cannot even be sent.
    """
    if len(name) > MAX_ENTITY_NAME:
        return f"vCenter takes names of at most {MAX_ENTITY_NAME} characters"
    bad = sorted({c for c in name if c in "/\\%" or unicodedata.category(c) == "Cc"})
    if bad:
        return ("vCenter cannot keep " + ", ".join(repr(c) for c in bad) +
                " in a name as it is")
    return None


@dataclasses.dataclass(frozen=True)
class Operations:
    """One object per group of ComputeDriver operations, built once in init_host."""

    spawn: SpawnOps
    destroy: DestroyOps
    power: PowerOps
    resources: ResourceReports
    drs_passes: DrsPasses
    migrations: Migrations
    live_migrations: LiveMigrations
    hosts: HostOperations
    snapshots: InstanceSnapshots
    volumes: Volumes
    guest: GuestOps
    consoles: Consoles
    diagnostics: Diagnostics
    image_cache: ImageCacheOps


def build_operations(services: Services, schedule: PassSchedule,
                     stopping: threading.Event | None = None) -> Operations:
    """Each operation object with exactly the collaborators it needs."""
    hosts = HostSelection(services)
    rules = InstanceRules(services.rules, services.states, services.nodes,
                          services.drs.settings.instance_vm_group)
    nics = NicResolver(services.session)
    storage = InstanceStoragePolicy(services)
    folders = VmFolders(services.session)
    guest_types = GuestTypes(services.image_api)
    root_disks = RootDisks(services, folders, guest_types)
    power = PowerOps(services)
    volumes = Volumes(services)
    return Operations(
        spawn=SpawnOps(services, hosts, rules, nics, folders, root_disks, guest_types, volumes,
                       ConfigDrives(services), storage),
        destroy=DestroyOps(services, rules, volumes),
        power=power,
        resources=ResourceReports(services),
        drs_passes=DrsPasses(services, schedule, stopping),
        migrations=Migrations(services, hosts, rules, power, storage),
        live_migrations=LiveMigrations(services, rules, nics, storage),
        hosts=HostOperations(services),
        snapshots=InstanceSnapshots(services),
        volumes=volumes,
        guest=GuestOps(services, nics, root_disks, storage),
        consoles=Consoles(services),
        diagnostics=Diagnostics(services),
        image_cache=ImageCacheOps(services, root_disks),
    )


class VSphereDriver(driver.ComputeDriver):
    """Nova compute driver for vCenter clusters (one node per cluster)."""

    capabilities = dict(driver.ComputeDriver.capabilities)
    capabilities.update({
        # Cached images age out in Nova's image cache manager pass (ops/image_cache.py).
        "has_imagecache": True,
        "supports_evacuate": False,
        "supports_migrate_to_same_host": True,
        "supports_image_type_vmdk": True,
        # ISO images boot from a CD-ROM drive with a blank root disk (ops/spawn.py).
        "supports_image_type_iso": True,
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
        #: The shared clients and the operations: None until init_host succeeded.
        self.services: Services | None = None
        self.operations: Operations | None = None
        #: The background DRS loop (None: [vsphere_drs] mode = vcenter, or not started).
        self.drs_thread: threading.Thread | None = None
        self._stopping = threading.Event()

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
        if opts.vm_folder:
            problem = _entity_name_problem(opts.vm_folder)
            if problem:
                raise ConfigurationError(
                    reason=f"[vsphere] vm_folder={opts.vm_folder!r}: {problem}")
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
        except soap_text.UnsendableText as exc:
            raise ConfigurationError(
                reason=f"[vsphere] host_username={opts.host_username!r} or host_password: "
                f"{exc}") from None
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
        session = self._connect()
        try:
            self.services = self._start(session)
        except Exception:
            # A configuration error found after login: leave no session behind.
            try:
                session.logout()
            except Exception as exc:  # the original error matters more
                LOG.debug("Logout after a failed start failed: %s", exc)
            raise
        drs_opts = CONF.vsphere_drs
        # A fresh event per start: a service started again after cleanup_host
        # must not find its passes told to stop (a loop of the earlier start
        # keeps the old, set, event and ends).
        self._stopping = stopping = threading.Event()
        self.operations = build_operations(self.services,
                                           PassSchedule(drs_opts.balance_interval), stopping)
        if drs_opts.mode == "builtin":
            self.drs_thread = threading.Thread(target=self._drs_loop, args=(stopping,),
                                               name="vsphere-drs", daemon=True)
            self.drs_thread.start()

    def _start(self, session: VSphereSession) -> Services:
        """The shared clients, once the clusters and datastores are found as configured."""
        opts = CONF.vsphere
        reader = ClusterStateReader(session, page_size=opts.maximum_objects)
        cache = ClusterCache(reader) if opts.cluster_cache else None
        vmops = VmOperations(session)
        verify: str | bool = opts.ca_file or (not opts.insecure)
        images = ImageCache(session, opts.image_cache_subdirectory_name, scheme="https",
                            verify=verify, page_size=opts.maximum_objects)
        vcenter_uuid = session.content.about.instanceUuid
        try:
            clusters = cluster_paths.select(reader.find_clusters(), opts.cluster_names)
        except cluster_paths.ClusterNameError as exc:
            raise ConfigurationError(
                reason=f"[vsphere] cluster_names: {exc} (vCenter {opts.host_ip})") from None
        for cluster in clusters:
            # With the cache, this is its one full read of the cluster.
            state = cache.current(cluster) if cache is not None else \
                reader.cluster_state(cluster)
            if not matching_datastores(state, opts.datastore_regex, list(state.hosts)):
                raise ConfigurationError(
                    reason=f"[vsphere] datastore_regex={opts.datastore_regex!r} matches no "
                    f"accessible datastore of cluster {cluster.name} (it has: "
                    f"{', '.join(d.name for d in state.datastores) or 'none'})")
            vm_group = CONF.vsphere_drs.instance_vm_group
            if vm_group and not any(g.name == vm_group and g.kind == "vm"
                                    for g in state.groups):
                LOG.warning("[vsphere_drs] instance_vm_group = %s: cluster %s has no such "
                            "DRS VM group; its instances are bound to no host group", vm_group,
                            cluster.path)
            if CONF.vsphere_drs.mode == "vcenter" and not state.vcenter_drs:
                LOG.warning("[vsphere_drs] mode = vcenter but vCenter DRS is not enabled on "
                            "cluster %s: vCenter cannot place instances there", cluster.path)
            if CONF.vsphere_drs.mode == "builtin" and CONF.vsphere_drs.balance_interval and \
                    state.vcenter_drs_behavior == "fullyAutomated":
                # Two balancers with different models undo each other's vMotions.
                LOG.warning("[vsphere_drs] mode = builtin balances cluster %s, whose own "
                            "vCenter DRS is fullyAutomated too: both will move the same VMs. "
                            "Set vCenter DRS to manual or partiallyAutomated, or [vsphere_drs] "
                            "balance_interval = 0, or mode = vcenter", cluster.path)
        nodes = Nodes(clusters, vcenter_uuid)
        drs_opts = CONF.vsphere_drs
        cluster_drs = ClusterDrs(session, DrsSettings(
            policy=drs_opts.policy, migration_threshold=drs_opts.migration_threshold,
            max_moves_per_pass=drs_opts.max_moves_per_pass, make_room=drs_opts.make_room,
            max_room_moves=drs_opts.max_room_moves,
            max_vmotions_per_host=drs_opts.max_vmotions_per_host,
            reserved_host_cpus=opts.reserved_host_cpus,
            reserved_host_memory_mb=opts.reserved_host_memory_mb,
            instance_vm_group=drs_opts.instance_vm_group))
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
                 ", ".join(f"{r.path} ({n})" for n, r in nodes.items()))
        return Services(session=session, states=ClusterStates(reader, nodes, cache), vmops=vmops,
                        images=images, rules=ClusterRules(session), drs=cluster_drs,
                        image_api=glance.API(), nodes=nodes, vm_refs=VmRefs(vmops),
                        spbm=self._storage_policies(session))

    @staticmethod
    def _storage_policies(session: VSphereSession) -> SpbmClient | None:
        """The storage policy service ([vsphere] pbm_enabled), its default policy found."""
        opts = CONF.vsphere
        if not opts.pbm_enabled:
            return None
        if not opts.pbm_default_policy:
            raise ConfigurationError(reason="[vsphere] pbm_default_policy is required with "
                                     "pbm_enabled = True (the storage policy of instances "
                                     "whose flavor names none)")
        try:
            location = session.enable_storage_policies(opts.pbm_wsdl_location)
            spbm = SpbmClient(session)
            spbm.policy(opts.pbm_default_policy)
        except UnknownStoragePolicy as exc:
            raise ConfigurationError(
                reason=f"[vsphere] pbm_default_policy={opts.pbm_default_policy!r}: "
                f"{exc}") from None
        except Exception as exc:  # suds (WSDL) and oslo.vmware errors alike
            raise ConfigurationError(
                reason=f"[vsphere] pbm_wsdl_location={opts.pbm_wsdl_location!r}: the storage "
                f"policy service cannot be used: {exc}") from None
        if opts.datastore_regex:
            LOG.warning("[vsphere] datastore_regex and pbm_enabled are both set: instances "
                        "go to datastores that match the regex and their storage policy "
                        "(Nova's in-tree driver ignored datastore_regex with pbm_enabled)")
        LOG.info("Storage policies on (SPBM WSDL %s); default policy %s", location,
                 opts.pbm_default_policy)
        return spbm

    def cleanup_host(self, host: str) -> None:
        self._stopping.set()
        if self.drs_thread is not None:
            self.drs_thread.join(timeout=30)
        if self.services is not None:
            self.services.session.logout()

    def _nodes(self) -> Nodes | dict:
        # Nova may ask for nodes before init_host: there are none yet.
        return self.services.nodes if self.services is not None else {}

    # -- DRS passes ------------------------------------------------------------------------

    def _drs_loop(self, stopping: threading.Event) -> None:
        """Evacuate hosts entering maintenance; balance each cluster when due."""
        nodes = self.services.nodes
        while not stopping.wait(CONF.vsphere_drs.poll_interval):
            for nodename in list(nodes):
                if stopping.is_set():
                    return
                try:
                    self.run_drs_pass(nodename)
                except Exception:  # keep the loop alive; the next pass retries
                    LOG.exception("DRS pass on %s failed", nodes[nodename].name)

    def run_drs_pass(self, nodename: str, force_balance: bool = False) -> list[PassReport]:
        """One DRS round for a cluster: maintenance evacuation, then balancing if due."""
        return self.operations.drs_passes.run_pass(nodename, force_balance)

    def balance_cluster(self, nodename: str, dry_run: bool = False) -> PassReport:
        """One balancing pass over the cluster of ``nodename``, now."""
        return self.operations.drs_passes.balance(nodename, dry_run)

    # -- nodes and resources (ops/resources.py) ---------------------------------------

    def get_available_nodes(self, refresh: bool = False) -> list[str]:
        return list(self._nodes())

    def get_nodenames_by_uuid(self, refresh: bool = False) -> dict[str, str]:
        return self.services.nodes.by_uuid() if self.services is not None else {}

    def node_is_available(self, nodename: str) -> bool:
        return nodename in self._nodes()

    def update_provider_tree(self, provider_tree, nodename: str, allocations=None) -> None:
        self.operations.resources.update_provider_tree(provider_tree, nodename)

    def get_available_resource(self, nodename: str) -> dict:
        return self.operations.resources.available_resource(nodename)

    def get_host_ip_addr(self) -> str:
        return CONF.vsphere.host_ip

    # -- instances: spawn, destroy, power (ops/spawn.py, ops/destroy.py, ops/power.py) --

    def instance_exists(self, instance) -> bool:
        return self.services.vm_refs.refind(instance, required=False) is not None

    def get_info(self, instance, use_cache: bool = True):
        return self.operations.power.info(instance)

    def _managed_vms(self):
        for nodename in self.services.nodes:
            for vm in self.services.states.read(nodename).vms:
                if vm.managed_by_nova and vm.instance_uuid:
                    yield vm

    def list_instances(self) -> list[str]:
        return [vm.name for vm in self._managed_vms()]

    def list_instance_uuids(self) -> list[str]:
        return [vm.instance_uuid for vm in self._managed_vms()]

    def spawn(self, context, instance, image_meta, injected_files, admin_password, allocations,
              network_info=None, block_device_info=None, power_on=True, accel_info=None,
              share_info=None) -> None:
        self.operations.spawn.spawn(context, instance, image_meta, network_info,
                                    block_device_info, power_on, injected_files, admin_password)

    def destroy(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, destroy_secrets=True) -> None:
        """Remove the VM; a VM that is already gone is not an error."""
        self.operations.destroy.destroy(context, instance, block_device_info, destroy_disks)

    def cleanup(self, context, instance, network_info, block_device_info=None,
                destroy_disks=True, migrate_data=None, destroy_vifs=True,
                destroy_secrets=True) -> None:
        """Whatever destroy left: a VM still registered is removed."""
        self.destroy(context, instance, network_info, block_device_info, destroy_disks)

    def reboot(self, context, instance, network_info, reboot_type, block_device_info=None,
               bad_volumes_callback=None, accel_info=None, share_info=None) -> None:
        self.operations.power.reboot(instance, reboot_type)

    def power_off(self, instance, timeout: int = 0, retry_interval: int = 0) -> None:
        self.operations.power.power_off(instance, timeout, retry_interval)

    def power_on(self, context, instance, network_info, block_device_info=None,
                 accel_info=None, share_info=None) -> None:
        self.operations.power.power_on(instance)

    def resume_state_on_host_boot(self, context, instance, network_info,
                                  block_device_info=None, share_info=None) -> None:
        """After nova-compute restarts: an instance that should run is powered on."""
        self.operations.power.power_on(instance)

    # -- image cache (ops/image_cache.py) ----------------------------------------------------

    def cache_image(self, context, image_id: str) -> bool:
        """The image in the cache of every datastore a spawn may use (True: copies made)."""
        return self.operations.image_cache.precache(context, image_id)

    def manage_image_cache(self, context, all_instances) -> None:
        """Age out cached images no VM and no instance of this host uses."""
        self.operations.image_cache.age_images(context, all_instances)

    # -- resize and cold migration (ops/migrate.py) ------------------------------------------

    def migrate_disk_and_power_off(self, context, instance, dest, flavor, network_info,
                                   block_device_info=None, timeout=0,
                                   retry_interval=0) -> str:
        return self.operations.migrations.migrate_disk_and_power_off(
            context, instance, dest, flavor, network_info, block_device_info, timeout,
            retry_interval)

    def finish_migration(self, context, migration, instance, disk_info, network_info,
                         image_meta, resize_instance, allocations, block_device_info=None,
                         power_on=True, share_info=None) -> None:
        self.operations.migrations.finish_migration(
            context, migration, instance, disk_info, network_info, image_meta,
            resize_instance, allocations, block_device_info, power_on)

    def confirm_migration(self, context, migration, instance, network_info) -> None:
        self.operations.migrations.confirm_migration(context, migration, instance,
                                                     network_info)

    def finish_revert_migration(self, context, instance, network_info, migration,
                                block_device_info=None, power_on=True,
                                share_info=None) -> None:
        self.operations.migrations.finish_revert_migration(
            context, instance, network_info, migration, block_device_info, power_on)

    # -- live migration and host operations (ops/live_migrate.py, ops/host.py) ---------------

    def check_can_live_migrate_destination(self, context, instance, src_compute_info,
                                           dst_compute_info, block_migration=False,
                                           disk_over_commit=False):
        return self.operations.live_migrations.check_destination(
            context, instance, src_compute_info, dst_compute_info)

    def cleanup_live_migration_destination_check(self, context, dest_check_data) -> None:
        self.operations.live_migrations.cleanup_destination_check(dest_check_data)

    def check_source_migrate_data_at_dest(self, ctxt, instance, migrate_data, migration,
                                          limits, allocs):
        return self.operations.live_migrations.check_at_dest(instance, migrate_data, allocs)

    def check_can_live_migrate_source(self, context, instance, dest_check_data,
                                      block_device_info=None):
        return self.operations.live_migrations.check_source(instance, dest_check_data,
                                                            block_device_info)

    def pre_live_migration(self, context, instance, block_device_info, network_info,
                           disk_info, migrate_data):
        return self.operations.live_migrations.pre_live_migration(context, instance,
                                                                  network_info, migrate_data)

    def live_migration(self, context, instance, dest, post_method, recover_method,
                       block_migration=False, migrate_data=None) -> None:
        self.operations.live_migrations.live_migration(
            context, instance, dest, post_method, recover_method, block_migration,
            migrate_data)

    def live_migration_abort(self, instance) -> None:
        self.operations.live_migrations.abort(instance)

    def live_migration_force_complete(self, instance) -> None:
        raise NotImplementedError(FORCE_COMPLETE_UNSUPPORTED)

    def post_live_migration(self, context, instance, block_device_info,
                            migrate_data=None) -> None:
        self.operations.live_migrations.post_at_source_cleanup(instance, migrate_data)

    def post_live_migration_at_source(self, context, instance, network_info) -> None:
        self.operations.live_migrations.prune_source_rules(instance)

    def post_live_migration_at_destination(self, context, instance, network_info,
                                           block_migration=False,
                                           block_device_info=None) -> None:
        self.operations.live_migrations.post_at_destination(context, instance)

    def rollback_live_migration_at_destination(self, context, instance, network_info,
                                               block_device_info, destroy_disks=True,
                                               migrate_data=None) -> None:
        self.operations.live_migrations.rollback_at_destination(instance, migrate_data)

    def host_maintenance_mode(self, host: str, mode: bool) -> str:
        return self.operations.hosts.maintenance_mode(host, mode)

    def set_host_enabled(self, enabled: bool) -> str:
        raise NotImplementedError(SET_HOST_ENABLED_UNSUPPORTED)

    def get_host_uptime(self) -> str:
        return self.operations.hosts.uptime()

    # -- snapshots and volumes (ops/instance_snapshot.py, ops/volumes.py) --------------------

    def snapshot(self, context, instance, image_id, update_task_state) -> None:
        self.operations.snapshots.snapshot(context, instance, image_id, update_task_state)

    def get_volume_connector(self, instance) -> dict:
        return self.operations.volumes.get_volume_connector(instance)

    def attach_volume(self, context, connection_info, instance, mountpoint, disk_bus=None,
                      device_type=None, encryption=None) -> None:
        self.operations.volumes.attach_volume(context, connection_info, instance, mountpoint,
                                              disk_bus, device_type, encryption)

    def detach_volume(self, context, connection_info, instance, mountpoint,
                      encryption=None) -> None:
        self.operations.volumes.detach_volume(context, connection_info, instance, mountpoint,
                                              encryption)

    def extend_volume(self, context, connection_info, instance, requested_size) -> None:
        self.operations.volumes.extend_volume(context, connection_info, instance,
                                              requested_size)

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
        self.operations.guest.attach_interface(context, instance, image_meta, vif)

    def detach_interface(self, context, instance, vif) -> None:
        self.operations.guest.detach_interface(context, instance, vif)

    def rescue(self, context, instance, network_info, image_meta, rescue_password,
               block_device_info, share_info=None) -> None:
        self.operations.guest.rescue(context, instance, network_info, image_meta,
                                     rescue_password, block_device_info, share_info)

    def unrescue(self, context, instance) -> None:
        self.operations.guest.unrescue(context, instance)

    def suspend(self, context, instance) -> None:
        self.operations.guest.suspend(context, instance)

    def resume(self, context, instance, network_info, block_device_info=None,
               share_info=None) -> None:
        self.operations.guest.resume(context, instance, network_info, block_device_info,
                                     share_info)

    def pause(self, instance) -> None:
        raise NotImplementedError(PAUSE_UNSUPPORTED)

    def unpause(self, instance) -> None:
        raise NotImplementedError(PAUSE_UNSUPPORTED)

    def set_admin_password(self, instance, new_pass) -> None:
        raise NotImplementedError(SET_PASSWORD_UNSUPPORTED)

    def get_vnc_console(self, context, instance):
        return self.operations.consoles.vnc(context, instance)

    def get_mks_console(self, context, instance):
        return self.operations.consoles.mks(context, instance)

    def get_serial_console(self, context, instance):
        raise NotImplementedError(SERIAL_UNSUPPORTED)

    def get_console_output(self, context, instance) -> bytes:
        return self.operations.consoles.output(context, instance)

    def get_diagnostics(self, instance) -> dict:
        return self.operations.diagnostics.legacy(instance)

    def get_instance_diagnostics(self, instance):
        return self.operations.diagnostics.instance(instance)
