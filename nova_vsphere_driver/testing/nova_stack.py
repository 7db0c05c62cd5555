"""Real Nova in the loop: Nova's services in-process against the bundled vCenter simulator.

:class:`NovaStack` starts, in this process:

* the vCenter simulator (HTTPS, its default inventory unless told otherwise);
* Nova's API (wsgi-intercept), conductor and scheduler, and placement (the
  ``openstack-placement`` package), all from Nova's own functional-test
  fixtures, on SQLite databases and the fake oslo.messaging bus;
* one nova-compute service loading ``compute_driver = vsphere.VSphereDriver``
  through Nova's ordinary driver loading, configured in ``[vsphere]`` to
  manage the simulator's clusters (each cluster one compute node) -- or,
  with ``computes=``, several nova-compute services, each with its own
  ``cluster_names`` (live migration needs two);
* Nova's fake Neutron and Glance.  Ports bind as OVS ports on ``br-int``,
  which is one of the simulator's distributed port groups (or on the port
  group :meth:`NovaStack.create_port` names); Glance serves a small VMDK
  image (:attr:`NovaStack.image_id`) and keeps what is uploaded to it
  (instance snapshots), as Glance does.

It is a ``fixtures.Fixture`` built from Nova's fixtures directly rather than
on ``nova.test.TestCase``, so pytest (module-scoped), the demo and anything
else can use it: ``with NovaStack() as stack: ...``.  The fixtures Nova
ships expect a test case (``flags``, ``stub_out``, ``useFixture``, ``id``);
the stack provides those itself.

Nova decides its concurrency mode (native threads, or the deprecated
eventlet) when ``nova.monkey_patch`` first runs, which must be before Nova or
oslo.vmware is imported: call :func:`.nova_env.prepare` before importing this
module (importing it does nothing else).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator

import fixtures
import futurist
import nova.conf
from nova import context as nova_context
from nova import objects, thread_pool_factory
from nova.api.openstack import wsgi_app
from nova.compute import api as compute_api
from nova.compute import rpcapi as compute_rpcapi
from nova.objects import base as objects_base
from nova.scheduler import utils as scheduler_utils
from nova.scheduler.client import report
from nova.tests import fixtures as nova_fixtures
from nova.tests.functional import fixtures as func_fixtures
from oslo_utils.fixture import uuidsentinel

from nova_vsphere_driver import conf as vsphere_conf
from nova_vsphere_driver.simulator import Simulator, SimulatorServer
from nova_vsphere_driver.testing import nova_env
from nova_vsphere_driver.testing.glance import StoringGlanceFixture

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)


#: The image Glance serves: a flat ("preallocated", the in-tree driver's
#: default vmware_disktype) 1 MiB VMDK extent, the disk's bytes as they are.
IMAGE_DATA = b"\xeb\x63\x90" + b"\0" * (1024 * 1024 - 3)
IMAGE_DISK_TYPE = "preallocated"
IMAGE_ID = "c5d1a0a4-3c37-4c5e-9d5b-6f5d3b2a9e10"

FINAL_STATES = ("ACTIVE", "SHUTOFF", "ERROR")

#: Loggers quiet in the demo (everything of Nova's below WARNING).
NOISY_LOGGERS = ("nova", "placement", "oslo", "oslo_messaging", "oslo_db", "oslo_vmware",
                 "oslo.messaging", "oslo_concurrency", "oslo_policy", "stevedore", "keystoneauth",
                 "suds", "urllib3", "alembic", "sqlalchemy", "migrate", "routes", "wsgi_intercept",
                 "nova_vsphere_driver.simulator", "py.warnings")


class StackError(RuntimeError):
    """Something in the stack did not do what it should (message says what)."""


def api_paste_ini() -> str:
    """Nova's api-paste.ini: pip installs it as data, under ``<prefix>/etc/nova/``."""
    import site
    import sysconfig

    prefixes = [sys.prefix, sysconfig.get_path("data"), getattr(site, "USER_BASE", None)]
    candidates = [os.path.join(p, "etc", "nova", "api-paste.ini") for p in prefixes if p]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise StackError(f"Nova's api-paste.ini is in none of {', '.join(candidates)}: is Nova "
                     f"installed in this Python environment? {nova_env.INSTALL_HINT}")


