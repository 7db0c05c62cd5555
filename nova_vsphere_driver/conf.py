"""Configuration options: ``[vsphere]`` (vCenter access) and ``[vsphere_drs]``.

Options whose names exist in Nova's in-tree ``[vmware]`` group keep their
meaning there, so an operator can move a configuration across by renaming
the group.
"""

from __future__ import annotations

from oslo_config import cfg

vsphere_group = cfg.OptGroup(
    "vsphere", title="vSphere driver options",
    help="How nova-compute reaches vCenter and which clusters it manages. Each cluster "
    "is reported to Nova as one compute node.")

vsphere_opts = [
    cfg.HostAddressOpt("host_ip", help="vCenter server host name or IP address."),
    cfg.PortOpt("host_port", default=443, help="vCenter server port."),
    cfg.StrOpt("host_username", help="User name for vCenter."),
    cfg.StrOpt("host_password", secret=True, help="Password for vCenter."),
    cfg.StrOpt("ca_file",
               help="CA bundle used to verify vCenter's certificate. Without it the "
               "system CA store is used."),
    cfg.BoolOpt("insecure", default=False,
                help="Do not verify vCenter's certificate. Only for test setups; a "
                "warning is logged at start."),
    cfg.ListOpt("cluster_names", default=[],
                help="Clusters this nova-compute manages. Each becomes one Nova compute "
                "node (hypervisor) whose resources are those of the cluster's usable hosts. "
                "A cluster is named by its name, or -- where several datacenters have a "
                "cluster of that name -- by its datacenter and name, 'dc1/cluster-a' "
                "(folders holding the datacenter may go in front, 'emea/dc1/cluster-a'; a "
                "leading '/' anchors the path at the root folder). A '/' inside a name is "
                "written '%2f', as vCenter writes it."),
    cfg.StrOpt("datastore_regex",
               help="Regular expression for the datastores instances may use. Default: "
               "every datastore mounted by the cluster's hosts."),
    cfg.StrOpt("wsdl_location",
               help="WSDL URL for vCenter endpoints that do not serve "
               "/sdk/vimService.wsdl themselves."),
    cfg.IntOpt("api_retry_count", default=10, min=0,
               help="How many times a vCenter call is retried on a connection or "
               "session error."),
    cfg.FloatOpt("task_poll_interval", default=0.5, min=0.01,
                 help="Seconds between polls of a running vCenter task."),
    cfg.IntOpt("connection_pool_size", default=10, min=1,
               help="Maximum HTTP connections to vCenter kept open per session."),
    cfg.IntOpt("maximum_objects", default=1000, min=1,
               help="Page size of property collector reads (maxObjects), and most "
               "objects one update of the cluster cache carries (maxObjectUpdates)."),
    cfg.IntOpt("reserved_host_memory_mb", default=0, min=0,
               help="Memory (MB) held back on every ESXi host; reported to placement as "
               "reserved, summed over the cluster's usable hosts."),
    cfg.IntOpt("reserved_host_cpus", default=0, min=0,
               help="Physical CPUs held back on every ESXi host, summed over the "
               "cluster's usable hosts."),
    cfg.StrOpt("vm_folder", default="OpenStack",
               help="Inventory folder (under each datacenter's VM folder) holding the "
               "instances; created when missing."),
    cfg.StrOpt("image_cache_subdirectory_name", default="_nova_image_cache",
               help="Folder on each datastore caching Glance images."),
    cfg.BoolOpt("use_linked_clone", default=True,
                help="Root disks are delta disks over the cached image (fast, small); "
                "False makes a full copy of the image per instance."),
    cfg.FloatOpt("api_timeout", default=300.0, min=1.0,
                 help="Upper bound in seconds on any wait for a vCenter task."),
    cfg.FloatOpt("cluster_read_max_age", default=10.0, min=0.0,
                 help="Seconds a read of a cluster's state may be reused when Nova asks for "
                 "its provider tree between periodic resource updates: Nova does at every "
                 "instance and move claim, one claim at a time under its resource lock, "
                 "so reading the cluster each time serialises a burst of builds behind "
                 "vCenter. The periodic update (get_available_resource) always reads "
                 "vCenter, and spawns in flight are counted through DRS claims whatever "
                 "the read's age. 0 reads the cluster at every call."),
    cfg.BoolOpt("cluster_cache", default=True,
                help="Keep each managed cluster's state from vCenter's update stream (one "
                "property collector of the driver's own, WaitForUpdatesEx): a read then "
                "costs what changed since the last one, not what the cluster holds, so "
                "cluster_read_max_age = 0 is cheap. The whole cluster is read at start "
                "and again only when vCenter loses the session or the collector's "
                "version. False reads every cluster in full at every read (as a check of "
                "the cache, or where a vCenter proxy cannot serve update waits)."),
    cfg.BoolOpt("pbm_enabled", default=False,
                help="Storage policies (vCenter's storage policy service, SPBM): each "
                "instance's disks get the policy of its flavor (vsphere:storage_policy, or "
                "Nova's vmware:storage_policy) or pbm_default_policy, on datastores "
                "compatible with it. datastore_regex, when set, still applies too."),
    cfg.StrOpt("pbm_wsdl_location",
               help="URL of the storage policy service's WSDL (file:// or https://). "
               "Default: the WSDL oslo.vmware ships for vCenter's version."),
    cfg.StrOpt("pbm_default_policy",
               help="Storage policy of instances whose flavor names none; required with "
               "pbm_enabled, and must exist in vCenter."),
    cfg.StrOpt("default_vif_model", default="vmxnet3",
               choices=["e1000", "e1000e", "pcnet", "vmxnet", "vmxnet3", "sriov"],
               help="Network adapter of instances whose image sets no hw_vif_model. Nova's "
               "in-tree driver gave them e1000; vmxnet3 is faster and every current guest "
               "has its driver (Windows through VMware Tools)."),
    # VNC consoles are served by each ESXi host, one TCP port per VM.
    cfg.PortOpt("vnc_port", default=5900,
                help="First VNC port on the ESXi hosts. A VM's VNC console gets the lowest "
                "port of the range not used by another VM on its host; the hosts' firewalls "
                "must let the noVNC proxy reach the range. (ESXi 7.0 and later have no VNC "
                "server: use the WebMKS console there.)"),
    cfg.IntOpt("vnc_port_total", default=10000, min=1,
               help="Number of VNC ports, starting at vnc_port, for the VMs of one ESXi "
               "host."),
]

