"""pytest fixtures shared by every test package."""

from __future__ import annotations

import collections
import threading
import weakref

import pytest
import suds.cache

from tests.fixtures import Disconnect, connect, running_simulator


@pytest.fixture(scope="session", autouse=True)
def _suds_keeps_parsed_wsdl():
    """Let suds reuse the parsed WSDL across the clients of this test process.

    oslo.vmware's suds client caches the WSDL documents but rebuilds its
    model (about 2 s for vim25) for every session; tests open hundreds of
    sessions. Caching policy 1 keeps the built model per WSDL URL. Test
    speed only: production opens one session per process.
    """
    try:
        from oslo_vmware import service
    except ImportError:
        yield
        return
    original = service.CompatibilitySudsClient.__init__
    models = _RecentWsdlModels(2)

    def init(self, *args, **kwargs):
        kwargs.setdefault("cachingpolicy", 1)
        # Not oslo.vmware's own cache: it keeps what it is given for an hour,
        # and each simulator port is a WSDL URL of its own. A full run kept
        # a model (~320,000 objects) per in-process Nova stack, grew past
        # 2 GB, and the garbage collector's full passes -- which stop every
        # thread -- grew to 10-22 s: long enough for a 10 s call to time out.
        kwargs["cache"] = models
        original(self, *args, **kwargs)

    service.CompatibilitySudsClient.__init__ = init
    # suds also describes every port and type of the WSDL (~1 s for vim25)
    # for each client; besides printing the client, only its first run
    # matters (it registers namespace prefixes in the shared, cached WSDL
    # model). Later descriptions of the same model are built lazily.
    import suds.client

    described = suds.client.ServiceDefinition
    described_models = _DescribedModels()

    class LazyServiceDefinition:
        def __new__(cls, wsdl, service):
            if described_models.first_time(wsdl):
                return described(wsdl, service)
            return super().__new__(cls)

        def __init__(self, *args) -> None:
            self._args = args
            self._real = None

        def __getattr__(self, name):
            if self._real is None:
                self._real = described(*self._args)
            return getattr(self._real, name)

        def __str__(self) -> str:
            return str(self.__getattr__("description")())

    suds.client.ServiceDefinition = LazyServiceDefinition
    yield
    suds.client.ServiceDefinition = described
    service.CompatibilitySudsClient.__init__ = original


class _DescribedModels:
    """Which WSDL models have been described once (their prefixes registered).

    Known by object (weakly), not by ``id()``: a model dropped from the cache
    and collected leaves its id to the next object allocated there -- often
    the next model -- which then was never described, and suds failed with
    "prefix (ns0) not resolved" (a flaky Nova stack start in CI).
    """

    def __init__(self) -> None:
        self._described: weakref.WeakSet = weakref.WeakSet()  # suds models hash by identity
        self._lock = threading.Lock()

    def first_time(self, model: object) -> bool:
        with self._lock:
            if model in self._described:
                return False
            self._described.add(model)
            return True


class _RecentWsdlModels(suds.cache.Cache):
    """suds' object cache holding the WSDL models of the last ``size`` URLs."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
            return model

    def put(self, key, model):
        with self._lock:
            self._models[key] = model
            self._models.move_to_end(key)
            while len(self._models) > self._size:
                self._models.popitem(last=False)
        return model

    def purge(self, key) -> None:
        with self._lock:
            self._models.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


@pytest.fixture(scope="session")
def wsdl_file(tmp_path_factory) -> str:
    """The simulator's WSDL set written once, as a file:// URL for clients.

    Clients that load it from one URL share suds' parsed model (above)
    instead of parsing it again for every simulator port.
    """
    from nova_vsphere_driver.simulator import wsdl

    return "file://" + wsdl.write_documents(str(tmp_path_factory.mktemp("wsdl")))


@pytest.fixture(scope="session")
def go_build(tmp_path_factory):
    """Builds a Go program of ``tests/interop/go/`` once per session; returns its path.

    Skips the test where Go or Debian's govmomi is missing (fails instead
    where ``NOVA_VSPHERE_REQUIRE_GO`` is set, as in CI).
    """
    from tests.interop import golang

    reason = golang.missing()
    if reason is not None:
        if golang.required():
            pytest.fail(f"{golang.REQUIRE_ENV} is set, but {reason}")
        pytest.skip(f"needs Go and govmomi: {reason}")
    return golang.Builder(str(tmp_path_factory.mktemp("go-bin")))


@pytest.fixture
def sim_server():
    """A running simulator (default inventory, HTTP) for one test."""
    with running_simulator() as server:
        yield server


@pytest.fixture
def sim(sim_server):
    """The simulator's state, for arranging and asserting behind the API."""
    return sim_server.simulator


@pytest.fixture
def si(sim_server):
    """A pyVmomi ServiceInstance logged in to the simulator."""
    service_instance = connect(sim_server)
    yield service_instance
    try:
        Disconnect(service_instance)
    except Exception:  # the test may have expired or restarted the session
        pass
