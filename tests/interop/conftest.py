"""Fixtures for running clients and servers nobody here wrote: vcsim."""

from __future__ import annotations

import pytest

from tests.interop.vcsim import Vcsim, VcsimInventory


@pytest.fixture(scope="session")
def vcsim_binary(go_build) -> str:
    """VMware's vcsim built from Debian's govmomi (skips where Go is missing)."""
    return go_build("vcsim")


@pytest.fixture
def vcsim(vcsim_binary):
    """A running vcsim with ``simulator.VPX()``'s inventory, over HTTPS."""
    with Vcsim(vcsim_binary, VcsimInventory()) as server:
        yield server
