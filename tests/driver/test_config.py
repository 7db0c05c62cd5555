"""Loading VSphereDriver the way nova-compute does, and init_host's configuration checks.

Every check runs the real driver against a TLS simulator over loopback: a bad
option must stop nova-compute at start with a message that names the option
and its value, not fail later or hang in retries.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import socket
import time

import nova.conf
import pytest
from nova.virt import driver as nova_driver
from nova.virt import virtapi

from nova_vsphere_driver import conf as vsphere_conf
from nova_vsphere_driver import driver as vsphere_driver
from tests.driver.conftest import configure
from tests.fixtures import running_simulator

CONF = nova.conf.CONF
ConfigurationError = vsphere_driver.ConfigurationError


@pytest.fixture(scope="module")
def sim_tls():
    """One HTTPS simulator for the module: none of these tests changes its inventory."""
    with running_simulator(tls=True) as server:
        yield server


@pytest.fixture
def init(conf_overrides, sim_tls, wsdl_file):
    """init_host with the simulator's good settings, overridden by ``extra``.

    Connection errors are not retried (api_retry_count = 0) so that a failing
    start is quick; the WSDL comes from one file (suds parses it once per
    process, not once per port).
    """
    drivers = []

    def init(server=None, **extra):
        configure(conf_overrides, server or sim_tls,
                  **{"api_retry_count": 0, "wsdl_location": wsdl_file, **extra})
        conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
        drv = vsphere_driver.VSphereDriver(None)
        drivers.append(drv)
        drv.init_host("compute-1")
        return drv

    yield init
    for drv in drivers:
        if drv.services is not None:
            drv.cleanup_host("compute-1")


def failure(init, **extra) -> str:
    """init_host's ConfigurationError message (it must fail, and fast)."""
    start = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        init(**extra)
    assert time.monotonic() - start < 30, "a bad configuration must fail fast"
    return str(info.value)


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- loading ----------------------------------------------------------------------------


def test_load_compute_driver_by_name():
    drv = nova_driver.load_compute_driver(None, "vsphere.VSphereDriver")
    assert type(drv) is vsphere_driver.VSphereDriver
    assert isinstance(drv, nova_driver.ComputeDriver)
    # The shim under nova/virt/ only re-exports the driver.
    shim = importlib.import_module("nova.virt.vsphere")
    assert shim.VSphereDriver is vsphere_driver.VSphereDriver


def test_load_compute_driver_from_config(conf_overrides):
    conf_overrides(None, compute_driver="vsphere.VSphereDriver")
    api = virtapi.VirtAPI()
    drv = nova_driver.load_compute_driver(api, None)
    assert type(drv) is vsphere_driver.VSphereDriver
    assert drv.virtapi is api


# -- options ----------------------------------------------------------------------------


def test_options_are_registered_with_help():
    groups = dict((group.name, opts) for group, opts in vsphere_conf.list_opts())
    assert set(groups) == {"vsphere", "vsphere_drs"}
    for group, opts in groups.items():
        registered = CONF[group]
        for opt in opts:
            assert opt.help and len(opt.help) > 15, f"[{group}] {opt.name} needs help text"
            # Registered on Nova's CONF, readable with its default.
            assert getattr(registered, opt.name) == opt.default
    names = {opt.name for opt in groups["vsphere"]}
    assert {"host_ip", "host_port", "host_username", "host_password", "ca_file", "insecure",
            "cluster_names", "datastore_regex", "api_retry_count", "task_poll_interval",
            "maximum_objects", "reserved_host_memory_mb", "reserved_host_cpus"} <= names
    assert {"policy", "make_room", "max_room_moves", "mode"} <= {
        opt.name for opt in groups["vsphere_drs"]}


def test_password_is_secret_and_tls_is_verified_by_default():
    opts = {opt.name: opt for opt in dict(
        (g.name, o) for g, o in vsphere_conf.list_opts())["vsphere"]}
    assert opts["host_password"].secret is True
    assert opts["host_username"].secret is False
    assert opts["insecure"].default is False
    assert CONF.vsphere.insecure is False


def test_options_are_listed_for_the_config_generator():
    eps = importlib.metadata.entry_points(group="oslo.config.opts")
    ep = next(e for e in eps if e.name == "nova_vsphere_driver")
    assert ep.load() is vsphere_conf.list_opts


# -- init_host: options missing or malformed (refused before vCenter is contacted) -------


