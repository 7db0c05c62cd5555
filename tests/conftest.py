"""pytest fixtures shared by every test package."""

from __future__ import annotations

import pytest

from tests.fixtures import Disconnect, connect, running_simulator


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