def _keep_executors_for_later_stacks() -> None:
    """Nova's shutdown_all_executors() for in-process stacks: nothing (see NovaStack)."""


class NovaStack(fixtures.Fixture):
    """Simulator + Nova API/conductor/scheduler/placement/compute, in-process.

    After ``setUp()`` (or ``with NovaStack() as stack``):

    * ``api``: Nova's REST client (admin, microversion ``latest``);
    * ``placement``: placement's REST client (``.get(url, version=...)``);
    * ``sim_server`` / ``sim``: the simulator server and its state;
    * ``compute``: the nova-compute service; ``driver``: its VSphereDriver;
    * ``nodes``: cluster name -> Nova node name; ``image_id``, ``network_id``;
    * ``computes`` / ``drivers``: every nova-compute service / driver by host
      name, and ``compute_of``: cluster name -> the host managing it.

    ``computes`` (host name -> cluster names) starts one nova-compute per
    entry in this process, each managing its clusters (as separate
    nova-compute processes would, one ``[vsphere] cluster_names`` each);
    ``compute`` and ``driver`` are then the first one's. Without it, one
    nova-compute (``compute_host``) manages all of ``clusters``.
    """

    def __init__(self, *, clusters: Iterable[str] = ("cluster-a", "cluster-b"),
                 inventory: dict | None = None, compute_host: str = "compute1",
                 name: str = "nova-vsphere-stack", conf: dict | None = None,
                 vsphere: dict | None = None, drs: dict | None = None,
                 sim_options: dict | None = None,
                 computes: dict[str, Iterable[str]] | None = None) -> None:
        super().__init__()
        if computes:
            self.compute_clusters = {host: tuple(names) for host, names in computes.items()}
            clusters = [c for names in self.compute_clusters.values() for c in names]
            compute_host = next(iter(self.compute_clusters))
            if len(set(clusters)) != len(clusters) or not all(self.compute_clusters.values()):
                raise StackError(f"computes={computes!r}: each nova-compute needs clusters, "
                                 "and a cluster can be managed by one nova-compute only")
        else:
            self.compute_clusters = {compute_host: tuple(clusters)}
        self.clusters = tuple(clusters)
        self.inventory = inventory
        self.compute_host = compute_host
        self.name = name
        self.extra_conf = dict(conf or {})
        self.extra_vsphere = dict(vsphere or {})
        self.extra_drs = dict(drs or {})
        self.sim_options = dict(sim_options or {})
        self.ctxt = None

    # -- what Nova's fixtures expect of a test case ------------------------------------

    def id(self) -> str:  # noqa: A003 - the testtools name the fixtures call
        return self.name

    def flags(self, group: str | None = None, **values) -> None:
        for key, value in values.items():
            CONF.set_override(key, value, group)
            self.addCleanup(CONF.clear_override, key, group)

    def stub_out(self, old: str, new) -> None:
        self.useFixture(fixtures.MonkeyPatch(old, new))

    # -- set-up --------------------------------------------------------------------------

    def _setUp(self) -> None:  # noqa: N802 - fixtures' name
        started = time.monotonic()
        self._start_simulator()
        self._reset_nova_globals()
        self._configure()
        self._start_databases()
        self._start_fakes()
        self._start_services()
        LOG.info("Nova stack up in %.1f s", time.monotonic() - started)

    def _start_simulator(self) -> None:
        server = SimulatorServer(Simulator(self.inventory, **self.sim_options), tls_enabled=True)
        server.start()
        self.addCleanup(server.stop)
        self.sim_server = server
        self.sim = server.simulator

    def _reset_nova_globals(self) -> None:
        """What nova.test.TestCase.setUp resets between tests (one process, many stacks)."""
        # Nova's own speed-up for its functional tests in threading mode:
        # idle executor workers exit quickly instead of lingering for seconds.
        futurist._thread.ThreadWorker.MAX_IDLE_FOR = 0.01
        self.useFixture(fixtures.NestedTempfile())
        self.useFixture(nova_fixtures.OpenStackSDKFixture())
        objects.register_all()
        objects_base.NovaObject.indirection_api = None
        objects.Service.clear_min_version_cache()
        compute_api.CELLS = []
        nova_context.reset_globals()
        compute_rpcapi.reset_globals()
        scheduler_utils.reset_globals()
        wsgi_app.init_global_data.reset()
        wsgi_app.init_application.reset()
        report.PLACEMENTCLIENT = None
        # A stopped service's graceful shutdown runs in a thread of its own and
        # ends with shutdown_all_executors(), which marks Nova's process-wide
        # executor factory shut down for good. ServiceFixture stubs it only until
        # its own cleanup; a shutdown finishing later (our cleanup_host stops DRS
        # loops and waits for them) broke every later stack in the process
        # ("Cannot create the default thread pool executor because shutdown has
        # been started"). In-process stacks never shut the process down: the
        # stub stays, and each stack resets the executors at its end instead.
        thread_pool_factory.shutdown_all_executors = _keep_executors_for_later_stacks
        self.addCleanup(self._stop_executors)

    @staticmethod
    def _stop_executors() -> None:
        # Nova's executors are process-wide; a later stack must start clean.
        thread_pool_factory.reset_all_executors()

    def _configure(self) -> None:
        self.useFixture(nova_fixtures.ConfFixture(CONF))
        lock_dir = self.useFixture(fixtures.TempDir()).path
        self.flags(group="oslo_concurrency", lock_path=lock_dir)
        self.useFixture(nova_fixtures.RPCFixture("nova.test"))
        # Notifications go nowhere (nothing here consumes them).
        CONF.set_default("driver", ["noop"], group="oslo_messaging_notifications")
        self.useFixture(nova_fixtures.ComputeNodeIdFixture())
        self.useFixture(nova_fixtures.AllServicesCurrent())
        self.useFixture(nova_fixtures.PrivsepNoHelperFixture())
        self.useFixture(fixtures.EnvironmentVariable("http_proxy"))
        self.useFixture(fixtures.EnvironmentVariable("https_proxy"))
        paste = api_paste_ini()
        vsphere_conf.register_opts(CONF)
        server = self.sim_server
        self.flags(compute_driver="vsphere.VSphereDriver", reserved_host_memory_mb=0,
                   reserved_host_disk_mb=0, instance_name_template="instance-%08x",
                   # The compute manager polls power states in its periodic
                   # task; tests and the demo run that task when they need it.
                   periodic_enable=False)
        # The driver polls a guest shutting down every retry interval (10 s by
        # default); the simulator's guests stop at once.
        self.flags(group="compute", shutdown_retry_interval=1)
        self.flags(max_concurrent_builds=10, max_concurrent_snapshots=10)
        self.flags(group="api_database", sqlite_synchronous=False)
        self.flags(group="wsgi", api_paste_config=paste)
        # Server groups: Nova counts members per nova-compute service, which
        # here manages whole clusters; the driver enforces the policies per
        # ESXi host with DRS rules. As the README tells operators: our
        # anti-affinity filter takes the place of Nova's (same class name,
        # loaded after Nova's), and the compute's late check is off.
        self.flags(group="filter_scheduler", host_subset_size=1,
                   build_failure_weight_multiplier=0.0,
                   available_filters=[
                       "nova.scheduler.filters.all_filters",
                       "nova_vsphere_driver.scheduler_filters.ServerGroupAntiAffinityFilter"])
        self.flags(group="workarounds", disable_group_policy_check_upcall=True)
        self.flags(group="quota", instances=-1, cores=-1, ram=-1, server_groups=-1,
                   server_group_members=-1)
        vsphere = dict(host_ip="127.0.0.1", host_port=server.port,
                       host_username=self.sim.username, host_password=self.sim.password,
                       ca_file=server.ca_file, cluster_names=list(self.clusters),
                       task_poll_interval=0.05, api_retry_count=2)
        vsphere.update(self.extra_vsphere)
        self.flags(group="vsphere", **vsphere)
        if self.extra_drs:
            self.flags(group="vsphere_drs", **self.extra_drs)
        for key, value in self.extra_conf.items():
            group, _, name = key.rpartition(".")
            self.flags(group=group or None, **{name: value})

    def _start_databases(self) -> None:
        self.useFixture(nova_fixtures.Database(database="api"))
        cells = nova_fixtures.CellDatabases()
        ctxt = nova_context.get_context()
        cell0 = objects.CellMapping(
            context=ctxt, uuid=objects.CellMapping.CELL0_UUID, name="cell0",
            transport_url="fake://nowhere/", database_connection=objects.CellMapping.CELL0_UUID)
        cell0.create()
        cells.add_cell_database(objects.CellMapping.CELL0_UUID)
        cell1 = objects.CellMapping(
            context=ctxt, uuid=uuidsentinel.cell1, name="cell1",
            transport_url="fake://nowhere/", database_connection=uuidsentinel.cell1)
        cell1.create()
        cells.add_cell_database(uuidsentinel.cell1, default=True)
        self.useFixture(cells)
        self.cell1 = cell1
        self.flags(transport_url=cell1.transport_url)

    def _http_only_intercepts(self) -> None:
        """wsgi-intercept may take plain HTTP only; vCenter is reached over real HTTPS.

        Placement and Nova's API run behind wsgi-intercept, which replaces
        urllib3's connection classes for HTTP *and* HTTPS, and its HTTPS class
        breaks every real HTTPS request under urllib3 2 ("unexpected keyword
        argument 'cert_reqs'"), the driver's to the simulator included.  Both
        intercepted endpoints are plain HTTP, so HTTPS keeps urllib3's class.
        """
        from requests.packages.urllib3 import connection, connectionpool
        from wsgi_intercept import requests_intercept

        real_install = requests_intercept.install

        def install() -> None:
            real_install()
            connectionpool.HTTPSConnectionPool.ConnectionCls = connection.HTTPSConnection

        self.useFixture(fixtures.MonkeyPatch(
            "wsgi_intercept.requests_intercept.install", install))

    def _start_fakes(self) -> None:
        self._http_only_intercepts()
        placement = self.useFixture(func_fixtures.PlacementFixture())
        self.placement = placement.api
        self.neutron = self.useFixture(nova_fixtures.NeutronFixture(self))
        self.network_id = self.neutron.network_1["id"]
        self.glance = self.useFixture(StoringGlanceFixture(self))
        self.image_id = self.add_image(IMAGE_ID, "vmdk-image", IMAGE_DATA)
        self.useFixture(nova_fixtures.RealPolicyFixture())

    def _start_service(self, name: str, host: str | None = None, **kwargs):
        if host is not None:
            self.useFixture(nova_fixtures.ConfPatcher(host=host))
        service = self.useFixture(nova_fixtures.ServiceFixture(name, host, **kwargs)).service
        self.addCleanup(service.stop)
        return service

    def _start_services(self) -> None:
        self.conductor = self._start_service("conductor")
        self.scheduler = self._start_service("scheduler")
        # The host mapping exists before nova-compute starts (as
        # nova-manage cell_v2 discover_hosts would leave it), so its start-up
        # can update the scheduler.
        self.ctxt = nova_context.get_admin_context()
        self.computes, self.drivers, self.compute_of = {}, {}, {}
        for host, clusters in self.compute_clusters.items():
            objects.HostMapping(context=self.ctxt, host=host,
                                cell_mapping=self.cell1).create()
            # The driver reads cluster_names once, in init_host (the
            # service's start): each nova-compute keeps its own clusters.
            self.flags(group="vsphere", cluster_names=list(clusters))
            compute = self._start_service(
                "compute", host=host, cell=self.cell1, topic_alt=compute_rpcapi.RPC_TOPIC_ALT)
            self.computes[host] = compute
            self.drivers[host] = compute.manager.driver
            self.compute_of.update(dict.fromkeys(clusters, host))
            with nova_context.target_cell(self.ctxt, self.cell1) as cctxt:
                for node in objects.ComputeNodeList.get_all_by_host(cctxt, host):
                    node.mapped = 1
                    node.save()
        self.compute = self.computes[self.compute_host]
        self.driver = self.drivers[self.compute_host]
        api = self.useFixture(nova_fixtures.OSAPIFixture(api_version="v2.1"))
        self.api = api.admin_api
        self.api.microversion = "latest"
        # Node names are "<cluster moref>.<vCenter UUID>": match Nova's
        # hypervisors to the simulator's clusters.
        hypervisors = [h["hypervisor_hostname"] for h in
                       self.api.api_get("/os-hypervisors").body["hypervisors"]]
        self.nodes = {}
        for cluster in self.clusters:
            prefix = self.sim_cluster(cluster).moid + "."
            found = [h for h in hypervisors if h.startswith(prefix)]
            if len(found) != 1:
                raise StackError(f"Nova has {len(found)} hypervisors for cluster {cluster} "
                                 f"({prefix}*): {sorted(hypervisors)}")
            self.nodes[cluster] = found[0]

    @contextlib.contextmanager
    def microversion(self, version: str) -> Iterator[None]:
        """Talk to Nova's API at ``version`` for a while (the default is ``latest``)."""
        old, self.api.microversion = self.api.microversion, version
        try:
            yield
        finally:
            self.api.microversion = old

    def cluster_of(self, server: dict) -> str:
        """The cluster name of the compute node a server is on."""
        nodename = server.get("OS-EXT-SRV-ATTR:hypervisor_hostname")
        for cluster, node in self.nodes.items():
            if node == nodename:
                return cluster
        raise StackError(f"server {server['name']} is on node {nodename!r}, none of "
                         f"{sorted(self.nodes.values())}")

    # -- Glance, flavors ---------------------------------------------------------------

    def add_image(self, image_id: str, name: str, data: bytes) -> str:
        import io

        self.glance.create(None, {
            "id": image_id, "name": name, "status": "active", "visibility": "public",
            "container_format": "bare", "disk_format": "vmdk", "size": len(data),
            "min_ram": 0, "min_disk": 0,
            "properties": {"vmware_disktype": IMAGE_DISK_TYPE,
                           "vmware_adaptertype": "lsiLogic", "architecture": "x86_64"},
        }, data=io.BytesIO(data))
        return image_id

    def image_data(self, image_id: str) -> bytes | None:
        """The bytes Glance holds for an image (None: nothing was uploaded)."""
        return self.glance._imagedata.get(image_id)

    # -- Neutron -------------------------------------------------------------------------

    def create_port(self, bridge: str | None = None, *, vif_type: str | None = None,
                    vif_details: dict | None = None) -> dict:
        """A new port on the stack's network (as ``openstack port create`` makes one).

        ``bridge``: the bridge Neutron's OVS binding names (``binding:vif_details``
        ``bridge_name``), i.e. the port group the driver puts the NIC on;
        without it, Nova's default (``br-int``). ``vif_type`` and
        ``vif_details``: another binding, as a Neutron backend gives it (e.g.
        ``dvs`` with ``dvs_port_group_name`` and ``dvs_port_key``).
        """
        port = self.neutron.create_port({"port": {"network_id": self.network_id}})["port"]
        # The fixture fills a new port from its template: set the binding on
        # the port it keeps.
        kept = self.neutron._ports[port["id"]]
        if bridge is not None:
            kept["binding:vif_details"] = {"bridge_name": bridge}
        if vif_type is not None:
            kept["binding:vif_type"] = vif_type
        if vif_details is not None:
            kept["binding:vif_details"] = dict(vif_details)
        return self.neutron.show_port(port["id"])["port"]

    def create_flavor(self, name: str, vcpus: int, memory_mb: int, root_gb: int = 1,
                      extra_specs: dict | None = None) -> str:
        flavor = self.api.post_flavor({"flavor": {
            "name": name, "vcpus": vcpus, "ram": memory_mb, "disk": root_gb}})
        if extra_specs:
            self.api.post_extra_spec(flavor["id"], {"extra_specs": extra_specs})
        return flavor["id"]

    # -- servers -----------------------------------------------------------------------

    def server_body(self, name: str, flavor_id: str, *, image: bool = True,
                    networks: str | list | None = None, min_count: int | None = None,
                    group: str | None = None, cluster: str | None = None,
                    image_ref: str | None = None) -> dict:
        server: dict = {"name": name, "flavorRef": flavor_id,
                        "networks": networks if networks is not None
                        else [{"uuid": self.network_id}]}
        if image:
            server["imageRef"] = image_ref or self.image_id
        if cluster:
            # Admin-only (microversion 2.74): ask the scheduler for this node.
            server["hypervisor_hostname"] = self.nodes[cluster]
        if min_count:
            server["min_count"] = min_count
            server["max_count"] = min_count
        body = {"server": server}
        if group:
            body["os:scheduler_hints"] = {"group": group}
        return body

    def boot(self, name: str, flavor_id: str, *, wait: bool = True,
             status: str | tuple[str, ...] = "ACTIVE", timeout: float = 60.0, **kw) -> dict:
        server = self.api.post_server(self.server_body(name, flavor_id, **kw))
        if not wait:
            return server
        return self.wait_for_server(server["id"], status, timeout=timeout)

    def boot_many(self, prefix: str, flavor_id: str, count: int, *, timeout: float = 120.0,
                  **kw) -> list[dict]:
        """Multi-create (``min_count``): one API request, ``count`` servers; waits for all."""
        self.api.post_server(self.server_body(prefix, flavor_id, min_count=count, **kw))
        deadline = time.monotonic() + timeout
        while True:
            servers = [s for s in self.api.get_servers(search_opts={"name": f"^{prefix}"})]
            if len(servers) >= count and all(s["status"] in FINAL_STATES for s in servers):
                return servers
            if time.monotonic() > deadline:
                states = sorted(f"{s['name']}={s['status']}" for s in servers)
                raise StackError(f"{count} servers {prefix}-*: not all ACTIVE/ERROR after "
                                 f"{timeout:.0f} s: {', '.join(states)}")
            time.sleep(0.1)

    def wait_for_server(self, server_id: str, status: str | tuple[str, ...] = "ACTIVE",
                        timeout: float = 60.0, task_state_none: bool = True,
                        request_id: str | None = None) -> dict:
        """Wait for ``status`` (and no task); StackError when the server cannot get there.

        ``request_id``: the API request of an action; when its instance
        action records a failed step while the server is idle in another
        status (e.g. a failed suspend leaves it ACTIVE), fail at once with
        Nova's reason instead of waiting for the timeout.
        """
        wanted = (status,) if isinstance(status, str) else tuple(status)
        deadline = time.monotonic() + timeout
        while True:
            server = self.api.get_server(server_id)
            task = server.get("OS-EXT-STS:task_state")
            if server["status"] in wanted and (not task_state_none or task is None):
                return server
            if request_id and task is None:
                failure = self.action_failure(server_id, request_id)
                if failure:
                    raise StackError(f"server {server['name']} ({server_id}) is "
                                     f"{server['status']}, not {'/'.join(wanted)}: {failure}")
            if server["status"] == "ERROR" and "ERROR" not in wanted:
                fault = (server.get("fault") or {}).get("message", "no fault recorded")
                raise StackError(f"server {server['name']} ({server_id}) went to ERROR: "
                                 f"{fault}")
            if time.monotonic() > deadline:
                raise StackError(f"server {server['name']} ({server_id}) is {server['status']}"
                                 f" (task {task}) after {timeout:.0f} s, not "
                                 f"{'/'.join(wanted)}")
            time.sleep(0.05)

    def action(self, server_id: str, action: str, body=None, *, status: str = "ACTIVE",
               timeout: float = 60.0) -> dict:
        response = self.api.api_post(f"/servers/{server_id}/action", {action: body})
        return self.wait_for_server(server_id, status, timeout=timeout,
                                    request_id=response.headers.get("x-openstack-request-id"))

    def action_failure(self, server_id: str, request_id: str) -> str | None:
        """The failed steps of one instance action (Nova's events), or None."""
        from nova.tests.functional.api import client

        try:
            action = self.api.get_instance_action_details(server_id, request_id)
        except client.OpenStackApiNotFoundException:
            return None  # not recorded (yet)
        failed = []
        for event in action.get("events") or []:
            if event.get("result") != "Error":
                continue
            # "details" (microversion 2.84) is the exception's message.
            trace = (event.get("traceback") or "").strip().splitlines()
            why = event.get("details") or (trace[-1].strip() if trace else "no details")
            failed.append(f"{event['event']} on {event.get('host') or '?'}: {why}")
        return "; ".join(failed) or None

    def delete(self, server_id: str, timeout: float = 60.0) -> None:
        self.api.delete_server(server_id)
        self.wait_until_deleted(server_id, timeout)

    def wait_until_deleted(self, server_id: str, timeout: float = 60.0) -> None:
        from nova.tests.functional.api import client

        deadline = time.monotonic() + timeout
        while True:
            try:
                server = self.api.get_server(server_id)
            except client.OpenStackApiNotFoundException:
                return
            if server["status"] == "ERROR" and server.get("OS-EXT-STS:task_state") is None:
                # The API set task_state "deleting" before answering the
                # DELETE: ERROR without a task now means the delete failed.
                fault = (server.get("fault") or {}).get("message", "no fault recorded")
                raise StackError(f"deleting server {server['name']} ({server_id}) failed: "
                                 f"{fault}")
            if time.monotonic() > deadline:
                raise StackError(f"server {server_id} still {server['status']} after "
                                 f"{timeout:.0f} s of deletion")
            time.sleep(0.05)

    def delete_all(self, timeout: float = 120.0) -> None:
        """Delete every server (including ERROR ones) and wait until they are gone."""
        servers = self.api.get_servers(detail=False)
        for server in servers:
            self.api.delete_server(server["id"])
        for server in servers:
            self.wait_until_deleted(server["id"], timeout)

    # -- compute periodic tasks -----------------------------------------------------------

    def run_periodics(self) -> None:
        """nova-compute's resource update (and with it the driver's per-node hooks)."""
        with nova_context.target_cell(self.ctxt, self.cell1) as cctxt:
            for compute in self.computes.values():
                compute.manager.update_available_resource(cctxt)

    def sync_power_states(self) -> None:
        with nova_context.target_cell(self.ctxt, self.cell1) as cctxt:
            for compute in self.computes.values():
                compute.manager._sync_power_states(cctxt)

    # -- placement ------------------------------------------------------------------------

    def provider_uuid(self, cluster: str) -> str:
        nodename = self.nodes[cluster]
        resp = self.placement.get(f"/resource_providers?name={nodename}", version="1.14")
        providers = resp.body["resource_providers"]
        if len(providers) != 1:
            raise StackError(f"placement has {len(providers)} providers named {nodename}")
        return providers[0]["uuid"]

    def inventories(self, cluster: str) -> dict:
        uuid = self.provider_uuid(cluster)
        return self.placement.get(f"/resource_providers/{uuid}/inventories").body["inventories"]

    def usages(self, cluster: str) -> dict:
        uuid = self.provider_uuid(cluster)
        return self.placement.get(f"/resource_providers/{uuid}/usages").body["usages"]

    # -- the simulator's side ----------------------------------------------------------

    def cluster_snapshot(self, cluster: str):
        """The driver's DRS view of a cluster, read from vCenter now."""
        from nova_vsphere_driver.drs_runtime.cluster_snapshot import to_cluster_snapshot

        opts = CONF.vsphere
        return to_cluster_snapshot(self.driver.services.states.read(self.nodes[cluster]),
                           reserved_host_cpus=opts.reserved_host_cpus,
                           reserved_host_memory_mb=opts.reserved_host_memory_mb)

    def sim_cluster(self, name: str):
        from nova_vsphere_driver.simulator.objects.cluster import ClusterComputeResource

        for cluster in self.sim.registry.find(ClusterComputeResource):
            if cluster.name == name:
                return cluster
        raise StackError(f"the simulator has no cluster {name}")

    def sim_host(self, name: str):
        from nova_vsphere_driver.simulator.objects.host import HostSystem

        for host in self.sim.registry.find(HostSystem):
            if host.name == name:
                return host
        raise StackError(f"the simulator has no host {name}")

    def sim_vms(self) -> list:
        from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

        return list(self.sim.registry.find(VirtualMachine))

    def sim_vm(self, instance_uuid: str):
        """The simulator's VM of a server (None when there is none)."""
        found = [vm for vm in self.sim_vms() if vm.config.instanceUuid == instance_uuid]
        if len(found) > 1:
            raise StackError(f"{len(found)} VMs have instance UUID {instance_uuid}")
        return found[0] if found else None

    def sim_vm_by_moid(self, moid: str):
        """The simulator's VM ``vm-N`` (None when there is none)."""
        from nova_vsphere_driver.simulator.objects.virtual_machine import VirtualMachine

        obj = self.sim.registry._objects.get(moid)
        return obj if isinstance(obj, VirtualMachine) else None

    def sim_files(self, needle: str = "") -> list[str]:
        """Datastore paths (``[ds] path``) containing ``needle``."""
        paths = []
        for ds_name in sorted(self.sim.datastores):
            for entry in self.sim.files.listdir(ds_name, "", recursive=True):
                path = f"[{ds_name}] {entry.path}"
                if needle in path:
                    paths.append(path)
        return paths

    def run_host_task(self, host_name: str, method: str, **kwargs):
        """Start a task on a simulated host as a vCenter client would (pyVmomi); returns it."""
        si = self.pyvmomi()
        from pyVmomi import vim

        view = si.content.viewManager.CreateContainerView(si.content.rootFolder,
                                                          [vim.HostSystem], True)
        try:
            host = next((h for h in view.view if h.name == host_name), None)
        finally:
            view.Destroy()
        if host is None:
            raise StackError(f"vCenter has no host {host_name}")
        return getattr(host, method)(**kwargs)

    def pyvmomi(self):
        """A pyVmomi ServiceInstance on the simulator (an operator's vSphere client)."""
        si = getattr(self, "_si", None)
        if si is None:
            import ssl

            from pyVim.connect import Disconnect, SmartConnect

            context = ssl.create_default_context(cafile=self.sim_server.ca_file)
            si = SmartConnect(host="127.0.0.1", port=self.sim_server.port,
                              user=self.sim.username, pwd=self.sim.password,
                              sslContext=context)
            self._si = si
            self.addCleanup(_quietly, Disconnect, si)
        return si

    @staticmethod
    def wait_task(task, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while str(task.info.state) in ("queued", "running"):
            if time.monotonic() > deadline:
                raise StackError(f"task {task.info.descriptionId} still {task.info.state}")
            time.sleep(0.05)
        if str(task.info.state) != "success":
            raise StackError(f"task {task.info.descriptionId} failed: "
                             f"{getattr(task.info.error, 'msg', task.info.error)}")
        return task.info.result


def _quietly(fn: Callable, *args) -> None:
    try:
        fn(*args)
    except Exception:  # the session may be gone with the simulator
        pass


@contextlib.contextmanager
def quiet_logging(level: int = logging.WARNING, stream=None) -> Iterator[None]:
    """Only warnings (ours and Nova's) on ``stream``; everything else dropped."""
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("  [%(levelname)s %(name)s] %(message)s"))
    for h in old_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    saved = {}
    for name in NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(max(level, logging.WARNING))
    # oslo.log's setup would install its own handlers: keep ours.
    patch = fixtures.MonkeyPatch("oslo_log.log.setup", lambda *a, **k: None)
    patch.setUp()
    try:
        yield
    finally:
        patch.cleanUp()
        for name, lvl in saved.items():
            logging.getLogger(name).setLevel(lvl)
        root.removeHandler(handler)
        for h in old_handlers:
            root.addHandler(h)
        root.setLevel(old_level)


__all__ = ["FINAL_STATES", "NovaStack", "StackError", "quiet_logging"]