@pytest.mark.parametrize("option", ["host_ip", "host_username", "host_password"])
def test_missing_connection_option(init, sim_tls, option):
    before = sim_tls.simulator.request_count
    message = failure(init, **{option: None})
    assert f"[vsphere] {option}" in message
    assert "required" in message
    assert sim_tls.simulator.request_count == before


def test_empty_cluster_names(init, sim_tls):
    before = sim_tls.simulator.request_count
    message = failure(init, cluster_names=[])
    assert "[vsphere] cluster_names" in message
    assert sim_tls.simulator.request_count == before


def test_invalid_datastore_regex(init, sim_tls):
    before = sim_tls.simulator.request_count
    message = failure(init, datastore_regex="shared-(a")
    assert "[vsphere] datastore_regex" in message
    assert "'shared-(a'" in message
    assert "regular expression" in message
    assert sim_tls.simulator.request_count == before


def test_ca_file_that_does_not_exist(init, tmp_path, sim_tls):
    missing = str(tmp_path / "no-such-ca.pem")
    before = sim_tls.simulator.request_count
    message = failure(init, ca_file=missing)
    assert "[vsphere] ca_file" in message
    assert missing in message
    assert sim_tls.simulator.request_count == before


def test_unknown_drs_policy(init, conf_overrides, sim_tls):
    conf_overrides("vsphere_drs", policy="roundrobin")
    before = sim_tls.simulator.request_count
    message = failure(init)
    assert "[vsphere_drs] policy" in message
    assert "'roundrobin'" in message
    assert "balanced" in message and "packed" in message
    assert sim_tls.simulator.request_count == before


# -- init_host: vCenter refuses or cannot be reached ------------------------------------


def test_unreachable_vcenter(init):
    port = closed_port()
    message = failure(init, host_port=port)
    assert "host_ip='127.0.0.1'" in message
    assert f"host_port={port}" in message


def test_port_that_does_not_speak_tls(init):
    # Not a certificate problem: the port serves plain HTTP.
    with running_simulator(tls=False) as plain:
        message = failure(init, server=plain, ca_file=None)
    assert "host_ip='127.0.0.1'" in message
    assert f"host_port={plain.port}" in message
    assert "ca_file" not in message


def test_wrong_password(init, sim_tls, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "Not-The-Password-7f3a"
    message = failure(init, host_password=secret)
    username = sim_tls.simulator.username
    assert "[vsphere] host_username" in message
    assert repr(username) in message
    assert secret not in message
    assert secret not in caplog.text


def test_unknown_user(init):
    message = failure(init, host_username="mallory@vsphere.local")
    assert "[vsphere] host_username='mallory@vsphere.local'" in message


def test_unknown_cluster(init, sim_tls):
    message = failure(init, cluster_names=["cluster-a", "cluster-z"])
    assert "[vsphere] cluster_names" in message
    assert "cluster-z" in message
    # ... and lists the clusters that do exist.
    assert "cluster-a" in message and "cluster-b" in message


def test_datastore_regex_matching_no_datastore(init):
    message = failure(init, datastore_regex="^nfs-gold-")
    assert "[vsphere] datastore_regex='^nfs-gold-'" in message
    assert "cluster-a" in message
    # ... naming the datastores that are there.
    assert "shared-a" in message and "shared-all" in message


def test_ca_file_of_another_ca(init, sim_tls):
    with running_simulator(tls=True) as other:
        assert other.ca_file != sim_tls.ca_file
        message = failure(init, ca_file=other.ca_file)
    assert "[vsphere] ca_file" in message
    assert repr(other.ca_file) in message
    assert "TLS" in message or "certificate" in message.lower()


def test_self_signed_certificate_without_ca_file(init):
    message = failure(init, ca_file=None, insecure=False)
    assert "[vsphere] ca_file" in message
    assert "TLS" in message or "certificate" in message.lower()


def test_insecure_connects_without_ca_file_and_warns(init, caplog):
    caplog.set_level(logging.WARNING)
    drv = init(ca_file=None, insecure=True, cluster_names=["cluster-a"])
    assert len(drv.get_available_nodes()) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                and "insecure" in r.getMessage()]
    assert warnings, caplog.text
    assert "NOT verified" in warnings[0].getMessage()


def test_good_configuration_starts(init, caplog):
    caplog.set_level(logging.WARNING)
    drv = init(wsdl_location=None)  # the WSDL as vCenter serves it
    assert len(drv.get_available_nodes()) == 2
    assert not [r for r in caplog.records if "insecure" in r.getMessage()]


# -- clusters of the same name in several datacenters ---------------------------------