vsphere_drs_group = cfg.OptGroup(
    "vsphere_drs", title="Host placement inside clusters",
    help="The built-in DRS picks the ESXi host of each new instance, balances load by "
    "vMotion and evacuates hosts entering maintenance. It also works where vCenter's "
    "own DRS is not licensed.")

vsphere_drs_opts = [
    cfg.StrOpt("mode", default="builtin", choices=[
        ("builtin", "this driver picks hosts and balances the cluster"),
        ("vcenter", "no host is given at creation; vCenter DRS decides")],
        help="Who places instances on ESXi hosts."),
    cfg.StrOpt("policy", default="balanced",
               help="Placement/balancing policy (a stevedore plugin in the "
               "nova_vsphere_driver.drs.policies namespace): balanced or packed."),
    cfg.IntOpt("migration_threshold", default=3, min=1, max=5,
               help="1 (conservative: only large imbalances are corrected) to 5 "
               "(aggressive)."),
    cfg.IntOpt("balance_interval", default=300, min=0,
               help="Seconds between balancing passes per cluster; 0 disables balancing."),
    cfg.IntOpt("max_moves_per_pass", default=8, min=0,
               help="Maximum vMotions one balancing pass issues."),
    cfg.BoolOpt("dry_run", default=False,
                help="Plan balancing moves and log them, but issue no vMotion. Hosts "
                "entering maintenance mode are still evacuated: the operator asked for it."),
    cfg.IntOpt("poll_interval", default=20, min=1,
               help="Seconds between checks of each cluster for hosts entering maintenance "
               "mode (builtin mode), which are then evacuated."),
    cfg.BoolOpt("make_room", default=True,
                help="When a new instance fits the cluster's free capacity but no single "
                "host, vMotion up to max_room_moves other VMs to free one host for it (as "
                "vSphere DRS does). Placement's max_unit then reports what one host can "
                "take after such moves."),
    cfg.IntOpt("max_room_moves", default=4, min=0,
               help="Most vMotions one spawn may need to make room for its instance."),
    cfg.StrOpt("instance_vm_group",
               help="A DRS VM group, made by the operator in vCenter, that every "
               "instance's VM joins in the cluster it runs in (at spawn, resize and "
               "migration). The cluster's enabled must VM-Host rules on this group -- "
               "'must run on' or 'must not run on' a host group -- then bind every instance "
               "of that cluster: the built-in DRS places instances only on hosts those rules "
               "allow, placement's max_unit counts only those hosts (a flavor that fits only "
               "elsewhere is not advertised), and vCenter's DRS and HA keep to them too. Use "
               "it to keep instances off hosts reserved for other workloads or licences. A "
               "cluster without this group binds its instances to no host group (a warning "
               "at start). Unset: no such binding."),
    cfg.IntOpt("max_vmotions_per_host", default=8, min=1,
               help="Concurrent vMotions per ESXi host (as source or target) while a "
               "balancing or evacuation plan runs: its moves are grouped into waves that "
               "never exceed it, and the plan's expected duration follows from them. The "
               "default is vSphere's own limit on 10 GbE vMotion networks (8 per host); use "
               "4 where the vMotion network is 1 GbE, or less to spare a busy network."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(vsphere_group)
    conf.register_opts(vsphere_opts, group=vsphere_group)
    conf.register_group(vsphere_drs_group)
    conf.register_opts(vsphere_drs_opts, group=vsphere_drs_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``oslo.config.opts`` entry point (oslo-config-generator)."""
    return [(vsphere_group, vsphere_opts), (vsphere_drs_group, vsphere_drs_opts)]
