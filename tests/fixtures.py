"""Shared test fixtures: an in-process simulator on an ephemeral loopback port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pyVim.connect import Disconnect, SmartConnect

from nova_vsphere_driver.simulator import Simulator, SimulatorServer


@contextlib.contextmanager
def running_simulator(inventory: dict | None = None, tls: bool = False,
                      **sim_kwargs) -> Iterator[SimulatorServer]:
    """Start a simulator on 127.0.0.1:<ephemeral>, stop it afterwards."""
    server = SimulatorServer(Simulator(inventory, **sim_kwargs), tls_enabled=tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def connect(server: SimulatorServer, **kwargs):
    """A pyVmomi ServiceInstance logged in to ``server``."""
    sim = server.simulator
    if server.tls_enabled:
        import ssl

        context = ssl.create_default_context(cafile=server.ca_file)
        return SmartConnect(host="127.0.0.1", port=server.port, user=sim.username,
                            pwd=sim.password, sslContext=context, **kwargs)
    return SmartConnect(host="127.0.0.1", port=server.port, user=sim.username,
                        pwd=sim.password, protocol="http", **kwargs)


__all__ = ["Disconnect", "connect", "running_simulator"]