def _site(name: str, folder: str | None, prefix: str) -> dict:
    host = {"cores": 8, "memory_mb": 65536}
    return {"name": name, "folder": folder,
            "datastores": [{"name": f"{prefix}-ds", "capacity_gb": 1024}],
            "clusters": [{"name": "cluster-a", "hosts": [{"name": f"{prefix}-esx1", **host}]},
                         {"name": f"only-{prefix}", "hosts": [{"name": f"{prefix}-esx2",
                                                              **host}]}]}


@pytest.fixture(scope="module")
def sites_sim():
    """cluster-a in three datacenters: dc1 in folder emea, dc1 in folder apac, dc2 at the root."""
    inventory = {"datacenters": [_site("dc1", "emea", "e1"), _site("dc1", "apac", "a1"),
                                 _site("dc2", None, "d2")]}
    with running_simulator(inventory, tls=True) as server:
        yield server


def test_a_cluster_name_in_several_datacenters_is_refused_naming_them(init, sites_sim):
    message = failure(init, server=sites_sim, cluster_names=["cluster-a"])
    assert "[vsphere] cluster_names" in message
    assert "apac/dc1, dc2, emea/dc1" in message
    assert "'apac/dc1/cluster-a'" in message
    message = failure(init, server=sites_sim, cluster_names=["dc1/cluster-a"])
    assert "apac/dc1, emea/dc1" in message


def test_datacenter_paths_pick_one_cluster_each(init, sites_sim):
    sim = sites_sim.simulator
    drv = init(server=sites_sim, cluster_names=["emea/dc1/cluster-a", "dc2/cluster-a",
                                                "/apac/dc1/cluster-a", "only-e1"])
    clusters = [drv.services.nodes[n] for n in drv.get_available_nodes()]
    expected = {"emea/dc1/cluster-a": "e1-esx1", "dc2/cluster-a": "d2-esx1",
                "apac/dc1/cluster-a": "a1-esx1", "emea/dc1/only-e1": "e1-esx2"}
    assert [c.path for c in clusters] == list(expected)
    for cluster, host in zip(clusters, expected.values(), strict=True):
        assert cluster.moref == sim.host(host).parent.moid
    # What each node offers is its own cluster's.
    for node in drv.get_available_nodes():
        assert drv.get_available_resource(node)["memory_mb"] == 65536


def test_node_names_do_not_depend_on_how_the_cluster_is_written(init, sites_sim):
    by_name = init(server=sites_sim, cluster_names=["only-d2"]).get_available_nodes()
    by_path = init(server=sites_sim, cluster_names=["/dc2/only-d2"]).get_available_nodes()
    assert by_name == by_path


def test_a_cluster_named_twice_or_not_at_all_is_refused(init, sites_sim):
    message = failure(init, server=sites_sim, cluster_names=["only-a1", "apac/dc1/only-a1"])
    assert "'only-a1' and 'apac/dc1/only-a1' are the same cluster" in message
    message = failure(init, server=sites_sim, cluster_names=["/dc1/cluster-a"])
    assert "no cluster '/dc1/cluster-a'" in message and "emea/dc1/cluster-a" in message


def test_a_datacenter_in_a_folder_serves_its_datastore_files(init, sites_sim, glance, ctx,
                                                             nova_db):
    """Datastore HTTP (the image cache) names the datacenter by its path, emea/dc1."""
    from tests.driver.conftest import make_instance, vmdk_image

    drv = init(server=sites_sim, cluster_names=["emea/dc1/cluster-a"])
    [node] = drv.get_available_nodes()
    image = vmdk_image(glance, ctx, bytes(range(256)) * 4096, vmware_disktype="thin")
    instance = make_instance(node, image_ref=image.id, root_gb=1)
    drv.spawn(ctx, instance, image, [], None, {}, network_info=[])
    sim = sites_sim.simulator
    assert sim.files.exists("e1-ds", f"_nova_image_cache/{image.id}/{image.id}.vmdk")
    drv.destroy(ctx, instance, [])


@pytest.mark.parametrize("folder, problem", [
    ("a/b", "'/'"), ("back\\slash", repr("\\")), ("100%", "'%'"), ("bell\x07", repr("\x07")),
    ("x" * 81, "at most 80 characters"),
])
def test_a_vm_folder_name_vcenter_cannot_keep_is_refused(init, folder, problem):
    message = failure(init, vm_folder=folder)
    assert f"[vsphere] vm_folder={folder!r}" in message
    assert problem in message, message
