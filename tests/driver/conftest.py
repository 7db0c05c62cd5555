"""A VSphereDriver configured against an HTTPS simulator, with real nova.objects."""

from __future__ import annotations

import fixtures
import nova.conf
import pytest
from nova import context as nova_context
from nova import objects
from nova.compute import provider_tree
from nova.tests import fixtures as nova_fixtures
from nova.virt import fake as fake_virt  # noqa: F401  (registers fake virt options)

from nova_vsphere_driver import driver as vsphere_driver
from tests.fixtures import running_simulator

CONF = nova.conf.CONF


class FakeVirtAPI:
    """The slice of Nova's ComputeVirtAPI a driver may call."""

    def __init__(self) -> None:
        from nova.virt import virtapi

        self.__class__ = type("FakeVirtAPI", (virtapi.VirtAPI,), {})


class FixtureHost:
    """What Nova's test fixtures expect of a test case (useFixture, stub_out), for pytest."""

    def __init__(self) -> None:
        self._cleanups = []

    def useFixture(self, fixture):  # noqa: N802  (Nova's fixtures call it so)
        fixture.setUp()
        self._cleanups.append(fixture.cleanUp)
        return fixture

    def id(self) -> str:
        return "nova-vsphere-driver"

    def stub_out(self, name, value):
        self.useFixture(fixtures.MonkeyPatch(name, value))

    def flags(self, group=None, **values):
        for key, value in values.items():
            CONF.set_override(key, value, group)
            self._cleanups.append(lambda key=key: CONF.clear_override(key, group))

    def cleanup(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()


@pytest.fixture
def nova_db():
    """Nova's API database (server groups live there), on a temporary SQLite file."""
    host = FixtureHost()
    host.useFixture(nova_fixtures.Database(database="api"))
    # Creating a server group sends a notification.
    host.useFixture(nova_fixtures.RPCFixture("nova.test"))
    host.useFixture(nova_fixtures.NotificationFixture(host))
    yield
    host.cleanup()


@pytest.fixture
def glance():
    """Nova's fake Glance, reached through Nova's real image API, keeping uploads."""
    from nova_vsphere_driver.testing.glance import UploadKeepingGlanceFixture

    host = FixtureHost()
    fake = host.useFixture(UploadKeepingGlanceFixture(host))
    yield fake
    host.cleanup()


def node_of(drv, cluster: str) -> str:
    """The Nova node name of ``cluster`` in ``drv``."""
    return next(n for n, ref in drv.services.nodes.items() if ref.name == cluster)


@pytest.fixture
def node_a(vsphere) -> str:
    return node_of(vsphere[0], "cluster-a")


def vmdk_image(glance, ctx, data: bytes, **properties) -> objects.ImageMeta:
    """A new active VMDK image in ``glance`` holding ``data``, as Nova's image meta."""
    import io
    import uuid

    image_id = str(uuid.uuid4())
    glance.create(None, {"id": image_id, "name": f"img-{image_id[:8]}", "status": "active",
                         "disk_format": "vmdk", "container_format": "bare", "size": len(data),
                         "properties": properties}, data=io.BytesIO(data))
    return objects.ImageMeta.from_dict(glance.show(ctx, image_id))


@pytest.fixture
def downloads(glance) -> list[str]:
    """Image ids in the order Glance's data was read."""
    return glance.downloads


@pytest.fixture
def conf_overrides():
    applied = []

    def override(group: str | None, **values):
        for key, value in values.items():
            CONF.set_override(key, value, group=group)
            applied.append((key, group))

    yield override
    for key, group in applied:
        CONF.clear_override(key, group=group)


@pytest.fixture
def tls_sim():
    with running_simulator(tls=True) as server:
        yield server


#: Set by the ``_wsdl_location`` fixture: the WSDL as a local file, so that
#: suds builds its model once per test process (see tests/conftest.py).
WSDL_LOCATION: list[str] = []


@pytest.fixture(scope="session", autouse=True)
def _wsdl_location(wsdl_file):
    WSDL_LOCATION.append(wsdl_file)
    yield
    WSDL_LOCATION.remove(wsdl_file)


def configure(override, server, clusters=("cluster-a", "cluster-b"), **extra):
    sim = server.simulator
    values = dict(host_ip="127.0.0.1", host_port=server.port, host_username=sim.username,
                  host_password=sim.password, ca_file=server.ca_file,
                  cluster_names=list(clusters), task_poll_interval=0.05,
                  api_retry_count=2, wsdl_location=WSDL_LOCATION[-1],
                  # Driver tests change the simulator and look at once: every
                  # update_provider_tree reads (test_resources tests the reuse).
                  cluster_read_max_age=0)
    values.update(extra)
    override("vsphere", **values)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "vsphere_conf(**options): [vsphere] options the "
                            "vsphere fixture's driver starts with")


