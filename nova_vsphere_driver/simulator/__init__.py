"""A vCenter simulator speaking vim25 SOAP, for development and tests.

It is a test tool: it binds to loopback by default and accepts only the
credentials it is configured with, but it is not hardened for exposure.
"""

from nova_vsphere_driver.simulator.server import SimulatorServer
from nova_vsphere_driver.simulator.service import DEFAULT_PASSWORD, DEFAULT_USER, Simulator

__all__ = ["DEFAULT_PASSWORD", "DEFAULT_USER", "Simulator", "SimulatorServer"]