@pytest.fixture
def vsphere(request, tls_sim, conf_overrides, nova_db):
    """(driver, simulator server) with init_host done (``vsphere_conf`` marker: options)."""
    marker = request.node.get_closest_marker("vsphere_conf")
    configure(conf_overrides, tls_sim, **(marker.kwargs if marker else {}))
    # Tests run DRS passes themselves (run_drs_pass), not on a timer.
    conf_overrides("vsphere_drs", poll_interval=3600, balance_interval=0)
    drv = vsphere_driver.VSphereDriver(None)
    drv.init_host("compute-1")
    yield drv, tls_sim
    drv.cleanup_host("compute-1")


@pytest.fixture
def ctx():
    return nova_context.get_admin_context()


def make_instance(node: str, vcpus: int = 2, memory_mb: int = 4096, root_gb: int = 10,
                  image_ref: str = "", extra_specs: dict | None = None, **kw) -> objects.Instance:
    import uuid

    flavor = objects.Flavor(name=f"f{vcpus}-{memory_mb}", vcpus=vcpus, memory_mb=memory_mb,
                            root_gb=root_gb, ephemeral_gb=0, swap=0, flavorid="1",
                            extra_specs=extra_specs or {})
    instance = objects.Instance(uuid=kw.pop("uuid", str(uuid.uuid4())), node=node,
                                host="compute-1", display_name=kw.pop("name", "test-server"),
                                project_id="p1", user_id="u1", image_ref=image_ref,
                                flavor=flavor, vcpus=vcpus, memory_mb=memory_mb,
                                root_gb=root_gb, **kw)
    return instance


#: The user data of config_drive_instance.
USER_DATA = b"#cloud-config\nhostname: from-the-config-drive\n"


@pytest.fixture
def metadata_services(nova_db):
    """What Nova's InstanceMetadata reads: the cell database and Neutron (faked)."""
    host = FixtureHost()
    host.useFixture(nova_fixtures.Database(database="main"))
    host.useFixture(nova_fixtures.NeutronFixture(host))
    yield
    host.cleanup()


def config_drive_instance(ctx, node: str, **kw) -> objects.Instance:
    """An instance with a config drive, user data and what Nova's metadata reads set."""
    fields = config_drive_fields(**kw)
    fields.setdefault("root_gb", 1)
    instance = make_instance(node, **fields)
    instance._context = ctx  # as Nova's instances carry theirs (InstanceMetadata reads BDMs)
    return instance


def config_drive_fields(**kw) -> dict:
    """Instance fields for a config drive: the flag, user data, what Nova's metadata reads."""
    import base64

    # Nova keeps the flag as a string: "True", or "" for none.
    fields = dict(config_drive="True", user_data=base64.b64encode(USER_DATA).decode(),
                  metadata={"role": "web"}, system_metadata={}, launched_at=None,
                  keypairs=objects.KeyPairList(objects=[]), device_metadata=None,
                  numa_topology=None, launch_index=0, reservation_id="r-cfgdrive",
                  hostname="cfgdrive", key_name=None, key_data=None, availability_zone=None,
                  root_device_name=None, kernel_id="", ramdisk_id="", task_state=None,
                  ephemeral_key_uuid=None, trusted_certs=None, info_cache=None,
                  security_groups=objects.SecurityGroupList(objects=[]))
    fields.update(kw)
    return fields


def new_tree(nodename: str):
    tree = provider_tree.ProviderTree()
    tree.new_root(nodename, "rp-" + nodename[:20])
    return tree
